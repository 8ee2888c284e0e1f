"""The voice line: every inbound call, to the hotline number or a pool number, gets an answer.

A call to a hotline number, one Twilio webhook per step (webhooks/voice.py):

1. ``answer_call``: the greeting (with the crisis sentence) and an optional discipline menu.
2. ``start``: the call's conversation is created and the first supporter rung (ringing.py).
3. ``dial_result``: a ring is over. A press of 1 (recorded by ``ringing.pick_up``) means they
   talked; a caller who hung up stops everything; otherwise the next supporter is rung, or a
   call-back is queued and offered by text.

Every step is safe to receive twice: the first delivery of each (keyed by CallSid and step in
``webhook_events``) decides, a repeat replays the answer for the call's current state.
Call status callbacks only move a call forward. Calls to a pool number go through the mask
(masking.py). No step records anything, and every leg's record at Twilio is deleted once it
is over (``retention.after_call``): the caller's leg on its final status callback (the
number's "call status changes" URL), each dialled leg on its own (``<Number statusCallback>``)
and a ring's on the dial action's ``DialCallSid`` too (the action after a call through the
mask stays database-free: that leg's own status callback covers it). A call whose end never
reaches the line is asked about by the sweeper, which deletes the legs it rang with it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import (
    checkins,
    events,
    masking,
    peercall,
    retention,
    retirement,
    ringing,
    routing,
    speech,
)
from hotline.calling import (
    DialResult,
    Gather,
    Hangup,
    InboundCall,
    Pause,
    Redirect,
    Say,
    VoiceReply,
    reply,
    route,
)
from hotline.conversations import end_conversation
from hotline.effects import Effects
from hotline.models import (
    Call,
    CallState,
    Conversation,
    Offer,
    OfferState,
)
from hotline.people import find_supporter, get_or_create_clinician
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.programmes import ProgrammeConfig, find_by_number, own_numbers
from hotline.ringing import CallStep, answer_in_transaction, step
from hotline.services import Services
from hotline.telephony import NOT_FOUND, PermanentError, TelephonyError
from hotline.texting import StatusReport

log = logging.getLogger(__name__)

MENU_SECONDS = 5  # the discipline menu times out quickly to "anyone"
# Twilio's final CallStatus values: a leg that is over (on the caller's leg: they are gone).
CALLER_GONE = frozenset({"completed", "canceled", "busy", "failed", "no-answer"})


def answer_call(services: Services, call: InboundCall) -> VoiceReply:
    """The first answer to an inbound call.

    Hotline number: the greeting and menu (a repeated CallSid hears it again, nothing more is
    stored). A supporter calling the pool number of their live conversation is connected to
    its clinician (one calling the number of an offer waiting for their ACCEPT is told to
    reply ACCEPT by text first); anyone else calling a pool number hears a short message. A
    caller ID the carrier does not vouch for (``calling.vouched_for``) is taken as hidden.
    """

    def work(session: Session, effects: Effects) -> VoiceReply:
        match = find_by_number(session, _safe_number(call.to) or "")
        caller = _safe_number(call.from_)
        if match is None or (caller is not None and caller in own_numbers(session)):
            return reply(Say(speech.unknown_number()), Hangup())
        ctx = step(services, session, match.programme.id, effects)
        services.crisis_texts[call.to] = ctx.programme.crisis_text
        if ctx.programme.retired:
            return reply(Say(speech.line_closed(ctx.programme)), Hangup())
        if not call.vouched:  # a caller ID the carrier does not vouch for names nobody
            if match.is_hotline:
                return _greet(ctx, call.sid, None)
            return reply(Say(speech.caller_not_vouched()), Hangup())
        vault, pid = services.vault, ctx.programme.id
        supporter = find_supporter(session, vault, pid, caller) if caller else None
        live = masking.live_conversation(session, supporter, call.to) if supporter else None
        if live is not None:
            return masking.call_through(ctx, live, call.sid)
        if match.is_hotline:
            return _greet(ctx, call.sid, caller)
        if supporter is not None and masking.offered_here(session, supporter, call.to):
            return reply(Say(speech.accept_by_text()), Hangup())
        if supporter is not None:
            return reply(Say(speech.no_live_conversation()), Hangup())
        return reply(Say(speech.not_a_line(ctx.programme.hotline_number)), Hangup())

    return answer_in_transaction(services, work)


def _safe_number(raw: str) -> str | None:
    try:
        return normalize(raw)
    except InvalidPhoneNumber:  # e.g. "anonymous": a hidden number
        return None


def _greet(ctx: CallStep, call_sid: str, caller: str | None) -> VoiceReply:
    """The greeting, or for a clinician in a live conversation, their peer's ring first."""
    if not events.claim(ctx.session, f"call:{call_sid}"):
        call = _find_call(ctx.session, call_sid)
        if call is not None and call.state in (CallState.PEER, CallState.GREETING):
            return replay(ctx, call)
        return _greeting(ctx.programme)
    clinician = None
    if caller is not None:
        vault = ctx.services.vault
        clinician = get_or_create_clinician(ctx.session, vault, ctx.programme.id, caller)
        clinician.last_contact_at = ctx.now
    call = Call(
        programme_id=ctx.programme.id,
        call_sid=call_sid,
        clinician_id=clinician.id if clinician else None,
        state=CallState.GREETING,
        created_at=ctx.now,
    )
    ctx.session.add(call)
    ctx.session.flush()
    peer = peercall.peer_conversation(ctx, clinician.id) if clinician is not None else None
    if peer is not None:
        return peercall.ring(ctx, call, peer)
    return _greeting(ctx.programme)


