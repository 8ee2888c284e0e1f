"""The text line: every inbound text, from a clinician or a supporter, gets a defined answer.

A clinician texts the programme's hotline number; a supporter texts the pool number a request
or conversation reached them on. Replies and relays go out in the webhook's own TwiML (the
returned TextReply); only follow-ups that happen later (time-outs, check-ins) use the REST API.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import (
    checkins,
    events,
    fastrelay,
    noticereply,
    retention,
    retirement,
    routing,
    supporterline,
    wording,
)
from hotline.conversations import (
    end_conversation,
    open_conversation,
    open_conversations,
    touch_live,
)
from hotline.db import is_sqlite, run_in_transaction
from hotline.effects import Effects, schedule
from hotline.inbound import Inbound
from hotline.keywords import Word, is_acknowledgement, read
from hotline.models import (
    Channel,
    CheckIn,
    Clinician,
    Conversation,
    ConversationState,
    Notice,
    OfferState,
    Programme,
    Supporter,
)
from hotline.notices import last_sent_from
from hotline.people import (
    ALERT_CONTEXT,
    find_clinician,
    find_supporter,
    get_or_create_clinician,
    lift_opt_out,
    record_opt_out,
    supporter_phone,
)
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.programmes import config_of, find_by_number, own_numbers
from hotline.schedule import next_coverage
from hotline.services import Services
from hotline.texting import InboundText, OutboundText, TextReply
from hotline.wakeups import Task

log = logging.getLogger(__name__)

STILL_WAITING_AFTER = timedelta(minutes=10)
# A peer's words: from the coordinator's alert phone, answers to an alert ("Done 👍", "Yes").
PEER_WORDS = frozenset({Word.ACCEPT, Word.PASS, Word.DONE, Word.RESOURCES, Word.BACK, Word.BREAK})


def handle_text(services: Services, inbound: InboundText) -> TextReply:
    """Handle one inbound text exactly once (a repeated MessageSid gets an empty answer)."""
    engine = services.sessions.kw["bind"]
    # On PostgreSQL a relay in a live conversation takes one statement (fastrelay.py).
    relayed = None if is_sqlite(engine) else fastrelay.relay(services, engine, inbound)
    if relayed is not None:
        return relayed

    def attempt(session: Session) -> Effects:
        effects = Effects()  # a retried attempt starts with nothing decided
        _dispatch(services, session, inbound, effects)
        return effects

    effects = run_in_transaction(services.sessions, attempt)
    schedule(services, effects)
    return TextReply(tuple(effects.texts))


def _dispatch(services: Services, session: Session, text: InboundText, effects: Effects) -> None:
    now = services.clock()
    # First: a text ignored below (to a number no longer ours, from one we cannot read, a loop)
    # is still a record at Twilio with its body in it (idempotent for a repeated delivery).
    retention.queue_deletion(session, text.sid, now + retention.INBOUND_DELETE_DELAY, effects)
    match = find_by_number(session, _safe_number(text.to) or "")
    sender = _safe_number(text.from_)
    if match is None or sender is None:
        log.info("ignored text %s: unknown destination or unusable sender", text.sid)
        return
    if sender in own_numbers(session):
        log.warning("ignored text %s from one of our own numbers (loop guard)", text.sid)
        return
    if not events.claim(session, f"sms:{text.sid}"):
        log.info("duplicate delivery of %s ignored", text.sid)
        return
    p = config_of(match.programme, services.settings)
    services.crisis_texts[text.to] = p.crisis_text
    command = read(text.body, text.opt_out_type)
    ctx = Inbound(services, session, p, sender, text, command, now, effects)
    if p.retired:
        _line_closed(ctx, match.is_hotline)
        return
    supporter = find_supporter(session, services.vault, p.id, sender)
    answers = noticereply.notice_answered(ctx, supporter) if supporter is not None else None
    if supporter is not None and supporterline.is_supporter_text(
        ctx, supporter, match.is_hotline, answers
    ):
        supporterline.supporter_text(ctx, supporter, answers)
    elif match.is_hotline and _answering_an_alert(ctx, match.programme):
        _lift_if_opted_in(ctx)
        ctx.reply(wording.alert_phone_answer(p))
    elif (
        match.is_hotline and supporter is not None and _answering_a_notice(ctx, supporter, answers)
    ):
        _lift_if_opted_in(ctx)
        declined = noticereply.declines_a_shift(ctx, answers)
        ctx.reply(wording.shift_declined(p) if declined else wording.notice_answer(p))
    elif match.is_hotline:
        _clinician_text(ctx)
    else:
        ctx.reply(wording.not_a_line(p.hotline_number))


def _line_closed(ctx: Inbound, to_hotline: bool) -> None:
    """A text to a retired programme's number, from anyone: the line has closed, where to turn
    instead. STOP and START are kept as ever (Twilio answers them itself), and FORGET to its
    hotline number erases the number as ever."""
    word = ctx.command.word if ctx.command is not None else None
    if word is Word.FORGET and to_hotline:
        _clinician_forget(ctx)
    elif word is Word.STOP:
        _stop_to_a_closed_line(ctx, to_hotline)
        if ctx.command is not None and not ctx.command.bare:  # as _clinician_text says why
            ctx.reply(wording.stopped())
    elif ctx.command is not None and ctx.command.opt_in:
        _lift_if_opted_in(ctx)
    else:
        _say_closed(ctx)


def _stop_to_a_closed_line(ctx: Inbound, to_hotline: bool) -> None:
    """Kept as on a running line: a supporter's STOP there (to a pool number) shows on the
    roster too (supporterline.record_stop), anyone else's is the pair blocked."""
    supporter = find_supporter(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    # A STOP answers no reminder or code (noticereply.notice_answered reads Yes and No only).
    if supporter is not None and supporterline.is_supporter_text(ctx, supporter, to_hotline, None):
        supporterline.record_stop(ctx, supporter)
    else:
        record_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)


