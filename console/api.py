"""The admin JSON API under ``/api/v1``: bearer tokens, programme scope, JSON errors.

Every call but ``GET /api/v1/openapi.json`` needs ``Authorization: Bearer <token>`` (from
``hotline api-token create``). A token serves one programme, or all of them; ``?programme=SLUG``
narrows an all-programme token to one (and must name the token's own programme otherwise).
Anything outside the caller's programmes answers 404, exactly like something that does not
exist. Errors are ``{"error": {"status", "message", "field"}}``; bodies are JSON objects.
The resources live in api_roster.py, api_schedule.py and api_programme.py.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from flask import Blueprint, Response, g, jsonify, request
from sqlalchemy import select
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.orm import Session
from werkzeug.exceptions import BadRequest, HTTPException

from console.context import services
from hotline import accounts
from hotline.db import transaction
from hotline.models import Programme

bp = Blueprint("api", __name__, url_prefix="/api/v1")
PUBLIC_ENDPOINTS = frozenset({"api.openapi_document"})
MAX_DEPTH = 4


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``field`` names the input at fault."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


def fail(status: int, message: str, field: str | None = None) -> NoReturn:
    raise ApiError(status, message, field)


@dataclass(frozen=True)
class Caller:
    """Who is calling: the audit name and the programmes this request may touch."""

    actor: str
    programme_ids: frozenset[int]
    vouches: bool = True  # numbers it writes count as verified (else a code is texted)

    def programme_id(self) -> int:
        """The one programme a create acts on; 400 when the token serves several."""
        if len(self.programme_ids) != 1:
            fail(400, "this token serves every programme: name one with ?programme=SLUG")
        return next(iter(self.programme_ids))


def caller() -> Caller:
    found: Caller = g.api_caller
    return found


@bp.before_request
def authenticate() -> None:
    if request.endpoint in PUBLIC_ENDPOINTS:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        fail(401, "send Authorization: Bearer <token> (see `hotline api-token create`)")
    with transaction(services().sessions) as session:
        try:
            found = accounts.use_api_token(session, token.strip(), services().clock())
        except accounts.TokenRefused as refused:
            fail(401, str(refused))
        scope = _scope(session, found.programme_id)
        g.api_caller = Caller(f"api:{found.name}", scope, found.vouches)


def _scope(session: Session, token_programme: int | None) -> frozenset[int]:
    slug = request.args.get("programme")
    if slug is None:
        if token_programme is not None:
            return frozenset({token_programme})
        return frozenset(session.scalars(select(Programme.id)))
    found = session.scalar(select(Programme.id).where(Programme.slug == slug))
    if found is None or (token_programme is not None and found != token_programme):
        fail(404, "no such programme", "programme")
    return frozenset({found})


@contextmanager
def writing() -> Iterator[Session]:
    """A transaction for a write; a constraint race becomes a 409 and a value the column cannot
    hold a 422, not a 500."""
    try:
        with transaction(services().sessions) as session:
            yield session
    except IntegrityError:
        fail(409, "that conflicts with a concurrent change; try again")
    except DataError:  # a value the database cannot store that the checks let through
        fail(422, "a value is too long or out of range to store")


def body() -> dict[str, Any]:
    """The request's JSON object, checked to be storable text throughout."""
    if not request.is_json:
        fail(415, "send a JSON object with Content-Type: application/json")
    try:
        data = request.get_json()
    except BadRequest:  # Flask's answer to a body json cannot read (a trailing comma, say)
        fail(400, "the body is not valid JSON")
    except RecursionError:  # json's decoder recurses per level, before MAX_DEPTH is checked
        fail(400, "the body is nested too deeply")
    if not isinstance(data, dict):
        fail(400, "the body must be a JSON object")
    _check_text(data, 0)
    return data


def _check_text(value: object, depth: int) -> None:
    if depth > MAX_DEPTH:
        fail(400, "the body is nested too deeply")
    strings: Iterator[object] = iter(())
    if isinstance(value, dict):
        strings = iter([*value.keys(), *value.values()])
    elif isinstance(value, list):
        strings = iter(value)
    elif isinstance(value, str):
        if "\x00" in value:
            fail(422, "text may not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            fail(422, "text must be valid Unicode")
        return
    for item in strings:
        _check_text(item, depth + 1)


def only(data: dict[str, Any], allowed: Collection[str], required: Collection[str] = ()) -> None:
    """Refuse unknown and missing fields, naming the first."""
    for name in sorted(data):
        if name not in allowed:
            fail(422, f"unknown field {name!r}", name)
    for name in sorted(required):
        if name not in data:
            fail(422, f"{name} is required", name)


def error_response(status: int, message: str, field: str | None = None) -> Response:
    response = jsonify(error={"status": status, "message": message, "field": field})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="hotline"'
    return response


@bp.errorhandler(ApiError)
def api_error(error: ApiError) -> Response:
    return error_response(error.status, error.message, error.field)


@bp.errorhandler(HTTPException)
def http_error(error: HTTPException) -> Response:
    return error_response(error.code or 500, error.description or error.name)


def not_found_or_method(error: HTTPException) -> Response | HTTPException:
    """App-wide 404/405: JSON under /api/, the usual page elsewhere."""
    if request.path.startswith("/api/"):
        return http_error(error)
    return error


@bp.get("/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 description of this API (public: it holds no data)."""
    from console.openapi import document

    return jsonify(document())


def register_resources() -> None:
    from console import api_programme, api_roster, api_schedule

    for child in (api_roster.bp, api_schedule.bp, api_programme.bp):
        bp.register_blueprint(child)


register_resources()
