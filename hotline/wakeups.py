"""The wake-up port: how the core asks for a job to run later without knowing about RQ.

The database is the source of truth for anything due later; a wake-up only shortens the wait.
A lost wake-up (Redis flushed or down) is recovered by the sweeper, so ``schedule`` never raises.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol


class Task(StrEnum):
    EXPIRE_OFFER = "expire_offer"
    # The check-ins due by the end of a minute (ident: minute since the epoch x 10 + lane).
    SEND_DUE_CHECKINS = "send_due_checkins"
    SEND_CHECKIN = "send_checkin"  # one check-in by id: wake-ups queued by an older release
    # A call nobody took, offered by text; or a text request a BREAK passed on (or a BACK
    # found waiting), offered when the reply had no room for it.
    OFFER_CALL_BACK = "offer_call_back"
    FOLLOW_UP_CALL = "follow_up_call"  # tell the supporter who took a call how to close it
    # The provider records (messages' and calls') due for deletion by the end of a minute
    # (ident as for check-ins).
    DELETE_DUE_RECORDS = "delete_due_records"
    DELETE_MESSAGE = "delete_message"  # one record by id: wake-ups queued by an older release
    SEND_NOTICE = "send_notice"  # verification codes, shift reminders, coverage-gap warnings
    RELAY_HELD = "relay_held"  # a conversation's held texts that did not fit in a reply


# Wake-ups that every row due in a minute shares (``hotline.drains``), never cancelled: asking
# again for one already asked is a no-op, so a web process asks Redis once per minute.
SHARED = frozenset({Task.SEND_DUE_CHECKINS, Task.DELETE_DUE_RECORDS})


def job_id(task: Task, ident: int) -> str:
    """The deterministic RQ job id of a wake-up (RQ ids allow only ``[A-Za-z0-9_-]``)."""
    return f"{task.value}-{ident}"


class WakeUps(Protocol):
    def schedule(self, task: Task, ident: int, at: datetime | None = None) -> None:
        """Run ``task`` for row ``ident`` at ``at`` (now if None). Never raises: best effort."""
        ...

    def cancel(self, task: Task, ident: int) -> None:
        """Drop a pending wake-up if there is one. Never raises: jobs re-check state anyway."""
        ...

    def delete_record_later(self, sid: str, at: datetime, attempt: int = 1) -> None:
        """Delete provider record ``sid`` at ``at`` with no database row (it is down: see
        ``retention.delete_unqueued``). Never raises: best effort."""
        ...


class NoWakeUps:
    """A WakeUps that drops everything; the sweeper alone drives due work (tests, tools)."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[Task, int, datetime | None]] = []
        self.records: list[tuple[str, datetime, int]] = []

    def schedule(self, task: Task, ident: int, at: datetime | None = None) -> None:
        self.scheduled.append((task, ident, at))

    def cancel(self, task: Task, ident: int) -> None:
        self.scheduled = [s for s in self.scheduled if (s[0], s[1]) != (task, ident)]

    def delete_record_later(self, sid: str, at: datetime, attempt: int = 1) -> None:
        self.records.append((sid, at, attempt))
