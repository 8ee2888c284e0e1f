"""A clinician calling the hotline while in a live conversation: their peer is rung first.

The peer is rung from that conversation's pool number, the number they know this clinician
by, and screened as any ring is (a press of 1; a voicemail cannot take it). If they take it,
the call belongs to the conversation the two already have: no new conversation, no offer, no
follow-up text (the peer knows how to close it). If they don't (busy, no answer, a declined
screen), the caller hears so and goes on to the usual greeting and ringing, where the peer is
not rung a second time (their ring is recorded as an unanswered offer of the new conversation).

A peer is rung only while they are on call, not on a break and not on the phone with another
caller: otherwise the conversation goes on by text, and the call goes to whoever is on call,
as any call does.
Nothing about this step is recorded beyond the call row (state ``peer``, the conversation).
"""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hotline import routing, schedule, speech
from hotline.calling import Dial, Hangup, Say, VoiceReply, reply, route
from hotline.db import transaction
from hotline.effects import Effects
from hotline.models import (
    Call,
    CallState,
    Channel,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    Supporter,
)
from hotline.people import supporter_phone
from hotline.ringing import (
    RING_SECONDS,
    CallStep,
    answer_in_transaction,
    on_the_phone,
    press_1,
    pressed_1,
    replace_waiting_requests,
    step,
)
from hotline.services import Services


def peer_conversation(ctx: CallStep, clinician_id: int) -> Conversation | None:
    """The clinician's live conversation whose peer can be rung now: active, with a pool
    number, the peer active, on call, not on a break and not on the phone with another
    caller (``ringing.on_the_phone``), a text one first."""
    conv = ctx.session.scalar(
        select(Conversation)
        .where(
            Conversation.clinician_id == clinician_id,
            Conversation.state == ConversationState.ACTIVE,
            Conversation.supporter_id.is_not(None),
            Conversation.pool_number.is_not(None),
        )
        .order_by((Conversation.channel == Channel.SMS).desc(), Conversation.id.desc())
        .limit(1)
    )
    if conv is None or conv.supporter_id is None:
        return None
    peer = ctx.session.get_one(Supporter, conv.supporter_id)
    on_break = peer.break_until is not None and peer.break_until > ctx.now
    if not peer.active or on_break:
        return None
    if peer.id not in schedule.on_call(ctx.session, ctx.programme.id, ctx.now):
        return None
    if peer.phone_hash in on_the_phone(ctx.session):
        return None
    return conv


def ring(ctx: CallStep, call: Call, conv: Conversation) -> VoiceReply:
    """Ring ``conv``'s peer for ``call`` (first delivery). No follow-up text is owed for a call
    inside a conversation, taken or not (``start`` owes one again if the line rings others).
    The clinician's call is the conversation's activity: the idle sweep must not close it
    while the peer's phone rings."""
    call.state, call.conversation_id = CallState.PEER, conv.id
    call.followed_up_at = ctx.now
    conv.last_activity_at = ctx.now
    return dial(ctx, call)


def dial(ctx: CallStep, call: Call) -> VoiceReply:
    """The peer's ring: a function of the stored call alone, so a repeat hears the same."""
    conv = ctx.session.get_one(Conversation, call.conversation_id)
    peer = ctx.session.get_one(Supporter, conv.supporter_id)
    assert conv.pool_number is not None
    return reply(
        Say(speech.calling_peer()),
        Dial(
            number=supporter_phone(ctx.services.vault, peer),
            caller_id=conv.pool_number,
            timeout=RING_SECONDS,
            action=route("peer", call=call.id),
            screen=route("peerscreen", call=call.id),
        ),
    )


def screen(services: Services, call_id: int) -> VoiceReply:
    """The peer's answered leg: a whisper and press 1; no press (a voicemail) hangs up."""
    with transaction(services.sessions) as session:
        call = session.get(Call, call_id)
        ringing = call is not None and call.state == CallState.PEER and _live(session, call)
    if not ringing:
        return reply(Say(speech.call_gone()), Hangup())
    return press_1(route("peerpickup", call=call_id), speech.whisper_peer(), speech.peer_passed())


def _live(session: Session, call: Call) -> bool:
    """Whether the call's conversation is still active (a DONE or STOP texted while the phone
    rang has ended it: the call is no longer theirs to take)."""
    state = session.scalar(
        select(Conversation.state).where(Conversation.id == call.conversation_id)
    )
    return state == ConversationState.ACTIVE


def pick_up(services: Services, call_id: int, digits: str) -> VoiceReply:
    """A keypress on the peer's screen: 1 takes the call (the empty answer bridges); no
    follow-up text is owed, the conversation was theirs already. Taken, the call is the
    conversation's activity from now (a long call must not look idle to the sweep), and a
    call-back still waiting for this clinician is withdrawn at once: nobody else may take it,
    or text the clinician about it, while the two talk, whatever order Twilio's callbacks
    about this call come in."""
    if not pressed_1(digits):
        return reply(Say(speech.peer_passed()), Hangup())

    def work(session: Session, effects: Effects) -> VoiceReply:
        call = session.get(Call, call_id)
        if call is None:
            return reply(Say(speech.call_gone()), Hangup())
        routing.lock_programme(session, call.programme_id)  # before conversations' rows
        live = (
            select(Conversation.id)
            .where(
                Conversation.id == Call.conversation_id,
                Conversation.state == ConversationState.ACTIVE,
            )
            .exists()
        )
        taken = session.execute(
            update(Call)
            .where(Call.id == call_id, Call.state.in_((CallState.PEER, CallState.BRIDGED)), live)
            .values(state=CallState.BRIDGED)
            .execution_options(synchronize_session=False)
        )
        if not taken.rowcount:  # type: ignore[attr-defined]
            return reply(Say(speech.call_gone()), Hangup())
        ctx = step(services, session, call.programme_id, effects)
        conv = session.get_one(Conversation, call.conversation_id)
        conv.last_activity_at = ctx.now
        replace_waiting_requests(ctx, call.clinician_id, conv.id)
        return reply()

    return answer_in_transaction(services, work)


def not_taken(call: Call) -> None:
    """The peer's ring ended without a press of 1: the caller goes on to the greeting; the
    conversation stays as it was (``call.conversation_id`` keeps it until ``start``)."""
    call.state = CallState.GREETING


def talked(ctx: CallStep, call: Call) -> VoiceReply:
    """The peer took the call and it is over: the conversation was active just now."""
    conv = ctx.session.get_one(Conversation, call.conversation_id)
    conv.last_activity_at = ctx.now
    call.state, call.ended_at = CallState.ENDED, ctx.now
    return reply(Say(speech.thanks()), Hangup())


def not_again(ctx: CallStep, peer_conversation_id: int, conv: Conversation) -> None:
    """The new conversation of a call whose peer was rung and did not take it: that ring is
    its first, unanswered offer, so the peer is not rung again for it."""
    rung = ctx.session.get_one(Conversation, peer_conversation_id)
    ctx.session.add(
        Offer(
            conversation_id=conv.id,
            supporter_id=rung.supporter_id,
            pool_number=rung.pool_number,
            offered_at=ctx.now,
            expires_at=ctx.now,
            answered_at=ctx.now,
            state=OfferState.EXPIRED,
        )
    )
    ctx.session.flush()
