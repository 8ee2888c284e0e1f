"""Ringing supporters for a live call, one at a time, and what happens when nobody picks up.

Each ring is an Offer of the call's conversation, made by ``routing.reserve``: the same
eligibility, the same round-robin pointer and the same pool-number choice as a text offer. A
ring is taken only when the supporter presses 1 on the screen (``pick_up``), recorded here;
a voicemail greeting cannot press 1, so it never takes a call. When nobody takes it, the call's
conversation becomes a call-back offered by text, through a job (a voice answer cannot carry
``<Message>``, and a webhook never calls the Twilio REST API itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Exists, and_, func, or_, select, update
from sqlalchemy.orm import Session, aliased

from hotline import held, reach, routing, speech, wording
from hotline.calling import Dial, Gather, Hangup, Route, Say, VoiceReply, reply, route
from hotline.conversations import end_conversation
from hotline.db import run_in_transaction, transaction
from hotline.effects import LOST, Effects, remember_sent, schedule, send, send_one
from hotline.held import send_held
from hotline.models import (
    Call,
    CallState,
    Channel,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
    Programme,
    Supporter,
)
from hotline.people import is_opted_out, supporter_phone
from hotline.privacy import Vault
from hotline.programmes import ProgrammeConfig, config_of
from hotline.services import Services
from hotline.texting import OutboundText
from hotline.wakeups import Task

RING_SECONDS = 20  # each supporter's phone rings this long before the next one is tried
SCREEN_SECONDS = 8  # time to press 1 after the whisper
# A ring offer outlives the ring by the whisper, the keypress and Twilio's callback; only after
# that may the sweeper treat it as lost (it then offers the conversation by text).
RING_GRACE = timedelta(seconds=60)
MAX_RINGS = 4  # then a call-back: a caller should not wait on the line for minutes
REPLACED = "replaced"  # the end reason of a request a later call superseded
LIVE_CALL = (CallState.GREETING, CallState.PEER, CallState.RINGING, CallState.BRIDGED)
T = TypeVar("T")


@dataclass
class CallStep:
    """One voice webhook being answered inside its transaction."""

    services: Services
    session: Session
    programme: ProgrammeConfig
    now: datetime
    effects: Effects


def answer_in_transaction(services: Services, work: Callable[[Session, Effects], T]) -> T:
    """Run ``work`` in one transaction (retried whole on a deadlock), then ask for its wake-ups.

    Raises RuntimeError if ``work`` wanted a text sent: a voice answer cannot carry one.
    """

    def attempt(session: Session) -> tuple[T, Effects]:
        effects = Effects()  # a retried attempt starts with nothing decided
        return work(session, effects), effects

    answer, effects = run_in_transaction(services.sessions, attempt)
    if effects.texts:
        raise RuntimeError("a voice webhook cannot send texts: queue a job instead")
    schedule(services, effects)
    return answer


def step(services: Services, session: Session, programme_id: int, effects: Effects) -> CallStep:
    programme = session.get_one(Programme, programme_id)
    return CallStep(
        services, session, config_of(programme, services.settings), services.clock(), effects
    )


def replace_waiting_requests(ctx: CallStep, clinician_id: int | None, successor_id: int) -> None:
    """A new call from someone waiting for a peer supersedes what waits (one request, not
    two): a call-back, or a text request nobody has accepted yet (left waiting, it would be
    offered on, and a second peer would join someone who has just talked to one). What they
    texted for it goes on to ``successor_id``, the new call's conversation, and its pending
    offer is withdrawn. Not a conversation another call of theirs is still on (a second line,
    a switchboard's shared number): it goes on ringing for that caller."""
    if clinician_id is None:
        return
    live_call = (
        select(Call.id)
        .where(Call.conversation_id == Conversation.id, Call.state.in_(LIVE_CALL))
        .exists()
    )
    waiting = ctx.session.scalars(
        select(Conversation).where(
            Conversation.clinician_id == clinician_id,
            Conversation.state == ConversationState.QUEUED,
            Conversation.id != successor_id,
            ~live_call,
        )
    ).all()
    for conv in waiting:
        held.move_held(ctx.session, conv.id, successor_id)
        end_conversation(ctx.session, ctx.programme, conv, REPLACED, ctx.now, ctx.effects)


def withdrawn_for_a_call(
    session: Session, supporter_id: int, pool_number: str | None
) -> list[Offer]:
    """The supporter's offers (on ``pool_number``, or on any number with None) that a call
    withdrew by replacing their request (``replace_waiting_requests``), while that call still
    rings: an answer to one now is for when it ends. Taken, it is the call's who took it; hung
    up, the request waits again (``_reopen``). One she has claimed already (``CLAIMED``) too:
    her next answer replaces that one (an ACCEPT again, or a PASS on second thoughts)."""
    query = (
        select(Offer)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.supporter_id == supporter_id,
            _as_it_rings(or_(_withdrawn_by_the_call(), Offer.state == OfferState.CLAIMED)),
        )
    )
    if pool_number is not None:
        query = query.where(Offer.pool_number == pool_number)
    return list(session.scalars(query))


