"""The roster: adding, editing and deactivating supporters, each change audited.

A new or changed phone number is unverified until the supporter's texted code is confirmed
(verification.py); until then they cannot be put on call. Deactivating keeps the row (past
conversations refer to it) but takes the supporter off every schedule answer. Every function
works inside the caller's transaction and returns the notices whose texts must be woken once
it commits; none of them sends anything itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from hotline import audit, ringing, routing, verification
from hotline.effects import lapse_offers
from hotline.keywords import DISCIPLINES
from hotline.models import (
    Call,
    CallState,
    Conversation,
    Notice,
    Offer,
    OfferState,
    Programme,
    Supporter,
)
from hotline.people import find_supporter, new_supporter, set_supporter_phone, supporter_phone
from hotline.phone import InvalidPhoneNumber, normalize
from hotline.privacy import Vault
from hotline.programmes import own_numbers

MAX_NAME = 200
MAX_EMAIL = 254
MAX_CONVERSATIONS = 10
KNOWN_DISCIPLINES = tuple(sorted(set(DISCIPLINES.values())))
MAX_ID = 2**31  # ids are 32-bit integers; larger ones name nothing
EDITABLE = frozenset({"name", "phone", "discipline", "max_conversations", "email", "active"})


class RosterError(ValueError):
    """A change the roster refuses; ``field`` names the input at fault (None: the whole)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class RosterConflict(RosterError):
    """A change the roster's current state refuses (a duplicate number, a live conversation)."""


@dataclass(frozen=True)
class SupporterInput:
    name: str
    phone: str
    discipline: str | None = None
    max_conversations: int | str = 2
    email: str | None = None
    active: bool = True


@dataclass(frozen=True)
class Change:
    """What a roster operation did: the supporter, and the texts to wake and the offers whose
    expiry to wake (they lapsed) after the commit."""

    supporter: Supporter
    notices: tuple[Notice, ...] = ()
    lapsed_offers: tuple[int, ...] = ()


def clean_name(raw: object) -> str:
    name = " ".join(str(raw or "").split())
    if not name:
        raise RosterError("a name is required", "name")
    if len(name) > MAX_NAME:
        raise RosterError(f"names are at most {MAX_NAME} characters", "name")
    return name


def clean_phone(raw: object) -> str:
    try:
        return normalize(str(raw or ""))
    except InvalidPhoneNumber:
        raise RosterError(
            "not a valid phone number (use the form +CountryCodeNumber)", "phone"
        ) from None


def clean_discipline(raw: object) -> str | None:
    text = str(raw or "").strip().lower()
    if not text:
        return None
    if text in DISCIPLINES:
        return DISCIPLINES[text]
    if text in KNOWN_DISCIPLINES:
        return text
    raise RosterError("discipline must be one of " + ", ".join(KNOWN_DISCIPLINES), "discipline")


