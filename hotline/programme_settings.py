"""A programme's settings as the coordinator edits them: texts, cadence, numbers, schedule options.

Values live on the programme row (texts, time zone, check-ins, pool) and its ``ScheduleSettings``
row (reminders, warnings); an empty value means "use the environment's default" (see
programmes.config_of). ``checkin_hours`` is the one exception: ``any`` stores an empty window,
meaning check-ins may go out at any hour. Numbers are never shown back in full: ``view`` gives
them through ``phone.redact``. Every change is audited (numbers redacted by the audit log).
A number joins the pool only once Twilio sends it here (``numbercheck.Gate``).

Two coordinators may edit at once. A change is applied under the programme's lock
(routing.lock_programme) to the settings as they stand then, read again under it; one made
from settings read earlier (the settings page, an API client's ETag) names their ``version``,
and is refused whole (StaleSettingsError) if they have changed since: the settings page sends
back every field as it showed it, and would otherwise undo, unseen, what the other just saved.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Container, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hotline import audit
from hotline.models import PoolNumber, Programme, ScheduleSettings
from hotline.numbercheck import Gate, NotSetUpHereError
from hotline.people import ALERT_CONTEXT
from hotline.phone import InvalidPhoneNumber, normalize, redact
from hotline.plaintext import plain
from hotline.privacy import Vault
from hotline.programmes import (
    SOMEONES_PHONE,
    NumberInUseError,
    ProgrammeConfig,
    admit_new,
    numbers_in_use,
    numbers_of_others,
    read_under_lock,
    someones_phone,
)
from hotline.rotation import follow_programme_zones
from hotline.settings import (
    CRISIS_TEXT_LIMIT,
    NO_CHECKINS,
    SettingsError,
    is_timezone,
    parse_hours,
    parse_offsets,
)

TEXT_LIMITS = {
    "greeting": 1000,
    "call_greeting": 500,
    "crisis_text": CRISIS_TEXT_LIMIT,
    "resources_text": 1500,
    "checkin_text": 500,
}
NUMBER_LIMITS = {
    "offer_timeout": (30, 3600),
    "reminder_minutes": (5, 24 * 60),
    "gap_warning_hours": (1, 14 * 24),
}
FIELDS = (
    *TEXT_LIMITS,
    "timezone",
    "checkin_offsets",
    "checkin_hours",
    "offer_timeout",
    "pool_numbers",
    "alert_phone",
    "reminder_minutes",
    "gap_warning_hours",
)


class SettingsChangeError(ValueError):
    """A change refused, naming the field; ``later``: nothing is wrong with it, but Twilio
    could not be asked about a number, and the same change may pass in a few minutes."""

    def __init__(self, message: str, field: str, later: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.later = later


class StaleSettingsError(Exception):
    """The settings changed since the change was made from them (someone else saved)."""

    MESSAGE = (
        "Someone else changed these settings since you opened this page. Here they are now: "
        "make your change again."
    )

    def __init__(self) -> None:
        super().__init__(self.MESSAGE)


def options_row(session: Session, programme_id: int) -> ScheduleSettings:
    found = session.get(ScheduleSettings, programme_id)
    if found is None:
        found = ScheduleSettings(programme_id=programme_id)
        session.add(found)
        session.flush()
    return found


def view(session: Session, vault: Vault, programme: Programme) -> dict[str, Any]:
    """The stored values (None: the default applies), numbers redacted."""
    stored = _stored(session, vault, programme)
    alert = stored["alert_phone"]
    return {
        **stored,
        "pool_numbers": [redact(n) for n in stored["pool_numbers"]],
        "alert_phone": redact(alert) if alert else None,
    }


def version(session: Session, vault: Vault, programme: Programme) -> str:
    """A name for the settings as they stand (the settings page's hidden field, the API's
    ETag): any change to them, wherever it is made (Settings, the API, the command line, a
    release), gives another. The numbers count in full (two masked alike are different
    settings), so it is a keyed hash (the vault's): a plain one of a phone number is soon
    reversed by trying them all. A new data key gives every one another (pages open then are
    refused once)."""
    stored = json.dumps(_stored(session, vault, programme), sort_keys=True)
    return vault.blind_index("programme settings:" + stored)[:32]


def _stored(session: Session, vault: Vault, programme: Programme) -> dict[str, Any]:
    options = session.get(ScheduleSettings, programme.id)
    sealed = programme.alert_phone_sealed
    return {
        **{name: getattr(programme, name) for name in TEXT_LIMITS},
        "timezone": programme.timezone,
        "checkin_offsets": programme.checkin_offsets,
        "checkin_hours": "any" if programme.checkin_hours == "" else programme.checkin_hours,
        "offer_timeout": programme.offer_timeout,
        "pool_numbers": [p.number for p in programme.pool_numbers],
        "alert_phone": vault.open(sealed, ALERT_CONTEXT) if sealed else None,
        "reminder_minutes": options.reminder_minutes if options else None,
        "gap_warning_hours": options.gap_warning_hours if options else None,
    }


def effective(p: ProgrammeConfig) -> dict[str, Any]:
    """What applies now, defaults included (for placeholders and the API)."""
    hours = (
        "any" if p.checkin_hours is None else "-".join(t.strftime("%H:%M") for t in p.checkin_hours)
    )
    return {
        "greeting": p.greeting,
        "call_greeting": p.call_greeting,
        "crisis_text": p.crisis_text,
        "resources_text": p.resources_text,
        "checkin_text": p.checkin_text,
        "timezone": p.zone.key,
        "checkin_offsets": ",".join(_duration(o.total_seconds()) for o in p.checkin_offsets)
        or NO_CHECKINS,
        "checkin_hours": hours,
        "offer_timeout": int(p.offer_timeout.total_seconds()),
    }


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def update_settings(
    session: Session,
    vault: Vault,
    programme: Programme,
    changes: Mapping[str, object],
    actor: str,
    now: datetime,
    default_zone: str,
    *,
    gate: Gate | None,
    shown: Container[str] | None = None,
) -> None:
    """Apply ``changes`` (keys from FIELDS); raises SettingsChangeError naming the field.

    ``default_zone`` is the environment's time zone, which applies when none is set. ``gate``
    (numbercheck.gate: None for the simulator) admits numbers new to the line to the pool.
    ``shown``: the versions (``version``) the change may apply to, those it was made from;
    StaleSettingsError, and nothing applied, when the settings stand otherwise. None: applied
    to the settings as they stand, whatever they are."""
    unknown = sorted(set(changes) - set(FIELDS))
    if unknown:
        raise SettingsChangeError(f"unknown setting {unknown[0]!r}", unknown[0])
    _check_unchanged(session, vault, programme, shown)  # a stale change asks Twilio nothing
    pool = None
    if "pool_numbers" in changes:
        pool = _pool(session, vault, programme, changes["pool_numbers"])
        try:
            admit_new(session, gate, pool)
        except NotSetUpHereError as error:
            raise SettingsChangeError(str(error), "pool_numbers", error.later) from None
    _lock_and_read_again(session, programme)
    _check_unchanged(session, vault, programme, shown)
    if pool is not None:
        dropped = [p.number for p in programme.pool_numbers if p.number not in pool]
        if numbers_in_use(session, programme.id, dropped):
            raise SettingsChangeError(NumberInUseError.MESSAGE, "pool_numbers")
    before = view(session, vault, programme)
    for name, value in changes.items():
        if name != "pool_numbers":
            APPLY.get(name, _apply_text)(session, vault, programme, name, value)
    if pool is not None:
        current = {p.number: p for p in programme.pool_numbers}
        programme.pool_numbers = [current.get(n) or PoolNumber(number=n) for n in pool]
    if "timezone" in changes:
        _sync_rotations(session, programme, default_zone)
    session.flush()
    if pool is not None:
        # Read back in the order the pool is stored (the order its numbers joined), not the
        # order sent: the audit, the answer and its ETag (``version``) show the settings as
        # a later read does, or that ETag would name no settings and be refused.
        session.expire(programme, ["pool_numbers"])
    old, new = audit.changed(before, view(session, vault, programme))
    if new:
        audit.record(
            session,
            programme_id=programme.id,
            actor=actor,
            action=audit.SETTINGS_EDIT,
            target=f"programme:{programme.id}",
            old=old,
            new=new,
            at=now,
        )


def _lock_and_read_again(session: Session, programme: Programme) -> None:
    """programmes.read_under_lock, and the schedule options (check-in offsets, hours) too."""
    read_under_lock(session, programme)
    session.get(ScheduleSettings, programme.id, populate_existing=True)


def _check_unchanged(
    session: Session, vault: Vault, programme: Programme, shown: Container[str] | None
) -> None:
    if shown is not None and version(session, vault, programme) not in shown:
        raise StaleSettingsError


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _apply_text(
    session: Session, vault: Vault, programme: Programme, name: str, value: object
) -> None:
    if not _blank(value) and not isinstance(value, str):
        raise SettingsChangeError("must be text", name)
    text = None if _blank(value) else plain(str(value).strip())
    if text is not None and len(text) > TEXT_LIMITS[name]:
        raise SettingsChangeError(f"at most {TEXT_LIMITS[name]} characters", name)
    setattr(programme, name, text)


# Typography a word processor adds, and its GSM-7 equivalent (see ``plain``).
def _fits_column(name: str, text: str | None) -> None:
    """A value longer than its column is the caller's mistake (422), not a database error."""
    limit = getattr(Programme.__table__.c[name].type, "length", None)
    if text is not None and limit is not None and len(text) > limit:
        raise SettingsChangeError(f"at most {limit} characters", name)


def _apply_timezone(
    session: Session, vault: Vault, programme: Programme, name: str, value: object
) -> None:
    zone = None if _blank(value) else str(value).strip()
    _fits_column(name, zone)
    if zone is not None and not is_timezone(zone):
        raise SettingsChangeError("not an IANA time zone (e.g. America/Chicago)", name)
    programme.timezone = zone


def _sync_rotations(session: Session, programme: Programme, default_zone: str) -> None:
    """Rotations hand off on the programme's wall clock, from now on the new one."""
    session.flush()
    follow_programme_zones(session, default_zone, programme.id)


def _apply_offsets(
    session: Session, vault: Vault, programme: Programme, name: str, value: object
) -> None:
    text = None if _blank(value) else str(value).strip()
    _fits_column(name, text)
    if text is not None:
        try:
            parse_offsets(text, "check-in cadence")
        except SettingsError as error:
            raise SettingsChangeError(str(error), name) from None
    programme.checkin_offsets = text


def _apply_hours(
    session: Session, vault: Vault, programme: Programme, name: str, value: object
) -> None:
    text = None if _blank(value) else str(value).strip()
    _fits_column(name, text)
    if text is not None and text.lower() == "any":
        text = ""
    elif text is not None:
        try:
            parse_hours(text, "check-in hours")
        except SettingsError as error:
            raise SettingsChangeError(str(error), name) from None
    programme.checkin_hours = text


def _number(name: str) -> Callable[[Session, Vault, Programme, str, object], None]:
    low, high = NUMBER_LIMITS[name]

    def apply(
        session: Session, vault: Vault, programme: Programme, field: str, value: object
    ) -> None:
        number = None
        if not _blank(value):
            if (
                isinstance(value, bool)
                or not (str(value).strip().isascii() and str(value).strip().isdigit())
                or not low <= int(str(value)) <= high
            ):
                raise SettingsChangeError(f"a whole number from {low} to {high}", field)
            number = int(str(value))
        target: object = (
            programme if field == "offer_timeout" else options_row(session, programme.id)
        )
        setattr(target, field, number)

    return apply


def _phone(value: object, field: str) -> str:
    try:
        return normalize(str(value))
    except InvalidPhoneNumber:
        raise SettingsChangeError(
            "not a valid phone number (use the form +CountryCodeNumber)", field
        ) from None


def _apply_alert(
    session: Session, vault: Vault, programme: Programme, name: str, value: object
) -> None:
    programme.alert_phone_sealed = (
        None if _blank(value) else vault.seal(_phone(value, name), ALERT_CONTEXT)
    )


def _pool(session: Session, vault: Vault, programme: Programme, value: object) -> list[str]:
    """The pool ``value`` asks for, refused (SettingsChangeError) as a whole if a number in it
    is another programme's or a person's (one it drops carrying a conversation is refused
    later, under the programme's lock: see update_settings)."""
    name = "pool_numbers"
    raw = value.split(",") if isinstance(value, str) else value
    if not isinstance(raw, list | tuple):
        raise SettingsChangeError("a list of phone numbers", name)
    wanted = list(dict.fromkeys(_phone(n, name) for n in raw if not _blank(n))) or [
        programme.hotline_number
    ]
    if numbers_of_others(session, programme.id, wanted):
        raise SettingsChangeError("a number there belongs to another programme", name)
    if someones_phone(session, vault, wanted):
        # Texts and calls from the line's own numbers are ignored (the loop guard), in every
        # programme: that person would be cut off from every line of the deployment.
        raise SettingsChangeError(SOMEONES_PHONE, name)
    return wanted


APPLY: dict[str, Callable[[Session, Vault, Programme, str, object], None]] = {
    "timezone": _apply_timezone,
    "checkin_offsets": _apply_offsets,
    "checkin_hours": _apply_hours,
    "alert_phone": _apply_alert,
    **{name: _number(name) for name in NUMBER_LIMITS},
}
