"""How the console and the API show things: JSON shapes, masked numbers, ISO times.

A supporter's phone number is only ever shown through ``phone.redact`` (``+1•••••••234``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.orm import object_session

from hotline import reach, schedule, stats
from hotline.models import Override, Programme, Rotation, Shift, Supporter
from hotline.people import supporter_phone
from hotline.phone import redact
from hotline.privacy import Vault
from hotline.rotation import WEEKDAYS


def iso(at: datetime | None) -> str | None:
    return at.isoformat() if at is not None else None


def masked_phone(vault: Vault, supporter: Supporter) -> str:
    return redact(supporter_phone(vault, supporter))


def supporter_json(
    vault: Vault, s: Supporter, refusals: Mapping[int, reach.Refusal] | None = None
) -> dict[str, Any]:
    """``refusals``: ``reach.refusals`` of a list the supporter is in (else read for them)."""
    session = object_session(s)
    assert session is not None, "shown while its session is open"
    if refusals is None:
        refusals = reach.refusals(session, [s])
    # The session's identity map: one read per programme per request, however many supporters.
    programme = session.get_one(Programme, s.programme_id)
    return {
        "id": s.id,
        "programme": programme.slug,  # a token for every programme lists them all
        "name": s.name,
        "phone": masked_phone(vault, s),
        "discipline": s.discipline,
        "max_conversations": s.max_conversations,
        "email": s.email,
        "active": s.active,
        "phone_verified": s.phone_verified_at is not None,
        "calendar_path": f"/calendar/supporter/{s.calendar_token}.ics"
        if s.calendar_token
        else None,
        "created_at": iso(s.created_at),
        "texts_refused": refusal_json(refusals.get(s.id)),
    }


def refusal_json(refusal: reach.Refusal | None) -> dict[str, Any] | None:
    if refusal is None:
        return None
    return {"code": refusal.code, "at": iso(refusal.at), "advice": advice(refusal)}


# What Twilio's refusal says of the phone, by its error code (reach.py).
PHONE_FAULTS = {
    21211: "it is not a mobile number",
    21614: "it is not a mobile number",
    21612: "it cannot take texts (a landline, or a carrier Twilio cannot reach)",
    30006: "it cannot take texts (a landline, or a carrier Twilio cannot reach)",
    30005: "the phone company does not know the number",
}


def advice(refusal: reach.Refusal) -> str:
    """What the coordinator reads of a supporter's phone refusing the line's texts, and what
    to do about it."""
    if refusal.code == reach.STOPPED:
        return _stopped(refusal)
    fault = PHONE_FAULTS.get(refusal.code, "Twilio will not deliver to it")
    return (
        f"Texts to this phone are refused: {fault} (Twilio error {refusal.code}). Check the "
        "number with them, and correct it."
    )


def _stopped(refusal: reach.Refusal) -> str:
    first = "No offer can reach them. " if refusal.unreachable else ""
    if not refusal.stopped:  # Twilio said so, though the line never saw their STOP
        return (
            f"{first}Texts to this phone are refused: they replied STOP to one of the line's "
            "numbers. Ask them to text START to the number the line's texts come from."
        )
    which = (
        "the line's number"
        if refusal.numbers == 1
        else f"{len(refusal.stopped)} of the line's {refusal.numbers} numbers"
    )
    return (
        f"{first}Texts to this phone are refused: they replied STOP to {which}. Ask them to "
        f"text START to {' and to '.join(refusal.stopped)}."
    )


def shift_json(shift: Shift) -> dict[str, Any]:
    return {
        "id": shift.id,
        "supporter_id": shift.supporter_id,
        "starts_at": iso(shift.starts_at),
        "ends_at": iso(shift.ends_at),
    }


def override_json(row: Override) -> dict[str, Any]:
    return {
        "id": row.id,
        "supporter_id": row.supporter_id,
        "covers_for_id": row.replaces_id,
        "starts_at": iso(row.starts_at),
        "ends_at": iso(row.ends_at),
    }


def rotation_json(rotation: Rotation) -> dict[str, Any]:
    return {
        "id": rotation.id,
        "name": rotation.name,
        "timezone": rotation.timezone,
        "handoff_weekday": WEEKDAYS[rotation.handoff_weekday],
        "handoff_time": rotation.handoff_time.strftime("%H:%M"),
        "anchor_date": rotation.anchor_date.isoformat(),
        "supporter_ids": [m.supporter_id for m in rotation.members],
    }


def segment_json(segment: schedule.Segment) -> dict[str, Any]:
    return {
        "starts_at": iso(segment.starts_at),
        "ends_at": iso(segment.ends_at),
        "supporter_ids": sorted(segment.supporter_ids),
    }


def report_json(report: stats.Report) -> dict[str, Any]:
    return {
        "from": iso(report.start),
        "to": iso(report.end),
        "contacts": report.contacts,
        "contacts_per_week": [
            {"week_start": w.week_start.isoformat(), "total": w.total, "by_channel": w.by_channel}
            for w in report.weeks
        ],
        "answered": report.answered,
        "first_response_seconds": {
            "median": report.response_median_s,
            "p90": report.response_p90_s,
        },
        "fallbacks": report.fallbacks,
        "checkins": {
            "sent": report.checkins_sent,
            "replied": report.checkins_replied,
            "opted_out": report.checkins_opted_out,
        },
        "small_count_threshold": stats.MIN_CELL,
    }
