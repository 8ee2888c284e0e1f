"""Data-key rotation: re-seal every sealed value and recompute every blind index under the
first ``HOTLINE_DATA_KEY``, so the older keys can be dropped from the list afterwards.

Run with the new key first and the old ones after it (``HOTLINE_DATA_KEY=new,old``): every key
opens and finds, only the first seals. Rows are rewritten in batches, each in its own short
transaction with its rows locked, so the line keeps running; a row already under the first key
is left alone, so a second run (or one interrupted and started again) only finishes the job.

An opt-out stores only the keyed hash of a number, so it can be re-indexed only through a
clinician or supporter with that number; one from a number that never otherwise used the line
cannot. Once the old key is dropped it no longer matches: harmless, as Twilio itself keeps
refusing texts to that pair (error 21610, which the service records again).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from hotline.db import transaction
from hotline.held import PENDING_TEXT_CONTEXT
from hotline.models import Clinician, OptOut, PendingText, PhoneVerification, Programme, Supporter
from hotline.people import ALERT_CONTEXT, CLINICIAN_CONTEXT, SUPPORTER_CONTEXT
from hotline.privacy import DecryptionError, Vault
from hotline.verification import CODE_CONTEXT

BATCH_SIZE = 500


@dataclass(frozen=True)
class SealedColumn:
    """A column of sealed values; ``hash_column`` holds the blind index of the same value."""

    model: Any
    column: str
    context: bytes
    hash_column: str | None = None

    @property
    def name(self) -> str:
        return f"{self.model.__tablename__}.{self.column}"


SEALED = (
    SealedColumn(Supporter, "phone_sealed", SUPPORTER_CONTEXT, "phone_hash"),
    SealedColumn(Clinician, "phone_sealed", CLINICIAN_CONTEXT, "phone_hash"),
    SealedColumn(Programme, "alert_phone_sealed", ALERT_CONTEXT),
    SealedColumn(PendingText, "sealed", PENDING_TEXT_CONTEXT),
    SealedColumn(PhoneVerification, "code_sealed", CODE_CONTEXT),
)


@dataclass
class RotationReport:
    rewritten: Counter[str] = field(default_factory=Counter)  # column -> rows re-sealed
    opt_outs_reindexed: int = 0
    unreadable: Counter[str] = field(default_factory=Counter)  # no configured key opens them

    @property
    def complete(self) -> bool:
        return not self.unreadable


def rotate(
    sessions: sessionmaker[Session], vault: Vault, batch_size: int = BATCH_SIZE
) -> RotationReport:
    """Bring every sealed value and blind index under the vault's first key; idempotent."""
    report = RotationReport()
    for column in SEALED:
        after = 0
        while (last := _batch(sessions, vault, column, after, batch_size, report)) is not None:
            after = last
    return report


def stale(sessions: sessionmaker[Session], vault: Vault) -> Counter[str]:
    """Sealed values per column not yet under the first key (what a rotation still has to do)."""
    left: Counter[str] = Counter()
    with sessions() as session:
        for column in SEALED:
            values = session.scalars(select(getattr(column.model, column.column)))
            left[column.name] = sum(1 for v in values if v is not None and not vault.is_current(v))
    return +left


def _batch(
    sessions: sessionmaker[Session],
    vault: Vault,
    column: SealedColumn,
    after: int,
    size: int,
    report: RotationReport,
) -> int | None:
    """Re-seal one batch of ``column`` with ids above ``after``; the last id, None when done."""
    model = column.model
    with transaction(sessions) as session:
        rows = session.scalars(
            select(model)
            .where(model.id > after)
            .order_by(model.id)
            .limit(size)
            .with_for_update(key_share=True)  # FOR NO KEY UPDATE: inserts that refer to it go on
        ).all()
        for row in rows:
            _reseal(session, vault, column, row, report)
    return rows[-1].id if rows else None


def _reseal(
    session: Session, vault: Vault, column: SealedColumn, row: Any, report: RotationReport
) -> None:
    sealed = getattr(row, column.column)
    if sealed is None:
        return
    try:
        value = vault.open(sealed, column.context)
    except DecryptionError:
        report.unreadable[column.name] += 1
        return
    current_hash = vault.blind_index(value) if column.hash_column else None
    if vault.is_current(sealed) and getattr(row, column.hash_column or "", None) == current_hash:
        return
    setattr(row, column.column, vault.seal(value, column.context))
    if column.hash_column:
        setattr(row, column.hash_column, current_hash)
        report.opt_outs_reindexed += _reindex_opt_outs(session, vault, row.programme_id, value)
    report.rewritten[column.name] += 1


def _reindex_opt_outs(session: Session, vault: Vault, programme_id: int, phone: str) -> int:
    """Move this number's opt-outs to its blind index under the first key."""
    current = vault.blind_index(phone)
    older = [h for h in vault.blind_indexes(phone) if h != current]
    if not older:
        return 0
    mine = (OptOut.programme_id == programme_id, OptOut.phone_hash.in_(older))
    taken = select(OptOut.sender).where(
        OptOut.programme_id == programme_id, OptOut.phone_hash == current
    )
    session.execute(delete(OptOut).where(*mine, OptOut.sender.in_(taken)))  # already moved
    result = session.execute(
        update(OptOut)
        .where(*mine)
        .values(phone_hash=current)
        .execution_options(synchronize_session=False)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]
