"""Follow-up check-ins after a conversation: scheduled in SQL, sent once, stopped by a word.

Each check-in is a row (scheduled -> sending -> sent | failed | cancelled | unknown). RQ only
carries the wake-up; the sweeper sends what Redis lost. A worker claims a row with a conditional
update before calling Twilio, so two workers never send the same one; a row left in ``sending``
by a crashed worker becomes ``unknown`` and is never resent (a duplicate is worse than a gap).

Policy: the latest conversation governs. When a conversation ends, pending check-ins from older
ones are cancelled and a fresh cadence is scheduled; a check-in that falls due while the
clinician is in a live conversation is skipped (cancelled), since that conversation will schedule
its own when it ends.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.orm import Session, joinedload

from hotline.db import transaction
from hotline.effects import Effects, schedule
from hotline.models import (
    CheckIn,
    CheckInState,
    Clinician,
    Conversation,
    ConversationState,
    Programme,
)
from hotline.people import clinician_phone, is_opted_out, record_opt_out
from hotline.programmes import ProgrammeConfig, config_of
from hotline.services import Services
from hotline.telephony import (
    DeliveryUnknownError,
    OptedOutError,
    PermanentError,
    RetryableError,
)
from hotline.texting import StatusReport
from hotline.wakeups import Task

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
STUCK_AFTER = timedelta(minutes=5)  # well past the job timeout: the worker is gone
PENDING = (CheckInState.SCHEDULED, CheckInState.SENDING)

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

    Works on wall-clock time in ``zone``: a window start that does not exist that day (spring
    forward) resolves after the gap (PEP 495 fold=0); a repeated one (fall back) is the first.
    """
    if hours is None:
        return at
    start, end = hours
    local = at.astimezone(zone)
    if _inside(local.time().replace(tzinfo=None), start, end):
        return at
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone).astimezone(UTC)


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
    created = []
    for sequence, offset in enumerate(p.checkin_offsets, start=1):
        checkin = CheckIn(
            programme_id=p.id,
            conversation_id=conv.id,
            clinician_id=clinician.id,
            sequence=sequence,
            due_at=in_window(due_after(now, offset, p.zone), p.checkin_hours, p.zone),
        )
        session.add(checkin)
        created.append(checkin)
    session.flush()
    for checkin in created:
        effects.wake(Task.SEND_CHECKIN, checkin.id, checkin.due_at)
    return created


def cancel_pending(session: Session, clinician_id: int, effects: Effects) -> int:
    """Cancel every scheduled check-in of a clinician (STOP, NOCHECKIN, a newer cadence)."""
    ids = list(
        session.scalars(
            select(CheckIn.id).where(
                CheckIn.clinician_id == clinician_id, CheckIn.state == CheckInState.SCHEDULED
            )
        )
    )
    if ids:
        session.execute(
            update(CheckIn)
            .where(CheckIn.id.in_(ids), CheckIn.state == CheckInState.SCHEDULED)
            .values(state=CheckInState.CANCELLED)
        )
    for ident in ids:
        effects.cancel(Task.SEND_CHECKIN, ident)
    return len(ids)


def send_checkin(services: Services, checkin_id: int) -> CheckInState | None:
    """Send one due check-in, at most once. Returns its new state (None: nothing to do)."""
    now = services.clock()
    effects = Effects()
    with transaction(services.sessions) as session:
        target = _claim(services, session, checkin_id, now, effects)
    schedule(services, effects)
    if target is None:
        return None
    to, from_, body = target
    callback = services.callback_url("/twilio/status")
    try:
        sent = services.telephony.send_text(to, from_, body, status_callback=callback)
    except OptedOutError:
        return _opted_out(services, checkin_id, to, from_)
    except DeliveryUnknownError:
        return _finish(services, checkin_id, CheckInState.UNKNOWN)
    except PermanentError as error:
        return _finish(services, checkin_id, CheckInState.FAILED, error_code=error.code)
    except RetryableError:
        return _retry(services, checkin_id, now)
    return _finish(services, checkin_id, CheckInState.SENT, sid=sent.sid, at=now)


