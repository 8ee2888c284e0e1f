"""``/console/schedule``: week and month calendars, gaps, load, and the schedule's forms.

Times typed into the forms are local to the programme's time zone. A wall time skipped by DST
reads with the offset from before the change, so it lands as far past the skip as it was into
it (02:30 on a spring-forward night is 03:30); a repeated one is the first. Only verified,
active supporters can be put on call.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from sqlalchemy.orm import Session

from console import auth, grid
from console.context import now, services, zone_of
from console.forms import (
    LOCAL,
    ROTATION_SLOTS,
    ActionForm,
    OverrideForm,
    RotationForm,
    ShiftForm,
    options,
)
from hotline import reach, roster, rota, rotation, schedule, status
from hotline.db import transaction
from hotline.models import Override, Rotation, Shift

bp = Blueprint("schedule", __name__, url_prefix="/schedule")


def local_to_utc(value: datetime, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as UTC; RotaError outside the years the schedule holds."""
    if not rota.EARLIEST.year <= value.year < rota.LATEST.year:
        raise rota.RotaError("times must fall between the years 2000 and 2099")
    return value.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _choices(db: Session, blank: str | None = None) -> list[tuple[int, str]]:
    people = [
        (s.id, s.name)
        for s in roster.listing(db, auth.programme_id())
        if s.active and s.phone_verified_at is not None
    ]
    return ([(0, blank)] if blank else []) + people


def _forms(db: Session) -> dict[str, Any]:
    shift, override, turn = (
        ShiftForm(prefix="shift"),
        OverrideForm(prefix="override"),
        RotationForm(prefix="rotation"),
    )
    people = _choices(db)
    shift.supporter_id.choices = override.supporter_id.choices = options(people)
    override.covers_for_id.choices = options(
        [(0, "Nobody (add them)")]
        + [(s.id, s.name) for s in roster.listing(db, auth.programme_id())]
    )
    for entry in turn.members:
        entry.choices = options(_choices(db, blank="—"))
    return {"shift_form": shift, "override_form": override, "rotation_form": turn}


def _view_window(zone: ZoneInfo) -> tuple[str, date, date, date]:
    view = "month" if request.args.get("view") == "month" else "week"
    try:
        anchor = rota.parse_date(request.args.get("date", ""), "date")
    except rota.RotaError:  # missing, malformed or out of range: today
        anchor = now().astimezone(zone).date()
    first, last = grid.month_window(anchor) if view == "month" else grid.week_window(anchor)
    return view, anchor, first, last


def _asked_at(zone: ZoneInfo) -> datetime:
    try:
        return local_to_utc(datetime.strptime(request.args.get("at", ""), LOCAL), zone)
    except (ValueError, rota.RotaError):
        return now()


@bp.get("")
def index() -> ResponseReturnValue:
    return _page()


def _page(forms: dict[str, Any] | None = None) -> str:
    pid = auth.programme_id()
    with services().sessions() as db:
        zone = zone_of(db, pid)
        view, anchor, first, last = _view_window(zone)
        start, end = grid.bounds(first, last, zone)
        found = schedule.timeline(db, pid, start, end)
        names = {s.id: s.name for s in roster.listing(db, pid)}
        refused = reach.untextable(db, pid).keys()
        at = _asked_at(zone)
        context = {
            "view": view,
            "anchor": anchor,
            "earlier": anchor - timedelta(days=7 if view == "week" else 31),
            "later": anchor + timedelta(days=7 if view == "week" else 31),
            "days": grid.days(
                found, zone, first, last, names, anchor.month if view == "month" else None, refused
            ),
            "load": sorted(
                ((names.get(i, "?"), h) for i, h in schedule.load_of(found).items()),
                key=lambda x: -x[1],
            ),
            "asked_at": at.astimezone(zone),
            "answer": sorted(
                names.get(i, "?") + (" (texts refused)" if i in refused else "")
                for i in schedule.on_call(db, pid, at)
            ),
            "gaps": status.gaps_ahead(db, pid, now(), status.warning_horizon(db, pid)),
            "rotations": rotation.rotations(db, pid),
            "shifts": rota.shifts(db, pid, start, end),
            "overrides": rota.overrides(db, pid, start, end),
            "names": names,
            "zone": zone,
            "action_form": ActionForm(),
            **(forms or _forms(db)),
        }
    return render_template("console/schedule.html", **context)