def withdrawn_as_it_rings() -> ColumnElement[bool]:
    """An offer (``Offer``, joined to its ``Conversation``) that the call replacing its request
    withdrew, while that call still rings: an answer on its number now is for when it ends
    (``withdrawn_for_a_call``), and a hang-up may make it pending there again (``_reopen``)."""
    return _as_it_rings(_withdrawn_by_the_call())


def _withdrawn_by_the_call() -> ColumnElement[bool]:
    return and_(
        Offer.state == OfferState.WITHDRAWN,
        Offer.answered_at == Conversation.ended_at,  # by the call, not before
    )


def _as_it_rings(offer: ColumnElement[bool]) -> ColumnElement[bool]:
    """``offer`` (of ``Offer`` joined to its ``Conversation``), whose request a call replaced,
    while that call still rings."""
    return and_(offer, Conversation.end_reason == REPLACED, _call_rings_for_it())


def _replaced_by(request: Any, call: Any) -> ColumnElement[bool]:
    """``request`` (a Conversation, its row or the class or an alias) is the one ``call``'s
    conversation replaced (``replace_waiting_requests``): the same clinician's, ended as the
    call's was made. One side a row, the other the class, it reads either way."""
    return and_(request.clinician_id == call.clinician_id, request.ended_at == call.created_at)


def _call_rings_for_it() -> Exists:
    """The call that replaced the request (``Conversation``) still rings, waiting for a peer:
    how it ends decides a withdrawn or claimed offer of it (``withdrawn_for_a_call``)."""
    call_conv = aliased(Conversation)
    return (
        select(Call.id)
        .join(call_conv, call_conv.id == Call.conversation_id)
        .where(
            Call.state == CallState.RINGING,
            call_conv.state == ConversationState.QUEUED,
            _replaced_by(Conversation, call_conv),
        )
        .exists()
    )


def open_claims(programme_id: Any) -> ColumnElement[bool]:
    """Whether the programme (an id, or a column of one) has a claim not yet settled: one the
    sweeper still settles after the programme retired (``settle_claims``)."""
    return (
        select(Offer.id)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(Offer.state == OfferState.CLAIMED, Conversation.programme_id == programme_id)
        .exists()
    )


def settle_claims(
    session: Session, vault: Vault, p: ProgrammeConfig, now: datetime, effects: Effects
) -> None:
    """Claims (``CLAIMED``: an ACCEPT as the call that replaced the request rang) that can no
    longer come true: the call no longer rings and the request does not wait again. A peer
    took the call, it became a call-back, the clinician closed it (STOP, FORGET), or another
    peer's late ACCEPT took the request reopened before the claim was taken. Told the
    request was hers if they hung up, she would wait for it: each is withdrawn, and she is
    told from the offer's number why nothing comes (not through her STOP to it; nor when
    she took the call herself). Run by the jobs a call's end wakes (``offer_call_back``)
    and by the sweeper, a retired programme's too (a claim can outlive the call and the
    request that its retirement waits for); a hang-up that reopens the request leaves it
    to ``take_claimed``."""
    routing.lock_programme(session, p.id)  # before the offers' rows, as every answer takes it
    claims = session.scalars(
        select(Offer)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.state == OfferState.CLAIMED,
            Conversation.programme_id == p.id,
            Conversation.state != ConversationState.QUEUED,
            ~_call_rings_for_it(),
        )
    ).all()
    for claim in claims:
        if not routing.answer(session, claim, OfferState.WITHDRAWN, now, (OfferState.CLAIMED,)):
            continue
        body = _why_the_claim_ended(session, claim)
        supporter = session.get_one(Supporter, claim.supporter_id)
        to = supporter_phone(vault, supporter)
        if body is not None and not is_opted_out(session, vault, p.id, to, claim.pool_number):
            effects.text(to, claim.pool_number, body)