def _claim(
    services: Services, session: Session, checkin_id: int, now: datetime, effects: Effects
) -> tuple[str, str, str] | None:
    """Move the row to ``sending`` if it is due and still wanted; return (to, from, body)."""
    claimed = session.execute(
        update(CheckIn)
        .where(
            CheckIn.id == checkin_id,
            CheckIn.state == CheckInState.SCHEDULED,
            CheckIn.due_at <= now,
        )
        .values(state=CheckInState.SENDING, claimed_at=now, attempts=CheckIn.attempts + 1)
        .returning(CheckIn.clinician_id, CheckIn.programme_id)
        .execution_options(synchronize_session=False)
    ).one_or_none()
    if claimed is None:  # not due yet, or another worker has it, or it is no longer wanted
        _wake_if_early(session, checkin_id, now, effects)
        return None
    clinician = session.get_one(Clinician, claimed.clinician_id)
    programme = session.get_one(
        Programme, claimed.programme_id, options=[joinedload(Programme.pool_numbers)]
    )
    p = config_of(programme, services.settings)
    to = clinician_phone(services.vault, clinician)
    skip = (
        to is None
        or clinician.checkins_declined
        or is_opted_out(session, services.vault, p.id, to, p.hotline_number)
        or _in_conversation(session, clinician.id)
    )
    if skip or to is None:
        session.execute(
            update(CheckIn).where(CheckIn.id == checkin_id).values(state=CheckInState.CANCELLED)
        )
        return None
    return to, p.hotline_number, p.checkin_text


def _wake_if_early(session: Session, checkin_id: int, now: datetime, effects: Effects) -> None:
    due = session.scalar(
        select(CheckIn.due_at).where(
            CheckIn.id == checkin_id, CheckIn.state == CheckInState.SCHEDULED
        )
    )
    if due is not None and due > now:
        effects.wake(Task.SEND_CHECKIN, checkin_id, due)  # woken early (clock skew)


def _in_conversation(session: Session, clinician_id: int) -> bool:
    return (
        session.scalar(
            select(Conversation.id).where(
                Conversation.clinician_id == clinician_id,
                Conversation.state.in_((ConversationState.QUEUED, ConversationState.ACTIVE)),
            )
        )
        is not None
    )


def _finish(
    services: Services,
    checkin_id: int,
    state: CheckInState,
    *,
    sid: str | None = None,
    at: datetime | None = None,
    error_code: int | None = None,
) -> CheckInState:
    with transaction(services.sessions) as session:
        session.execute(
            update(CheckIn)
            .where(CheckIn.id == checkin_id, CheckIn.state == CheckInState.SENDING)
            .values(state=state, provider_sid=sid, sent_at=at, error_code=error_code)
            .execution_options(synchronize_session=False)  # a fresh session: nothing to sync
        )
    if state != CheckInState.SENT:
        log.warning("check-in %s ended %s (code %s)", checkin_id, state, error_code)
    return state


def _retry(services: Services, checkin_id: int, now: datetime) -> CheckInState:
    """Twilio did not accept it (5xx, 429, unreachable): try again later, a bounded number."""
    effects = Effects()
    with transaction(services.sessions) as session:
        checkin = session.get_one(CheckIn, checkin_id)
        if checkin.attempts >= MAX_ATTEMPTS:
            checkin.state = CheckInState.FAILED
        else:
            checkin.state = CheckInState.SCHEDULED
            checkin.due_at = now + timedelta(minutes=2 ** (checkin.attempts + 1))
            effects.wake(Task.SEND_CHECKIN, checkin.id, checkin.due_at)
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


def overdue(session: Session, now: datetime, grace: timedelta) -> list[int]:
    """Scheduled check-ins whose wake-up should have fired by now (Redis lost it)."""
    return list(
        session.scalars(
            select(CheckIn.id)
            .where(CheckIn.state == CheckInState.SCHEDULED, CheckIn.due_at <= now - grace)
            .order_by(CheckIn.due_at)
            .limit(1000)
        )
    )


def mark_stuck_unknown(session: Session, now: datetime) -> int:
    """Rows a dead worker left in ``sending``: maybe sent, so never resent."""
    result = session.execute(
        update(CheckIn)
        .where(CheckIn.state == CheckInState.SENDING, CheckIn.claimed_at <= now - STUCK_AFTER)
        .values(state=CheckInState.UNKNOWN)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def note_reply(session: Session, clinician_id: int, now: datetime) -> bool:
    """A clinician wrote in after a check-in (within a week): record it; True if so."""
    recent = session.scalar(
        select(CheckIn)
        .where(
            CheckIn.clinician_id == clinician_id,
            CheckIn.state == CheckInState.SENT,
            CheckIn.replied_at.is_(None),
            CheckIn.sent_at >= now - timedelta(days=7),
        )
        .order_by(CheckIn.sent_at.desc())
        .limit(1)
    )
    if recent is None:
        return False
    recent.replied_at = now
    return True


def record_status(session: Session, report: StatusReport) -> bool:
    """Move a check-in's delivery state forward; False when it is unknown or would go back."""
    checkin = session.scalar(select(CheckIn).where(CheckIn.provider_sid == report.sid))
    rank = DELIVERY_ORDER.get(report.status)
    if checkin is None or rank is None:
        return False
    if rank <= DELIVERY_ORDER.get(checkin.delivery_status or "", -1):
        return False
    checkin.delivery_status = report.status
    if report.error_code is not None:
        checkin.error_code = report.error_code
        if report.error_code == 21610:
            checkin.state = CheckInState.FAILED
    return True
