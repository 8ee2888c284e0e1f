"""The text line: every inbound text, from a clinician or a supporter, gets a defined answer.

A clinician texts the programme's hotline number; a supporter texts the pool number a request
or conversation reached them on. Replies and relays go out in the webhook's own TwiML (the
returned TextReply); only follow-ups that happen later (time-outs, check-ins) use the REST API.

Here a text is told apart: a supporter's goes to supporterline.py, a clinician's to
clinicianline.py; a text to a retired programme's number, and a reply to the line's own alert
or notice, are answered here.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import clinicianline, events, fastrelay, noticereply, retention, supporterline, wording
from hotline.conversations import open_conversation
from hotline.db import is_sqlite, run_in_transaction
from hotline.effects import Effects, schedule
from hotline.inbound import Inbound
from hotline.keywords import Word, is_acknowledgement, read
from hotline.models import CheckIn, Notice, Programme, Supporter
from hotline.notices import last_sent_from
from hotline.people import (
    ALERT_CONTEXT,
    find_clinician,
    find_supporter,
    lift_opt_out,
    record_opt_out,
)
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.programmes import config_of, find_by_number, own_numbers
from hotline.services import Services
from hotline.texting import InboundText, TextReply

log = logging.getLogger(__name__)

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
        clinicianline.clinician_text(ctx)
    else:
        _to_a_pool_number(ctx)


def _line_closed(ctx: Inbound, to_hotline: bool) -> None:
    """A text to a retired programme's number, from anyone: the line has closed, where to turn
    instead. STOP and START are kept as ever (Twilio answers them itself), and FORGET to its
    hotline number erases the number as ever."""
    word = ctx.command.word if ctx.command is not None else None
    if word is Word.FORGET and to_hotline:
        clinicianline.forget(ctx)
    elif word is Word.STOP:
        _stop_to_a_closed_line(ctx, to_hotline)
        if ctx.command is not None and not ctx.command.bare:  # see clinicianline.clinician_text
            ctx.reply(wording.stopped())
    elif ctx.command is not None and ctx.command.opt_in:
        _lift_if_opted_in(ctx)
    else:
        clinicianline.say_closed(ctx)


def _stop_to_a_closed_line(ctx: Inbound, to_hotline: bool) -> None:
    """Kept as on a running line: a supporter's STOP there (to a pool number) shows on the
    roster too (supporterline.record_stop), anyone else's is the pair blocked."""
    supporter = find_supporter(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    # A STOP answers no reminder or code (noticereply.notice_answered reads Yes and No only).
    if supporter is not None and supporterline.is_supporter_text(ctx, supporter, to_hotline, None):
        supporterline.record_stop(ctx, supporter)
    else:
        record_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)


def _to_a_pool_number(ctx: Inbound) -> None:
    """A text to a pool number from someone not on its roster (a stranger given the number, a
    supporter's old phone, a renumbered programme's old hotline number saved on a phone): told
    where the line is. Their STOP is kept as anyone's, for Twilio blocks the pair for good:
    should they join the roster, nothing goes to them from that number (a code, an offer)
    until they text START, which lifts it as Twilio lifts its own."""
    if ctx.command is not None and ctx.command.word is Word.STOP:
        record_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
        if not ctx.command.bare:  # see clinicianline.clinician_text
            ctx.reply(wording.stopped())
        return
    _lift_if_opted_in(ctx)
    ctx.reply(wording.not_a_line(ctx.programme.hotline_number))


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
