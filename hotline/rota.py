"""Changing the schedule: one-off shifts and overrides, each change audited.

Only active supporters whose phone number is verified can be put on call. Times are aware
instants between EARLIEST and LATEST; a shift or override lasts at most MAX_PERIOD. Weekly
rotations are rotation.py's; reading the schedule is schedule.py's business. This module and
that one only validate and write.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import audit, verification
from hotline.models import Override, Shift, Supporter

EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2100, 1, 1, tzinfo=UTC)
MAX_PERIOD = timedelta(days=92)


class RotaError(ValueError):
    """A schedule change refused; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


def parse_instant(raw: object, field: str) -> datetime:
    """An ISO 8601 date-time with an offset (``2026-03-02T09:00:00-05:00``), as UTC."""
    if isinstance(raw, datetime):
        value = raw
    else:
        try:
            # RFC 3339 (what OpenAPI's date-time means) lets "z" be lower case; ISO 8601 not.
            value = datetime.fromisoformat(str(raw).strip().upper().replace("Z", "+00:00"))
        except ValueError:
            raise RotaError("not an ISO 8601 date and time", field) from None
    if value.tzinfo is None or value.utcoffset() is None:
        raise RotaError("give the time with its offset, e.g. 2026-03-02T09:00:00-05:00", field)
    try:
        value = value.astimezone(UTC)
    except OverflowError:  # year 1 or 9999 with an offset: outside what a datetime holds
        raise RotaError("times must fall between the years 2000 and 2099", field) from None
    if not EARLIEST <= value < LATEST:
        raise RotaError("times must fall between the years 2000 and 2099", field)
    return value


def parse_date(raw: object, field: str = "anchor_date") -> date:
    if isinstance(raw, date) and not isinstance(raw, datetime):
        value = raw
    else:
        try:
            value = date.fromisoformat(str(raw).strip())
        except ValueError:
            raise RotaError("not a date like 2026-03-02", field) from None
    if not EARLIEST.date() <= value < LATEST.date() - timedelta(days=366):
        raise RotaError("dates must fall between the years 2000 and 2098", field)
    return value


def schedulable(session: Session, programme_id: int, supporter_id: object, field: str) -> Supporter:
    """The supporter, if they may be put on call: in the programme, active, number verified."""
    if isinstance(supporter_id, bool) or not isinstance(supporter_id, int):
        raise RotaError("supporter ids are whole numbers", field)
    supporter = session.get(Supporter, supporter_id) if 0 < supporter_id < 2**31 else None
    if supporter is None or supporter.programme_id != programme_id:
        raise RotaError(f"no supporter {supporter_id} in this programme", field)
    if not supporter.active:
        raise RotaError(f"{supporter.name} is not active", field)
    if supporter.phone_verified_at is None or verification.pending(session, supporter.id):
        raise RotaError(f"{supporter.name}'s phone number is not verified yet", field)
    return supporter


def _period(starts_at: object, ends_at: object) -> tuple[datetime, datetime]:
    start, end = parse_instant(starts_at, "starts_at"), parse_instant(ends_at, "ends_at")
    if end <= start:
        raise RotaError("the end must come after the start", "ends_at")
    if end - start > MAX_PERIOD:
        raise RotaError(f"at most {MAX_PERIOD.days} days at a time", "ends_at")
    return start, end


def log(
    session: Session,
    programme_id: int,
    actor: str,
    action: str,
    target: str,
    now: datetime,
    old: Mapping[str, Any] | None = None,
    new: Mapping[str, Any] | None = None,
) -> None:
    audit.record(
        session,
        programme_id=programme_id,
        actor=actor,
        action=action,
        target=target,
        old=old,
        new=new,
        at=now,
    )


def add_shift(
    session: Session,
    programme_id: int,
    supporter_id: object,
    starts_at: object,
    ends_at: object,
    actor: str,
    now: datetime,
) -> Shift:
    """Put a verified supporter on call from ``starts_at`` to ``ends_at``."""
    supporter = schedulable(session, programme_id, supporter_id, "supporter_id")
    start, end = _period(starts_at, ends_at)
    shift = Shift(
        programme_id=programme_id,
        supporter_id=supporter.id,
        starts_at=start,
        ends_at=end,
        created_at=now,
    )
    session.add(shift)
    session.flush()
    log(session, programme_id, actor, "shift.add", f"shift:{shift.id}", now, new=shift_view(shift))
    return shift


def shift_view(shift: Shift) -> dict[str, Any]:
    return {
        "supporter_id": shift.supporter_id,
        "starts_at": shift.starts_at,
        "ends_at": shift.ends_at,
    }


def delete_shift(session: Session, shift: Shift, actor: str, now: datetime) -> None:
    log(
        session,
        shift.programme_id,
        actor,
        "shift.delete",
        f"shift:{shift.id}",
        now,
        old=shift_view(shift),
    )
    session.delete(shift)


def add_override(
    session: Session,
    programme_id: int,
    supporter_id: object,
    replaces_id: object,
    starts_at: object,
    ends_at: object,
    actor: str,
    now: datetime,
) -> Override:
    """``supporter_id`` covers for ``replaces_id`` (or is simply added, if None) in the window."""
    supporter = schedulable(session, programme_id, supporter_id, "supporter_id")
    replaced = None
    if replaces_id is not None:
        replaced = _member(session, programme_id, replaces_id, "covers_for_id")
        if replaced.id == supporter.id:
            raise RotaError("a supporter cannot cover for themself", "covers_for_id")
    start, end = _period(starts_at, ends_at)
    row = Override(
        programme_id=programme_id,
        supporter_id=supporter.id,
        replaces_id=replaced.id if replaced else None,
        starts_at=start,
        ends_at=end,
        created_at=now,
    )
    session.add(row)
    session.flush()
    log(
        session,
        programme_id,
        actor,
        "override.add",
        f"override:{row.id}",
        now,
        new=override_view(row),
    )
    return row


def _member(session: Session, programme_id: int, supporter_id: object, field: str) -> Supporter:
    if isinstance(supporter_id, bool) or not isinstance(supporter_id, int):
        raise RotaError("supporter ids are whole numbers", field)
    supporter = session.get(Supporter, supporter_id) if 0 < supporter_id < 2**31 else None
    if supporter is None or supporter.programme_id != programme_id:
        raise RotaError(f"no supporter {supporter_id} in this programme", field)
    return supporter


def override_view(row: Override) -> dict[str, Any]:
    return {
        "supporter_id": row.supporter_id,
        "replaces_id": row.replaces_id,
        "starts_at": row.starts_at,
        "ends_at": row.ends_at,
    }


def delete_override(session: Session, row: Override, actor: str, now: datetime) -> None:
    log(
        session,
        row.programme_id,
        actor,
        "override.delete",
        f"override:{row.id}",
        now,
        old=override_view(row),
    )
    session.delete(row)


def shifts(session: Session, programme_id: int, start: datetime, end: datetime) -> list[Shift]:
    return list(
        session.scalars(
            select(Shift)
            .where(Shift.programme_id == programme_id, Shift.ends_at > start, Shift.starts_at < end)
            .order_by(Shift.starts_at, Shift.id)
        )
    )


def overrides(
    session: Session, programme_id: int, start: datetime, end: datetime
) -> list[Override]:
    return list(
        session.scalars(
            select(Override)
            .where(
                Override.programme_id == programme_id,
                Override.ends_at > start,
                Override.starts_at < end,
            )
            .order_by(Override.starts_at, Override.id)
        )
    )
