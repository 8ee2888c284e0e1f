"""The clinician's side of the text line: a text to the hotline number from someone seeking
support. A first text opens a request, offered to a peer; later ones wait with it, or are
relayed to the peer once one has taken it; STOP, START, HELP, FORGET, NOCHECKIN and the field
asked for are answered here. Every reply to a clinician comes from the hotline number.
"""

from __future__ import annotations

from datetime import timedelta

from hotline import checkins, held, retention, retirement, routing, wording
from hotline.conversations import (
    end_conversation,
    open_conversation,
    open_conversations,
    told_closed,
    touch_live,
)
from hotline.inbound import Inbound
from hotline.keywords import Word
from hotline.models import (
    Channel,
    Clinician,
    Conversation,
    ConversationState,
    OfferState,
    Supporter,
)
from hotline.people import (
    find_clinician,
    get_or_create_clinician,
    lift_opt_out,
    record_opt_out,
    supporter_phone,
)
from hotline.schedule import next_coverage
from hotline.texting import OutboundText
from hotline.wakeups import Task

STILL_WAITING_AFTER = timedelta(minutes=10)
COMMANDS = frozenset({Word.STOP, Word.START, Word.HELP, Word.FORGET})


def clinician_text(ctx: Inbound) -> None:
    """A text to the hotline number from someone seeking support (or a supporter writing for
    themselves): a command, else a text of their request."""
    word = ctx.command.word if ctx.command else None
    if word in COMMANDS:
        _command(ctx, word)
    else:
        _request_text(ctx, word)


def _command(ctx: Inbound, word: Word) -> None:
    """STOP, START, HELP or FORGET."""
    vault, pid, hotline = ctx.services.vault, ctx.programme.id, ctx.programme.hotline_number
    if word is Word.STOP:
        record_opt_out(ctx.session, vault, pid, ctx.sender, hotline)
        _clinician_stop(ctx)
        if ctx.command is not None and not ctx.command.bare:
            # Twilio answers the bare opt-out words itself (and refuses this reply to a pair it
            # has blocked); with punctuation it may have seen an ordinary text: say it is done.
            ctx.reply(wording.stopped())
    elif word is Word.START:
        lift_opt_out(ctx.session, vault, pid, ctx.sender, hotline)  # and the opt-in words
    elif word is Word.HELP:
        ctx.reply(wording.clinician_help(ctx.programme))
        _help_to_the_peer(ctx)
    elif word is Word.FORGET:
        forget(ctx)


def _request_text(ctx: Inbound, word: Word | None) -> None:
    """Any other text: it opens a request, waits with the open one, or goes to their peer."""
    vault, pid, hotline = ctx.services.vault, ctx.programme.id, ctx.programme.hotline_number
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
        _decline_checkins(ctx, clinician)
        return
    conv = open_conversation(ctx.session, clinician)
    if conv is None:
        # Two first texts at once from a returning clinician (their row exists, so inserting it
        # serialises nothing): under the programme's lock, look again, so one request opens.
        routing.lock_programme(ctx.session, pid)
        conv = open_conversation(ctx.session, clinician)
    if conv is None or conv.state == ConversationState.ACTIVE:
        # Written here, not before: a waiting request's text takes the programme's lock first
        # (see _queue_text and _field_asked), as an ACCEPT does, and its clinician row only
        # after.
        clinician.last_contact_at = ctx.now
    if conv is None:
        _start_conversation(ctx, clinician)
    elif conv.state == ConversationState.ACTIVE:
        _clinician_relay(ctx, conv)
    elif word is Word.DISCIPLINE:
        _field_asked(ctx, clinician, conv)
    else:
        _queue_text(ctx, conv, clinician)


def _decline_checkins(ctx: Inbound, clinician: Clinician) -> None:
    clinician.last_contact_at = ctx.now
    clinician.checkins_declined = True
    checkins.cancel_pending(ctx.session, clinician.id, ctx.effects)
    ctx.reply(wording.checkins_declined())


def _field_asked(ctx: Inbound, clinician: Clinician, conv: Conversation) -> None:
    """The field they asked for, while their request waits (the greeting invites it)."""
    assert ctx.command is not None and ctx.command.discipline is not None
    routing.lock_programme(ctx.session, ctx.programme.id)
    clinician.last_contact_at = ctx.now
    conv.discipline_wanted = ctx.command.discipline
    ctx.reply(wording.discipline_noted(ctx.command.discipline))
    _offer_to_field(ctx, conv)


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
    """A new request, under the programme's lock (the caller's). One answering a check-in
    (``checkins.note_reply``) was greeted when they first wrote: they are answered briefly,
    and each peer offered it is told it answers a check-in (``Conversation.checkin_reply``)."""
    if retirement.retired_now(ctx.session, ctx.programme.id):  # as this text waited on the lock
        say_closed(ctx)
        return
    discipline = ctx.command.discipline if ctx.command else None
    replied = checkins.note_reply(ctx.session, clinician.id, ctx.now)
    conv = Conversation(
        programme_id=ctx.programme.id,
        clinician_id=clinician.id,
        channel="sms",
        discipline_wanted=discipline,
        checkin_reply=replied,
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
        ctx.effects.texts[answer_at:answer_at] = [
            OutboundText(ctx.sender, ctx.text.to, body)
            for body in routing.first_replies(ctx.programme, replied)
        ]
    if discipline is None:
        _hold(ctx, conv)


def say_closed(ctx: Inbound) -> None:
    """The line has closed, where to turn instead (said to anyone's text to a retired
    programme's number too: textline): one text if it fits, else the programme's long
    resources apart (joined, they would pass Twilio's limit and lose the crisis sentence at the
    end). A clinician owed the text that their request closed has been told now."""
    for body in routing.line_closed(ctx.programme):
        ctx.reply(body)
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is not None:
        told_closed(ctx.session, clinician)


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
    held.hold_text(ctx.session, ctx.services.vault, conv, wording.truncate(ctx.text.body))
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
    if held.texts_waiting(ctx.session, conv.id, ctx.now):
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
        if routing.claimed_from(ctx.session, clinician.id):  # a claim of it can't come true
            ctx.effects.wake(Task.OFFER_CALL_BACK, conv.id)


def forget(ctx: Inbound) -> None:
    """FORGET: end everything and erase the clinician's number now; confirm in this reply."""
    clinician = find_clinician(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    if clinician is not None:
        _clinician_stop(ctx)
        retention.forget(ctx.session, clinician)
    # Under every data key, and with no clinician row (a STOP from someone who never wrote).
    retention.forget_opt_outs(ctx.session, ctx.services.vault, ctx.programme.id, ctx.sender)
    ctx.reply(wording.forgotten(ctx.programme.retired))