def _say_closed(ctx: Inbound) -> None:
    """The line has closed, where to turn instead: one text if it fits, else the programme's
    long resources apart (joined, they would pass Twilio's limit and lose the crisis sentence
    at the end)."""
    for body in routing.line_closed(ctx.programme):
        ctx.reply(body)


def _lift_if_opted_in(ctx: Inbound) -> None:
    if ctx.command is not None and ctx.command.opt_in:  # "yes": Twilio lifted its block
        lift_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)


def _answering_an_alert(ctx: Inbound, programme: Programme) -> bool:
    """The coordinator's alert phone writing to the line: a reply to an alert ("ok"), not a
    request for support, which they ask for by texting SUPPORT (``Word.SUPPORT``). A clinician's
    keywords, and a conversation of their own already open, go on as anyone's; a peer's words
    ("Done 👍", "Yes") answer the alert too."""
    sealed = programme.alert_phone_sealed
    if sealed is None or (ctx.command is not None and ctx.command.word not in PEER_WORDS):
        return False
    if ctx.services.vault.open(sealed, ALERT_CONTEXT) != ctx.sender:
        return False
    clinician = find_clinician(ctx.session, ctx.services.vault, programme.id, ctx.sender)
    return clinician is None or open_conversation(ctx.session, clinician) is None


