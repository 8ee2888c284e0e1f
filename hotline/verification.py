"""Phone verification: a supporter's number is proved by a code texted to it.

A new or changed number gets a ``PhoneVerification`` row and a ``Notice`` that texts the code
(sent by a job or the sweeper, never inside a request). While the row exists the supporter is
not on call (see schedule.py) and cannot be scheduled (see rota.py); the coordinator types the
code the supporter read out, and the row goes. Codes are six digits, sealed at rest, valid
for CODE_TTL and for MAX_ATTEMPTS tries; a fresh code replaces any earlier one.
"""

from __future__ import annotations

import hmac
import secrets
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hotline.models import (
    Notice,
    NoticeKind,
    NoticeState,
    OptOut,
    PhoneVerification,
    Programme,
    Supporter,
)
from hotline.privacy import Vault

CODE_CONTEXT = b"verification-code"
CODE_TTL = timedelta(minutes=30)
MAX_ATTEMPTS = 5


class Outcome(StrEnum):
    VERIFIED = "verified"
    WRONG = "wrong"
    EXPIRED = "expired"
    TOO_MANY = "too_many"
    NOTHING_PENDING = "nothing_pending"


class CodeState(StrEnum):
    """Where a waiting code stands, as the coordinator can tell the supporter."""

    SENDING = "sending"  # its text has not gone yet (a job's, or the sweeper's retry)
    TEXTED = "texted"
    REFUSED = "refused"  # the phone refused it for good: a landline, a mistyped number
    STOPPED = "stopped"  # they had texted STOP to the number it came from (21610)
    FAILED = "failed"  # not for the phone's fault: Twilio would not send it
    IN_DOUBT = "in_doubt"  # its sender stopped mid-send (notices.STUCK_AFTER): it may have gone
    HELD = "held"  # not sent: due while its programme was retired (since restored)
    RETIRED = "retired"  # not sent: its programme retired, and a closed line texts nobody
    EXPIRED = "expired"


MESSAGES = {
    Outcome.VERIFIED: "Phone number verified.",
    Outcome.WRONG: "That code is not right. Check it and try again.",
    Outcome.EXPIRED: "That code has expired. Send a new one.",
    Outcome.TOO_MANY: "Too many wrong codes. Send a new one.",
    Outcome.NOTHING_PENDING: "No code is waiting for this supporter. Send one first.",
}


def start(session: Session, vault: Vault, supporter: Supporter, now: datetime) -> Notice:
    """Issue a fresh code for ``supporter``'s current number; returns the notice to send.

    The caller wakes ``Task.SEND_NOTICE`` for the notice after its transaction commits.
    """
    session.execute(delete(PhoneVerification).where(PhoneVerification.supporter_id == supporter.id))
    supporter.phone_verified_at = None
    code = f"{secrets.randbelow(1_000_000):06d}"
    key = f"verification:{supporter.id}:{secrets.token_hex(8)}"
    row = PhoneVerification(
        supporter_id=supporter.id,
        code_sealed=vault.seal(code, CODE_CONTEXT),
        notice_key=key,
        expires_at=now + CODE_TTL,
        created_at=now,
    )
    session.add(row)
    session.flush()
    notice = Notice(
        programme_id=supporter.programme_id,
        key=key,
        kind=NoticeKind.VERIFICATION,
        supporter_id=supporter.id,
        due_at=now,
    )
    session.add(notice)
    session.flush()
    return notice


def vouch(session: Session, supporter: Supporter, now: datetime) -> None:
    """Count the supporter's current number as verified without a code (an administrator
    vouches for it); any code still waiting for an earlier number is void."""
    session.execute(delete(PhoneVerification).where(PhoneVerification.supporter_id == supporter.id))
    supporter.phone_verified_at = now


def pending(session: Session, supporter_id: int) -> PhoneVerification | None:
    return session.scalar(
        select(PhoneVerification).where(PhoneVerification.supporter_id == supporter_id)
    )


def code_state(session: Session, row: PhoneVerification, now: datetime) -> CodeState:
    """Whether the waiting code reached the supporter's phone, and if not why: the console
    must not say a code was texted when it was not (the coordinator would wait for nothing),
    nor send them to correct a number that is right (a STOP, a retired programme, a failure
    that is not the phone's); expired or not, only restoring a retired one lets a new one go."""
    notice = session.scalar(select(Notice).where(Notice.key == row.notice_key))
    sent = notice.state if notice is not None else None
    if sent == NoticeState.SKIPPED and _retired(session, row.supporter_id):
        return CodeState.RETIRED
    if row.expires_at <= now:
        return CodeState.EXPIRED
    if sent == NoticeState.SKIPPED:
        return CodeState.HELD  # retirement skips a code due (retirement.py); nothing else can
    if notice is not None and sent == NoticeState.FAILED:
        return _why_failed(session, row, notice)
    return CodeState.TEXTED if sent == NoticeState.SENT else CodeState.SENDING


def _why_failed(session: Session, row: PhoneVerification, notice: Notice) -> CodeState:
    """A failed code's text, by what its send left (notices.send_notice): the pair blocked
    for the supporter's STOP to its number, or their phone's refusal kept since the code was
    asked for (reach.py). A sender that died mid-send left neither, nor a number it came from:
    Twilio may have taken the text, and the supporter may read the code out."""
    if notice.from_number is None:
        return CodeState.IN_DOUBT
    supporter = session.get_one(Supporter, row.supporter_id)
    blocked = select(OptOut.id).where(
        OptOut.programme_id == supporter.programme_id,
        OptOut.phone_hash == supporter.phone_hash,
        OptOut.sender == notice.from_number,
    )
    if session.scalar(select(blocked.exists())):
        return CodeState.STOPPED
    refused_at = supporter.texts_refused_at
    if supporter.texts_refused_code is not None and refused_at and refused_at >= row.created_at:
        return CodeState.REFUSED
    return CodeState.FAILED


def _retired(session: Session, supporter_id: int) -> bool:
    retired_at = (
        select(Programme.retired_at)
        .join(Supporter, Supporter.programme_id == Programme.id)
        .where(Supporter.id == supporter_id)
    )
    return session.scalar(retired_at) is not None


def code_of(session: Session, vault: Vault, supporter_id: int) -> str | None:
    """The waiting code (for the notice that texts it), or None once confirmed."""
    row = pending(session, supporter_id)
    return vault.open(row.code_sealed, CODE_CONTEXT) if row is not None else None


def confirm(
    session: Session, vault: Vault, supporter: Supporter, code: str, now: datetime
) -> Outcome:
    """Check ``code``; on success the number counts as verified and the supporter may go on
    call. Every wrong try counts; after MAX_ATTEMPTS only a fresh code helps."""
    row = pending(session, supporter.id)
    if row is None:
        return Outcome.NOTHING_PENDING
    if row.expires_at <= now:
        return Outcome.EXPIRED
    if row.attempts >= MAX_ATTEMPTS:
        return Outcome.TOO_MANY
    expected = vault.open(row.code_sealed, CODE_CONTEXT)
    if not hmac.compare_digest(expected.encode(), code.strip().encode()):
        row.attempts += 1
        return Outcome.WRONG
    session.delete(row)
    supporter.phone_verified_at = now
    return Outcome.VERIFIED