def _why_the_claim_ended(session: Session, claim: Offer) -> str | None:
    """What the peer who claimed a request is told of its end (None: she took it herself)."""
    conv = session.get_one(Conversation, claim.conversation_id)
    if conv.state == ConversationState.ACTIVE:  # reopened, and a late ACCEPT took it first
        return None if conv.supporter_id == claim.supporter_id else wording.offer_gone()
    call_conv = None
    if conv.end_reason == REPLACED:
        call_conv = session.scalar(
            select(Conversation)
            .where(
                Conversation.channel == Channel.VOICE,
                _replaced_by(conv, Conversation),
            )
            .order_by(Conversation.id.desc())
            .limit(1)
        )
    if call_conv is None:
        return wording.claim_closed()
    if call_conv.accepted_at is not None:
        return (
            None if call_conv.supporter_id == claim.supporter_id else wording.claim_taken_by_phone()
        )
    call_back = select(Conversation.id).where(
        Conversation.clinician_id == conv.clinician_id,
        Conversation.channel == Channel.VOICE,
        Conversation.state == ConversationState.QUEUED,
    )
    if session.scalar(select(call_back.exists())):  # it rang out, and waits as a call-back
        return wording.claim_call_back()
    return wording.claim_closed()


def ring_next(ctx: CallStep, call: Call, conv: Conversation) -> VoiceReply:
    """Ring the best eligible supporter not yet rung for ``conv``, or fall back to a call-back."""
    if conv.state != ConversationState.QUEUED:  # taken or ended by some other way meanwhile
        return reply(Say(speech.goodbye(ctx.programme)), Hangup())
    if routing.pending_offer(ctx.session, conv) is not None:
        # The sweeper judged a ring lost and offered the conversation by text meanwhile.
        call.state = CallState.CALLBACK
        return call_back_message(ctx, call)
    offer = None
    if _rings(ctx, conv.id) < MAX_RINGS:
        expires_at = ctx.now + timedelta(seconds=RING_SECONDS) + RING_GRACE
        vault, p, busy = ctx.services.vault, ctx.programme, on_the_phone(ctx.session)
        offer = routing.reserve(ctx.session, vault, p, conv, ctx.now, expires_at, busy)
    if offer is None:
        return fall_to_call_back(ctx, call, conv)
    return dial(ctx, offer)


def on_the_phone(session: Session) -> set[str]:
    """Blind indexes of the supporters the line has on the phone now: talking with a caller
    (a call the line put through, or theirs through the mask), or their phone ringing for one
    (a ring, or a clinician's call to their peer). Another caller does not ring them: call
    waiting would beep through a hard conversation, and the caller would wait on a ring nobody
    can take. A call-back by text still reaches them."""
    talking = (
        select(Conversation.supporter_id)
        .join(Call, Call.conversation_id == Conversation.id)
        .where(Call.state.in_((CallState.BRIDGED, CallState.PEER, CallState.THROUGH)))
    )
    ringing = (
        select(Offer.supporter_id)
        .join(Call, Call.conversation_id == Offer.conversation_id)
        .where(Call.state == CallState.RINGING, Offer.state == OfferState.PENDING)
    )
    busy = select(Supporter.phone_hash).where(
        Supporter.id.in_(talking.union(ringing).scalar_subquery())
    )
    return {phone_hash for phone_hash in session.scalars(busy) if phone_hash}


