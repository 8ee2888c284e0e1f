"""What Twilio's status report on one of the line's texts says: a check-in delivered or not,
a record at Twilio to delete once final, and whether an offer or a notice (a code, a shift
reminder) reached the supporter's phone (an offer that never did is passed on at once: nobody
was asked; a notice that never did counts as failed, and the console says why).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from hotline import checkins, reach, retention
from hotline.db import transaction
from hotline.effects import Effects, lapse_offers, schedule, sender_refused
from hotline.models import Notice, NoticeKind, NoticeState, Offer, Supporter
from hotline.people import record_opt_out, supporter_phone
from hotline.privacy import Vault
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
    roster learns whether the offer, or a notice (``_notice_status``), reached the supporter's
    phone (reach.py)."""
    effects = Effects()
    blamed = None  # our number Twilio refused as the offer's or the notice's sender
    with transaction(services.sessions) as session:
        checkins.record_status(session, report, effects)
        if report.sid.startswith(("SM", "MM")):
            retention.after_status(session, report.sid, report.status, services.clock(), effects)
        to = services.vault.blind_indexes(report.to) if report.to else None
        if report.offer is not None:
            blamed = _offer_status(session, report, report.offer, to, services.clock(), effects)
        elif report.notice is not None:
            blamed = _notice_status(session, services, report, to)
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
    whose = _still_hers(select(Offer.supporter_id).where(Offer.id == offer), to)
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


def _notice_status(
    session: Session, services: Services, report: StatusReport, to: list[str] | None
) -> str | None:
    """What a code's or a shift reminder's status says (a gap warning's is the alert phone's,
    no supporter's: nothing). Delivered: its supporter's phone takes the line's texts. Not
    delivered: the notice failed (only from sent, or sending: Twilio can report before its
    sender has recorded it, which then leaves it failed; reports can come twice or out of
    order, and a late "delivered" changes nothing back), and the console says why as for a
    text Twilio refused at once (``verification.code_state``): the phone's refusal kept, a
    STOP the line never heard kept against the number it came from (as ``send_notice``
    does); our number when it is the one at fault. Only the notice's supporter is marked, and
    only while the phone it went to (``to``: blind indexes; None: not reported) is still
    hers."""
    notice = session.get(Notice, report.notice)
    if notice is None or notice.kind not in (NoticeKind.VERIFICATION, NoticeKind.REMINDER):
        return None
    whose = _still_hers(select(Notice.supporter_id).where(Notice.id == notice.id), to)
    if report.status == DELIVERED and notice.state == NoticeState.SENT:
        reach.reached(session, whose)
    if report.status not in NOT_DELIVERED:
        return None
    sender = notice.from_number or report.from_  # reported before its sender recorded it
    failed = session.execute(
        update(Notice)
        .where(
            Notice.id == notice.id,
            Notice.state.in_((NoticeState.SENDING, NoticeState.SENT)),
        )
        .values(state=NoticeState.FAILED, from_number=sender)
        .execution_options(synchronize_session=False)
    )
    if not failed.rowcount:  # type: ignore[attr-defined]
        return None  # failed already (a report twice)
    code = report.error_code
    if sender_at_fault(code):
        return sender
    if code is not None and recipient_at_fault(code):
        reach.refused(session, whose, code, services.clock())
    if code == reach.STOPPED and sender is not None:
        phone = report.to or _phone_of(session, services.vault, notice.supporter_id)
        if phone is not None:
            record_opt_out(session, services.vault, notice.programme_id, phone, sender)
    return None


def _still_hers(whose: Select[Any], to: list[str] | None) -> Select[Any]:
    """``whose`` (the supporter a text went to), only while the phone it went to (``to``: its
    blind indexes; None: not reported) is still hers: her number may have changed since."""
    if to is None:
        return whose
    supporter = whose.selected_columns[0]
    return whose.join(Supporter, Supporter.id == supporter).where(Supporter.phone_hash.in_(to))


def _phone_of(session: Session, vault: Vault, supporter_id: int | None) -> str | None:
    """The supporter's phone now: the one a report that names none went to, unless it changed
    since (Twilio names it in every report it sends today)."""
    supporter = session.get(Supporter, supporter_id) if supporter_id is not None else None
    return supporter_phone(vault, supporter) if supporter is not None else None
