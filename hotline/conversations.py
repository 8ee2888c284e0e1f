"""Ending conversations and offering the ones still waiting: shared by texts, calls and jobs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from hotline import checkins, routing
from hotline.db import Retry
from hotline.effects import Effects
from hotline.models import (
    OPEN_CONVERSATION,
    Channel,
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
)
from hotline.programmes import ProgrammeConfig
from hotline.services import Services
from hotline.wakeups import Task

FOLLOWED_UP = ("done", "inactive", "peer_stop")  # the conversation took place


def open_conversation(session: Session, clinician: Clinician) -> Conversation | None:
    """The clinician's queued or active conversation, if any: an active one first, and of
    those a text one (a call while texting with a peer can leave a call-back waiting, then
    taken by another peer: the clinician's texts still go to the peer they are texting)."""
    return session.scalar(
        select(Conversation)
        .where(Conversation.clinician_id == clinician.id, Conversation.state.in_(OPEN_CONVERSATION))
        .order_by(
            (Conversation.state == ConversationState.ACTIVE).desc(),
            (Conversation.channel == Channel.SMS).desc(),
            Conversation.id.desc(),
        )
        .limit(1)
    )


def touch_live(session: Session, conv: Conversation, now: datetime) -> None:
    """Mark ``conv`` active now before a text is relayed in it, once its row is locked; raise
    Retry if it has ended meanwhile (a DONE, a STOP or the inactivity sweep committing while
    this text was handled): the text is then handled again, as one after the end."""
    touched = session.execute(
        update(Conversation)
        .where(Conversation.id == conv.id, Conversation.state == ConversationState.ACTIVE)
        .values(last_activity_at=now)
        .execution_options(synchronize_session=False)
    )
    if not touched.rowcount:  # type: ignore[attr-defined]
        raise Retry(f"conversation {conv.id} ended meanwhile")
    set_committed_value(conv, "last_activity_at", now)


def open_conversations(session: Session, clinician: Clinician) -> list[Conversation]:
    """Every queued or active conversation of the clinician (usually one at most)."""
    return list(
        session.scalars(
            select(Conversation).where(
                Conversation.clinician_id == clinician.id,
                Conversation.state.in_(OPEN_CONVERSATION),
            )
        )
    )


def told_closed(session: Session, clinician: Clinician) -> None:
    """The clinician is told, in this reply, that the line has closed, where to turn and the
    crisis line (a retired line's answer to their text): no "it has closed" text is owed
    them any more (``tasks.tell_closed`` would send them the same text again)."""
    session.execute(
        update(Conversation)
        .where(Conversation.clinician_id == clinician.id, Conversation.close_owed_at.is_not(None))
        .values(close_owed_at=None)
        .execution_options(synchronize_session=False)
    )


def end_conversation(
    session: Session,
    p: ProgrammeConfig,
    conv: Conversation,
    reason: str,
    now: datetime,
    effects: Effects,
) -> None:
    """Close ``conv``: pending offers withdrawn, held texts deleted, and, when it ended
    normally (DONE or inactivity, not STOP), the follow-up check-ins scheduled."""
    conv.state = ConversationState.ENDED
    conv.ended_at, conv.end_reason = now, reason
    routing.withdraw_offers(session, conv, now, effects)
    session.execute(delete(PendingText).where(PendingText.conversation_id == conv.id))
    if reason in FOLLOWED_UP and conv.accepted_at is not None:
        checkins.schedule_after(session, p, conv, now, effects)


def offer_waiting(
    services: Services,
    session: Session,
    p: ProgrammeConfig,
    now: datetime,
    effects: Effects,
    *,
    in_a_reply: bool = False,
) -> int:
    """Offer every queued conversation that has no pending offer (someone may be free now);
    one whose clinician was never told that nobody is free is told now (a call-back whose
    job Redis lost). ``in_a_reply``: the texts go in a webhook's reply, which Twilio sends
    at most routing.TEXTS_IN_A_REPLY of; a request whose texts would not fit is offered by a
    job a moment later, through the API."""
    waiting = session.scalars(
        select(Conversation)
        .where(
            Conversation.programme_id == p.id,
            Conversation.state == ConversationState.QUEUED,
            ~Conversation.id.in_(
                select(Offer.conversation_id).where(Offer.state == OfferState.PENDING)
            ),
        )
        .order_by(Conversation.created_at)
    ).all()
    offered = 0
    for conv in waiting:
        if in_a_reply and len(effects.texts) + routing.ONWARD_TEXTS > routing.TEXTS_IN_A_REPLY:
            effects.wake(Task.OFFER_CALL_BACK, conv.id)
        elif routing.offer_or_fall_back(session, services.vault, p, conv, now, effects):
            offered += 1
    return offered
