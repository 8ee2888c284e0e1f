"""Supporters and clinicians by phone number: sealed at rest, found by their blind index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline.models import Clinician, OptOut, Programme, Supporter
from hotline.privacy import Vault
from hotline.reach import STOPPED, block

P = TypeVar("P", Supporter, Clinician)
CLINICIAN_CONTEXT = b"clinician-phone"
SUPPORTER_CONTEXT = b"supporter-phone"
ALERT_CONTEXT = b"alert-phone"


def find_supporter(
    session: Session, vault: Vault, programme_id: int, phone: str
) -> Supporter | None:
    return _find(session, vault, Supporter, programme_id, phone)


def find_clinician(
    session: Session, vault: Vault, programme_id: int, phone: str
) -> Clinician | None:
    return _find(session, vault, Clinician, programme_id, phone)


def _find(
    session: Session, vault: Vault, model: type[P], programme_id: int, phone: str
) -> P | None:
    """The row of ``model`` with ``phone`` in this programme, by blind index under every key."""
    return session.scalar(
        select(model).where(
            model.programme_id == programme_id, model.phone_hash.in_(vault.blind_indexes(phone))
        )
    )


def get_or_create_clinician(
    session: Session, vault: Vault, programme_id: int, phone: str
) -> Clinician:
    """The clinician with ``phone`` in this programme, created on first contact (race-safe)."""
    clinician = find_clinician(session, vault, programme_id, phone)
    if clinician is not None:
        return clinician
    try:
        with session.begin_nested():
            clinician = Clinician(
                programme_id=programme_id,
                phone_sealed=vault.seal(phone, CLINICIAN_CONTEXT),
                phone_hash=vault.blind_index(phone),
            )
            session.add(clinician)
        return clinician
    except IntegrityError:
        # A concurrent first text from the same phone created it; use that row.
        found = find_clinician(session, vault, programme_id, phone)
        assert found is not None
        return found


def new_supporter(
    vault: Vault, programme_id: int, name: str, phone: str, **fields: object
) -> Supporter:
    return Supporter(
        programme_id=programme_id,
        name=name,
        phone_sealed=vault.seal(phone, SUPPORTER_CONTEXT),
        phone_hash=vault.blind_index(phone),
        **fields,
    )


def set_supporter_phone(vault: Vault, supporter: Supporter, phone: str) -> None:
    """A new number: whatever Twilio refused of the old one is no longer theirs (reach.py)."""
    supporter.phone_sealed = vault.seal(phone, SUPPORTER_CONTEXT)
    supporter.phone_hash = vault.blind_index(phone)
    supporter.texts_refused_code = supporter.texts_refused_at = None


def supporter_phone(vault: Vault, supporter: Supporter) -> str:
    return vault.open(supporter.phone_sealed, SUPPORTER_CONTEXT)


def clinician_phone(vault: Vault, clinician: Clinician) -> str | None:
    """The clinician's number, or None once they have been forgotten."""
    if clinician.phone_sealed is None:
        return None
    return vault.open(clinician.phone_sealed, CLINICIAN_CONTEXT)


def is_opted_out(
    session: Session, vault: Vault, programme_id: int, phone: str, sender: str
) -> bool:
    """True when Twilio blocks texts from ``sender`` to ``phone`` (they texted STOP to it)."""
    return bool(opted_out(session, vault, [(programme_id, phone, sender)]))


def opted_out(
    session: Session, vault: Vault, wanted: Sequence[tuple[int, str, str]]
) -> set[tuple[int, str, str]]:
    """Which of the (programme id, phone, sender) triples are blocked, in one query."""
    if not wanted:
        return set()
    hashes = {triple: vault.blind_indexes(triple[1]) for triple in wanted}
    found = {
        (row.programme_id, row.phone_hash, row.sender)
        for row in session.execute(
            select(OptOut.programme_id, OptOut.phone_hash, OptOut.sender).where(
                OptOut.programme_id.in_({pid for pid, _, _ in wanted}),
                OptOut.phone_hash.in_({h for hs in hashes.values() for h in hs}),
                OptOut.sender.in_({sender for _, _, sender in wanted}),
            )
        )
    }
    return {
        (pid, phone, sender)
        for (pid, phone, sender), hs in hashes.items()
        if any((pid, h, sender) in found for h in hs)
    }


def record_opt_out(
    session: Session, vault: Vault, programme_id: int, phone: str, sender: str
) -> None:
    if not is_opted_out(session, vault, programme_id, phone, sender):
        block(session, programme_id, vault.blind_index(phone), sender)


def lift_opt_out(
    session: Session, vault: Vault, programme_id: int, phone: str, sender: str
) -> None:
    """Twilio unblocked the pair (START): a supporter with ``phone`` is reached again, so the
    refusal their STOP left on the roster goes (reach.py)."""
    hashes = vault.blind_indexes(phone)
    for row in session.scalars(
        select(OptOut).where(
            OptOut.programme_id == programme_id,
            OptOut.phone_hash.in_(hashes),
            OptOut.sender == sender,
        )
    ):
        session.delete(row)
    session.execute(
        update(Supporter)
        .where(
            Supporter.programme_id == programme_id,
            Supporter.phone_hash.in_(hashes),
            Supporter.texts_refused_code == STOPPED,
        )
        .values(texts_refused_code=None, texts_refused_at=None)
        .execution_options(synchronize_session=False)
    )


def set_alert_phone(vault: Vault, programme: Programme, phone: str | None) -> None:
    """Where "nobody is available" alerts for ``programme`` are texted (None: nowhere)."""
    programme.alert_phone_sealed = vault.seal(phone, ALERT_CONTEXT) if phone else None
