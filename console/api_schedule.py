"""``/api/v1`` schedule resources: shifts, rotations, overrides, who is on call, gaps.

Times are ISO 8601 with an offset, in bodies and in query strings (a ``+`` that a client left
unencoded arrives as a space and is read back as ``+``). Windows (``from``, ``to``) default to
the next four weeks and span at most MAX_WINDOW.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy.orm import Session

from console.api import body, caller, fail, only, writing
from console.context import now, services
from console.present import (
    iso,
    override_json,
    rotation_json,
    segment_json,
    shift_json,
    supporter_json,
)
from hotline import reach, rota, rotation, schedule
from hotline.db import transaction
from hotline.models import Override, Programme, Rotation, Shift, Supporter
from hotline.programmes import config_of

bp = Blueprint("schedule", __name__)
MAX_WINDOW = timedelta(days=92)
DEFAULT_WINDOW = timedelta(days=28)
_SPACED_OFFSET = re.compile(r"^(.*T[0-9:.]+) ([0-9]{2}:?[0-9]{2})$")


def instant(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    if raw is None:
        return default
    raw = _SPACED_OFFSET.sub(r"\1+\2", raw.strip())
    try:
        return rota.parse_instant(raw, name)
    except rota.RotaError as error:
        fail(422, str(error), name)


def window() -> tuple[datetime, datetime]:
    start = instant("from", now())
    end = instant("to", start + DEFAULT_WINDOW)
    if not timedelta(0) < end - start <= MAX_WINDOW:
        fail(422, f"'to' must come after 'from', at most {MAX_WINDOW.days} days later", "to")
    return start, end


def _owned(
    session: Session, model: type[Shift] | type[Override] | type[Rotation], ident: int
) -> Any:
    row: Any = session.get(model, ident) if 0 < ident < 2**31 else None
    if row is None or row.programme_id not in caller().programme_ids:
        fail(404, f"no such {model.__tablename__[:-1]}")
    return row


def _rota_error(error: rota.RotaError) -> None:
    fail(422, str(error), error.field)


@bp.get("/shifts")
def list_shifts() -> Response:
    start, end = window()
    with transaction(services().sessions) as session:
        rows = [
            shift_json(s)
            for p in sorted(caller().programme_ids)
            for s in rota.shifts(session, p, start, end)
        ]
    return jsonify(rows)


@bp.post("/shifts")
def create_shift() -> tuple[Response, int, dict[str, str]]:
    data = body()
    only(data, {"supporter_id", "starts_at", "ends_at"}, {"supporter_id", "starts_at", "ends_at"})
    with writing() as session:
        try:
            shift = rota.add_shift(
                session,
                caller().programme_id(),
                data["supporter_id"],
                data["starts_at"],
                data["ends_at"],
                caller().actor,
                now(),
            )
        except rota.RotaError as error:
            _rota_error(error)
        shown = shift_json(shift)
    return jsonify(shown), 201, {"Location": f"/api/v1/shifts/{shift.id}"}


@bp.get("/shifts/<int:shift_id>")
def get_shift(shift_id: int) -> Response:
    with transaction(services().sessions) as session:
        return jsonify(shift_json(_owned(session, Shift, shift_id)))


@bp.delete("/shifts/<int:shift_id>")
def delete_shift(shift_id: int) -> tuple[str, int]:
    with writing() as session:
        rota.delete_shift(session, _owned(session, Shift, shift_id), caller().actor, now())
    return "", 204


@bp.get("/overrides")
def list_overrides() -> Response:
    start, end = window()
    with transaction(services().sessions) as session:
        rows = [
            override_json(o)
            for p in sorted(caller().programme_ids)
            for o in rota.overrides(session, p, start, end)
        ]
    return jsonify(rows)


@bp.post("/overrides")
def create_override() -> tuple[Response, int, dict[str, str]]:
    data = body()
    only(
        data,
        {"supporter_id", "covers_for_id", "starts_at", "ends_at"},
        {"supporter_id", "starts_at", "ends_at"},
    )
    with writing() as session:
        try:
            row = rota.add_override(
                session,
                caller().programme_id(),
                data["supporter_id"],
                data.get("covers_for_id"),
                data["starts_at"],
                data["ends_at"],
                caller().actor,
                now(),
            )
        except rota.RotaError as error:
            _rota_error(error)
        shown = override_json(row)
    return jsonify(shown), 201, {"Location": f"/api/v1/overrides/{row.id}"}


@bp.get("/overrides/<int:override_id>")
def get_override(override_id: int) -> Response:
    with transaction(services().sessions) as session:
        return jsonify(override_json(_owned(session, Override, override_id)))


@bp.delete("/overrides/<int:override_id>")
def delete_override(override_id: int) -> tuple[str, int]:
    with writing() as session:
        rota.delete_override(session, _owned(session, Override, override_id), caller().actor, now())
    return "", 204


@bp.get("/rotations")
def list_rotations() -> Response:
    with transaction(services().sessions) as session:
        rows = [
            rotation_json(r)
            for p in sorted(caller().programme_ids)
            for r in rotation.rotations(session, p)
        ]
    return jsonify(rows)


def _zone(session: Session, programme_id: int) -> str:
    return config_of(session.get_one(Programme, programme_id), services().settings).zone.key


@bp.post("/rotations")
def create_rotation() -> tuple[Response, int, dict[str, str]]:
    data = body()
    only(data, set(rotation.ROTATION_FIELDS), set(rotation.ROTATION_FIELDS))
    with writing() as session:
        programme_id = caller().programme_id()
        try:
            row = rotation.add_rotation(
                session, programme_id, _zone(session, programme_id), data, caller().actor, now()
            )
        except rota.RotaError as error:
            _rota_error(error)
        shown = rotation_json(row)
    return jsonify(shown), 201, {"Location": f"/api/v1/rotations/{row.id}"}


@bp.get("/rotations/<int:rotation_id>")
def get_rotation(rotation_id: int) -> Response:
    with transaction(services().sessions) as session:
        return jsonify(rotation_json(_owned(session, Rotation, rotation_id)))


@bp.patch("/rotations/<int:rotation_id>")
def update_rotation(rotation_id: int) -> Response:
    data = body()
    only(data, set(rotation.ROTATION_FIELDS))
    with writing() as session:
        row = _owned(session, Rotation, rotation_id)
        try:
            rotation.edit_rotation(session, row, data, caller().actor, now())
        except rota.RotaError as error:
            _rota_error(error)
        shown = rotation_json(row)
    return jsonify(shown)


@bp.delete("/rotations/<int:rotation_id>")
def delete_rotation(rotation_id: int) -> tuple[str, int]:
    with writing() as session:
        rotation.delete_rotation(
            session, _owned(session, Rotation, rotation_id), caller().actor, now()
        )
    return "", 204


@bp.get("/oncall")
def on_call() -> Response:
    """The supporters on call at ``at`` (now by default), across the caller's programmes."""
    at = instant("at", now())
    vault = services().vault
    with transaction(services().sessions) as session:
        ids = set().union(*(schedule.on_call(session, p, at) for p in caller().programme_ids))
        listed = [session.get_one(Supporter, i) for i in sorted(ids)]
        refusals = reach.refusals(session, listed)
        people = [supporter_json(vault, s, refusals) for s in listed]
    return jsonify(at=iso(at), supporters=people)


@bp.get("/coverage-gaps")
def coverage_gaps() -> Response:
    """Stretches of the window during which nobody the line can text is on call (one
    programme): each names who is on call in it, all supporters the line cannot text."""
    start, end = window()
    with transaction(services().sessions) as session:
        gaps = schedule.coverage_gaps(session, caller().programme_id(), start, end)
    return jsonify(gaps=[segment_json(g) for g in gaps], **{"from": iso(start), "to": iso(end)})