def _answering_a_notice(ctx: Inbound, supporter: Supporter, answers: Notice | None) -> bool:
    """A supporter's "Thanks!" to a shift reminder or a code the line texted them from the
    hotline number in the last hour (a pool that includes it, the default of one number), sent
    to that number (one from another pool number is not answered here): not a request for
    support, which they ask for by texting SUPPORT, and no peer is offered it; nor is their
    "Yes" or "No" to it (``answers``: noticereply.notice_answered; a "No" to a reminder is
    told how to get cover). Other commands, and a conversation of their own already open, go
    on as anyone's; so does an answer to a check-in sent them since (supported here
    themselves): the text they got last is the one they answer, and its reply reaches their
    peer."""
    if ctx.command is not None and ctx.command.word not in PEER_WORDS:
        return False
    if ctx.command is None and not is_acknowledgement(ctx.text.body):
        return False  # "I'm not OK": a supporter writing for herself is answered as anyone
    noticed_at = (  # a "Yes" or "No": its notice is read already
        answers.sent_at
        if answers is not None
        else last_sent_from(ctx.session, supporter.id, ctx.text.to, ctx.now)
    )
    if noticed_at is None:
        return False
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is None:
        return True
    checked_in = select(CheckIn.id).where(
        CheckIn.clinician_id == clinician.id, CheckIn.sent_at >= noticed_at
    )
    if ctx.session.scalar(select(checked_in.exists())) is True:
        return False
    return open_conversation(ctx.session, clinician) is None


def _safe_number(raw: str) -> str | None:
    try:
        return normalize(raw)
    except InvalidPhoneNumber:
        return None


def _clinician_text(ctx: Inbound) -> None:
    word = ctx.command.word if ctx.command else None
    vault, pid, hotline = ctx.services.vault, ctx.programme.id, ctx.programme.hotline_number
    if word is Word.STOP:
        record_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
        _clinician_stop(ctx)
        if ctx.command is not None and not ctx.command.bare:
            # Twilio answers the bare opt-out words itself (and refuses this reply to a pair it
            # has blocked); with punctuation it may have seen an ordinary text: say it is done.
            ctx.reply(wording.stopped())
        return
    if word is Word.START:
        lift_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
        return  # and the opt-in words
    if word is Word.HELP:
        ctx.reply(wording.clinician_help(ctx.programme))
        _help_to_the_peer(ctx)
        return
    if word is Word.FORGET:
        _clinician_forget(ctx)
        return
    clinician = find_clinician(ctx.session, vault, pid, ctx.sender)
    if clinician is None:
        # A first text: the programme's lock before the new row, so the rest of a burst sent
        # with it queue behind it on that lock in the order they came. Waiting on the new row's
        # unique key instead, they were all woken at once as it committed, and were held for
        # the peer in whatever order they then ran.
        routing.lock_programme(ctx.session, pid)
        clinician = get_or_create_clinician(ctx.session, vault, pid, ctx.sender)
    if ctx.command is not None and ctx.command.opt_in:  # "yes": Twilio lifted its block
        lift_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
    if word is Word.NOCHECKIN and not _answering_the_peer(ctx, clinician):
        clinician.last_contact_at = ctx.now
        clinician.checkins_declined = True
        checkins.cancel_pending(ctx.session, clinician.id, ctx.effects)
        ctx.reply(wording.checkins_declined())
        return
    conv = open_conversation(ctx.session, clinician)
    if conv is None:
        # Two first texts at once from a returning clinician (their row exists, so inserting it
        # serialises nothing): under the programme's lock, look again, so one request opens.
        routing.lock_programme(ctx.session, pid)
        conv = open_conversation(ctx.session, clinician)
    if conv is None or conv.state == ConversationState.ACTIVE:
        # Written here, not before: a waiting request's text takes the programme's lock first
        # (see _queue_text and the field asked for below), as an ACCEPT does, and its clinician
        # row only after.
        clinician.last_contact_at = ctx.now
    if conv is None:
        _start_conversation(ctx, clinician)
    elif conv.state == ConversationState.ACTIVE:
        _clinician_relay(ctx, conv)
    elif word is Word.DISCIPLINE:
        assert ctx.command is not None and ctx.command.discipline is not None
        routing.lock_programme(ctx.session, pid)
        clinician.last_contact_at = ctx.now
        conv.discipline_wanted = ctx.command.discipline
        ctx.reply(wording.discipline_noted(ctx.command.discipline))
        _offer_to_field(ctx, conv)
    else:
        _queue_text(ctx, conv, clinician)


