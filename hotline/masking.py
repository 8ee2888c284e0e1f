"""Calling through the mask: a supporter calls the pool number of their live conversation.

The clinician is dialled with the programme's hotline number as caller ID, so their phone
shows the line, never the supporter; the supporter only ever saw the pool number. The
clinician's leg is screened as a supporter's is (a press of 1 bridges; ``ringing.press_1``):
unscreened, a voicemail greeting that answered would be bridged to the supporter and could
read out the clinician's own number or name. Someone else may answer that phone, so the
screen names nothing (no line, no hospital, no peer support), and it reads no database: the
answer to a database error speaks of peers and the crisis line. Nothing is recorded, here or
at the press of 1: the call's row (state ``through``) says only that the supporter is on the
phone, until the call is over.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import speech
from hotline.calling import Dial, Hangup, Say, VoiceReply, reply, route
from hotline.events import insert_new
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
from hotline.ringing import CallStep, press_1, pressed_1

THROUGH_RING_SECONDS = 30


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


def call_through(ctx: CallStep, conv: Conversation, call_sid: str) -> VoiceReply:
    """Connect the supporter to ``conv``'s clinician, who sees the hotline number. The call
    (``call_sid``, the supporter's leg) is noted as ``through`` until its final status
    (``voiceline.handle_call_status``, or the sweeper asking Twilio when that is lost): the
    supporter is on the phone meanwhile (``ringing.on_the_phone``), not to be rung for another
    caller over it. It owes no follow-up text. A repeated webhook notes nothing more."""
    conv.last_activity_at = ctx.now
    clinician = ctx.session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    phone = clinician_phone(ctx.services.vault, clinician) if clinician is not None else None
    if phone is None:  # the clinician asked to be forgotten
        return reply(Say(speech.caller_forgotten()), Hangup())
    insert_new(
        ctx.session,
        Call,
        programme_id=ctx.programme.id,
        call_sid=call_sid,
        conversation_id=conv.id,
        state=CallState.THROUGH,
        created_at=ctx.now,
        followed_up_at=ctx.now,  # owes no follow-up: held texts wait on none (awaiting_follow_up)
    )
    return reply(
        Say(speech.connecting()),
        Dial(
            number=phone,
            caller_id=ctx.programme.hotline_number,
            timeout=THROUGH_RING_SECONDS,
            action=route("through"),
            screen=route("throughscreen"),
        ),
    )


def screen() -> VoiceReply:
    """The clinician's answered leg: a discreet "press 1"; no key (a voicemail, someone else
    who hangs up) is hung up on without a word, and the supporter is never connected."""
    return press_1(route("throughpickup"), speech.whisper_through())


def pick_up(digits: str) -> VoiceReply:
    """A keypress on the clinician's screen: 1 connects them (the empty answer bridges)."""
    return reply() if pressed_1(digits) else reply(Hangup())


def through_result(dial_status: str, bridged: bool) -> VoiceReply:
    """After a call through the mask: a word to the supporter unless the two were connected.
    ``DialCallStatus`` reads ``completed`` when a voicemail answered and the screen hung up
    on it, so whether the clinician took the call is ``DialBridged`` (``bridged``)."""
    if bridged or dial_status == "canceled":  # talked, or the supporter hung up first
        return reply(Hangup())
    return reply(Say(speech.caller_unavailable()), Hangup())