def clean_max(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise RosterError("max conversations must be a whole number", "max_conversations")
    try:
        value = int(raw)
    except ValueError:
        raise RosterError("max conversations must be a whole number", "max_conversations") from None
    if not 1 <= value <= MAX_CONVERSATIONS:
        raise RosterError(
            f"max conversations must be between 1 and {MAX_CONVERSATIONS}", "max_conversations"
        )
    return value


def clean_email(raw: object) -> str | None:
    text = str(raw or "").strip()
    if not text:
        return None
    if len(text) > MAX_EMAIL or text.count("@") != 1 or any(c.isspace() for c in text):
        raise RosterError("not an email address", "email")
    return text


def clean(data: SupporterInput) -> SupporterInput:
    """``data`` with every field checked and normalised; raises RosterError naming the field."""
    return SupporterInput(
        name=clean_name(data.name),
        phone=clean_phone(data.phone),
        discipline=clean_discipline(data.discipline),
        max_conversations=clean_max(data.max_conversations),
        email=clean_email(data.email),
        active=bool(data.active),
    )


def snapshot(supporter: Supporter, phone: str | None = None) -> dict[str, Any]:
    """The audited view of a supporter (the phone, if given, is redacted by the audit log)."""
    values: dict[str, Any] = {
        "name": supporter.name,
        "discipline": supporter.discipline,
        "max_conversations": supporter.max_conversations,
        "email": supporter.email,
        "active": supporter.active,
    }
    if phone is not None:
        values["phone"] = phone
    return values


def add(
    session: Session,
    vault: Vault,
    programme_id: int,
    data: SupporterInput,
    actor: str,
    now: datetime,
    *,
    verify: bool = True,
) -> Change:
    """Add a supporter and issue the code that verifies their number (unverified until it is
    read back). ``verify=False``: the actor vouches for the number (an administrator's API
    token, e.g. a sync from the staff directory); it counts as verified at once, audited so."""
    data = clean(data)
    _not_the_lines(session, data.phone)
    if find_supporter(session, vault, programme_id, data.phone) is not None:
        raise RosterConflict("a supporter with this number is already on the roster", "phone")
    supporter = new_supporter(
        vault,
        programme_id,
        data.name,
        data.phone,
        discipline=data.discipline,
        max_conversations=data.max_conversations,
        email=data.email,
        active=data.active,
        calendar_token=secrets.token_urlsafe(24),
        created_at=now,
    )
    session.add(supporter)
    session.flush()
    notices = _verification(session, vault, supporter, now, verify)
    audit.record(
        session,
        programme_id=programme_id,
        actor=actor,
        action="supporter.add",
        target=f"supporter:{supporter.id}",
        new={**snapshot(supporter, data.phone), "verification": _check_label(verify)},
        at=now,
    )
    return Change(supporter, notices)


def _verification(
    session: Session, vault: Vault, supporter: Supporter, now: datetime, verify: bool
) -> tuple[Notice, ...]:
    """Start the texted-code check of the supporter's number, or record it as vouched for."""
    if verify:
        _codes_texted(session, supporter.programme_id)
        return (verification.start(session, vault, supporter, now),)
    verification.vouch(session, supporter, now)
    return ()


def _codes_texted(session: Session, programme_id: int) -> None:
    """A retired programme's line texts nobody (retirement.py): a code from it would come
    from a number that answers the supporter's reply that the line has closed."""
    if session.get_one(Programme, programme_id).retired_at is not None:
        raise RosterConflict(
            "this programme is retired, so the line texts no verification codes; "
            "restore it first (hotline programme restore)"
        )


def _check_label(verify: bool) -> str:
    return "code texted" if verify else "vouched for by the actor"


def edit(
    session: Session,
    vault: Vault,
    supporter: Supporter,
    changes: Mapping[str, object],
    actor: str,
    now: datetime,
    *,
    verify: bool = True,
) -> Change:
    """Apply ``changes`` (any of EDITABLE); a new phone number needs verifying again (unless
    ``verify=False``: the actor vouches for it, as in ``add``)."""
    unknown = set(changes) - EDITABLE
    if unknown:
        raise RosterError(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    leaving = changes.get("active") is False and supporter.active
    if leaving or "phone" in changes:
        # The lock offers are made and answered under, taken first (their order): a new
        # number is checked against the offers and conversations committed by now, and an
        # offer made meanwhile waits, then finds the number as changed.
        routing.lock_programme(session, supporter.programme_id)
    before = snapshot(supporter)
    notices: tuple[Notice, ...] = ()
    new_phone = _phone_change(session, vault, supporter, changes)
    _apply_fields(supporter, changes)
    after = snapshot(supporter)
    if new_phone is not None:
        before["phone"] = supporter_phone(vault, supporter)
        set_supporter_phone(vault, supporter, new_phone)
        after["phone"] = new_phone
        notices = _verification(session, vault, supporter, now, verify)
    old, new = audit.changed(before, after)
    if new_phone is not None:
        new["verification"] = _check_label(verify)
    if new:
        audit.record(
            session,
            programme_id=supporter.programme_id,
            actor=actor,
            action="supporter.edit",
            target=f"supporter:{supporter.id}",
            old=old,
            new=new,
            at=now,
        )
    return Change(supporter, notices, _lapse_offers(session, supporter, now) if leaving else ())


def _lapse_offers(session: Session, supporter: Supporter, now: datetime) -> tuple[int, ...]:
    """A supporter taken off the roster cannot accept (offerreply passes their ACCEPT on):
    their waiting text offers lapse now, for the expiry job to offer onwards, instead of
    keeping the clinician waiting out the offer timeout. A ring goes on: its dial decides."""
    ringing = select(Call.conversation_id).where(
        Call.state == CallState.RINGING, Call.conversation_id.is_not(None)
    )
    texted = and_(Offer.supporter_id == supporter.id, Offer.conversation_id.not_in(ringing))
    return tuple(lapse_offers(session, texted, now))


def _phone_change(
    session: Session, vault: Vault, supporter: Supporter, changes: Mapping[str, object]
) -> str | None:
    if "phone" not in changes:
        return None
    phone = clean_phone(changes["phone"])
    if phone == supporter_phone(vault, supporter):
        return None
    _not_the_lines(session, phone)
    other = find_supporter(session, vault, supporter.programme_id, phone)
    if other is not None and other.id != supporter.id:
        raise RosterConflict("a supporter with this number is already on the roster", "phone")
    if routing.pools_in_use(session, [supporter.id]) or _offers_to_come(session, supporter):
        # Relays and offers follow the number at once: a mistyped one would hand the
        # clinician's next text to a stranger, and the supporter's replies would go nowhere.
        raise RosterConflict(
            "they have a conversation open or an offer waiting, which would move to the new "
            "number; change it once those have ended",
            "phone",
        )
    return phone


def _offers_to_come(session: Session, supporter: Supporter) -> bool:
    """An offer of hers that a clinician's call withdrew as it rings, pending again if they
    hang up (ringing._reopen), or one she claimed then (``CLAIMED``), hers at the hang-up:
    its text went to the number she has now, and the request would come to the new one."""
    to_come = (
        select(Offer.id)
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(
            Offer.supporter_id == supporter.id,
            or_(Offer.state == OfferState.CLAIMED, ringing.withdrawn_as_it_rings()),
        )
    )
    return bool(session.scalar(select(to_come.exists())))


def _not_the_lines(session: Session, phone: str) -> None:
    """Texts from the line's own numbers are ignored (the loop guard) and offers sent to one
    reach nobody: as a supporter's phone, one would hold every clinician offered to them."""
    if phone in own_numbers(session):
        raise RosterError("that is one of the line's own numbers, not a supporter's phone", "phone")


def _apply_fields(supporter: Supporter, changes: Mapping[str, object]) -> None:
    if "name" in changes:
        supporter.name = clean_name(changes["name"])
    if "discipline" in changes:
        supporter.discipline = clean_discipline(changes["discipline"])
    if "max_conversations" in changes:
        supporter.max_conversations = clean_max(changes["max_conversations"])
    if "email" in changes:
        supporter.email = clean_email(changes["email"])
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise RosterError("active must be true or false", "active")
        supporter.active = changes["active"]


def deactivate(
    session: Session, vault: Vault, supporter: Supporter, actor: str, now: datetime
) -> Change:
    """Take a supporter off the roster's active list (and so off call); the row stays."""
    return edit(session, vault, supporter, {"active": False}, actor, now)


def resend_code(
    session: Session, vault: Vault, supporter: Supporter, actor: str, now: datetime
) -> Change:
    """Issue a fresh verification code for the supporter's current number (RosterConflict
    when its programme is retired)."""
    _codes_texted(session, supporter.programme_id)
    notice = verification.start(session, vault, supporter, now)
    audit.record(
        session,
        programme_id=supporter.programme_id,
        actor=actor,
        action="supporter.code_sent",
        target=f"supporter:{supporter.id}",
        at=now,
    )
    return Change(supporter, (notice,))


def confirm_code(
    session: Session, vault: Vault, supporter: Supporter, code: str, actor: str, now: datetime
) -> verification.Outcome:
    """Check the code the supporter read out; audited whatever the outcome."""
    outcome = verification.confirm(session, vault, supporter, code, now)
    audit.record(
        session,
        programme_id=supporter.programme_id,
        actor=actor,
        action="supporter.verify",
        target=f"supporter:{supporter.id}",
        new={"outcome": outcome.value},
        at=now,
    )
    return outcome


def listing(session: Session, programme_id: int) -> list[Supporter]:
    """The programme's supporters, active first, then by name."""
    return list(
        session.scalars(
            select(Supporter)
            .where(Supporter.programme_id == programme_id)
            .order_by(Supporter.active.desc(), Supporter.name, Supporter.id)
        )
    )


def get(session: Session, programme_ids: set[int] | None, supporter_id: int) -> Supporter | None:
    """The supporter, if it belongs to one of ``programme_ids`` (None: any programme)."""
    if not 0 < supporter_id < MAX_ID:
        return None
    supporter = session.get(Supporter, supporter_id)
    if supporter is None or (
        programme_ids is not None and supporter.programme_id not in programme_ids
    ):
        return None
    return supporter