def _answering_the_peer(ctx: Inbound, clinician: Clinician) -> bool:
    """A phrase ("No check-in.") written to a peer the clinician is talking with: an answer to
    them ("Did anyone check in on you?"), relayed as a field's word is there; the one word
    NOCHECKIN is not. Taken by the line, it never reached the peer, who waited for it."""
    if ctx.command is None or not ctx.command.phrase:
        return False
    return _talking(ctx, clinician) is not None


def _talking(ctx: Inbound, clinician: Clinician) -> Conversation | None:
    """The clinician's live conversation with a peer, if they are in one now."""
    conv = open_conversation(ctx.session, clinician)
    return conv if conv is not None and conv.state == ConversationState.ACTIVE else None


def _start_conversation(ctx: Inbound, clinician: Clinician) -> None:
    """A new request, under the programme's lock (the caller's)."""
    if retirement.retired_now(ctx.session, ctx.programme.id):  # as this text waited on the lock
        _say_closed(ctx)
        return
    discipline = ctx.command.discipline if ctx.command else None
    checkins.note_reply(ctx.session, clinician.id, ctx.now)
    conv = Conversation(
        programme_id=ctx.programme.id,
        clinician_id=clinician.id,
        channel="sms",
        discipline_wanted=discipline,
        created_at=ctx.now,
        last_activity_at=ctx.now,
    )
    ctx.session.add(conv)
    ctx.session.flush()
    answer_at = len(ctx.effects.texts)
    offer = routing.offer_or_fall_back(
        ctx.session, ctx.services.vault, ctx.programme, conv, ctx.now, ctx.effects, first_text=True
    )
    if offer is not None:  # else the fallback carried the greeting
        # First in the TwiML reply, ahead of the offer to the peer, as Twilio sends in order.
        greeting = OutboundText(ctx.sender, ctx.text.to, wording.greeting(ctx.programme))
        ctx.effects.texts.insert(answer_at, greeting)
    if discipline is None:
        _hold(ctx, conv)


def _queue_text(ctx: Inbound, conv: Conversation, clinician: Clinician) -> None:
    """Another text while waiting: hold it, and try again to reach someone if nobody has it.
    Once STILL_WAITING_AFTER has passed since they were last told anything (greeted, told
    nobody is free, or this), the clinician hears again, with the crisis line, that a peer is
    still being reached, or that nobody can take it yet: never silence.

    The conversation is read again, whole, under its row lock first (after the programme's,
    the order offer-making takes them): a peer's ACCEPT committing meanwhile has relayed what
    was held, and a text held now would never reach them; a text of the same burst that took
    the lock first has told the clinician (``reminded_at``), and this one must not again.
    One that ended meanwhile may have left another open: a hang-up reopens the request its
    call replaced, a call's menu replaces this one; the text goes on with that."""
    routing.lock_programme(ctx.session, ctx.programme.id)
    ctx.session.refresh(conv, with_for_update={"key_share": True})
    clinician.last_contact_at = ctx.now
    if conv.state == ConversationState.ENDED and (
        now_open := open_conversation(ctx.session, clinician)
    ):
        conv = now_open
        ctx.session.refresh(conv, with_for_update={"key_share": True})
    if conv.state != ConversationState.QUEUED:
        if conv.state == ConversationState.ACTIVE:
            _clinician_relay(ctx, conv)
        else:  # closed meanwhile, nothing open since: a new request
            _start_conversation(ctx, clinician)
        return
    _hold(ctx, conv)
    conv.last_activity_at = ctx.now
    # The later of the two: a peer still being reached can be said before nobody is free.
    told = max((t for t in (conv.reminded_at, conv.fallback_at) if t is not None), default=None)
    vault, p = ctx.services.vault, ctx.programme
    offer = routing.pending_offer(ctx.session, conv) or routing.offer_or_fall_back(
        ctx.session, vault, p, conv, ctx.now, ctx.effects
    )
    if offer is not None and offer.state == OfferState.ACCEPTED:
        return  # taken by the peer who claimed it as a call replaced it (routing.take_claimed)
    if ctx.now - (told or conv.created_at) < STILL_WAITING_AFTER:
        return
    if offer is not None:  # a peer is being asked (offers go from one to the next meanwhile)
        conv.reminded_at = ctx.now
        ctx.reply(wording.still_finding(p))
    elif told is not None:
        conv.reminded_at = ctx.now
        next_on = next_coverage(ctx.session, p.id, ctx.now)
        ctx.reply(wording.still_waiting(p, next_on, ctx.now))


