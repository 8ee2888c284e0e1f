"""Weekly rotations: created, edited and deleted, each change audited.

A rotation's members take one-week turns in the order given; hand-offs happen at a local
weekday and time in the programme's time zone (the caller passes its name), from the first
hand-off on or after the anchor date. Only verified, active supporters can be members.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, time
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, selectinload

from hotline import audit
from hotline.models import Programme, Rotation, RotationMember
from hotline.rota import RotaError, log, parse_date, schedulable

MAX_MEMBERS = 52
MAX_NAME = 120
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def follow_programme_zones(
    session: Session, default_zone: str, programme_id: int | None = None
) -> int:
    """Rotations hand off on their programme's wall clock: give every rotation (of
    ``programme_id``, or of every programme) its programme's time zone, or the deployment's
    ``default_zone`` for a programme without one, where it differs; how many changed.

    The settings page and API call it when the zone changes, ``hotline programme add`` when it
    sets one, and ``hotline db upgrade`` (the release step) always, so a changed
    ``HOTLINE_TIMEZONE`` is followed from the next deploy on."""
    zone = func.coalesce(
        select(Programme.timezone).where(Programme.id == Rotation.programme_id).scalar_subquery(),
        default_zone,
    )
    query = update(Rotation).where(Rotation.timezone != zone).values(timezone=zone)
    if programme_id is not None:
        query = query.where(Rotation.programme_id == programme_id)
    result = session.execute(query.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def parse_weekday(raw: object) -> int:
    text = str(raw).strip().lower()
    if isinstance(raw, int) and not isinstance(raw, bool) and 0 <= raw <= 6:
        return raw
    if text in WEEKDAYS:
        return WEEKDAYS.index(text)
    raise RotaError(
        "the hand-off day is a weekday name or 0 (Monday) to 6 (Sunday)", "handoff_weekday"
    )


def parse_time(raw: object) -> time:
    if isinstance(raw, time):
        return raw.replace(second=0, microsecond=0)
    try:
        value = time.fromisoformat(str(raw).strip())
    except ValueError:
        raise RotaError("the hand-off time is a local time like 09:00", "handoff_time") from None
    if value.tzinfo is not None:
        raise RotaError(
            "the hand-off time is local to the programme: give no offset", "handoff_time"
        )
    return value.replace(second=0, microsecond=0)


def _members(session: Session, programme_id: int, raw: object) -> list[int]:
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise RotaError("list the supporters in their turn order", "supporter_ids")
    if len(raw) > MAX_MEMBERS:
        raise RotaError(f"at most {MAX_MEMBERS} supporters in a rotation", "supporter_ids")
    ids = [schedulable(session, programme_id, s, "supporter_ids").id for s in raw]
    if len(set(ids)) != len(ids):
        raise RotaError("each supporter appears once in a rotation", "supporter_ids")
    return ids


def _name(raw: object) -> str:
    name = " ".join(str(raw or "").split())
    if not name or len(name) > MAX_NAME:
        raise RotaError(f"a rotation needs a name of 1 to {MAX_NAME} characters", "name")
    return name


def add_rotation(
    session: Session,
    programme_id: int,
    zone: str,
    fields: Mapping[str, object],
    actor: str,
    now: datetime,
) -> Rotation:
    """A weekly rotation in the programme's time zone ``zone``; fields: name, handoff_weekday,
    handoff_time, anchor_date, supporter_ids (in turn order)."""
    rotation = Rotation(programme_id=programme_id, timezone=zone, created_at=now)
    _fill(session, rotation, {"name": "", **fields}, require=True)
    session.add(rotation)
    session.flush()
    log(
        session,
        programme_id,
        actor,
        "rotation.add",
        f"rotation:{rotation.id}",
        now,
        new=rotation_view(rotation),
    )
    return rotation


def edit_rotation(
    session: Session, rotation: Rotation, fields: Mapping[str, object], actor: str, now: datetime
) -> Rotation:
    before = rotation_view(rotation)
    _fill(session, rotation, fields, require=False)
    session.flush()
    old, new = audit.changed(before, rotation_view(rotation))
    if new:
        log(
            session,
            rotation.programme_id,
            actor,
            "rotation.edit",
            f"rotation:{rotation.id}",
            now,
            old,
            new,
        )
    return rotation


ROTATION_FIELDS = ("name", "handoff_weekday", "handoff_time", "anchor_date", "supporter_ids")


def _fill(
    session: Session, rotation: Rotation, fields: Mapping[str, object], require: bool
) -> None:
    unknown = set(fields) - set(ROTATION_FIELDS)
    if unknown:
        raise RotaError(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    missing = [f for f in ROTATION_FIELDS if require and f not in fields]
    if missing:
        raise RotaError(f"{missing[0]} is required", missing[0])
    if "name" in fields:
        rotation.name = _name(fields["name"])
    if "handoff_weekday" in fields:
        rotation.handoff_weekday = parse_weekday(fields["handoff_weekday"])
    if "handoff_time" in fields:
        rotation.handoff_time = parse_time(fields["handoff_time"])
    if "anchor_date" in fields:
        rotation.anchor_date = parse_date(fields["anchor_date"])
    if "supporter_ids" in fields:
        ids = _members(session, rotation.programme_id, fields["supporter_ids"])
        if rotation.id is not None:
            # Old rows must go before new ones take their positions (a unique constraint).
            rotation.members.clear()
            session.flush()
        rotation.members = [RotationMember(supporter_id=s, position=i) for i, s in enumerate(ids)]


def rotation_view(rotation: Rotation) -> dict[str, Any]:
    return {
        "name": rotation.name,
        "handoff_weekday": rotation.handoff_weekday,
        "handoff_time": rotation.handoff_time,
        "anchor_date": rotation.anchor_date,
        "supporter_ids": [m.supporter_id for m in rotation.members],
    }


def delete_rotation(session: Session, rotation: Rotation, actor: str, now: datetime) -> None:
    log(
        session,
        rotation.programme_id,
        actor,
        "rotation.delete",
        f"rotation:{rotation.id}",
        now,
        old=rotation_view(rotation),
    )
    session.delete(rotation)


def rotations(session: Session, programme_id: int) -> list[Rotation]:
    return list(
        session.scalars(
            select(Rotation)
            .where(Rotation.programme_id == programme_id)
            .options(selectinload(Rotation.members))
            .order_by(Rotation.id)
        )
    )