def _greeting(p: ProgrammeConfig) -> VoiceReply:
    prompt = (Pause(1), Say(speech.menu()))  # a breath after the crisis sentence
    menu = Gather(route("start"), prompt, num_digits=1, timeout=MENU_SECONDS)
    # No keypress: Twilio goes on to the next verb, so "anyone" is the Redirect.
    return reply(Say(speech.greeting(p)), menu, Redirect(route("start")))


def _greeting_after_peer(p: ProgrammeConfig) -> VoiceReply:
    return reply(Say(speech.peer_not_available()), *_greeting(p).verbs)


def start(services: Services, call_sid: str, digits: str) -> VoiceReply:
    """After the menu: create the call's conversation and ring the first supporter."""

    def work(session: Session, effects: Effects) -> VoiceReply:
        call = _find_call(session, call_sid)
        if call is None:
            return reply(Hangup())  # never greeted (not a call to a hotline number)
        ctx = step(services, session, call.programme_id, effects)
        if not events.claim(session, f"call:{call_sid}:start") or call.state != CallState.GREETING:
            return replay(ctx, call)
        discipline = speech.MENU.get(digits.strip())
        routing.lock_programme(session, call.programme_id)  # before ending conversations
        if _fresh(session, call) != CallState.GREETING:  # a hang-up's status ended it meanwhile
            return replay(ctx, call)
        if retirement.retired_now(session, call.programme_id):  # since the greeting
            return reply(Say(speech.line_closed(ctx.programme)), Hangup())
        peer_rung = call.conversation_id  # the live conversation whose peer did not pick up
        if call.clinician_id is not None:  # "reply any time to talk": a call answers a check-in
            checkins.note_reply(session, call.clinician_id, ctx.now)
        conv = ringing.new_conversation(ctx, call.clinician_id, discipline)
        ringing.replace_waiting_requests(ctx, call.clinician_id, conv.id)
        if peer_rung is not None:
            peercall.not_again(ctx, peer_rung, conv)
            call.followed_up_at = None  # a supporter who takes it now is owed the follow-up
        call.conversation_id, call.state = conv.id, CallState.RINGING
        return ringing.ring_next(ctx, call, conv)

    return answer_in_transaction(services, work)