def _offer_to_field(ctx: Inbound, conv: Conversation) -> None:
    """The field asked for after the first offer went out (the greeting invites it): a text
    request offered to a peer of another field, not yet answered, goes to a peer of the field
    asked for who is free now (that peer is told it has gone); with none free, it stays.
    Under the programme's lock (the caller's)."""
    wanted = conv.discipline_wanted
    offer = routing.pending_offer(ctx.session, conv)
    if offer is None or conv.channel != Channel.SMS:
        return  # the next offer looks for the field first; a call rings, a peer picks up
    offered = ctx.session.get_one(Supporter, offer.supporter_id)
    vault, p = ctx.services.vault, ctx.programme
    found = routing.candidates(ctx.session, vault, p, conv, ctx.now)
    if offered.discipline == wanted or not found or found[0].supporter.discipline != wanted:
        return
    if not routing.answer(ctx.session, offer, OfferState.WITHDRAWN, ctx.now):
        return  # answered meanwhile
    ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
    ctx.effects.text(supporter_phone(vault, offered), offer.pool_number, wording.offer_gone())
    routing.offer_next(ctx.session, vault, p, conv, ctx.now, ctx.effects)


def _hold(ctx: Inbound, conv: Conversation) -> None:
    routing.hold_text(ctx.session, ctx.services.vault, conv, wording.truncate(ctx.text.body))
    if ctx.text.num_media:
        ctx.reply(wording.media_not_relayed())


def _help_to_the_peer(ctx: Inbound) -> None:
    """HELP inside a live conversation may be a cry to the peer as much as a question about
    the line: the peer reads it too (the clinician has the line's answer and the crisis line)."""
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is None:
        return
    if (conv := _talking(ctx, clinician)) is not None:
        clinician.last_contact_at = ctx.now
        _clinician_relay(ctx, conv)


def _clinician_relay(ctx: Inbound, conv: Conversation) -> None:
    touch_live(ctx.session, conv, ctx.now)  # the conversation's row lock: see texts_waiting
    if routing.texts_waiting(ctx.session, conv.id, ctx.now):
        _hold(ctx, conv)  # behind the held texts, in order (hotline/held.py sends them all)
        ctx.effects.wake(Task.RELAY_HELD, conv.id)
        return
    supporter = ctx.session.get_one(Supporter, conv.supporter_id)
    assert conv.pool_number is not None
    ctx.relay(supporter_phone(ctx.services.vault, supporter), conv.pool_number)


def _clinician_stop(ctx: Inbound) -> None:
    """STOP ends any open conversation (the supporter is told) and every follow-up."""
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is None:
        return
    checkins.cancel_pending(ctx.session, clinician.id, ctx.effects)
    for conv in open_conversations(ctx.session, clinician):  # a call-back waiting too
        if conv.state == ConversationState.ACTIVE and conv.supporter_id and conv.pool_number:
            supporter = ctx.session.get_one(Supporter, conv.supporter_id)
            ctx.effects.text(
                supporter_phone(ctx.services.vault, supporter),
                conv.pool_number,
                wording.ended_by_clinician(),
            )
        end_conversation(ctx.session, ctx.programme, conv, "stop", ctx.now, ctx.effects)


def _clinician_forget(ctx: Inbound) -> None:
    """FORGET: end everything and erase the clinician's number now; confirm in this reply."""
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is not None:
        _clinician_stop(ctx)
        retention.forget(ctx.session, clinician)
    # Under every data key, and with no clinician row (a STOP from someone who never wrote).
    retention.forget_opt_outs(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    ctx.reply(wording.forgotten(ctx.programme.retired))
