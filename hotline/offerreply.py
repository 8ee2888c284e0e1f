"""A supporter's answer to an offer: ACCEPT or PASS, on the offer's number or typed on another
(the hotline number, a live conversation's thread); late, once the offer lapsed or was passed
on and its request still waits; while the clinician's call that withdrew it rings; or with
nothing left to answer. Every answer about an offer goes back from the offer's own number.

The supporter's side of the text line (supporterline.py) decides which of these a text is.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from hotline import ringing, routing, wording
from hotline.inbound import Inbound
from hotline.keywords import Word
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
from hotline.people import is_opted_out
from hotline.wakeups import Task


def pending_offer(ctx: Inbound, supporter: Supporter) -> Offer | None:
    """The supporter's pending offer on the number texted."""
    return ctx.session.scalar(
        select(Offer).where(
            Offer.supporter_id == supporter.id,
            Offer.pool_number == ctx.text.to,
            Offer.state == OfferState.PENDING,
        )
    )


def pending_offers(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's pending offers, on whichever numbers."""
    return list(
        ctx.session.scalars(
            select(Offer).where(
                Offer.supporter_id == supporter.id, Offer.state == OfferState.PENDING
            )
        )
    )


def offers_elsewhere(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """An answer sent to the hotline number: the supporter's pending offers on pool numbers
    (a saved contact, a reply in the wrong thread)."""
    if ctx.text.to != ctx.programme.hotline_number:
        return []
    return pending_offers(ctx, supporter)


def answers_an_offer(ctx: Inbound) -> bool:
    """ACCEPT or PASS itself: never an answer to a clinician (YES and NO are, in a conversation)."""
    command = ctx.command
    return command is not None and command.word in (Word.ACCEPT, Word.PASS) and not command.everyday


def answer_offer(ctx: Inbound, offer: Offer, word: Word | None) -> None:
    """ACCEPT or PASS an offer (typed on its number, or elsewhere: see answer_elsewhere). A
    supporter taken off the roster since the offer cannot take it: their ACCEPT passes it on,
    and they are told it has gone."""
    active = ctx.session.get_one(Supporter, offer.supporter_id).active
    if word is Word.ACCEPT and active:
        vault = ctx.services.vault
        accepted = routing.accept(ctx.session, vault, ctx.programme, offer, ctx.now, ctx.effects)
        if not accepted and not _answered_as_the_call_rings(ctx, offer, word):
            _answer_on(ctx, offer, wording.offer_gone())
    elif word in (Word.ACCEPT, Word.PASS):
        passed = routing.pass_on(ctx.session, ctx.programme, offer, ctx.now)
        if not passed and _answered_as_the_call_rings(ctx, offer, word):
            return
        if word is Word.ACCEPT:
            _answer_on(ctx, offer, wording.offer_gone())
        elif passed:
            _answer_on(ctx, offer, wording.passed())
        else:  # answered a moment before: nothing of it waits for them now
            _answer_on(ctx, offer, _passed_meanwhile(offer))
        if passed:
            ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
            route_onwards(ctx, offer)
    else:
        _answer_on(ctx, offer, reminder(ctx, offer))


def reminder(ctx: Inbound, offer: Offer) -> str:
    """The offer's words again, for a text on its number that answers nothing."""
    conv = ctx.session.get_one(Conversation, offer.conversation_id)
    return wording.offer_reminder(conv.checkin_reply)


def lapsed_reminder(ctx: Inbound, lapsed: Offer) -> str:
    """A text on the number of her lapsed offer whose request still waits: the offer's words
    again; after her STOP to that number, that it cannot come to her there, and START (an
    ACCEPT there is refused: accept_late). Reminded, from another number, to ACCEPT, her
    ACCEPT in that thread found nothing there, and she was told the request had gone."""
    if ctx.stopped_here:
        return wording.offered_after_stop(lapsed.pool_number)
    return reminder(ctx, lapsed)


def answer_elsewhere(ctx: Inbound, offers: list[Offer], word: Word | None) -> None:
    """An answer sent to another number than the offer's: it reaches the one offer; with more
    than one, the supporter is asked to answer on each one's number. A ring is answered by
    picking up."""
    if any(is_ringing(ctx, offer) for offer in offers):
        ctx.reply(wording.ringing_now())
    elif len(offers) == 1:
        answer_offer(ctx, offers[0], word)
    else:
        ctx.reply(wording.answer_where_offered())


def _answered_as_the_call_rings(ctx: Inbound, offer: Offer, word: Word | None) -> bool:
    """Whether the answer went to ``offer`` as one sent while a call rings
    (``answer_during_call``): the clinician's call withdrew it as this text waited on the
    programme's lock (the call's menu step replaced the request), and rings on."""
    withdrawn = ringing.withdrawn_for_a_call(ctx.session, offer.supporter_id, offer.pool_number)
    called = [o for o in withdrawn if o.id == offer.id]
    if called:
        answer_during_call(ctx, called, word)
    return bool(called)


def _passed_meanwhile(offer: Offer) -> str:
    """The answer to a PASS whose offer was answered between its reading the offer as pending
    and its passing it on (the time-out, the clinician's STOP, their own ACCEPT just before)."""
    if offer.state == OfferState.ACCEPTED:  # their own ACCEPT, sent just before
        return wording.already_connected()
    if offer.state in routing.LAPSED:  # it timed out to the next peer: gone on all the same
        return wording.passed()
    return wording.offer_gone()  # taken by someone else, or the request ended


def _answer_on(ctx: Inbound, offer: Offer, body: str) -> None:
    """Tell the supporter about ``offer`` from its own number, as an ACCEPT's "You're connected"
    is: typed in a live conversation's thread, "Passed on" or "That request is no longer open
    ... or it ended" read there as news of that conversation, which goes on."""
    ctx.effects.text(ctx.sender, offer.pool_number, body)


def route_onwards(ctx: Inbound, offer: Offer) -> None:
    """A request passed on goes to the next peer (or falls back), if it still waits."""
    conv = ctx.session.get_one(Conversation, offer.conversation_id)
    if conv.state == ConversationState.QUEUED:
        routing.offer_or_fall_back(
            ctx.session, ctx.services.vault, ctx.programme, conv, ctx.now, ctx.effects
        )


def is_ringing(ctx: Inbound, offer: Offer) -> bool:
    """``offer`` is a ring: a call is ringing the supporter's phone for it right now."""
    rung = select(Call.id).where(
        Call.conversation_id == offer.conversation_id, Call.state == CallState.RINGING
    )
    return bool(ctx.session.scalar(select(rung.exists())))


def lapsed_waiting(ctx: Inbound, supporter: Supporter, *, anywhere: bool) -> list[Offer]:
    """The supporter's lapsed or passed offers whose text request still waits, with nobody
    else offered it, newest first, one per request, on a number free on their phone (no
    conversation, pending offer or claim of theirs on it: routing.pools_in_use): the number
    texted, or with ``anywhere`` (a text to the hotline number or in a live conversation's
    thread) any."""
    other = aliased(Offer)
    offered_now = (
        select(other.id)
        .where(other.conversation_id == Conversation.id, other.state == OfferState.PENDING)
        .exists()
    )
    query = (
        select(Offer)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.supporter_id == supporter.id,
            Offer.state.in_(routing.LAPSED),
            Conversation.state == ConversationState.QUEUED,
            Conversation.channel == Channel.SMS,  # a call is rung; a call-back is offered anew
            ~offered_now,
        )
        .order_by(Offer.offered_at.desc())
    )
    if not anywhere:
        query = query.where(Offer.pool_number == ctx.text.to)
    # Numbers in use as offer-making counts them: a claim's too, where it comes at the hang-up
    # (another request taken there meanwhile, her claim would lapse); on the number texted,
    # between the hang-up and the job that gives it to her (withdrawn_for_a_call reads it no
    # longer as ringing).
    in_use = routing.pools_in_use(ctx.session, [supporter.id])[supporter.id]
    query = query.where(Offer.pool_number.not_in(in_use))
    newest: dict[int, Offer] = {}
    for offer in ctx.session.scalars(query):
        newest.setdefault(offer.conversation_id, offer)
    return list(newest.values())


def accept_late(ctx: Inbound, supporter: Supporter, *, anywhere: bool) -> None:
    """ACCEPT on a number whose offer lapsed or was passed on: if that text request still
    waits and is with nobody else, it is theirs (the clinician was told a peer will text),
    unless they are at their ``max_conversations``: then it stays for the next peer, and they
    are told how to make room. A break, or a shift ended, since the offer does not refuse it:
    their ACCEPT, sent since, is the surer word that they can take it now (BREAK and the
    schedule say when the line may ask them, as a pending offer is taken after either); the
    limit, the coordinator's cap on their load, and the roster do refuse it. On a break they
    are told the break goes on (routing.accept).
    ``anywhere`` (sent to the hotline number, or in a live conversation's thread), it takes the
    one such request on a number free on their phone (two: they are asked to answer on the
    number each came from)."""
    waiting = lapsed_waiting(ctx, supporter, anywhere=anywhere)
    if len(waiting) > 1:
        ctx.reply(wording.answer_where_offered())
        return
    lapsed = waiting[0] if waiting else None
    vault, p = ctx.services.vault, ctx.programme
    # STOP on that number: Twilio would deliver nothing of the conversation there
    stopped = lapsed is not None and is_opted_out(
        ctx.session, vault, p.id, ctx.sender, lapsed.pool_number
    )
    if lapsed is not None and supporter.active and not stopped:
        routing.lock_programme(ctx.session, p.id)  # her load as offer-making reads it
        if routing.at_limit(ctx.session, supporter):  # routing would not offer it to her now
            _answer_on(ctx, lapsed, _at_limit(ctx, supporter))
            return
        if routing.accept(ctx.session, vault, p, lapsed, ctx.now, ctx.effects, late=True):
            return
    if stopped or (lapsed is None and ctx.stopped_here):
        _after_stop(ctx, lapsed.pool_number if lapsed is not None else ctx.text.to)
    elif lapsed is None:
        ctx.reply(wording.offer_gone())
    else:  # from the offer's number: in a live conversation's thread it read as that one's end
        _answer_on(ctx, lapsed, wording.offer_gone())


def _after_stop(ctx: Inbound, number: str) -> None:
    """A late ACCEPT that cannot take a request on ``number`` after her STOP to it: she is
    told so, and how to hear that number again, where she can hear it (Inbound.reply_from)."""
    ctx.reply(wording.accept_after_stop(number))


def _at_limit(ctx: Inbound, supporter: Supporter) -> str:
    """What a late ACCEPT at her limit is told: how to make room (PASS an offer waiting for her
    answer, or DONE). Her claims alone filling it (accepted_during_call), she has nothing to
    close: she is told the request she holds comes to her if its clinician hangs up."""
    if pending_offers(ctx, supporter):  # DONE would not free that one
        return wording.at_limit(supporter.max_conversations, offered=True)
    claimed = select(Offer.id).where(
        Offer.supporter_id == supporter.id, Offer.state == OfferState.CLAIMED
    )
    talking = select(Conversation.id).where(
        Conversation.supporter_id == supporter.id,
        Conversation.state == ConversationState.ACTIVE,
    )
    if ctx.session.scalar(select(claimed.exists() & ~talking.exists())):
        return wording.at_limit_holding_a_claim()
    return wording.at_limit(supporter.max_conversations)


def pass_too_late(ctx: Inbound, supporter: Supporter) -> str:
    """A PASS (or NO) on a number where nothing waits for it: what became of the request last
    offered to them there, as a PASS a moment sooner is told (_passed_meanwhile): gone on to
    another peer, or no longer open; nothing needs them. Else (their own conversation there
    ended, none was offered there, or an offer waits for them on another number, which this
    did not answer) an everyday "No", maybe meant for a clinician, is told nothing was passed
    on, and a PASS that nothing here waits for their answer."""
    last = None if pending_offers(ctx, supporter) else _last_offer_here(ctx, supporter)
    conv = ctx.session.get_one(Conversation, last.conversation_id) if last is not None else None
    if last is not None and conv is not None and conv.supporter_id != supporter.id:
        return wording.passed() if conv.state == ConversationState.QUEUED else wording.offer_gone()
    everyday = ctx.command is not None and ctx.command.everyday
    return wording.conversation_ended() if everyday else wording.nothing_to_answer()


def _last_offer_here(ctx: Inbound, supporter: Supporter) -> Offer | None:
    return ctx.session.scalar(
        select(Offer)
        .where(Offer.supporter_id == supporter.id, Offer.pool_number == ctx.text.to)
        .order_by(Offer.offered_at.desc(), Offer.id.desc())
        .limit(1)
    )


def withdrawn_for_a_call(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's offers withdrawn by a call of their clinician's still ringing, on the
    number texted (on any, texted to the hotline number). Read under the programme's lock,
    which the call's steps hold to end the ringing: what is read stays so until this text's
    answer commits."""
    routing.lock_programme(ctx.session, ctx.programme.id)
    anywhere = ctx.text.to == ctx.programme.hotline_number
    return ringing.withdrawn_for_a_call(
        ctx.session, supporter.id, None if anywhere else ctx.text.to
    )


def offered_again(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's offers pending on the number texted (on any, texted to the hotline
    number), read again under the programme's lock (``withdrawn_for_a_call`` took it): a
    caller's hang-up that committed as this text waited on it has reopened the request their
    call replaced, and the offer the call withdrew is pending again (ringing._reopen)."""
    if ctx.text.to == ctx.programme.hotline_number:
        return offers_elsewhere(ctx, supporter)
    offer = pending_offer(ctx, supporter)
    return [offer] if offer is not None else []


def answer_during_call(ctx: Inbound, offers: list[Offer], word: Word | None) -> None:
    """ACCEPT or PASS of an offer withdrawn by its clinician's call, while it rings: it stands
    for when the call ends. Passed, the request does not wait on her again if they hang up;
    accepted (claimed), it is hers then (ringing._reopen), unless a peer answers the call."""
    if len(offers) > 1:
        ctx.reply(wording.answer_where_offered())
        return
    offer = offers[0]
    claiming = word is Word.ACCEPT and ctx.session.get_one(Supporter, offer.supporter_id).active
    state = OfferState.CLAIMED if claiming else OfferState.PASSED
    routing.answer(ctx.session, offer, state, ctx.now, (OfferState.WITHDRAWN, OfferState.CLAIMED))
    if claiming:
        _answer_on(ctx, offer, wording.accepted_during_call())
    else:  # off the roster since, an ACCEPT passes it, as answer_offer does
        _answer_on(ctx, offer, wording.offer_gone() if word is Word.ACCEPT else wording.passed())