def dial_result(services: Services, result: DialResult) -> VoiceReply:
    """A ring is over: talked (our record of a press of 1), caller gone, or try the next one."""

    def work(session: Session, effects: Effects) -> VoiceReply:
        retention.after_call(session, result.dial_call_sid, services.clock(), effects)
        call = _find_call(session, result.call_sid)
        offer = session.get(Offer, result.ring)
        if call is None or offer is None:
            return reply(Hangup())
        routing.lock_programme(session, call.programme_id)  # before the offer's and others' rows
        ctx = step(services, session, call.programme_id, effects)
        if not events.claim(session, f"call:{call.call_sid}:ring:{offer.id}"):
            # Before the check below: the last ring's first delivery may have moved the call
            # on to a call-back conversation, and its repeat must hear that answer again.
            return replay(ctx, call)
        if offer.conversation_id != call.conversation_id:
            return reply(Hangup())
        if offer.state == OfferState.ACCEPTED:  # our record of a press of 1, not DialCallStatus
            if not result.bridged:
                log.info("call %s: taken but not joined; the supporter can call back", call.id)
            waiting_still = not result.bridged and not _caller_gone(call, result)
            answer = ringing.after_pick_up(ctx, call, offer)
            if waiting_still:  # the caller talked to nobody: what happens next, and the crisis line
                hidden = call.clinician_id is None
                return reply(Say(speech.not_connected(ctx.programme, hidden)), Hangup())
            return answer
        if _caller_gone(call, result):
            end_call(ctx, call)
            return reply(Hangup())
        ringing.ring_over(ctx, offer, result.dial_status)
        if call.state != CallState.RINGING:
            return replay(ctx, call)
        return ringing.ring_next(ctx, call, session.get_one(Conversation, offer.conversation_id))

    return answer_in_transaction(services, work)


def peer_result(services: Services, result: DialResult) -> VoiceReply:
    """The peer's ring is over (``result.ring`` is the call's id): they talked, the caller is
    gone, or the caller goes on to the greeting and the usual ringing."""

    def work(session: Session, effects: Effects) -> VoiceReply:
        retention.after_call(session, result.dial_call_sid, services.clock(), effects)
        call = _find_call(session, result.call_sid)
        if call is None or call.id != result.ring:
            return reply(Hangup())
        routing.lock_programme(session, call.programme_id)  # before the conversation's row
        ctx = step(services, session, call.programme_id, effects)
        if not events.claim(session, f"call:{call.call_sid}:peer"):
            return replay(ctx, call)
        if call.state == CallState.BRIDGED:  # our record of a press of 1
            # If the press of 1 did not (its conversation: the live one the peer is on).
            assert call.conversation_id is not None
            ringing.replace_waiting_requests(ctx, call.clinician_id, call.conversation_id)
            waiting_still = not result.bridged and not _caller_gone(call, result)
            answer = peercall.talked(ctx, call)
            if waiting_still:
                return reply(Say(speech.not_connected(ctx.programme)), Hangup())
            return answer
        if _caller_gone(call, result):
            end_call(ctx, call)
            return reply(Hangup())
        if call.state != CallState.PEER:
            return replay(ctx, call)
        peercall.not_taken(call)
        return _greeting_after_peer(ctx.programme)

    return answer_in_transaction(services, work)


def _caller_gone(call: Call, result: DialResult) -> bool:
    # Twilio still requests the action after the caller hangs up mid-ring; its answer is unused.
    return (
        call.state == CallState.ENDED
        or result.call_status in CALLER_GONE
        or result.dial_status == "canceled"
    )


def end_call(ctx: CallStep, call: Call) -> None:
    """The caller's leg is over. Ringing stops: a conversation nobody took ends ("hangup"),
    though what the clinician texted for it still waits for a peer, by text; one a supporter
    took stays theirs, and a queued call-back stays queued."""
    if call.state in (CallState.GREETING, CallState.RINGING) and call.conversation_id:
        conv = ctx.session.get_one(Conversation, call.conversation_id)
        if routing.still_queued(ctx.session, conv):  # not a press of 1 committed meanwhile
            ringing.keep_texts_waiting(ctx, conv)  # what they texted still waits for a peer
            end_conversation(ctx.session, ctx.programme, conv, "hangup", ctx.now, ctx.effects)
    if call.state == CallState.CALLBACK and call.followed_up_at is None:
        call.followed_up_at = ctx.now  # nobody took the call itself: no follow-up is owed
    if call.state == CallState.BRIDGED and call.conversation_id:
        # They talked until now (the dial action may come after this, or never).
        conv = ctx.session.get_one(Conversation, call.conversation_id)
        conv.last_activity_at = ctx.now
    if call.state != CallState.ENDED:
        call.state, call.ended_at = CallState.ENDED, ctx.now


