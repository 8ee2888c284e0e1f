"""What Twilio's status report on one of the line's texts says: a check-in delivered or not,
a record at Twilio to delete once final, and whether an offer reached the supporter's phone
(one that never did is passed on at once: nobody was asked).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import checkins, reach, retention
from hotline.db import transaction
from hotline.effects import Effects, lapse_offers, schedule, sender_refused
from hotline.models import Offer, Supporter
from hotline.services import Services
from hotline.telephony import recipient_at_fault, sender_at_fault
from hotline.texting import StatusReport

NOT_DELIVERED = frozenset({"undelivered", "failed"})  # final: the text never reached the phone
DELIVERED = "delivered"


def handle_status(services: Services, report: StatusReport) -> None:
    """Status callbacks: check-ins record delivery; final messages are deleted at Twilio; an
    offer that never reached the supporter (their phone off, a landline) goes to the next peer
    at once, not after the offer timeout: nobody was asked. Not one our pool number was refused
    for (unregistered): every peer's would fail alike, so it times out as in an outage. The
    roster learns whether the offer reached the supporter's phone (reach.py)."""
    effects = Effects()
    blamed = None  # our number Twilio refused as the offer's sender
    with transaction(services.sessions) as session:
        checkins.record_status(session, report, effects)
        if report.sid.startswith(("SM", "MM")):
            retention.after_status(session, report.sid, report.status, services.clock(), effects)
        if report.offer is not None:
            to = services.vault.blind_indexes(report.to) if report.to else None
            blamed = _offer_status(session, report, report.offer, to, services.clock(), effects)
    if blamed is not None:
        sender_refused(services, blamed, report.error_code)
    schedule(services, effects)


def _offer_status(
    session: Session,
    report: StatusReport,
    offer: int,
    to: list[str] | None,
    now: datetime,
    effects: Effects,
) -> str | None:
    """What an offer's status says: reached, or not (passed on, and the supporter's phone
    marked when it is at fault); our pool number when it is the one at fault. Nothing when it
    is about an earlier ask of the offer (Twilio can report one half an hour late): the
    supporter has been asked again since, maybe from another number, and that text, which may
    have reached her, has its own report. A URL naming no ask (a text sent before asks were
    named) is taken as about the ask pending, as it always was. ``to``: the blind indexes of
    the phone the text went to (None: not reported); a phone the supporter no longer has (her
    number changed since) is not hers to mark, and a STOP it made is kept for it, not her."""
    asked = session.scalar(select(Offer.asked).where(Offer.id == offer))
    if report.ask is not None and report.ask != asked:
        return None
    whose = select(Offer.supporter_id).where(Offer.id == offer)
    if to is not None:
        whose = whose.join(Supporter, Supporter.id == Offer.supporter_id).where(
            Supporter.phone_hash.in_(to)
        )
    if report.status == DELIVERED:
        reach.reached(session, whose)
    if report.status not in NOT_DELIVERED:
        return None
    if sender_at_fault(report.error_code):
        return session.scalar(select(Offer.pool_number).where(Offer.id == offer))
    if report.error_code is not None and recipient_at_fault(report.error_code):
        reach.refused(session, whose, report.error_code, now)
    if report.error_code == reach.STOPPED:
        reach.stopped(session, offer, to[0] if to else None)
    effects.expire_now(lapse_offers(session, Offer.id == offer, now))
    return None
