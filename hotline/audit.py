"""The audit log: every coordinator and operator action, append-only.

Each entry says who (a coordinator's email, or ``api:NAME`` for a token), what, when, on which
target, and the old and new values of what changed. Values pass through ``scrub`` first: any
field whose name mentions a phone or a number is printed through ``phone.redact``, so the log
never holds a full phone number. The application never updates or deletes an entry: an ORM
listener refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import event, or_, select
from sqlalchemy.orm import Session

from hotline.models import AuditEntry
from hotline.phone import redact

PHONE_HINTS = ("phone", "number")
SETTINGS_EDIT = "settings.edit"  # a programme's Settings changed (the console's, or the API)
MAX_TEXT = 500  # long texts (greetings) are cut in the log; the programme row has them whole


class AuditError(RuntimeError):
    """Something tried to change or delete an audit entry."""


def scrub(values: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A JSON-safe copy of ``values`` with every phone-like field redacted."""
    if values is None:
        return None
    return {key: _scrub_value(key, value) for key, value in values.items()}


def _scrub_value(key: str, value: Any) -> Any:
    if any(hint in key.lower() for hint in PHONE_HINTS):
        if isinstance(value, list | tuple):
            return [_redacted(v) for v in value]
        return _redacted(value) if value else value
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [_scrub_value("", v) for v in value]
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[: MAX_TEXT - 1] + "…"
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _redacted(value: object) -> str:
    text = str(value)
    return text if "•" in text else redact(text)  # already redacted by the caller


def changed(
    old: Mapping[str, Any], new: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keys whose values differ, as (old values, new values)."""
    keys = [k for k in new if old.get(k) != new[k]]
    return {k: old.get(k) for k in keys}, {k: new[k] for k in keys}


def record(
    session: Session,
    *,
    programme_id: int | None,
    actor: str,
    action: str,
    at: datetime,
    target: str | None = None,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
) -> AuditEntry:
    """Append one entry (in the caller's transaction, so it commits with the change itself)."""
    entry = AuditEntry(
        programme_id=programme_id,
        actor=actor[:254],
        action=action[:60],
        target=target[:120] if target else None,
        old=scrub(old),
        new=scrub(new),
        at=at,
    )
    session.add(entry)
    return entry


def entries(
    session: Session,
    programme_id: int,
    *,
    limit: int = 50,
    before_id: int | None = None,
    deployment: bool = False,
) -> list[AuditEntry]:
    """The programme's entries, newest first; ``before_id`` pages back. ``deployment``: with
    those of no one programme (an administrator's account, a token for every programme)."""
    mine = AuditEntry.programme_id == programme_id
    query = select(AuditEntry).where(
        or_(mine, AuditEntry.programme_id.is_(None)) if deployment else mine
    )
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return list(session.scalars(query.order_by(AuditEntry.id.desc()).limit(limit)))


@event.listens_for(AuditEntry, "before_update")
def _refuse_update(*_: object) -> None:
    raise AuditError("audit entries are append-only")


@event.listens_for(AuditEntry, "before_delete")
def _refuse_delete(*_: object) -> None:
    raise AuditError("audit entries are append-only")