def replay(ctx: CallStep, call: Call) -> VoiceReply:
    """The answer for the call's current state, changing nothing (for repeated deliveries)."""
    if call.state == CallState.GREETING and call.conversation_id is not None:
        return _greeting_after_peer(ctx.programme)  # the peer's conversation: see peercall.py
    if call.state == CallState.GREETING:
        return _greeting(ctx.programme)
    if call.state == CallState.PEER:
        return peercall.dial(ctx, call)
    if call.state == CallState.CALLBACK:
        return ringing.call_back_message(ctx, call)
    conv = ctx.session.get(Conversation, call.conversation_id) if call.conversation_id else None
    if call.state == CallState.RINGING and conv is not None:
        pending = routing.pending_offer(ctx.session, conv)
        if pending is not None:
            return ringing.dial(ctx, pending)
    if conv is not None and conv.accepted_at is not None:  # they talked
        return reply(Say(speech.thanks()), Hangup())
    return reply(Hangup())


def handle_call_status(services: Services, report: StatusReport, legs: Sequence[str] = ()) -> bool:
    """A call status callback. Any leg that is over (a caller's, a dialled supporter's or
    clinician's) has its record at the provider deleted; a caller's leg that is over also ends
    its call (forward only), and only then is the answer True. ``legs``: the legs the call
    rang, whose own ends were lost with its own (``ask_whether_over``), deleted too.
    """
    if report.status not in CALLER_GONE:
        return False

    def work(session: Session, effects: Effects) -> bool:
        for sid in (report.sid, *legs):
            retention.after_call(session, sid, services.clock(), effects)
        call = _find_call(session, report.sid)
        if call is None or call.state == CallState.ENDED:
            return False
        routing.lock_programme(session, call.programme_id)  # before conversation and offer rows
        if _fresh(session, call) == CallState.ENDED:  # as a step holding the lock meanwhile left it
            return False
        end_call(step(services, session, call.programme_id, effects), call)
        return True

    return answer_in_transaction(services, work)


def ask_whether_over(services: Services, call_sid: str) -> bool:
    """A caller's leg with no final status for a while (its callback lost, say sent while the
    database was down): ask the provider, and if the call is over there, end it here
    exactly as that callback would have (follow-up, held texts, record deletion). True if it
    ended. A provider that cannot answer raises its TelephonyError: the sweep stops asking (a
    provider that hangs would hold it 13 s a call), and later sweeps ask again.

    The legs it rang are over with it, and their own ends were most likely lost alike (no dial
    action, no status of theirs: the line unreachable as the call ended): they are asked for
    and deleted too, the clinician's number on a call through the mask (whose action the line
    does not read) or a supporter's, not left at the provider until the hourly clean-up."""
    try:
        status = services.telephony.call_status(call_sid)
    except PermanentError as error:
        if error.code != NOT_FOUND:
            raise
        status = "completed"  # a record is deleted only once its call is over
    if status is None:
        return False
    legs = _dialled_legs(services, call_sid) if status in CALLER_GONE else []
    return handle_call_status(services, StatusReport(sid=call_sid, status=status), legs)


def _dialled_legs(services: Services, call_sid: str) -> list[str]:
    """The legs the call rang, as the provider lists them; none if it cannot say now (the
    call still ends here: the hourly clean-up finds its legs)."""
    try:
        return services.telephony.dialled_legs(call_sid)
    except TelephonyError as error:
        log.warning("legs of a call that is over not listed (code %s)", error.code)
        return []


def _fresh(session: Session, call: Call) -> CallState:
    """The call's state as committed now, read again once the programme's lock is held (a step
    that held it before us may have moved the call on since we first read it)."""
    session.refresh(call)
    return call.state


def _find_call(session: Session, call_sid: str) -> Call | None:
    return session.scalar(select(Call).where(Call.call_sid == call_sid))


def screen(services: Services, ring: int) -> VoiceReply:
    return ringing.screen(services, ring)


def pick_up(services: Services, ring: int, digits: str) -> VoiceReply:
    return ringing.pick_up(services, ring, digits)


def peer_screen(services: Services, call_id: int) -> VoiceReply:
    return peercall.screen(services, call_id)


def peer_pick_up(services: Services, call_id: int, digits: str) -> VoiceReply:
    return peercall.pick_up(services, call_id, digits)


def through_screen() -> VoiceReply:
    return masking.screen()


def through_pick_up(digits: str) -> VoiceReply:
    return masking.pick_up(digits)


def through_result(dial_status: str, bridged: bool) -> VoiceReply:
    return masking.through_result(dial_status, bridged)