def _rings(ctx: CallStep, conversation_id: int) -> int:
    count = select(func.count()).select_from(Offer).where(Offer.conversation_id == conversation_id)
    return ctx.session.scalar(count) or 0


def dial(ctx: CallStep, offer: Offer) -> VoiceReply:
    """The caller hears a holding line while ``offer``'s supporter is rung from its pool number.

    A function of the stored offer alone, so a repeated webhook gets the very same answer.
    """
    supporter = ctx.session.get_one(Supporter, offer.supporter_id)
    return reply(
        Say(speech.holding(first=_rings(ctx, offer.conversation_id) == 1)),
        Dial(
            number=supporter_phone(ctx.services.vault, supporter),
            caller_id=offer.pool_number,
            timeout=RING_SECONDS,
            action=route("next", ring=offer.id),
            screen=route("screen", ring=offer.id),
        ),
    )


def ring_over(ctx: CallStep, offer: Offer, dial_status: str) -> None:
    """The ring ended without a press of 1: busy counts as passed, the rest as unanswered."""
    state = OfferState.PASSED if dial_status == "busy" else OfferState.EXPIRED
    routing.answer(ctx.session, offer, state, ctx.now)


def fall_to_call_back(ctx: CallStep, call: Call, conv: Conversation) -> VoiceReply:
    """Nobody took the call: a call-back conversation is queued and offered by text (a job).

    Supporters already rung have an Offer of the call's conversation, and an offer is unique
    per (conversation, supporter); so when anyone was rung the call's conversation ends
    ("missed") and a fresh one carries the call-back, open to everyone on call again.
    """
    call.state = CallState.CALLBACK
    rung = _rings(ctx, conv.id) > 0
    if call.clinician_id is None:  # a hidden number cannot be called back
        end_conversation(ctx.session, ctx.programme, conv, "missed", ctx.now, ctx.effects)
        return call_back_message(ctx, call)
    if rung:
        missed, conv = conv, new_conversation(ctx, call.clinician_id, conv.discipline_wanted)
        held.move_held(ctx.session, missed.id, conv.id)  # what they texted as it rang
        end_conversation(ctx.session, ctx.programme, missed, "missed", ctx.now, ctx.effects)
        call.conversation_id = conv.id
    ctx.effects.wake(Task.OFFER_CALL_BACK, conv.id)
    return call_back_message(ctx, call)


def keep_texts_waiting(ctx: CallStep, conv: Conversation) -> None:
    """The caller hung up while phones rang for ``conv``: the call is withdrawn (they chose to
    hang up), but not what they asked for before it, a text request or a call-back the call
    replaced (``replace_waiting_requests``), nor what they texted as it rang. Deleted with the
    call, a text request would be gone with nobody ever offered it and the clinician never
    told, and a call-back promised them would never come. What they texted as it rang goes on
    waiting for a peer as a text request, offered by text (the call-back's job offers any
    queued request).

    A request the call replaced goes on where it was (``_reopen``). Not as a new one: that
    would ask again at once the peers who passed it a moment ago, tell a clinician already told
    that nobody is free again, and count in the reports as a second request, waiting only
    since the hang-up."""
    if conv.clinician_id is None:  # a hidden number: nobody to text back
        return
    # One with nothing held too (its first text a field's word, or only a photo): the
    # clinician was told a peer would text back all the same. Replaced as this call's
    # conversation was made (the menu's step), not by another call of theirs.
    replaced = ctx.session.scalar(
        select(Conversation)
        .where(
            Conversation.end_reason == REPLACED,
            _replaced_by(Conversation, conv),
        )
        .order_by(Conversation.id.desc())
        .limit(1)
    )
    if replaced is not None:
        _reopen(ctx, replaced, conv)
        return
    holds = select(PendingText.id).where(PendingText.conversation_id == conv.id).exists()
    if not ctx.session.scalar(select(holds)):
        return
    texted = Conversation(
        programme_id=ctx.programme.id,
        clinician_id=conv.clinician_id,
        channel=Channel.SMS,
        discipline_wanted=conv.discipline_wanted,
        created_at=ctx.now,
        last_activity_at=ctx.now,
    )
    ctx.session.add(texted)
    ctx.session.flush()
    held.move_held(ctx.session, conv.id, texted.id)
    ctx.effects.wake(Task.OFFER_CALL_BACK, texted.id)


