"""Reading Twilio's form fields: required values and SIDs, refused with a clear 400."""

from __future__ import annotations

import re

from flask import request
from werkzeug.exceptions import BadRequest

# Twilio SIDs are two letters and 32 hex digits; anything else (a NUL, 200 characters) would
# otherwise reach a String(64) column and fail there, on PostgreSQL only, as "database down".
SID = re.compile(r"[A-Za-z]{2}[A-Za-z0-9]{1,62}")


def required(name: str) -> str:
    """The non-blank form field ``name``, or a 400 naming it."""
    value = request.form.get(name, "").strip()
    if not value:
        raise BadRequest(f"missing Twilio parameter {name}")
    return value


def required_sid(name: str) -> str:
    """The form field ``name``, which must be a Twilio SID."""
    return checked_sid(required(name), name)


def optional_sid(name: str) -> str:
    """The form field ``name`` if given (then it must be a Twilio SID), else ``""``."""
    value = request.form.get(name, "").strip()
    return checked_sid(value, name) if value else ""


def checked_sid(value: str, name: str) -> str:
    if not SID.fullmatch(value):
        raise BadRequest(f"{name} is not a Twilio SID")
    return value
