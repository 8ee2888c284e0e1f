"""Work due by the minute: one wake-up per minute, lanes, and runs that carry on.

Check-ins and provider-record deletions are many small rows, each due at its own instant. A
row does not get a wake-up of its own: every row due in a minute shares the wake-up at the end
of that minute, whose run works through whatever is due, a batch at a time. A burst costs one
job per batch instead of one per row, and asking for a minute's wake-up again is a no-op (a
web process asks Redis once per minute, see ``workers.queue.RQWakeUps``).

A minute's own run, finding its first batch full, calls in ``LANES - 1`` more runs of the same
minute, so that many workers share a burst. A run stops after ``BUDGET`` seconds and queues a
run to carry on: RQ's job time-out and a platform's wait between SIGTERM and SIGKILL both bound
a job. The sweeper runs the same code with ident 0: it calls nobody in and queues nothing (the
next sweep carries on).

An ident is the minute since the epoch times ten plus a digit: 0 for the minute's own run,
1 to ``LANES - 1`` for the lanes it calls in, ``CONTINUED`` + lane for a run carrying on a lane.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from hotline.db import transaction
from hotline.effects import Effects, schedule
from hotline.services import Services
from hotline.wakeups import Task

Batch = TypeVar("Batch")

LANES = 4  # runs working through one minute side by side, on as many workers
CONTINUED = 5  # the digit of a continuing run is its lane's plus this
assert LANES <= CONTINUED, "lane digits and continuing-run digits must not collide"
# Seconds a run works for; then it hands the rest back and a fresh job carries on. With one
# Twilio call's time-outs (3 s + 10 s) on top, a run ends inside workers.queue.JOB_TIMEOUT and
# inside the 30 s a platform waits between SIGTERM and SIGKILL, so a stopping worker finishes
# the run in hand rather than dying between a claim and its record.
BUDGET = 10.0
# A run's claim on its batch lapses after this (its job timed out or its worker died) and the
# rows are due again: past workers.queue.JOB_TIMEOUT and RQ's 60 s grace before it kills a job.
LEASE = timedelta(minutes=3)


def wake_up_for(due_at: datetime) -> tuple[int, datetime]:
    """The shared wake-up (ident, time) for a row due at ``due_at``: the end of its minute."""
    minute = math.ceil(due_at.timestamp() / 60)
    return minute * 10, datetime.fromtimestamp(minute * 60, UTC)


def minute_end(ident: int) -> datetime:
    """When the minute of wake-up ``ident`` ends (every row due in it is due by then)."""
    return datetime.fromtimestamp(ident // 10 * 60, UTC)


def is_minute_run(ident: int) -> bool:
    """Whether ``ident`` is a minute's own run (not a lane, a continuation or the sweeper)."""
    return bool(ident) and ident % 10 == 0


def picked(id_column: Any, due_column: Any, where: list[Any], size: int) -> Select[Any]:
    """The ids of up to ``size`` rows matching ``where``, soonest due first, that no other run
    holds (SKIP LOCKED on PostgreSQL; SQLite has one writer): for ``id IN (...)`` in a claim,
    which must check ``where`` again on the locked rows so a row is claimed once.

    A materialised CTE: PostgreSQL may run a LIMIT ... SKIP LOCKED subquery in the WHERE more
    than once, and each run picks different rows (a batch of thousands, not fifty)."""
    pick = (
        select(id_column)
        .where(*where)
        .order_by(due_column, id_column)
        .limit(size)
        .with_for_update(skip_locked=True)
        .cte("pick")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return select(pick.c.id)


def call_in_lanes(task: Task, ident: int, effects: Effects) -> None:
    """A minute's own run found a full first batch: wake the minute's other lanes now."""
    if is_minute_run(ident):
        for lane in range(1, LANES):
            effects.wake(task, ident + lane)


def carry_on(task: Task, ident: int, effects: Effects) -> None:
    """Queue the run that carries on where run ``ident`` stopped (its own twin, if it was
    continuing already); none for the sweeper's run."""
    if ident:
        effects.wake(task, ident if ident % 10 >= CONTINUED else ident + CONTINUED)


def drain(
    services: Services,
    task: Task,
    ident: int,
    *,
    claim: Callable[[Session, datetime], tuple[int, Batch]],
    work: Callable[[Batch, float], bool],
    next_due: Callable[[Session, datetime, datetime], datetime | None],
    batch_size: int,
    budget: float = BUDGET,
) -> int:
    """Run wake-up ``ident`` of ``task``: claim a batch and work through it until a batch
    comes back short; the number of rows claimed.

    ``claim(session, now)`` takes up to ``batch_size`` due rows in the transaction it is given
    (how many, and the batch); ``work(batch, deadline)`` does them outside any transaction and
    answers False when it ran out of time and handed rows back; ``next_due(session, now,
    end)`` is the first row due after ``now`` and by ``end``, for a minute's run woken before
    its minute was over (clock skew between machines): it comes back then.
    """
    deadline = time.monotonic() + budget
    claimed = 0
    while True:
        now = services.clock()
        effects = Effects()
        with transaction(services.sessions) as session:
            size, batch = claim(session, now)
            if size < batch_size and is_minute_run(ident):
                due = next_due(session, now, minute_end(ident))
                if due is not None:
                    effects.wake(task, ident, due)
        if claimed == 0 and size == batch_size:
            call_in_lanes(task, ident, effects)
        schedule(services, effects)
        claimed += size
        finished = work(batch, deadline)
        more = size == batch_size
        if not finished or (more and time.monotonic() > deadline):
            effects = Effects()
            carry_on(task, ident, effects)
            schedule(services, effects)
            return claimed
        if not more:
            return claimed
