"""The supporter's side of the text line: which texts are a supporter's, and what each is for:
a command (BREAK, BACK, HELP, STOP), an answer to an offer (offerreply.py), or a text, DONE or
RESOURCES in a conversation. A "Yes" or "No" to the line's own notices is noticereply.py's.

A supporter texts from their own phone to the pool number a request or conversation reached them
on; every reply goes back from that same number, so they always know which conversation it is.
"""

from __future__ import annotations

from sqlalchemy import select

from hotline import (
    claimreply,
    conversations,
    noticereply,
    offerreply,
    reach,
    routing,
    schedule,
    wording,
)
from hotline.conversations import open_conversation
from hotline.inbound import Inbound
from hotline.keywords import Word
from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    Notice,
    Supporter,
)
from hotline.people import (
    clinician_phone,
    find_clinician,
    lift_opt_out,
    record_opt_out,
)
from hotline.programmes import ProgrammeConfig
from hotline.wakeups import Task

SUPPORTER_WORDS = frozenset(
    {Word.ACCEPT, Word.PASS, Word.DONE, Word.RESOURCES, Word.BREAK, Word.BACK, Word.HELP}
)
COMMANDS = frozenset({Word.STOP, Word.START, Word.BREAK, Word.BACK, Word.HELP})


def is_supporter_text(
    ctx: Inbound, supporter: Supporter, to_hotline: bool, answers: Notice | None
) -> bool:
    """On a pool number a supporter is always a supporter; on the hotline number only when it
    is also their conversation's number or the text is a supporter command (a supporter who
    needs support themselves just texts in, like any clinician). ``answers``: the notice the
    text is a "Yes" or "No" to (noticereply.notice_answered)."""
    if not to_hotline:
        return True
    if _live_conversation(ctx, supporter) or offerreply.pending_offer(ctx, supporter):
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


def supporter_text(ctx: Inbound, supporter: Supporter, answers: Notice | None) -> None:
    """``answers``: the notice the text is a "Yes" or "No" to (noticereply.notice_answered)."""
    word = ctx.command.word if ctx.command else None
    if ctx.command is not None and ctx.command.opt_in:  # START, UNSTOP, YES: Twilio unblocked
        lift_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
    else:
        answer_where_heard(ctx, supporter)
    declined = noticereply.declines_a_shift(ctx, answers)
    if answers is not None:
        word = None  # a reply to the notice (an "ok", or a shift declined): no offer's answer
    if word in COMMANDS:
        _command(ctx, supporter, word)
    else:
        _answer(ctx, supporter, word, declined)


def answer_where_heard(ctx: Inbound, supporter: Supporter) -> None:
    """A text to a number she texted STOP to (a BREAK, HELP or BACK in the thread she had
    open): its answers go from another pool number she can hear (routing.number_heard), or
    from none once she has stopped them all; from that number Twilio refuses them (21610),
    and she never learnt whether her break began."""
    heard = routing.number_heard(
        ctx.session, ctx.services.vault, ctx.programme, supporter, ctx.text.to
    )
    ctx.stopped_here = heard != ctx.text.to
    if heard is None:
        ctx.unheard = True
    elif ctx.stopped_here:
        ctx.reply_from = heard


def _command(ctx: Inbound, supporter: Supporter, word: Word | None) -> None:
    """STOP, START, BREAK, BACK or HELP, wherever it is sent."""
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
        _come_back(ctx, supporter)
    elif word is Word.HELP:
        ctx.reply(wording.supporter_help())


