"""Follow-up check-ins after a conversation: scheduled in SQL, sent once, stopped by a word.

Each check-in is a row (scheduled -> sending -> sent | failed | cancelled | unknown). RQ only
carries the wake-up; the sweeper sends what Redis lost. A worker claims rows with a conditional
update before calling Twilio, so two workers never send the same one; a row left in ``sending``
by a crashed worker becomes ``unknown`` and is never resent (a duplicate is worse than a gap).

Wake-ups are per due minute, not per row: every check-in due in a minute shares one wake-up,
whose job sends whatever is due in batches (``send_due``). A burst (a unit's worth of
conversations ending together, a cadence landing at the window's opening hour) costs one job
per batch instead of one per text, and a busy run brings in more workers (``hotline.drains``).

Policy: the latest conversation governs. When a conversation ends, pending check-ins from older
ones are cancelled and a fresh cadence is scheduled; a check-in that falls due while the
clinician is in a live conversation is skipped (cancelled), since that conversation will schedule
its own when it ends. One due while their request waits for a peer waits too (WHILE_WAITING at
a time): a request nobody takes schedules nothing, so the check-in must still go.
"""

from __future__ import annotations

import logging
import time as timer
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, exists, func, select, update
from sqlalchemy.orm import Session, joinedload

from hotline import drains, reach, records, wording
from hotline.db import transaction
from hotline.effects import Effects, schedule, sender_refused
from hotline.models import (
    OPEN_CONVERSATION,
    CheckIn,
    CheckInState,
    Clinician,
    Conversation,
    ConversationState,
    OptOut,
    PoolNumber,
    Programme,
)
from hotline.people import clinician_phone, opted_out, record_opt_out
from hotline.privacy import DecryptionError
from hotline.programmes import ProgrammeConfig, config_of
from hotline.services import Services
from hotline.telephony import (
    DeliveryUnknownError,
    OptedOutError,
    PermanentError,
    RetryableError,
    SenderError,
)
from hotline.texting import StatusReport
from hotline.wakeups import Task

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
# Twilio refuses the hotline number itself as a sender (released, not registered): the
# clinician is not at fault, and fixing it can take days; the check-in waits this long at a
# time, using up none of its attempts.
SENDER_WAIT = timedelta(hours=1)
STUCK_AFTER = timedelta(minutes=5)  # well past the job timeout: the worker is gone
# Safe even if a run outlives its lease: only one run can move a row on to ``sending``.
CLAIM_LEASE = drains.LEASE
DRAIN_BATCH = 50  # check-ins claimed (and committed) together, then sent one by one
PENDING = (CheckInState.SCHEDULED, CheckInState.CLAIMED, CheckInState.SENDING)
CANCELLABLE = (CheckInState.SCHEDULED, CheckInState.CLAIMED)  # not yet handed to Twilio
WHILE_WAITING = timedelta(hours=1)  # a check-in due while the clinician's request waits
WINDOW_SLACK = timedelta(minutes=2)  # due inside the window, claimed this soon after it shut
MIN_GAP = timedelta(hours=1)  # check-ins closer than this (the window moved one onto another): one
# A clinician's text or call this soon after a check-in is its reply: it counts in the reports,
# it goes to the peer who last supported them, and the purge keeps their number until it has
# passed.
REPLY_WINDOW = timedelta(days=7)

# Twilio's message states in the order they can happen; callbacks arrive out of order and twice.
DELIVERY_ORDER = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "undelivered": 4,
    "failed": 4,
    "read": 5,
}


def in_window(at: datetime, hours: tuple[time, time] | None, zone: ZoneInfo) -> datetime:
    """The first instant at or after ``at`` inside the local delivery window ``hours``.

    Works on the clock in ``zone``: inside whenever the clock reads a time inside ``hours``. A
    start the spring-forward gap skips opens the window as the clock jumps past it (a window
    the gap skips whole opens the next day); in the repeated hour of a fall back the clock
    reads each time twice, and both readings count.
    """
    if hours is None:
        return at
    start, end = hours
    while True:  # a change of offset on the way: count again from there (a day or more apart)
        local = at.astimezone(zone)
        if _inside(local.time(), start, end):
            return at
        wall = datetime.combine(local.date(), local.time())
        ahead = (datetime.combine(local.date(), start) - wall) % timedelta(days=1)
        reading = at.astimezone(UTC) + ahead  # the instant the clock reads ``start`` next
        if reading.astimezone(zone).utcoffset() == local.utcoffset():
            return reading
        at = _offset_change(at, reading, zone)  # the clock jumps before it reads ``start``