def _reopen(ctx: CallStep, replaced: Conversation, conv: Conversation) -> None:
    """The request ``conv``'s call replaced (a text request, or a call-back promised after an
    earlier call) waits again, as it was: the peers who passed it or let it lapse, when the
    clinician was told nobody is free, when it began. The offer the call withdrew was nobody's
    refusal, and its text is still on the peer's phone: it is pending again until its own time
    is up, if routing could offer it to her now (``routing.may_offer_again``); else lapsed, and
    the request goes on to the next peer at once: its time has passed meanwhile, a request
    offered her since has that number on her phone (an ACCEPT there is for that one), or she
    went on a break, off call or off the roster, reached her limit, or texted STOP to that
    number, as the phones rang. Her answer as the phones rang stands
    (``withdrawn_for_a_call``): a PASS, or an ACCEPT (``CLAIMED``) that takes it now, by the
    job woken here (``routing.take_claimed``). A field chosen in the call's menu is the one
    wanted now."""
    withdrawn_at = replaced.ended_at
    replaced.state, replaced.ended_at, replaced.end_reason = ConversationState.QUEUED, None, None
    replaced.last_activity_at = ctx.now
    replaced.discipline_wanted = conv.discipline_wanted or replaced.discipline_wanted
    held.move_held(ctx.session, conv.id, replaced.id)
    offer = ctx.session.scalar(
        select(Offer).where(
            Offer.conversation_id == replaced.id,
            Offer.state == OfferState.WITHDRAWN,
            Offer.answered_at == withdrawn_at,
        )
    )
    if offer is not None:
        vault, p = ctx.services.vault, ctx.programme
        if offer.expires_at > ctx.now and routing.may_offer_again(
            ctx.session, vault, p, offer, ctx.now
        ):
            offer.state, offer.answered_at = OfferState.PENDING, None
            ctx.effects.wake(Task.EXPIRE_OFFER, offer.id, offer.expires_at)
        else:
            offer.state, offer.answered_at = OfferState.EXPIRED, min(offer.expires_at, ctx.now)
    ctx.effects.wake(Task.OFFER_CALL_BACK, replaced.id)  # when no offer is pending; or claimed


def call_back_message(ctx: CallStep, call: Call) -> VoiceReply:
    if call.clinician_id is None:
        return reply(Say(speech.no_call_back(ctx.programme)), Hangup())
    if _nobody_free(ctx, call):
        return reply(Say(speech.call_back_later(ctx.programme)), Hangup())
    return reply(Say(speech.call_back(ctx.programme)), Hangup())


def _nobody_free(ctx: CallStep, call: Call) -> bool:
    """Nobody on call can be offered the call-back now (off hours, everyone busy or on a
    break): the caller is not promised one "shortly"; the fallback text says when. It is
    offered by text, so not to a supporter no text of the line reaches (``reach.untextable``:
    a landline rings, but its offer is refused), as ``schedule.next_coverage`` leaves them out
    of when the next peer comes on call."""
    conv = ctx.session.get(Conversation, call.conversation_id) if call.conversation_id else None
    if conv is None or conv.state != ConversationState.QUEUED:
        return False
    if routing.pending_offer(ctx.session, conv) is not None:
        return False
    vault, p = ctx.services.vault, ctx.programme
    found = routing.candidates(ctx.session, vault, p, conv, ctx.now)
    if not found:
        return True
    untextable = reach.untextable(ctx.session, p.id)
    return all(c.supporter.id in untextable for c in found)


def new_conversation(
    ctx: CallStep, clinician_id: int | None, discipline: str | None
) -> Conversation:
    conv = Conversation(
        programme_id=ctx.programme.id,
        clinician_id=clinician_id,
        channel=Channel.VOICE,
        discipline_wanted=discipline,
        created_at=ctx.now,
        last_activity_at=ctx.now,
    )
    ctx.session.add(conv)
    ctx.session.flush()
    return conv


