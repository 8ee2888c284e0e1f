"""Retiring a programme a health system stops running (``hotline programme retire``).

Its numbers stay the line's (their records at Twilio are still deleted every hour, and the
loop guard still knows them) until IT releases them at Twilio, but nobody is offered anything
through them again: every text and call to them, from anyone, is answered that the line has
closed, with the programme's resources and crisis sentence (set them first to say where to
turn now). Nothing more is offered, reminded or checked in: pending check-ins and notices are
cancelled, and the roster asks for no verification code (roster.py). A programme with a
conversation still open, or a call on its numbers, is not retired: those end first (DONE, or
the 48-hour idle close). Only what it owes from before still goes out from its numbers: a
clinician's "your request has closed" (``tasks.tell_closed``) and a peer's word that her claim
of a request ended (``ringing.settle_claims``), both by the sweeper. Its roster, schedule,
reports and audit log stay for the console until the programme is restored
(``programme restore``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from hotline import routing
from hotline.checkins import CANCELLABLE
from hotline.models import (
    OPEN_CONVERSATION,
    Call,
    CallState,
    CheckIn,
    CheckInState,
    Conversation,
    Notice,
    NoticeState,
    Programme,
)


class StillOpenError(ValueError):
    """The programme has conversations or calls still open: they end before it retires."""


@dataclass(frozen=True)
class Retired:
    checkins_cancelled: int
    notices_cancelled: int


def retire(session: Session, programme: Programme, now: datetime) -> Retired | None:
    """Retire ``programme`` now (StillOpenError while anything is open on it); what it
    cancelled, or None when it was retired already (nothing changes: ``retired_at`` stays
    when it first retired). Under the programme's lock, as offer-making, so no request opens
    meanwhile."""
    routing.lock_programme(session, programme.id)
    session.refresh(programme)  # as committed now: a retirement that held the lock is seen
    if programme.retired_at is not None:
        return None
    open_conversations = session.scalar(
        select(func.count())
        .select_from(Conversation)
        .where(
            Conversation.programme_id == programme.id,
            Conversation.state.in_(OPEN_CONVERSATION),
        )
    )
    live_calls = session.scalar(
        select(func.count())
        .select_from(Call)
        .where(Call.programme_id == programme.id, Call.state != CallState.ENDED)
    )
    if open_conversations or live_calls:
        raise StillOpenError(
            f"{open_conversations} conversations and {live_calls} calls are still open on "
            f"{programme.slug}: they end first (DONE, or closed after 48 hours idle)"
        )
    checkins = session.execute(
        update(CheckIn)
        .where(CheckIn.programme_id == programme.id, CheckIn.state.in_(CANCELLABLE))
        .values(state=CheckInState.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    notices = session.execute(
        update(Notice)
        .where(Notice.programme_id == programme.id, Notice.state == NoticeState.PENDING)
        .values(state=NoticeState.SKIPPED)
        .execution_options(synchronize_session=False)
    )
    programme.retired_at = now
    return Retired(int(checkins.rowcount), int(notices.rowcount))  # type: ignore[attr-defined]


def retired_now(session: Session, programme_id: int) -> bool:
    """Whether the programme is retired as committed now. Read under its lock
    (``routing.lock_programme``) where a request would open: a text or call that read the
    programme running, then waited on that lock while ``retire`` held it, must not open one."""
    retired_at = select(Programme.retired_at).where(Programme.id == programme_id)
    return session.scalar(retired_at) is not None


def restore(session: Session, programme: Programme) -> bool:
    """Run ``programme`` again (its texts and calls reach peers); whether it was retired
    (False changes nothing). Check-ins cancelled by its retirement stay cancelled. Under the
    programme's lock, as ``retire``: of two restores at once, the second reads it running."""
    routing.lock_programme(session, programme.id)
    session.refresh(programme)  # as committed now: a restore that held the lock is seen
    if programme.retired_at is None:
        return False
    programme.retired_at = None
    return True
