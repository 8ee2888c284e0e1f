"""The text line: every inbound text, from a clinician or a supporter, gets a defined answer.

A clinician texts the programme's hotline number; a supporter texts the pool number a request
or conversation reached them on. Replies and relays go out in the webhook's own TwiML (the
returned TextReply); only follow-ups that happen later (time-outs, check-ins) use the REST API.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hotline import checkins, events, retention, routing, wording
from hotline.db import run_in_transaction, transaction
from hotline.effects import Effects, schedule
from hotline.keywords import Command, Word, parse
from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
    Supporter,
)
from hotline.people import (
    clinician_phone,
    find_clinician,
    find_supporter,
    get_or_create_clinician,
    lift_opt_out,
    record_opt_out,
    supporter_phone,
)
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.programmes import ProgrammeConfig, config_of, find_by_number, own_numbers
from hotline.services import Services
from hotline.texting import InboundText, StatusReport, TextReply
from hotline.wakeups import Task

log = logging.getLogger(__name__)

OPEN = (ConversationState.QUEUED, ConversationState.ACTIVE)
FOLLOWED_UP = ("done", "inactive")
INBOUND_DELETE_DELAY = timedelta(minutes=2)  # the record must be final before Twilio deletes it
SUPPORTER_WORDS = frozenset(
    {Word.ACCEPT, Word.PASS, Word.DONE, Word.RESOURCES, Word.BREAK, Word.BACK, Word.HELP}
)


@dataclass
class Inbound:
    """One inbound text being handled inside its transaction."""

    services: Services
    session: Session
    programme: ProgrammeConfig
    sender: str  # the sender's number, E.164
    text: InboundText
    command: Command | None
    now: datetime
    effects: Effects

    def reply(self, body: str) -> None:
        """Answer the sender from the number they wrote to."""
        self.effects.text(self.sender, self.text.to, body)


def handle_text(services: Services, inbound: InboundText) -> TextReply:
    """Handle one inbound text exactly once (a repeated MessageSid gets an empty answer)."""

    def attempt(session: Session) -> Effects:
        effects = Effects()  # a retried attempt starts with nothing decided
        _dispatch(services, session, inbound, effects)
        return effects

    effects = run_in_transaction(services.sessions, attempt)
    schedule(services, effects)
    return TextReply(tuple(effects.texts))


def _dispatch(services: Services, session: Session, text: InboundText, effects: Effects) -> None:
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
    now = services.clock()
    retention.queue_deletion(session, text.sid, now + INBOUND_DELETE_DELAY, effects)
    p = config_of(match.programme, services.settings)
    ctx = Inbound(services, session, p, sender, text, parse(text.body), now, effects)
    supporter = find_supporter(session, services.vault, p.id, sender)
    if supporter is not None and _is_supporter_text(ctx, supporter, match.is_hotline):
        _supporter_text(ctx, supporter)
    elif match.is_hotline:
        _clinician_text(ctx)
    else:
        ctx.reply(wording.not_a_line(p.hotline_number))


def _safe_number(raw: str) -> str | None:
    try:
        return normalize(raw)
    except InvalidPhoneNumber:
        return None


def _is_supporter_text(ctx: Inbound, supporter: Supporter, to_hotline: bool) -> bool:
    """On a pool number a supporter is always a supporter; on the hotline number only when it
    is also their conversation's number or the text is a supporter command (a supporter who
    needs support themselves just texts in, like any clinician)."""
    if not to_hotline:
        return True
    if _live_conversation(ctx, supporter) or _pending_offer(ctx, supporter):
        return True
    return ctx.command is not None and ctx.command.word in SUPPORTER_WORDS


# --- supporters ------------------------------------------------------------------------------


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


def _supporter_text(ctx: Inbound, supporter: Supporter) -> None:
    word = ctx.command.word if ctx.command else None
    if word is Word.STOP:
        _supporter_stop(ctx, supporter)
    elif ctx.command is not None and ctx.command.opt_in and word is not Word.ACCEPT:
        lift_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
    elif word is Word.BREAK:
        assert ctx.command is not None and ctx.command.duration is not None
        supporter.break_until = ctx.now + ctx.command.duration
        ctx.reply(wording.on_break(supporter.break_until, ctx.programme.zone))
    elif word is Word.BACK:
        supporter.break_until = None
        ctx.reply(wording.back())
        offer_waiting(ctx.services, ctx.session, ctx.programme, ctx.now, ctx.effects)
    elif word is Word.HELP:
        ctx.reply(wording.supporter_help())
    elif (offer := _pending_offer(ctx, supporter)) is not None:
        _answer_offer(ctx, offer, word)
    elif (conv := _live_conversation(ctx, supporter)) is not None:
        _in_conversation(ctx, conv, word)
    elif word is Word.ACCEPT:
        ctx.reply(wording.offer_gone())
    else:
        ctx.reply(wording.conversation_ended())


def _supporter_stop(ctx: Inbound, supporter: Supporter) -> None:
    """Twilio now blocks this pool number to the supporter: pass on anything waiting there."""
    record_opt_out(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender, ctx.text.to)
    offer = _pending_offer(ctx, supporter)
    if offer is not None and routing.answer(ctx.session, offer, OfferState.PASSED, ctx.now):
        _route_onwards(ctx, offer)


def _answer_offer(ctx: Inbound, offer: Offer, word: Word | None) -> None:
    if word is Word.ACCEPT:
        vault = ctx.services.vault
        if not routing.accept(ctx.session, vault, ctx.programme, offer, ctx.now, ctx.effects):
            ctx.reply(wording.offer_gone())
    elif word is Word.PASS:
        if routing.answer(ctx.session, offer, OfferState.PASSED, ctx.now):
            ctx.effects.cancel(Task.EXPIRE_OFFER, offer.id)
            ctx.reply(wording.passed())
            _route_onwards(ctx, offer)
    else:
        ctx.reply(wording.offer_reminder())


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
        end_conversation(ctx.session, ctx.programme, conv, "done", ctx.now, ctx.effects)
        ctx.effects.text(to, hotline, wording.closing(ctx.programme))
        ctx.reply(wording.done_for_supporter())
    elif word is Word.RESOURCES:
        ctx.effects.text(to, hotline, ctx.programme.resources_text)
        ctx.reply(wording.resources_sent())
    elif word in (Word.ACCEPT, Word.PASS):
        ctx.reply(wording.already_connected())
    else:
        conv.last_activity_at = ctx.now
        _relay(ctx, to, hotline)


def _relay(ctx: Inbound, to: str | None, from_: str) -> None:
    if ctx.text.body.strip():
        ctx.effects.text(to, from_, wording.truncate(ctx.text.body))
    if ctx.text.num_media:
        ctx.reply(wording.media_not_relayed())


# --- clinicians ------------------------------------------------------------------------------


def _clinician_text(ctx: Inbound) -> None:
    word = ctx.command.word if ctx.command else None
    vault, pid, hotline = ctx.services.vault, ctx.programme.id, ctx.programme.hotline_number
    if word is Word.STOP:
        record_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
        _clinician_stop(ctx)
        return  # Twilio answers the opt-out words itself
    if word is Word.START:
        lift_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
        return  # and the opt-in words
    if word is Word.HELP:
        ctx.reply(wording.clinician_help(ctx.programme))
        return
    if word is Word.FORGET:
        _clinician_forget(ctx)
        return
    clinician = get_or_create_clinician(ctx.session, vault, pid, ctx.sender)
    clinician.last_contact_at = ctx.now
    if ctx.command is not None and ctx.command.opt_in:  # "yes": Twilio lifted its block
        lift_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
    if word is Word.NOCHECKIN:
        clinician.checkins_declined = True
        checkins.cancel_pending(ctx.session, clinician.id, ctx.effects)
        ctx.reply(wording.checkins_declined())
        return
    conv = _open_conversation(ctx.session, clinician)
    if conv is None:
        _start_conversation(ctx, clinician)
    elif conv.state == ConversationState.ACTIVE:
        _clinician_relay(ctx, conv)
    elif word is Word.DISCIPLINE:
        assert ctx.command is not None and ctx.command.discipline is not None
        conv.discipline_wanted = ctx.command.discipline
        ctx.reply(wording.discipline_noted(ctx.command.discipline))
    else:
        _queue_text(ctx, conv)


def _open_conversation(session: Session, clinician: Clinician) -> Conversation | None:
    return session.scalar(
        select(Conversation)
        .where(Conversation.clinician_id == clinician.id, Conversation.state.in_(OPEN))
        .order_by(Conversation.id.desc())
        .limit(1)
    )


def _start_conversation(ctx: Inbound, clinician: Clinician) -> None:
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
    ctx.reply(wording.greeting(ctx.programme))
    if discipline is None:
        _hold(ctx, conv)
    routing.offer_or_fall_back(
        ctx.session, ctx.services.vault, ctx.programme, conv, ctx.now, ctx.effects
    )


def _queue_text(ctx: Inbound, conv: Conversation) -> None:
    """Another text while waiting: hold it, and try again to reach someone if nobody has it."""
    _hold(ctx, conv)
    conv.last_activity_at = ctx.now
    if routing.pending_offer(ctx.session, conv) is None:
        routing.offer_next(
            ctx.session, ctx.services.vault, ctx.programme, conv, ctx.now, ctx.effects
        )


def _hold(ctx: Inbound, conv: Conversation) -> None:
    routing.hold_text(ctx.session, ctx.services.vault, conv, wording.truncate(ctx.text.body))
    if ctx.text.num_media:
        ctx.reply(wording.media_not_relayed())


def _clinician_relay(ctx: Inbound, conv: Conversation) -> None:
    conv.last_activity_at = ctx.now
    supporter = ctx.session.get_one(Supporter, conv.supporter_id)
    assert conv.pool_number is not None
    _relay(ctx, supporter_phone(ctx.services.vault, supporter), conv.pool_number)


def _clinician_stop(ctx: Inbound) -> None:
    """STOP ends any open conversation (the supporter is told) and every follow-up."""
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is None:
        return
    checkins.cancel_pending(ctx.session, clinician.id, ctx.effects)
    conv = _open_conversation(ctx.session, clinician)
    if conv is not None:
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
    ctx.reply(wording.forgotten())


# --- shared ----------------------------------------------------------------------------------


def end_conversation(
    session: Session,
    p: ProgrammeConfig,
    conv: Conversation,
    reason: str,
    now: datetime,
    effects: Effects,
) -> None:
    """Close ``conv``: pending offers withdrawn, held texts deleted, and, when it ended
    normally (DONE or inactivity, not STOP), the follow-up check-ins scheduled."""
    conv.state = ConversationState.ENDED
    conv.ended_at, conv.end_reason = now, reason
    routing.withdraw_offers(session, conv, now, effects)
    session.execute(delete(PendingText).where(PendingText.conversation_id == conv.id))
    if reason in FOLLOWED_UP and conv.accepted_at is not None:
        checkins.schedule_after(session, p, conv, now, effects)


def offer_waiting(
    services: Services, session: Session, p: ProgrammeConfig, now: datetime, effects: Effects
) -> int:
    """Offer every queued conversation that has no pending offer (someone may be free now)."""
    waiting = session.scalars(
        select(Conversation)
        .where(
            Conversation.programme_id == p.id,
            Conversation.state == ConversationState.QUEUED,
            ~Conversation.id.in_(
                select(Offer.conversation_id).where(Offer.state == OfferState.PENDING)
            ),
        )
        .order_by(Conversation.created_at)
    ).all()
    offers = [routing.offer_next(session, services.vault, p, c, now, effects) for c in waiting]
    return sum(1 for o in offers if o is not None)


def handle_status(services: Services, report: StatusReport) -> None:
    """Status callbacks: check-ins record delivery; final messages are deleted at Twilio."""
    effects = Effects()
    with transaction(services.sessions) as session:
        checkins.record_status(session, report)
        if report.sid.startswith(("SM", "MM")):
            retention.after_status(session, report.sid, report.status, services.clock(), effects)
    schedule(services, effects)