def after_pick_up(ctx: CallStep, call: Call, offer: Offer) -> VoiceReply:
    """The dial of a supporter who pressed 1 is over. The conversation stays ACTIVE with them
    (DONE by text closes it, or the inactivity sweep); they are texted how, by a job."""
    conv = ctx.session.get_one(Conversation, offer.conversation_id)
    conv.last_activity_at = ctx.now
    if call.state != CallState.ENDED:
        call.state, call.ended_at = CallState.ENDED, ctx.now
    ctx.effects.wake(Task.FOLLOW_UP_CALL, call.id)
    # Unused when the caller hung up first (or pressed 1 as they hung up: the supporter, texted
    # by the follow-up, can call them back through the pool number).
    return reply(Say(speech.thanks()), Hangup())


# --- the supporter's leg ---------------------------------------------------------------------


def screen(services: Services, ring: int) -> VoiceReply:
    """The answered supporter's leg: a whisper and press 1; no press (a voicemail) hangs up."""
    with transaction(services.sessions) as session:
        offer = session.get(Offer, ring)
        ringing = offer is not None and offer.state == OfferState.PENDING
    if not ringing:
        return reply(Say(speech.call_gone()), Hangup())
    return press_1(route("pickup", ring=ring), speech.whisper(), speech.screen_passed())


def press_1(pickup: Route, whisper: str, passed: str | None = None) -> VoiceReply:
    """The screen on an answered leg (a ``<Number url>``): ``whisper``, and one key posted to
    ``pickup``, whose empty answer bridges the legs. No key within ``SCREEN_SECONDS`` (a
    voicemail greeting cannot press one) hears ``passed``, if anything, and is hung up on:
    Twilio never bridges it, and the dial action reads ``DialBridged=false``."""
    gather = Gather(pickup, (Say(whisper),), num_digits=1, timeout=SCREEN_SECONDS)
    after = (Say(passed),) if passed else ()
    return reply(gather, *after, Hangup())


def pressed_1(digits: str) -> bool:
    """Whether a screen's keypress takes the call (any other key declines it)."""
    return digits.strip() == "1"


def pick_up(services: Services, ring: int, digits: str) -> VoiceReply:
    """A keypress on the screen. 1 takes the call here, in our database, and the empty answer
    lets Twilio bridge the two legs; a repeated press bridges again; anything else declines."""
    if not pressed_1(digits):
        return reply(Say(speech.screen_passed()), Hangup())

    def work(session: Session, effects: Effects) -> VoiceReply:
        offer = session.get(Offer, ring)
        if offer is not None and offer.state == OfferState.ACCEPTED:
            return reply()
        if offer is not None:  # the programme's lock before the offer's row, as all paths do
            routing.lock_offers_programme(session, offer)
        conv = routing.assign(session, offer, services.clock(), effects) if offer else None
        if conv is None:
            return reply(Say(speech.call_gone()), Hangup())
        if routing.claimed_from(session, conv.clinician_id):  # her claim of it can't come true
            effects.wake(Task.OFFER_CALL_BACK, conv.id)
        session.execute(
            update(Call)
            .where(Call.conversation_id == conv.id, Call.state == CallState.RINGING)
            .values(state=CallState.BRIDGED)
        )
        return reply()

    return answer_in_transaction(services, work)


# --- jobs ------------------------------------------------------------------------------------


def offer_call_back(services: Services, conversation_id: int) -> bool:
    """Offer a queued call-back by text (the next supporters by ``HOTLINE_OFFER_TIMEOUT``, as the
    text line does); the job offers a text request on too (one a BREAK passed on, or a BACK
    found waiting, when the reply had no room for its offer). Safe to run twice: a conversation
    already offered or taken is left alone. First, claims a call's end left with nothing to
    take are settled (``settle_claims``): the job is woken as a call is taken, rings out, or
    its clinician closes it."""
    effects = Effects()
    with transaction(services.sessions) as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None:
            return False
        p = config_of(session.get_one(Programme, conv.programme_id), services.settings)
        now = services.clock()
        settle_claims(session, services.vault, p, now, effects)
        offer = None
        if conv.state == ConversationState.QUEUED and routing.pending_offer(session, conv) is None:
            offer = routing.offer_or_fall_back(session, services.vault, p, conv, now, effects)
    send(services, effects)
    schedule(services, effects)
    return offer is not None