def _back() -> ResponseReturnValue:
    kept: dict[str, Any] = {k: v for k, v in request.args.items() if k in ("view", "date")}
    return redirect(url_for("console.schedule.index", **kept))


def _failed(forms: dict[str, Any], name: str, error: rota.RotaError) -> ResponseReturnValue:
    field = getattr(forms[name], error.field or "", None)
    if field is not None and error.field != "supporter_ids":
        field.errors = [*field.errors, str(error)]
    flash(str(error), "error")
    return _page(forms), 422


@bp.post("/shifts")
def add_shift() -> ResponseReturnValue:
    return _submit("shift_form", _write_shift)


@bp.post("/overrides")
def add_override() -> ResponseReturnValue:
    return _submit("override_form", _write_override)


@bp.post("/rotations")
def add_rotation() -> ResponseReturnValue:
    return _submit("rotation_form", _write_rotation)


def _submit(name: str, write: Any) -> ResponseReturnValue:
    pid = auth.programme_id()
    with services().sessions() as db:
        forms = _forms(db)
    form = forms[name]
    if not form.validate_on_submit():
        flash("Check the form: some fields are missing or not valid.", "error")
        return _page(forms), 422
    try:
        with transaction(services().sessions) as db:
            write(db, pid, zone_of(db, pid), form)
    except rota.RotaError as error:
        return _failed(forms, name, error)
    flash("Schedule updated.", "success")
    return _back()


def _write_shift(db: Session, pid: int, zone: ZoneInfo, form: ShiftForm) -> None:
    rota.add_shift(
        db,
        pid,
        form.supporter_id.data,
        local_to_utc(form.starts_at.data, zone),
        local_to_utc(form.ends_at.data, zone),
        auth.user().email,
        now(),
    )


def _write_override(db: Session, pid: int, zone: ZoneInfo, form: OverrideForm) -> None:
    rota.add_override(
        db,
        pid,
        form.supporter_id.data,
        form.covers_for_id.data or None,
        local_to_utc(form.starts_at.data, zone),
        local_to_utc(form.ends_at.data, zone),
        auth.user().email,
        now(),
    )


def _write_rotation(db: Session, pid: int, zone: ZoneInfo, form: RotationForm) -> None:
    members = [m.data for m in form.members if m.data][:ROTATION_SLOTS]
    rotation.add_rotation(
        db,
        pid,
        zone.key,
        {
            "name": form.name.data,
            "handoff_weekday": form.handoff_weekday.data,
            "handoff_time": form.handoff_time.data,
            "anchor_date": form.anchor_date.data,
            "supporter_ids": members,
        },
        auth.user().email,
        now(),
    )


KINDS: dict[str, type[Shift] | type[Override] | type[Rotation]] = {
    "shifts": Shift,
    "overrides": Override,
    "rotations": Rotation,
}


@bp.post("/<kind>/<int:ident>/delete")
def delete(kind: str, ident: int) -> ResponseReturnValue:
    model = KINDS.get(kind)
    if model is None or not ActionForm().validate_on_submit():
        abort(404 if model is None else 400)
    with transaction(services().sessions) as db:
        row: Any = db.get(model, ident) if 0 < ident < 2**31 else None
        if row is None or row.programme_id != auth.programme_id():
            abort(404)
        remove = {
            Shift: rota.delete_shift,
            Override: rota.delete_override,
            Rotation: rotation.delete_rotation,
        }[model]
        remove(db, row, auth.user().email, now())  # type: ignore[operator]
    flash("Removed.", "success")
    return _back()