def _offset_change(before: datetime, after: datetime, zone: ZoneInfo) -> datetime:
    """The instant ``zone``'s offset changes between ``before`` and ``after`` (one change; on a
    whole second, as every change in the tz database is)."""
    offset = before.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
            low = middle
        else:
            high = middle
    return datetime.fromtimestamp(high, UTC)


def due_after(ended: datetime, offset: timedelta, zone: ZoneInfo) -> datetime:
    """``ended`` + ``offset``; whole days are counted on the local calendar, so "1d" after 3 pm
    is 3 pm the next day even across a daylight-saving change (aware + timedelta is wall-clock
    arithmetic in Python)."""
    if offset % timedelta(days=1):
        return ended + offset
    return (ended.astimezone(zone) + offset).astimezone(UTC)


def _inside(t: time, start: time, end: time) -> bool:
    return start <= t < end if start < end else t >= start or t < end


def schedule_after(
    session: Session, p: ProgrammeConfig, conv: Conversation, now: datetime, effects: Effects
) -> list[CheckIn]:
    """Schedule the cadence after ``conv`` ended (none if declined, opted out or forgotten)."""
    clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    if clinician is None or clinician.checkins_declined or clinician.phone_sealed is None:
        return []
    cancel_pending(session, clinician.id, effects)
    created: list[CheckIn] = []
    for sequence, offset in enumerate(p.checkin_offsets, start=1):
        due = in_window(due_after(now, offset, p.zone), p.checkin_hours, p.zone)
        if created and due < created[-1].due_at + MIN_GAP:
            continue  # moved into the window onto the one before: the same text twice
        checkin = CheckIn(
            programme_id=p.id,
            conversation_id=conv.id,
            clinician_id=clinician.id,
            sequence=sequence,
            due_at=due,
        )
        session.add(checkin)
        created.append(checkin)
    session.flush()
    for checkin in created:
        effects.wake(Task.SEND_DUE_CHECKINS, *drains.wake_up_for(checkin.due_at))
    return created


