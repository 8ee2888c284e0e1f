"""What a core operation wants done once its transaction commits: texts and wake-ups.

A webhook renders the texts as TwiML in its own reply; a job hands them to the telephony port.
Nothing is sent or scheduled before the commit, so a rollback leaves no trace outside.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hotline import reach, records
from hotline.db import transaction
from hotline.models import Conversation, ConversationState, Offer, OfferState
from hotline.programmes import number_role
from hotline.services import Services
from hotline.telephony import (
    OptedOutError,
    PermanentError,
    RecipientError,
    RetryableError,
    SenderError,
    TelephonyError,
)
from hotline.texting import OutboundText
from hotline.wakeups import Task

log = logging.getLogger(__name__)

# Pauses between attempts at a text Twilio refused for now (429, 5xx). Short: a job waits them
# out. What still fails is not lost for good: an offer times out to the next peer as any does
# (passed on at once, a few seconds' outage would run through every peer on call), and a
# clinician's "nobody is free" is owed again (the sweeper tells them).
RETRY_DELAYS = (0.25, 1.0)
_ATTEMPTS = len(RETRY_DELAYS) + 1
UNANSWERED = "unanswered"  # the end reason of a request nobody took (tasks.close_idle)


@dataclass
class Effects:
    texts: list[OutboundText] = field(default_factory=list)
    wakeups: list[tuple[Task, int, datetime | None]] = field(default_factory=list)
    cancels: list[tuple[Task, int]] = field(default_factory=list)

    def text(
        self,
        to: str | None,
        from_: str,
        body: str,
        *,
        owed_by: int | None = None,
        closing: bool = False,
        alerting: int | None = None,
        offering: int | None = None,
        asking: int | None = None,
    ) -> None:
        if to:  # a forgotten clinician has no number left to text
            self.texts.append(
                OutboundText(
                    to,
                    from_,
                    body,
                    owed_by=owed_by,
                    closing=closing,
                    alerting=alerting,
                    offering=offering,
                    asking=asking,
                )
            )

    def wake(self, task: Task, ident: int, at: datetime | None = None) -> None:
        self.wakeups.append((task, ident, at))

    def cancel(self, task: Task, ident: int) -> None:
        self.cancels.append((task, ident))

    def expire_now(self, offer_ids: Collection[int]) -> None:
        """Wake these offers' expiry now (``lapse_offers``), in place of any later wake-up
        asked for them."""
        self.wakeups = [
            (task, ident, at)
            for task, ident, at in self.wakeups
            if task != Task.EXPIRE_OFFER or ident not in offer_ids
        ]
        for offer_id in offer_ids:
            self.wake(Task.EXPIRE_OFFER, offer_id)


def schedule(services: Services, effects: Effects) -> None:
    """Ask for the wake-ups (best effort: the sweeper covers what Redis loses)."""
    for task, ident in effects.cancels:
        services.wakeups.cancel(task, ident)
    for task, ident, at in effects.wakeups:
        services.wakeups.schedule(task, ident, at)


def send(services: Services, effects: Effects) -> None:
    """Send the texts through the provider (from jobs, never from a webhook).

    Each asks for a status callback: that is what deletes its record at the provider once it
    is delivered (retention.after_status), as for relays and check-ins. An offer Twilio
    refuses for good is passed on: its wake-up in ``effects`` moves to now (schedule them after
    this). One refused for our own number's fault (``SenderError``) is lost as in an outage.
    The roster learns whether an offer reached the supporter's phone (reach.py).
    """
    callback = services.callback_url("/twilio/status")
    sent: list[str] = []
    waiting: set[int] = set()
    closed: set[int] = set()
    unasked: dict[int, int | None] = {}  # offer -> the code, when their phone is at fault
    reached: list[int] = []
    for text in effects.texts:
        if text.alerting is not None and text.alerting in waiting:
            continue  # its clinician's text is owed again: the sweeper sends both, once
        sid = send_one(services, text, text.status_callback(callback))
        if isinstance(sid, str):
            sent.append(sid)
            reached += [text.offering] if text.offering is not None else []
        elif sid is LOST and text.owed_by is not None:
            (closed if text.closing else waiting).add(text.owed_by)
        if text.offering is not None and isinstance(sid, Refused):
            # Not when LOST: an outage of a few seconds would run through every peer on call
            # in as many seconds, tell the clinician nobody is free and use up each peer's
            # asks; that offer times out as any other, and Twilio may be back by then.
            unasked[text.offering] = sid.code if sid.phone else None
    if sent:
        remember_sent(services, sent, offers=reached)
    if waiting or closed:
        owe_again(services, waiting, closed)
    if unasked:
        pass_on_unasked(services, effects, unasked)


def pass_on_unasked(services: Services, effects: Effects, offers: dict[int, int | None]) -> None:
    """Twilio will never take these offers' texts (the supporter texted STOP to the pool
    number, a number that is not a mobile one): nobody was asked. Each still pending lapses
    now, and its wake-up is brought forward, so ``tasks.expire_offer`` offers the request to
    the next peer at once, not after the offer timeout (the sweeper's grace later, if Redis
    loses the wake-up). ``offers`` maps each to the error code when the supporter's phone is
    at fault, which the roster then shows (reach.py)."""
    offer_ids = set(offers)
    try:
        with transaction(services.sessions) as session:
            lapse_offers(session, Offer.id.in_(offer_ids), services.clock())
            for offer_id, code in offers.items():
                if code is not None:
                    whose = select(Offer.supporter_id).where(Offer.id == offer_id)
                    reach.refused(session, whose, code, services.clock())
                if code == reach.STOPPED:
                    reach.stopped(session, offer_id)
    except SQLAlchemyError as error:  # it times out as any offer does
        log.error("an offer not delivered is not passed on: %s", type(error).__name__)
        return
    effects.expire_now(offer_ids)  # answered meanwhile or not: expire_offer leaves those be
    log.warning("%d offers not taken by the provider: passed on", len(offer_ids))


def lapse_offers(session: Session, which: ColumnElement[bool], now: datetime) -> list[int]:
    """The offers ``which`` picks lapse now, those still pending: their ids. The caller wakes
    ``Task.EXPIRE_OFFER`` for them once this commits (``Effects.expire_now``), so
    ``tasks.expire_offer`` offers each request to the next peer at once, not after the offer
    timeout (the sweeper's grace later, if Redis loses the wake-up)."""
    lapsed = session.scalars(
        update(Offer)
        .where(which, Offer.state == OfferState.PENDING)
        .values(expires_at=now)
        .returning(Offer.id)
        .execution_options(synchronize_session=False)
    )
    return list(lapsed)


def owe_again(services: Services, waiting: set[int], closed: set[int]) -> None:
    """Twilio did not take the text telling these conversations' clinicians that nobody is
    free (``waiting``), or that their request closed unanswered (``closed``). While one still
    waits, its telling is undone, and the sweeper (``conversations.offer_waiting``) tells them,
    by the line's own rules, on its next round; one that closed is marked owed
    (``close_owed_at``), and the sweeper tells them it closed (``tasks.tell_closed``)."""
    try:
        with transaction(services.sessions) as session:
            session.execute(
                update(Conversation)
                .where(
                    Conversation.id.in_(waiting),
                    Conversation.state == ConversationState.QUEUED,
                )
                .values(fallback_at=None)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(Conversation)
                .where(
                    Conversation.id.in_(closed),
                    Conversation.state == ConversationState.ENDED,
                    Conversation.end_reason == UNANSWERED,
                )
                .values(close_owed_at=services.clock())
                .execution_options(synchronize_session=False)
            )
    except SQLAlchemyError as error:
        log.error("a lost text to a waiting clinician is not owed again: %s", type(error).__name__)
        return
    log.warning("%d texts to waiting clinicians not taken: owed again", len(waiting | closed))


def remember_sent(services: Services, sids: list[str], offers: Sequence[int] = ()) -> None:
    """Queue the sent texts' records for deletion even if their status callbacks are lost.
    ``offers``: those the texts made, whose supporters' phones took a text (reach.py)."""
    try:
        with transaction(services.sessions) as session:
            records.backstop(session, sids, services.clock())
            if offers:
                reach.reached(session, select(Offer.supporter_id).where(Offer.id.in_(offers)))
    except SQLAlchemyError as error:  # the texts are out; the callbacks may still delete them
        log.warning("sent texts' records not queued for deletion: %s", type(error).__name__)


# Twilio did not take it, though it might later (429, 5xx, unreachable, our number refused)
LOST = object()


@dataclass(frozen=True)
class Refused:
    """Twilio will never take it (opted out, not a mobile number, too long): its error
    ``code``; ``phone``: the recipient's phone is at fault (``RecipientError``)."""

    code: int | None
    phone: bool


def send_one(services: Services, text: OutboundText, callback: str | None) -> str | object:
    """One text, tried again shortly while Twilio says it did not take it (429, 5xx, no
    connection: a retry cannot duplicate it); never after a timeout (it may have gone out).
    Its message SID when Twilio took it; ``LOST`` when it never did (our sending number
    refused too: not tried again now, it fails alike until fixed); ``Refused`` when it never
    will (opted out, refused for good); None when it must not be tried again (perhaps sent)."""
    for delay in (*RETRY_DELAYS, None):
        try:
            return services.telephony.send_text(
                text.to, text.from_, text.body, status_callback=callback
            ).sid
        except OptedOutError as error:
            log.info("text not sent: recipient opted out of %s", text.from_)
            return Refused(error.code, phone=True)
        except SenderError as error:
            sender_refused(services, text.from_, error.code)
            return LOST
        except RetryableError as error:
            if delay is None:
                log.warning("text not sent after %d attempts (code %s)", _ATTEMPTS, error.code)
                return LOST
            time.sleep(delay)
        except TelephonyError as error:
            log.warning("text not sent: %s (code %s)", type(error).__name__, error.code)
            if isinstance(error, PermanentError):
                return Refused(error.code, phone=isinstance(error, RecipientError))
            return None
    return None


def sender_refused(services: Services, number: str, code: int | None) -> None:
    """Twilio refuses ``number``, one of ours, as a sender (``SenderError``): every text from
    it fails alike until it is fixed at Twilio or in Settings. An error for whoever looks after
    the numbers, naming the number by its place in a programme (logs name no number)."""
    try:
        with services.sessions() as session:
            role = number_role(session, number)
    except SQLAlchemyError:
        role = "one of the line's numbers"
    log.error("Twilio refuses %s as a sender (code %s): check it at Twilio", role, code)