def follow_up_call(services: Services, call_id: int) -> bool:
    """Text the supporter who took a call how to reach the caller again and how to close it,
    after whatever the clinician texted while the phone rang (held until someone took the call,
    as a text request's texts are until someone accepts it).

    Claimed before sending, with a lease (``Call.following_up_since``) cleared once Twilio has
    taken the text, so a second run sends nothing. A text Twilio did not take is owed again:
    the held texts stay held (``held.send_held``), and the claim is undone for the sweeper to
    follow the call up on its next round; so is a run killed mid-send, once its lease lapses
    (held.RELAY_LEASE). Killed after Twilio took it, the text may go twice, never not at all.
    """
    effects = Effects()
    follow: OutboundText | None = None
    with transaction(services.sessions) as session:
        claimed_at = services.clock()
        conv = _claim_follow_up(session, call_id, claimed_at)
        if conv is None or conv.supporter_id is None or conv.pool_number is None:
            return False
        supporter = session.get_one(Supporter, conv.supporter_id)
        to = supporter_phone(services.vault, supporter)
        p = config_of(session.get_one(Programme, conv.programme_id), services.settings)
        if conv.clinician_id is None:  # a hidden number: the line cannot reach them again
            end_conversation(session, p, conv, "hidden", services.clock(), effects)
            effects.text(to, conv.pool_number, wording.after_hidden_call())
        else:
            follow = OutboundText(to, conv.pool_number, wording.after_call(bool(p.checkin_offsets)))
            conversation_id = conv.id
    if follow is not None:
        # First what the clinician wrote as it rang; if some of it waits still (Twilio did not
        # take it), the follow-up waits too: the sweeper follows the call up again, in order.
        sid = LOST
        if send_held(services, conversation_id):
            sid = send_one(services, follow, services.callback_url("/twilio/status"))
        _end_claim(services, call_id, claimed_at, sent=sid is not LOST)
        if isinstance(sid, str):
            remember_sent(services, [sid])
    send(services, effects)
    schedule(services, effects)
    return True


def _end_claim(services: Services, call_id: int, claimed_at: datetime, *, sent: bool) -> None:
    """The run's follow-up went (or must not be tried again), or it is owed again (``sent``
    False: the claim is undone). Only this run's claim: a lapsed one is another run's now."""
    owed = {"followed_up_at": None} if not sent else {}
    with transaction(services.sessions) as session:
        session.execute(
            update(Call)
            .where(Call.id == call_id, Call.following_up_since == claimed_at)
            .values(following_up_since=None, **owed)
        )


def _claim_follow_up(session: Session, call_id: int, now: datetime) -> Conversation | None:
    """The call's conversation, still live, if this run is the first to claim its follow-up,
    or the first since a run that claimed it died before the text went (its lease lapsed)."""
    claimed = session.execute(
        update(Call)
        .where(Call.id == call_id, follow_up_owed(now))
        .values(followed_up_at=now, following_up_since=now)
    )
    if not claimed.rowcount:  # type: ignore[attr-defined]
        return None
    call = session.get_one(Call, call_id)
    conv = session.get(Conversation, call.conversation_id) if call.conversation_id else None
    if conv is None or conv.state != ConversationState.ACTIVE or conv.clinician_id is None:
        call.following_up_since = None  # nothing to send, or only once (a hidden number's)
    return conv if conv is not None and conv.state == ConversationState.ACTIVE else None


def follow_up_owed(now: datetime) -> ColumnElement[bool]:
    """The call's follow-up is owed: never claimed, or claimed by a run that died sending it."""
    return or_(
        Call.followed_up_at.is_(None),
        Call.following_up_since <= now - held.RELAY_LEASE,
    )
