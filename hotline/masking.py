"""Calling through the mask: a supporter calls the pool number of their live conversation.

The clinician is dialled with the programme's hotline number as caller ID, so their phone
shows the line, never the supporter; the supporter only ever saw the pool number. Nothing is
screened on this leg (the clinician asked for the call) and nothing is recorded.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import speech
from hotline.calling import Dial, Hangup, Say, VoiceReply, reply, route
from hotline.models import (
    Call,
    CallState,
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    Supporter,
)
from hotline.people import clinician_phone
from hotline.ringing import CallStep

THROUGH_RING_SECONDS = 30
UNREACHED = frozenset({"busy", "no-answer", "failed"})


def live_conversation(session: Session, supporter: Supporter, number: str) -> Conversation | None:
    """The supporter's ACTIVE conversation on pool number ``number``, if there is one."""
    return session.scalar(
        select(Conversation)
        .where(
            Conversation.supporter_id == supporter.id,
            Conversation.pool_number == number,
            Conversation.state == ConversationState.ACTIVE,
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def offered_here(session: Session, supporter: Supporter, number: str) -> bool:
    """Whether the supporter has an offer waiting for their ACCEPT on pool number ``number``
    (a call-back, a text request): calling that number is not how it is taken, and the call
    would otherwise hear that nothing is open there. Not a ring: that is answered by picking
    up, and it moves on by itself in seconds."""
    ringing = (
        select(Call.id)
        .where(Call.conversation_id == Offer.conversation_id, Call.state == CallState.RINGING)
        .exists()
    )
    offer = select(Offer.id).where(
        Offer.supporter_id == supporter.id,
        Offer.pool_number == number,
        Offer.state == OfferState.PENDING,
        ~ringing,
    )
    return bool(session.scalar(select(offer.exists())))


def call_through(ctx: CallStep, conv: Conversation) -> VoiceReply:
    """Connect the supporter to ``conv``'s clinician, who sees the hotline number."""
    conv.last_activity_at = ctx.now
    clinician = ctx.session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    phone = clinician_phone(ctx.services.vault, clinician) if clinician is not None else None
    if phone is None:  # the clinician asked to be forgotten
        return reply(Say(speech.caller_forgotten()), Hangup())
    return reply(
        Say(speech.connecting()),
        Dial(
            number=phone,
            caller_id=ctx.programme.hotline_number,
            timeout=THROUGH_RING_SECONDS,
            action=route("through"),
        ),
    )


def through_result(dial_status: str) -> VoiceReply:
    """After a call through the mask: a word to the supporter if the clinician didn't answer."""
    if dial_status in UNREACHED:
        return reply(Say(speech.caller_unavailable()), Hangup())
    return reply(Hangup())
