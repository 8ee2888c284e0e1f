"""The supporter's side of the text line: answering offers, relaying, DONE, BREAK and BACK.

A supporter texts from their own phone to the pool number a request or conversation reached them
on; every reply goes back from that same number, so they always know which conversation it is.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import aliased

from hotline import conversations, reach, ringing, routing, schedule, wording
from hotline.conversations import open_conversation
from hotline.inbound import Inbound
from hotline.keywords import Word
from hotline.models import (
    Call,
    CallState,
    Channel,
    Clinician,
    Conversation,
    ConversationState,
    Notice,
    NoticeKind,
    Offer,
    OfferState,
    Supporter,
)
from hotline.notices import last_notice_from
from hotline.people import (
    clinician_phone,
    find_clinician,
    is_opted_out,
    lift_opt_out,
    record_opt_out,
)
from hotline.programmes import ProgrammeConfig
from hotline.wakeups import Task

SUPPORTER_WORDS = frozenset(
    {Word.ACCEPT, Word.PASS, Word.DONE, Word.RESOURCES, Word.BREAK, Word.BACK, Word.HELP}
)


def is_supporter_text(
    ctx: Inbound, supporter: Supporter, to_hotline: bool, answers: Notice | None
) -> bool:
    """On a pool number a supporter is always a supporter; on the hotline number only when it
    is also their conversation's number or the text is a supporter command (a supporter who
    needs support themselves just texts in, like any clinician). ``answers``: the notice the
    text is a "Yes" or "No" to (notice_answered)."""
    if not to_hotline:
        return True
    if _live_conversation(ctx, supporter) or _pending_offer(ctx, supporter):
        return True
    if ctx.command is None or ctx.command.word not in SUPPORTER_WORDS:
        return False
    if answers is not None:
        return False  # the line answers it as a "Thanks!" is (textline._answering_a_notice)
    # A supporter being supported themselves: their YES, NO, HELP or DONE on the hotline is
    # for their own peer; only BREAK and BACK, which no clinician text means, stay commands.
    return ctx.command.word in (Word.BREAK, Word.BACK) or not _supported_here(ctx)


def _supported_here(ctx: Inbound) -> bool:
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    return clinician is not None and open_conversation(ctx.session, clinician) is not None


def _live_conversation(ctx: Inbound, supporter: Supporter) -> Conversation | None:
    return ctx.session.scalar(
        select(Conversation).where(
            Conversation.supporter_id == supporter.id,
            Conversation.pool_number == ctx.text.to,
            Conversation.state == ConversationState.ACTIVE,
        )
    )


def _pending_offer(ctx: Inbound, supporter: Supporter) -> Offer | None:
    return ctx.session.scalar(
        select(Offer).where(
            Offer.supporter_id == supporter.id,
            Offer.pool_number == ctx.text.to,
            Offer.state == OfferState.PENDING,
        )
    )


def notice_answered(ctx: Inbound, supporter: Supporter) -> Notice | None:
    """The shift reminder or code from this number in the last hour ("You are on call from 7
    PM") that a "Yes" or "No" (or "Y", "N") answers: a "Yes" is the "ok" it means, not an
    ACCEPT of a request never offered to them, or offered before it and lapsed unseen; a "No"
    to a reminder says they cannot take that shift (declines_a_shift), not a PASS. An offer it
    may answer keeps it an ACCEPT or a PASS: one pending (on this number, or written to the
    hotline number on any: _offers_elsewhere), or one made on this number since the notice,
    the text they got last. Decided once per text (textline._dispatch), before either side of
    the line reads it."""
    command = ctx.command
    if command is None or command.word not in (Word.ACCEPT, Word.PASS) or not command.everyday:
        return None
    notice = last_notice_from(ctx.session, supporter.id, ctx.text.to, ctx.now)
    if notice is None or _pending_offer(ctx, supporter) or _offers_elsewhere(ctx, supporter):
        return None
    offered_since = select(Offer.id).where(
        Offer.supporter_id == supporter.id,
        Offer.pool_number == ctx.text.to,
        Offer.offered_at >= notice.sent_at,
    )
    return None if ctx.session.scalar(select(offered_since.exists())) else notice


def declines_a_shift(ctx: Inbound, answers: Notice | None) -> bool:
    """A "No" to a shift reminder (``answers``, from notice_answered): they cannot take it, and
    are told how to get cover. A "No" to a code is answered as its "ok" is."""
    word = ctx.command.word if ctx.command is not None else None
    return answers is not None and answers.kind == NoticeKind.REMINDER and word is Word.PASS


def supporter_text(ctx: Inbound, supporter: Supporter, answers: Notice | None) -> None:
    """``answers``: the notice the text is a "Yes" or "No" to (notice_answered)."""
    word = ctx.command.word if ctx.command else None
    if ctx.command is not None and ctx.command.opt_in:  # START, UNSTOP, YES: Twilio unblocked
        lift_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
    declined = declines_a_shift(ctx, answers)
    if answers is not None:
        word = None  # a reply to the notice (an "ok", or a shift declined): no offer's answer
    if word is Word.STOP:
        _supporter_stop(ctx, supporter)
        if ctx.command is not None and not ctx.command.bare:  # as for clinicians: textline
            ctx.reply(wording.stopped())
    elif word is Word.START:
        return  # Twilio answers the opt-in words itself
    elif word in (Word.BREAK, Word.BACK) and not supporter.active:
        # Taken off the roster: no shift will bring requests (BACK promised the next one's).
        ctx.reply(wording.off_the_roster())
    elif word is Word.BREAK:
        _take_a_break(ctx, supporter)
    elif word is Word.BACK:
        # The programme's lock before the supporter's row, as offer-making takes them (a sweep
        # offering her a request meanwhile deadlocked with BACK otherwise).
        routing.lock_programme(ctx.session, ctx.programme.id)
        supporter.break_until = None
        on_call = supporter.id in schedule.on_call(ctx.session, ctx.programme.id, ctx.now)
        ctx.reply(wording.back(on_call))
        conversations.offer_waiting(
            ctx.services, ctx.session, ctx.programme, ctx.now, ctx.effects, in_a_reply=True
        )
    elif word is Word.HELP:
        ctx.reply(wording.supporter_help())
    elif (offer := _pending_offer(ctx, supporter)) is not None:
        if _ringing(ctx, offer):  # a live caller waits: the answer is the phone, not a text
            ctx.reply(wording.ringing_now())
        else:
            _answer_offer(ctx, offer, word)
    elif (conv := _live_conversation(ctx, supporter)) is not None:
        if _answers_an_offer(ctx) and (elsewhere := _pending_offers(ctx, supporter)):
            _answer_elsewhere(ctx, elsewhere, word)  # typed in this thread, meant for the offer
        elif (
            word is Word.ACCEPT
            and _answers_an_offer(ctx)
            and _lapsed_waiting(ctx, supporter, anywhere=True)
        ):
            _accept_late(ctx, supporter, anywhere=True)  # that offer lapsed; it still waits
        else:
            _in_conversation(ctx, conv, word)
    elif word in (Word.ACCEPT, Word.PASS) and (elsewhere := _offers_elsewhere(ctx, supporter)):
        _answer_elsewhere(ctx, elsewhere, word)
    elif word in (Word.DONE, Word.RESOURCES) and (talking := _talking_elsewhere(ctx, supporter)):
        if len(talking) == 1:
            _in_conversation(ctx, talking[0], word)
        else:
            ctx.reply(wording.answer_where_talking())
    elif word in (Word.ACCEPT, Word.PASS) and (called := _withdrawn_for_a_call(ctx, supporter)):
        _answer_during_call(ctx, called, word)
    elif word is Word.ACCEPT:
        _accept_late(ctx, supporter, anywhere=ctx.text.to == ctx.programme.hotline_number)
    elif declined:
        ctx.reply(wording.shift_declined(ctx.programme))
    elif word in (None, Word.PASS) and _lapsed_waiting(ctx, supporter, anywhere=False):
        # Their offer on this number lapsed, and the request still waits with nobody.
        ctx.reply(wording.passed() if word is Word.PASS else wording.offer_reminder())
    elif word is Word.PASS:
        ctx.reply(_pass_too_late(ctx, supporter))
    else:
        ctx.reply(wording.conversation_ended())


def _answers_an_offer(ctx: Inbound) -> bool:
    """ACCEPT or PASS itself: never an answer to a clinician (YES and NO are, in a conversation)."""
    command = ctx.command
    return command is not None and command.word in (Word.ACCEPT, Word.PASS) and not command.everyday


def _answer_elsewhere(ctx: Inbound, offers: list[Offer], word: Word | None) -> None:
    """An answer sent to another number than the offer's: it reaches the one offer; with more
    than one, the supporter is asked to answer on each one's number. A ring is answered by
    picking up."""
    if any(_ringing(ctx, offer) for offer in offers):
        ctx.reply(wording.ringing_now())
    elif len(offers) == 1:
        _answer_offer(ctx, offers[0], word)
    else:
        ctx.reply(wording.answer_where_offered())


def _take_a_break(ctx: Inbound, supporter: Supporter) -> None:
    """No new offers until the break ends; a request offered to them by text and not yet
    answered goes on to the next peer now, not when its offer times out (a ring moves on by
    itself in seconds). One text tells them how many went on, however many there were: each
    passed on brings texts of its own (the next peer's offer, or the clinician's "nobody is
    free" and the coordinator's alert), and what does not fit in the reply (Twilio sends at
    most routing.TEXTS_IN_A_REPLY) is offered on by a job, through the API, a moment later."""
    assert ctx.command is not None and ctx.command.duration is not None
    # The programme's lock before the supporter's row, as offer-making takes them.
    routing.lock_programme(ctx.session, ctx.programme.id)
    supporter.break_until = ctx.now + ctx.command.duration
    waiting = [offer for offer in _pending_offers(ctx, supporter) if not _ringing(ctx, offer)]
    passed = [o for o in waiting if routing.pass_on(ctx.session, ctx.programme, o, ctx.now)]
    ctx.reply(wording.on_break(supporter.break_until, ctx.programme.zone, len(passed)))
    for offer in passed:
        ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
        if len(ctx.effects.texts) + routing.ONWARD_TEXTS <= routing.TEXTS_IN_A_REPLY:
            _route_onwards(ctx, offer)
        else:
            ctx.effects.wake(Task.OFFER_CALL_BACK, offer.conversation_id)


def _pending_offers(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's pending offers, on whichever numbers."""
    return list(
        ctx.session.scalars(
            select(Offer).where(
                Offer.supporter_id == supporter.id, Offer.state == OfferState.PENDING
            )
        )
    )


def _offers_elsewhere(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """An answer sent to the hotline number: the supporter's pending offers on pool numbers
    (a saved contact, a reply in the wrong thread)."""
    if ctx.text.to != ctx.programme.hotline_number:
        return []
    return _pending_offers(ctx, supporter)


def _talking_elsewhere(ctx: Inbound, supporter: Supporter) -> list[Conversation]:
    """A DONE or RESOURCES sent to the hotline number: the supporter's live conversations on
    pool numbers (a saved contact for the line, a reply in the wrong thread)."""
    if ctx.text.to != ctx.programme.hotline_number:
        return []
    return list(
        ctx.session.scalars(
            select(Conversation).where(
                Conversation.supporter_id == supporter.id,
                Conversation.state == ConversationState.ACTIVE,
            )
        )
    )


def _lapsed_waiting(ctx: Inbound, supporter: Supporter, *, anywhere: bool) -> list[Offer]:
    """The supporter's lapsed or passed offers whose text request still waits, with nobody
    else offered it, newest first, one per request: those on the number texted, or with
    ``anywhere`` (a text to the hotline number or in a live conversation's thread) those on
    any number of theirs that is free again (no conversation or pending offer of theirs on
    it)."""
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
    if anywhere:
        live, mine = aliased(Conversation), aliased(Offer)
        talking_there = select(live.id).where(
            live.supporter_id == supporter.id,
            live.pool_number == Offer.pool_number,
            live.state == ConversationState.ACTIVE,
        )
        offered_there = select(mine.id).where(
            mine.supporter_id == supporter.id,
            mine.pool_number == Offer.pool_number,
            mine.state == OfferState.PENDING,
        )
        query = query.where(~talking_there.exists(), ~offered_there.exists())
    else:
        # No offer or conversation of theirs matched this number: it is free on their phone.
        query = query.where(Offer.pool_number == ctx.text.to)
    newest: dict[int, Offer] = {}
    for offer in ctx.session.scalars(query):
        newest.setdefault(offer.conversation_id, offer)
    return list(newest.values())


def _accept_late(ctx: Inbound, supporter: Supporter, *, anywhere: bool) -> None:
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
    waiting = _lapsed_waiting(ctx, supporter, anywhere=anywhere)
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
            offered = bool(_pending_offers(ctx, supporter))  # DONE would not free that one
            _answer_on(ctx, lapsed, wording.at_limit(supporter.max_conversations, offered))
            return
        if routing.accept(ctx.session, vault, p, lapsed, ctx.now, ctx.effects, late=True):
            return
    if lapsed is None or stopped:
        ctx.reply(wording.offer_gone())
    else:  # from the offer's number: in a live conversation's thread it read as that one's end
        _answer_on(ctx, lapsed, wording.offer_gone())


def _pass_too_late(ctx: Inbound, supporter: Supporter) -> str:
    """A PASS (or NO) on a number where nothing waits for it: what became of the request last
    offered to them there, as a PASS a moment sooner is told (_passed_meanwhile): gone on to
    another peer, or no longer open; nothing needs them. Else (their own conversation there
    ended, none was offered there, or an offer waits for them on another number, which this
    did not answer) an everyday "No", maybe meant for a clinician, is told nothing was passed
    on, and a PASS that nothing here waits for their answer."""
    last = None if _pending_offers(ctx, supporter) else _last_offer_here(ctx, supporter)
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


def _withdrawn_for_a_call(ctx: Inbound, supporter: Supporter) -> list[Offer]:
    """The supporter's offers withdrawn by a call of their clinician's still ringing, on the
    number texted (on any, texted to the hotline number). Read under the programme's lock,
    which the call's steps hold to end the ringing: what is read stays so until this text's
    answer commits."""
    routing.lock_programme(ctx.session, ctx.programme.id)
    anywhere = ctx.text.to == ctx.programme.hotline_number
    return ringing.withdrawn_for_a_call(
        ctx.session, supporter.id, None if anywhere else ctx.text.to
    )


def _answer_during_call(ctx: Inbound, offers: list[Offer], word: Word | None) -> None:
    """ACCEPT or PASS of an offer withdrawn by its clinician's call, while it rings: it stands
    for when the call ends. Passed, the request does not wait on her again if they hang up;
    accepted (claimed), it is hers then (ringing._reopen), unless a peer answers the call."""
    if len(offers) > 1:
        ctx.reply(wording.answer_where_offered())
        return
    offer = offers[0]
    claiming = word is Word.ACCEPT and ctx.session.get_one(Supporter, offer.supporter_id).active
    state = OfferState.CLAIMED if claiming else OfferState.PASSED
    routing.answer(ctx.session, offer, state, ctx.now, (OfferState.WITHDRAWN,))
    if claiming:
        _answer_on(ctx, offer, wording.accepted_during_call())
    else:  # off the roster since, an ACCEPT passes it, as _answer_offer does
        _answer_on(ctx, offer, wording.offer_gone() if word is Word.ACCEPT else wording.passed())


def _ringing(ctx: Inbound, offer: Offer) -> bool:
    """``offer`` is a ring: a call is ringing the supporter's phone for it right now."""
    ringing = select(Call.id).where(
        Call.conversation_id == offer.conversation_id, Call.state == CallState.RINGING
    )
    return bool(ctx.session.scalar(select(ringing.exists())))


def record_stop(ctx: Inbound, supporter: Supporter) -> None:
    """Their STOP to this number: the pair is kept blocked, as Twilio blocks it, and the
    roster shows it until a text to them goes through (reach.py); on a retired programme's
    number too (textline), for when it runs again."""
    record_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
    supporter.texts_refused_code, supporter.texts_refused_at = reach.STOPPED, ctx.now


def _supporter_stop(ctx: Inbound, supporter: Supporter) -> None:
    """Twilio now blocks this pool number to the supporter: pass on anything waiting there,
    and end a conversation on it (nothing relayed there would reach them any more); its
    clinician is told, with the next step and the crisis line. The roster shows it until a
    text to them goes through (reach.py)."""
    record_stop(ctx, supporter)
    offer = _pending_offer(ctx, supporter)
    if (
        offer is not None
        and not _ringing(ctx, offer)  # a ring goes on: Twilio blocks texts, not calls
        and routing.pass_on(ctx.session, ctx.programme, offer, ctx.now)
    ):
        _route_onwards(ctx, offer)
    conv = _live_conversation(ctx, supporter)
    if conv is not None:
        clinician = ctx.session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
        conversations.end_conversation(
            ctx.session, ctx.programme, conv, "peer_stop", ctx.now, ctx.effects
        )
        to = clinician_phone(ctx.services.vault, clinician) if clinician else None
        ctx.effects.text(to, ctx.programme.hotline_number, wording.peer_left(ctx.programme))


def _answer_offer(ctx: Inbound, offer: Offer, word: Word | None) -> None:
    """ACCEPT or PASS an offer (typed on its number, or elsewhere: see _answer_elsewhere). A
    supporter taken off the roster since the offer cannot take it: their ACCEPT passes it on,
    and they are told it has gone."""
    active = ctx.session.get_one(Supporter, offer.supporter_id).active
    if word is Word.ACCEPT and active:
        vault = ctx.services.vault
        if not routing.accept(ctx.session, vault, ctx.programme, offer, ctx.now, ctx.effects):
            _answer_on(ctx, offer, wording.offer_gone())
    elif word in (Word.ACCEPT, Word.PASS):
        passed = routing.pass_on(ctx.session, ctx.programme, offer, ctx.now)
        if word is Word.ACCEPT:
            _answer_on(ctx, offer, wording.offer_gone())
        elif passed:
            _answer_on(ctx, offer, wording.passed())
        else:  # answered a moment before: nothing of it waits for them now
            _answer_on(ctx, offer, _passed_meanwhile(offer))
        if passed:
            ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
            _route_onwards(ctx, offer)
    else:
        _answer_on(ctx, offer, wording.offer_reminder())


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


def _route_onwards(ctx: Inbound, offer: Offer) -> None:
    conv = ctx.session.get_one(Conversation, offer.conversation_id)
    if conv.state == ConversationState.QUEUED:
        routing.offer_or_fall_back(
            ctx.session, ctx.services.vault, ctx.programme, conv, ctx.now, ctx.effects
        )


def _in_conversation(ctx: Inbound, conv: Conversation, word: Word | None) -> None:
    clinician = ctx.session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
    to = clinician_phone(ctx.services.vault, clinician) if clinician else None
    hotline = ctx.programme.hotline_number
    if word is Word.DONE:
        conversations.end_conversation(
            ctx.session, ctx.programme, conv, "done", ctx.now, ctx.effects
        )
        for body in _closing_texts(ctx.programme):
            ctx.effects.text(to, hotline, body)
        ctx.reply(wording.done_for_supporter(bool(ctx.programme.checkin_offsets)))
    elif word is Word.RESOURCES:
        ctx.effects.text(to, hotline, ctx.programme.resources_text)
        ctx.reply(wording.resources_sent())
    elif _answers_an_offer(ctx):
        ctx.reply(wording.already_connected())
    else:
        conversations.touch_live(ctx.session, conv, ctx.now)
        ctx.relay(to, hotline)


def _closing_texts(p: ProgrammeConfig) -> list[str]:
    """One text if it fits; the closing and the resources apart if the programme's resources
    are so long that together they would pass Twilio's limit and lose the next step."""
    return routing.one_or_apart(
        wording.closing(p), wording.closing(p, with_resources=False), p.resources_text
    )
