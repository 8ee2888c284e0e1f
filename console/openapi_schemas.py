"""The component schemas of the OpenAPI document (see openapi.py), written by hand."""

from __future__ import annotations

from typing import Any

E164 = r"^\+[1-9][0-9]{6,14}$"
WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"]
Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(kind: str, **extra: Any) -> Schema:
    return {"type": [kind, "null"], **extra}


def obj(properties: Schema, required: list[str] | None = None, closed: bool = True) -> Schema:
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if closed:
        schema["additionalProperties"] = False
    return schema


INSTANT = {"type": "string", "format": "date-time"}
ID = {"type": "integer", "minimum": 1, "maximum": 2147483647}
SUPPORTER_FIELDS: Schema = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": r"\S"},
    "phone": {"type": "string", "pattern": E164, "description": "E.164; read back masked."},
    "discipline": nullable("string", maxLength=40),
    "max_conversations": {"type": "integer", "minimum": 1, "maximum": 10},
    "email": nullable("string", maxLength=254),
    "active": {"type": "boolean"},
}
VERIFY_FLAG: Schema = {
    "type": "boolean",
    "default": False,
    "description": (
        "false (default): the token holder vouches for the number written, which counts as "
        "verified at once (audited); not for a token a coordinator made in the console, whose "
        "numbers always get a code. true: a code is texted to it, and the supporter can be "
        "on call only after POST .../verification/confirm."
    ),
}
ROTATION_FIELDS: Schema = {
    "name": {"type": "string", "minLength": 1, "maxLength": 120, "pattern": r"\S"},
    "handoff_weekday": {
        "oneOf": [
            {"type": "string", "enum": WEEKDAYS},
            {"type": "integer", "minimum": 0, "maximum": 6},
        ],
        "description": "The local weekday turns hand off (0 is Monday).",
    },
    "handoff_time": {"type": "string", "pattern": r"^([01][0-9]|2[0-3]):[0-5][0-9]$"},
    "anchor_date": {
        "type": "string",
        "format": "date",
        "description": "Turn 0 starts at the first hand-off on or after it.",
    },
    "supporter_ids": {
        "type": "array",
        "items": ID,
        "minItems": 1,
        "maxItems": 52,
        "uniqueItems": True,
    },
}
PERIOD = {"starts_at": INSTANT, "ends_at": INSTANT}
SETTINGS_FIELDS: Schema = {
    "greeting": nullable("string", maxLength=1000),
    "call_greeting": nullable(
        "string", maxLength=500, description="Said to callers; the crisis sentence follows."
    ),
    "crisis_text": nullable("string", maxLength=500),
    "resources_text": nullable("string", maxLength=1500),
    "checkin_text": nullable("string", maxLength=500),
    "timezone": nullable("string", description="IANA time zone, e.g. America/Chicago."),
    "checkin_offsets": nullable("string", description="e.g. 1d,7d,30d, or none (no check-ins)"),
    "checkin_hours": nullable("string", description="e.g. 09:00-20:00, or 'any'."),
    "offer_timeout": nullable("integer", minimum=30, maximum=3600),
    "pool_numbers": {"type": "array", "items": {"type": "string", "pattern": E164}},
    "alert_phone": nullable("string", pattern=E164),
    "reminder_minutes": nullable("integer", minimum=5, maximum=1440),
    "gap_warning_hours": nullable("integer", minimum=1, maximum=336),
}