def _answer(ctx: Inbound, supporter: Supporter, word: Word | None, declined: bool) -> None:
    """Any other text: an answer to an offer (offerreply.py), a text in a conversation, or a
    word about one gone. ``declined``: a "No" to a shift reminder (noticereply)."""
    if (offer := offerreply.pending_offer(ctx, supporter)) is not None:
        if offerreply.is_ringing(ctx, offer):  # a live caller waits: the answer is the phone
            ctx.reply(wording.ringing_now())
        else:
            offerreply.answer_offer(ctx, offer, word)
    elif (conv := _live_conversation(ctx, supporter)) is not None:
        _in_thread(ctx, supporter, conv, word)
    elif word in (Word.ACCEPT, Word.PASS) and (
        elsewhere := offerreply.offers_elsewhere(ctx, supporter)
    ):
        offerreply.answer_elsewhere(ctx, elsewhere, word)
    elif word in (Word.DONE, Word.RESOURCES) and (talking := _talking_elsewhere(ctx, supporter)):
        if len(talking) == 1:
            _in_conversation(ctx, talking[0], word)
        else:
            ctx.reply(wording.answer_where_talking())
    elif word in (Word.ACCEPT, Word.PASS) and (
        called := offerreply.withdrawn_for_a_call(ctx, supporter)
    ):
        offerreply.answer_during_call(ctx, called, word)
    elif word in (Word.ACCEPT, Word.PASS) and (
        claims := claimreply.claims_reopened(ctx, supporter)
    ):
        # the caller hung up; the job not yet run
        claimreply.answer_claim(ctx, supporter, claims, word)
    elif word in (Word.ACCEPT, Word.PASS) and (taken := _live_conversation(ctx, supporter)):
        _in_thread(ctx, supporter, taken, word)  # her claim, taken by its job as this waited
    elif word in (Word.ACCEPT, Word.PASS) and (again := offerreply.offered_again(ctx, supporter)):
        offerreply.answer_elsewhere(ctx, again, word)
    elif word is Word.ACCEPT:
        anywhere = ctx.text.to == ctx.programme.hotline_number
        offerreply.accept_late(ctx, supporter, anywhere=anywhere)
    elif declined:
        ctx.reply(wording.shift_declined(ctx.programme))
    elif word in (None, Word.PASS) and (
        lapsed := offerreply.lapsed_waiting(ctx, supporter, anywhere=False)
    ):
        # Their offer on this number lapsed, and the request still waits with nobody.
        answer = wording.passed() if word is Word.PASS else None
        ctx.reply(answer or offerreply.lapsed_reminder(ctx, lapsed[0]))
    elif word is Word.PASS:
        ctx.reply(offerreply.pass_too_late(ctx, supporter))
    else:
        ctx.reply(wording.conversation_ended())


def _in_thread(ctx: Inbound, supporter: Supporter, conv: Conversation, word: Word | None) -> None:
    """A text in a live conversation's thread: that conversation's, unless it is an ACCEPT or
    a PASS meant for an offer."""
    answers_an_offer = offerreply.answers_an_offer(ctx)
    if answers_an_offer and (elsewhere := offerreply.pending_offers(ctx, supporter)):
        offerreply.answer_elsewhere(ctx, elsewhere, word)  # typed in this thread, meant for it
    elif (
        word is Word.ACCEPT
        and answers_an_offer
        and offerreply.lapsed_waiting(ctx, supporter, anywhere=True)
    ):
        offerreply.accept_late(ctx, supporter, anywhere=True)  # that offer lapsed; it still waits
    else:
        _in_conversation(ctx, conv, word)


def _come_back(ctx: Inbound, supporter: Supporter) -> None:
    """BACK: the break is over, and what waits is offered now."""
    # The programme's lock before the supporter's row, as offer-making takes them (a sweep
    # offering her a request meanwhile deadlocked with BACK otherwise).
    routing.lock_programme(ctx.session, ctx.programme.id)
    supporter.break_until = None
    on_call = supporter.id in schedule.on_call(ctx.session, ctx.programme.id, ctx.now)
    ctx.reply(wording.back(on_call))
    conversations.offer_waiting(
        ctx.services, ctx.session, ctx.programme, ctx.now, ctx.effects, in_a_reply=True
    )


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
    offers = offerreply.pending_offers(ctx, supporter)
    waiting = [offer for offer in offers if not offerreply.is_ringing(ctx, offer)]
    passed = [o for o in waiting if routing.pass_on(ctx.session, ctx.programme, o, ctx.now)]
    ctx.reply(wording.on_break(supporter.break_until, ctx.programme.zone, len(passed)))
    for offer in passed:
        ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
        if len(ctx.effects.texts) + routing.ONWARD_TEXTS <= routing.TEXTS_IN_A_REPLY:
            offerreply.route_onwards(ctx, offer)
        else:
            ctx.effects.wake(Task.OFFER_CALL_BACK, offer.conversation_id)


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
    offer = offerreply.pending_offer(ctx, supporter)
    if (
        offer is not None
        and not offerreply.is_ringing(ctx, offer)  # a ring goes on: Twilio blocks texts only
        and routing.pass_on(ctx.session, ctx.programme, offer, ctx.now)
    ):
        offerreply.route_onwards(ctx, offer)
    conv = _live_conversation(ctx, supporter)
    if conv is not None:
        clinician = ctx.session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
        conversations.end_conversation(
            ctx.session, ctx.programme, conv, "peer_stop", ctx.now, ctx.effects
        )
        to = clinician_phone(ctx.services.vault, clinician) if clinician else None
        ctx.effects.text(to, ctx.programme.hotline_number, wording.peer_left(ctx.programme))


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
    elif offerreply.answers_an_offer(ctx):
        ctx.reply(wording.nothing_to_answer_here())
    else:
        conversations.touch_live(ctx.session, conv, ctx.now)
        ctx.relay(to, hotline)


def _closing_texts(p: ProgrammeConfig) -> list[str]:
    """One text if it fits; the closing and the resources apart if the programme's resources
    are so long that together they would pass Twilio's limit and lose the next step."""
    return routing.one_or_apart(
        wording.closing(p), wording.closing(p, with_resources=False), p.resources_text
    )