def cancel_pending(session: Session, clinician_id: int, effects: Effects) -> int:
    """Cancel every check-in of a clinician not yet handed to Twilio (STOP, NOCHECKIN, FORGET,
    a newer cadence), including any waiting in a worker's batch.

    Their minute's wake-up stays (other clinicians' check-ins share it); it finds nothing of
    theirs to send. ``effects`` is for callers that cancel other work in the same breath."""
    result = session.execute(
        update(CheckIn)
        .where(CheckIn.clinician_id == clinician_id, CheckIn.state.in_(CANCELLABLE))
        .values(state=CheckInState.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DrainReport:
    claimed: int = 0
    sent: int = 0


@dataclass(frozen=True)
class _Target:
    """A claimed check-in, ready to go: who to text, from which number, what."""

    checkin_id: int
    to: str
    from_: str
    body: str


def send_due(services: Services, ident: int = 0, *, budget: float = drains.BUDGET) -> DrainReport:
    """Send the check-ins that are due, a batch at a time, until none are left; after
    ``budget`` seconds a fresh job carries on. ``ident`` is this run's wake-up (see
    ``drains``), 0 when the sweeper calls."""
    sent = 0

    def claim(session: Session, now: datetime) -> tuple[int, _Batch]:
        batch = _claim(services, session, _due_rows(now), now)
        return len(batch.rows), batch

    def work(batch: _Batch, deadline: float) -> bool:
        nonlocal sent
        outcomes = _deliver_all(services, batch, deadline)
        sent += outcomes.count(CheckInState.SENT)
        return len(outcomes) == len(batch.targets)

    claimed = drains.drain(
        services,
        Task.SEND_DUE_CHECKINS,
        ident,
        claim=claim,
        work=work,
        next_due=_next_due,
        batch_size=DRAIN_BATCH,
        budget=budget,
    )
    return DrainReport(claimed, sent)


def send_checkin(services: Services, checkin_id: int) -> CheckInState | None:
    """Send one due check-in, at most once. Returns its new state (None: nothing to do).

    What a wake-up scheduled before per-minute wake-ups runs (jobs queued under an older
    release); tests use it to drive one row."""
    now = services.clock()
    with transaction(services.sessions) as session:
        batch = _claim(services, session, [CheckIn.id == checkin_id, *_due_rows(now)], now)
    outcomes = _deliver_all(services, batch, timer.monotonic() + drains.BUDGET)
    return outcomes[0] if outcomes else None


def _due_in_window(row: Any, programmes: dict[int, ProgrammeConfig], now: datetime) -> bool:
    """A row due inside its window, claimed just after the window shut: its wake-up comes at
    the end of its minute (``drains.wake_up_for``), so one due at 19:59:30 is claimed at 20:00
    at the earliest. It goes now, not the next morning; one later than that (a retry, a run
    after an outage) waits for the window as before."""
    p = programmes[row.programme_id]
    due: datetime = row.due_at
    return now - due <= WINDOW_SLACK and in_window(due, p.checkin_hours, p.zone) == due


def _due_rows(now: datetime) -> list[Any]:
    return [CheckIn.state == CheckInState.SCHEDULED, CheckIn.due_at <= now]


@dataclass(frozen=True)
class _Batch:
    rows: Sequence[Any]  # every row claimed (id, clinician_id, programme_id)
    targets: list[_Target]  # those still wanted, to send
    claimed_at: datetime  # the claim's time: which claim of its rows this is
    deferred: tuple[datetime, ...] = ()  # when rows found outside their window are due again


def _claim(services: Services, session: Session, where: list[Any], now: datetime) -> _Batch:
    """Move up to DRAIN_BATCH rows matching ``where`` to ``claimed``; cancel those no longer
    wanted (declined, opted out, forgotten, in a live conversation, or their programme
    retired); put those whose programme's delivery window is shut now back to ``scheduled``
    for its next opening (a retry or a run late after an outage must not text anyone at
    night, and the window or time zone may have changed since the row was scheduled); the
    rest to send.

    Rows another worker holds are skipped and the outer condition is checked again on the
    locked row, so a row is claimed once (``drains.picked``)."""
    pick = drains.picked(CheckIn.id, CheckIn.due_at, where, DRAIN_BATCH)
    rows = session.execute(
        update(CheckIn)
        .where(CheckIn.id.in_(pick), *_due_rows(now))
        .values(state=CheckInState.CLAIMED, claimed_at=now, attempts=CheckIn.attempts + 1)
        .returning(CheckIn.id, CheckIn.clinician_id, CheckIn.programme_id, CheckIn.due_at)
        .execution_options(synchronize_session=False)
    ).all()
    if not rows:
        return _Batch(rows, [], now)
    rows = sorted(rows, key=lambda row: row.id)
    clinicians = {
        c.id: c
        for c in session.scalars(
            select(Clinician).where(Clinician.id.in_({row.clinician_id for row in rows}))
        )
    }
    programmes = {
        programme.id: config_of(programme, services.settings)
        for programme in session.scalars(
            select(Programme)
            .where(Programme.id.in_({row.programme_id for row in rows}))
            .options(joinedload(Programme.pool_numbers))
        ).unique()
    }
    opens = {pid: in_window(now, p.checkin_hours, p.zone) for pid, p in programmes.items()}
    shut = [
        row
        for row in rows
        if opens[row.programme_id] > now and not _due_in_window(row, programmes, now)
    ]
    for pid in {row.programme_id for row in shut}:
        ids = [row.id for row in shut if row.programme_id == pid]
        session.execute(_unclaim(CheckIn.id.in_(ids)).values(due_at=opens[pid]))
    claimed, deferred = rows, {opens[row.programme_id] for row in shut}
    rows = [row for row in rows if row not in shut]
    states = session.execute(
        select(Conversation.clinician_id, Conversation.state).where(
            Conversation.clinician_id.in_(clinicians),
            Conversation.state.in_(OPEN_CONVERSATION),
        )
    ).all()
    talking = {c for c, state in states if state == ConversationState.ACTIVE}
    # A request still waiting for a peer: the check-in waits too. If a peer takes it, that
    # conversation schedules its own cadence when it ends; if nobody does, this one goes.
    queued = {c for c, state in states if state == ConversationState.QUEUED} - talking
    waiting = [row for row in rows if row.clinician_id in queued]
    if waiting:
        later = now + WHILE_WAITING
        session.execute(_unclaim(CheckIn.id.in_([row.id for row in waiting])).values(due_at=later))
        deferred.add(later)
        rows = [row for row in rows if row not in waiting]
    wanted: list[tuple[int, _Target]] = []  # (programme id, target)
    unreadable: list[int] = []
    for row in rows:
        clinician, p = clinicians[row.clinician_id], programmes[row.programme_id]
        try:
            to = clinician_phone(services.vault, clinician)
        except DecryptionError:  # a retired data key: this row fails, the batch goes on
            unreadable.append(row.id)
            continue
        # Retired: one Twilio did not take as its programme retired is not retried from it.
        if p.retired:
            continue
        if to is not None and not clinician.checkins_declined and clinician.id not in talking:
            wanted.append((p.id, _Target(row.id, to, p.hotline_number, wording.checkin(p))))
    # Two of one clinician's check-ins due together (held back by the window or an outage): the
    # latest goes, the rest are cancelled with the skipped below.
    ordered = sorted(wanted, key=lambda w: w[1].checkin_id)
    latest = {(pid, t.to): t.checkin_id for pid, t in ordered}
    wanted = [(pid, t) for pid, t in wanted if latest[pid, t.to] == t.checkin_id]
    blocked = opted_out(session, services.vault, [(pid, t.to, t.from_) for pid, t in wanted])
    targets = [t for pid, t in wanted if (pid, t.to, t.from_) not in blocked]
    if unreadable:
        log.error("check-ins %s: no data key opens the number; marked failed", unreadable)
        session.execute(
            update(CheckIn)
            .where(CheckIn.id.in_(unreadable))
            .values(state=CheckInState.FAILED)
            .execution_options(synchronize_session=False)
        )
    skipped = {row.id for row in rows} - {t.checkin_id for t in targets} - set(unreadable)
    if skipped:
        session.execute(
            update(CheckIn)
            .where(CheckIn.id.in_(skipped))
            .values(state=CheckInState.CANCELLED)
            .execution_options(synchronize_session=False)
        )
    return _Batch(claimed, targets, now, tuple(sorted(deferred)))


def _next_due(session: Session, now: datetime, end: datetime) -> datetime | None:
    return session.scalar(
        select(func.min(CheckIn.due_at)).where(
            CheckIn.state == CheckInState.SCHEDULED, CheckIn.due_at > now, CheckIn.due_at <= end
        )
    )


def _deliver_all(services: Services, batch: _Batch, deadline: float) -> list[CheckInState | None]:
    """Hand claimed check-ins to Twilio one by one; the state each one reached (None: it was
    not this run's any more), for as many as were tried (the rest were handed back).

    Each is marked ``sending`` (committed) just before its call, in the transaction that
    records the one before as sent: a worker that dies leaves one row in doubt (``unknown``
    later, never resent), and the rest of its batch ``claimed``, which goes back to
    ``scheduled`` (``recover_stuck``). Past ``deadline`` (Twilio slow or hanging) the rest go
    back at once rather than risk the job's time-out; so do they if a send fails unexpectedly.
    """
    targets, claimed_at = batch.targets, batch.claimed_at
    _wake_at(services, *batch.deferred)
    outcomes: list[CheckInState | None] = []
    sent: _Sent | None = None  # the last one Twilio took, not yet recorded
    try:
        for target in targets:
            if timer.monotonic() > deadline:
                break
            state = _hand_over(services, target.checkin_id, claimed_at, sent)
            sent = None
            if state == CheckInState.SCHEDULED:  # waits with the clinician's request
                _wake_at(services, services.clock() + WHILE_WAITING)
            if state != CheckInState.SENDING:  # cancelled, held back, or not ours any more
                outcomes.append(state)
                continue
            outcome = _deliver(services, target, claimed_at)
            if isinstance(outcome, str):
                sent = _Sent(target.checkin_id, outcome, services.clock())
                outcome = CheckInState.SENT
            outcomes.append(outcome)
    finally:
        try:
            _hand_over(services, None, claimed_at, sent)
        finally:
            _release(services, [t.checkin_id for t in targets[len(outcomes) :]], claimed_at)
    return outcomes


@dataclass(frozen=True)
class _Sent:
    checkin_id: int
    sid: str
    at: datetime


def _hand_over(
    services: Services, checkin_id: int | None, claimed_at: datetime, sent: _Sent | None
) -> CheckInState | None:
    """One transaction: record ``sent`` as sent, and move ``checkin_id`` on from our claim
    (made at ``claimed_at``): to ``sending``, or to ``cancelled`` if the clinician is now in a
    live conversation. Returns that state; None if the row was not ours any more (cancelled by
    STOP, NOCHECKIN or FORGET meanwhile, or its claim lapsed and it went back, or was claimed
    again elsewhere)."""
    if checkin_id is None and sent is None:
        return None
    state = None
    with transaction(services.sessions) as session:
        if sent is not None:
            session.execute(
                update(CheckIn)
                .where(CheckIn.id == sent.checkin_id, CheckIn.state == CheckInState.SENDING)
                .values(state=CheckInState.SENT, provider_sid=sent.sid, sent_at=sent.at)
                .execution_options(synchronize_session=False)
            )
            records.backstop(session, [sent.sid], sent.at)
        if checkin_id is not None:
            waiting = _in_conversation(ConversationState.QUEUED)
            later = services.clock() + WHILE_WAITING
            held_back = session.execute(
                _unclaim(CheckIn.id == checkin_id, *_ours(claimed_at), waiting)
                .values(due_at=later)
                .returning(CheckIn.id)
            ).first()
            if held_back is not None:  # their request waits: so does this check-in
                return CheckInState.SCHEDULED
            talking = _in_conversation(ConversationState.ACTIVE)
            moved = session.scalar(
                update(CheckIn)
                .where(CheckIn.id == checkin_id, *_ours(claimed_at))
                .values(
                    state=case((talking, CheckInState.CANCELLED), else_=CheckInState.SENDING),
                    claimed_at=services.clock(),
                )
                .returning(CheckIn.state)
                .execution_options(synchronize_session=False)
            )
            state = CheckInState(moved) if moved is not None else None
    return state


def _in_conversation(state: ConversationState) -> Any:
    """The check-in's clinician has a conversation in ``state`` (a correlated EXISTS)."""
    return (
        select(Conversation.id)
        .where(Conversation.clinician_id == CheckIn.clinician_id, Conversation.state == state)
        .exists()
    )


def _ours(claimed_at: datetime) -> list[Any]:
    """Rows still held by the claim made at ``claimed_at`` (a lapsed claim's rows may have
    gone back and been claimed again, at a later time, by another run)."""
    return [CheckIn.state == CheckInState.CLAIMED, CheckIn.claimed_at == claimed_at]


def _deliver(services: Services, target: _Target, now: datetime) -> str | CheckInState:
    """Send one claimed check-in: the message SID when Twilio took it, else its final state."""
    callback = services.callback_url("/twilio/status")
    try:
        sent = services.telephony.send_text(
            target.to, target.from_, target.body, status_callback=callback
        )
    except OptedOutError:
        return _opted_out(services, target.checkin_id, target.to, target.from_)
    except DeliveryUnknownError:
        return _finish(services, target.checkin_id, CheckInState.UNKNOWN)
    except PermanentError as error:
        return _finish(services, target.checkin_id, CheckInState.FAILED, error_code=error.code)
    except SenderError as error:
        sender_refused(services, target.from_, error.code)
        return _retry(services, target.checkin_id, now, counted=False)
    except RetryableError:
        return _retry(services, target.checkin_id, now)
    return sent.sid


def _release(services: Services, ids: list[int], claimed_at: datetime) -> None:
    """Claimed at ``claimed_at`` but never handed to Twilio: back to ``scheduled``, as if
    never claimed."""
    if not ids:
        return
    with transaction(services.sessions) as session:
        session.execute(_unclaim(CheckIn.id.in_(ids), *_ours(claimed_at)))
    log.info("%d claimed check-ins handed back for the next run", len(ids))


def _wake_at(services: Services, *times: datetime) -> None:
    """Runs at the end of the minutes of ``times`` (rows deferred to then)."""
    if not times:
        return
    effects = Effects()
    for at in times:
        effects.wake(Task.SEND_DUE_CHECKINS, *drains.wake_up_for(at))
    schedule(services, effects)


def _unclaim(*where: Any) -> Any:
    return (
        update(CheckIn)
        .where(*where, CheckIn.state == CheckInState.CLAIMED)
        .values(state=CheckInState.SCHEDULED, claimed_at=None, attempts=CheckIn.attempts - 1)
        .execution_options(synchronize_session=False)
    )


def _finish(
    services: Services, checkin_id: int, state: CheckInState, *, error_code: int | None = None
) -> CheckInState:
    """A check-in Twilio did not take, and will not on a retry."""
    with transaction(services.sessions) as session:
        session.execute(
            update(CheckIn)
            .where(CheckIn.id == checkin_id, CheckIn.state == CheckInState.SENDING)
            .values(state=state, error_code=error_code)
            .execution_options(synchronize_session=False)  # a fresh session: nothing to sync
        )
    log.warning("check-in %s ended %s (code %s)", checkin_id, state, error_code)
    return state


def _retry(
    services: Services, checkin_id: int, now: datetime, *, counted: bool = True
) -> CheckInState:
    """Twilio did not accept it (5xx, 429, unreachable): try again later, a bounded number.
    Not ``counted``: our sending number was refused, and it waits SENDER_WAIT for as long."""
    effects = Effects()
    with transaction(services.sessions) as session:
        checkin = session.get_one(CheckIn, checkin_id)
        if not counted:
            checkin.attempts -= 1
        if checkin.attempts >= MAX_ATTEMPTS:
            checkin.state = CheckInState.FAILED
        else:
            checkin.state = CheckInState.SCHEDULED
            wait = timedelta(minutes=2 ** (checkin.attempts + 1)) if counted else SENDER_WAIT
            checkin.due_at = now + wait
            effects.wake(Task.SEND_DUE_CHECKINS, *drains.wake_up_for(checkin.due_at))
        state = checkin.state
    schedule(services, effects)
    return state


def _opted_out(services: Services, checkin_id: int, to: str, from_: str) -> CheckInState:
    """Twilio 21610: the clinician texted STOP to the line; nothing more goes to them."""
    effects = Effects()
    with transaction(services.sessions) as session:
        checkin = session.get_one(CheckIn, checkin_id)
        checkin.state, checkin.error_code = CheckInState.FAILED, 21610
        record_opt_out(session, services.vault, checkin.programme_id, to, from_)
        cancel_pending(session, checkin.clinician_id, effects)
    schedule(services, effects)
    return CheckInState.FAILED


def any_overdue(session: Session, now: datetime, grace: timedelta) -> bool:
    """Whether a scheduled check-in's wake-up should have fired by now (Redis lost it)."""
    late = select(CheckIn.id).where(
        CheckIn.state == CheckInState.SCHEDULED, CheckIn.due_at <= now - grace
    )
    return session.scalar(late.limit(1)) is not None


def recover_stuck(session: Session, now: datetime) -> int:
    """Rows a dead worker left behind: ``sending`` ones maybe went out, so they become
    ``unknown`` and are never resent; ``claimed`` ones never reached Twilio and are due again.
    Returns how many became unknown."""
    session.execute(_unclaim(CheckIn.claimed_at <= now - CLAIM_LEASE))
    result = session.execute(
        update(CheckIn)
        .where(CheckIn.state == CheckInState.SENDING, CheckIn.claimed_at <= now - STUCK_AFTER)
        .values(state=CheckInState.UNKNOWN)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def note_reply(session: Session, clinician_id: int, now: datetime) -> bool:
    """A clinician wrote in or called after a check-in (within REPLY_WINDOW), before the line
    heard from them otherwise: record it; True if so. One they did not answer before another
    conversation began is not answered by a later one."""
    since = exists().where(
        Conversation.clinician_id == clinician_id, Conversation.created_at > CheckIn.sent_at
    )
    recent = session.scalar(
        select(CheckIn)
        .where(
            CheckIn.clinician_id == clinician_id,
            CheckIn.state == CheckInState.SENT,
            CheckIn.replied_at.is_(None),
            CheckIn.sent_at >= now - REPLY_WINDOW,
            ~since,
        )
        .order_by(CheckIn.sent_at.desc())
        .limit(1)
    )
    if recent is None:
        return False
    recent.replied_at = now
    return True


def record_status(session: Session, report: StatusReport, effects: Effects) -> bool:
    """Move a check-in's delivery state forward; False when it is unknown or would go back.

    21610 (Twilio took the check-in, then found the clinician had texted STOP to the line's
    number, which the line never heard: texted while it was down) is kept as a STOP the line
    heard would be, as when the send itself is refused (``_opted_out``): the pair stays
    blocked and the rest of the cadence is cancelled, not tried and refused one by one. The
    pair is the number the check-in came from (``report.from_``), if one of the programme's:
    renumbered since, the programme's hotline number is another, which they never stopped."""
    checkin = session.scalar(select(CheckIn).where(CheckIn.provider_sid == report.sid))
    rank = DELIVERY_ORDER.get(report.status)
    if checkin is None or rank is None:
        return False
    if rank <= DELIVERY_ORDER.get(checkin.delivery_status or "", -1):
        return False
    checkin.delivery_status = report.status
    if report.error_code is not None:
        checkin.error_code = report.error_code
        if report.error_code == reach.STOPPED:
            checkin.state = CheckInState.FAILED
            _stopped_unheard(session, checkin, report.from_, effects)
    return True


def _stopped_unheard(
    session: Session, checkin: CheckIn, sent_from: str | None, effects: Effects
) -> None:
    """The clinician's STOP to ``sent_from``, the number the check-in came from, that the line
    never heard: kept (by their blind index, as ``reach.stopped`` keeps a supporter's), and
    their check-ins cancelled. Not reported, or not one of the programme's numbers: its
    hotline number, from which check-ins go."""
    clinician = session.get(Clinician, checkin.clinician_id)
    sender = _own_number(session, checkin.programme_id, sent_from)
    if clinician is not None and clinician.phone_hash and sender:
        blocked = select(OptOut.id).where(
            OptOut.programme_id == checkin.programme_id,
            OptOut.phone_hash == clinician.phone_hash,
            OptOut.sender == sender,
        )
        if not session.scalar(select(blocked.exists())):
            reach.block(session, checkin.programme_id, clinician.phone_hash, sender)
    cancel_pending(session, checkin.clinician_id, effects)


def _own_number(session: Session, programme_id: int, number: str | None) -> str | None:
    """``number`` if it is one of the programme's (its hotline number, or in its pool, where a
    renumbered programme keeps its old one); else its hotline number."""
    hotline = session.scalar(select(Programme.hotline_number).where(Programme.id == programme_id))
    pool = select(PoolNumber.id).where(
        PoolNumber.programme_id == programme_id, PoolNumber.number == number
    )
    if number is not None and (number == hotline or session.scalar(select(pool.exists()))):
        return number
    return hotline