SCHEMAS: Schema = {
    "Error": obj(
        {
            "error": obj(
                {
                    "status": {"type": "integer"},
                    "message": {"type": "string"},
                    "field": nullable("string"),
                },
                ["status", "message", "field"],
            )
        },
        ["error"],
    ),
    "Supporter": obj(
        {
            "id": ID,
            "programme": {
                "type": "string",
                "description": "The slug of their programme (a token for every programme "
                "lists every programme's supporters; ?programme=SLUG narrows it to one).",
            },
            **SUPPORTER_FIELDS,
            "phone": {"type": "string", "description": "Masked, e.g. +1•••••••234."},
            "name": {"type": "string"},
            "phone_verified": {"type": "boolean"},
            "calendar_path": nullable(
                "string", description="Secret iCalendar feed of their shifts."
            ),
            "created_at": INSTANT,
            "texts_refused": {
                "oneOf": [
                    {"type": "null"},
                    obj(
                        {
                            "code": {"type": "integer", "description": "Twilio's error code."},
                            "at": nullable("string", format="date-time"),
                            "advice": {"type": "string"},
                        },
                        ["code", "at", "advice"],
                    ),
                ],
                "description": "null, or: Twilio refuses texts to their phone for good (they "
                "replied STOP to a line number: 21610; not a mobile number; a landline), so "
                "offers pass them over; advice says what to do. Cleared once a text to them "
                "goes through, they text START, or their number changes.",
            },
        },
        [
            "id",
            "programme",
            "name",
            "phone",
            "discipline",
            "max_conversations",
            "email",
            "active",
            "phone_verified",
            "calendar_path",
            "created_at",
            "texts_refused",
        ],
    ),
    "SupporterCreate": obj({**SUPPORTER_FIELDS, "verify": VERIFY_FLAG}, ["name", "phone"]),
    "SupporterUpdate": obj({**SUPPORTER_FIELDS, "verify": VERIFY_FLAG}),
    "CodeSent": obj(
        {"status": {"type": "string"}, "expires_in_seconds": {"type": "integer"}},
        ["status", "expires_in_seconds"],
    ),
    "CodeConfirm": obj({"code": {"type": "string", "maxLength": 20}}, ["code"]),
    "Shift": obj(
        {"id": ID, "supporter_id": ID, **PERIOD}, ["id", "supporter_id", "starts_at", "ends_at"]
    ),
    "ShiftCreate": obj({"supporter_id": ID, **PERIOD}, ["supporter_id", "starts_at", "ends_at"]),
    "Override": obj(
        {"id": ID, "supporter_id": ID, "covers_for_id": nullable("integer"), **PERIOD},
        ["id", "supporter_id", "covers_for_id", "starts_at", "ends_at"],
    ),
    "OverrideCreate": obj(
        {
            "supporter_id": ID,
            "covers_for_id": {"type": ["integer", "null"], "minimum": 1, "maximum": 2147483647},
            **PERIOD,
        },
        ["supporter_id", "starts_at", "ends_at"],
    ),
    "Rotation": obj(
        {
            "id": ID,
            **ROTATION_FIELDS,
            "name": {"type": "string"},
            "handoff_weekday": {"type": "string", "enum": WEEKDAYS},
            "timezone": {"type": "string"},
            "supporter_ids": {"type": "array", "items": ID},
        },
        [
            "id",
            "name",
            "timezone",
            "handoff_weekday",
            "handoff_time",
            "anchor_date",
            "supporter_ids",
        ],
    ),
    "RotationCreate": obj(ROTATION_FIELDS, list(ROTATION_FIELDS)),
    "RotationUpdate": obj(ROTATION_FIELDS),
    "Segment": obj(
        {**PERIOD, "supporter_ids": {"type": "array", "items": ID}},
        ["starts_at", "ends_at", "supporter_ids"],
    ),
    "OnCall": obj(
        {"at": INSTANT, "supporters": {"type": "array", "items": ref("Supporter")}},
        ["at", "supporters"],
    ),
    "Gaps": obj(
        {"from": INSTANT, "to": INSTANT, "gaps": {"type": "array", "items": ref("Segment")}},
        ["from", "to", "gaps"],
    ),
    "Stats": obj(
        {
            "from": INSTANT,
            "to": INSTANT,
            "contacts": {"type": "integer"},
            "contacts_per_week": {
                "type": "array",
                "items": obj(
                    {
                        "week_start": {"type": "string", "format": "date"},
                        "total": {"type": "integer"},
                        "by_channel": {
                            "type": "object",
                            "additionalProperties": nullable("integer"),
                            "description": "null: hidden, a small count.",
                        },
                    },
                    ["week_start", "total", "by_channel"],
                ),
            },
            "answered": {"type": "integer"},
            "first_response_seconds": obj(
                {"median": nullable("number"), "p90": nullable("number")}, ["median", "p90"]
            ),
            "fallbacks": {"type": "integer"},
            "checkins": obj(
                {
                    "sent": {"type": "integer"},
                    "replied": {"type": "integer"},
                    "opted_out": {"type": "integer"},
                },
                ["sent", "replied", "opted_out"],
            ),
            "small_count_threshold": {"type": "integer"},
        },
        [
            "from",
            "to",
            "contacts",
            "contacts_per_week",
            "answered",
            "first_response_seconds",
            "fallbacks",
            "checkins",
            "small_count_threshold",
        ],
    ),
    "Programme": obj(
        {
            "slug": {"type": "string"},
            "name": {"type": "string"},
            "retired_at": nullable(
                "string",
                format="date-time",
                description="when `hotline programme retire` retired it: its numbers answer "
                "that the line has closed",
            ),
            "stored": {"type": "object"},
            "effective": {"type": "object"},
        },
        ["slug", "name", "retired_at", "stored", "effective"],
    ),
    "ProgrammeUpdate": obj(SETTINGS_FIELDS),
}
