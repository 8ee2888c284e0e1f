"""``/api/v1/supporters``: the roster, with phone verification as a sub-resource.

Phones are written in E.164 only and read back masked. The token holder vouches for the
numbers it writes (an administrator's integration, e.g. a sync from the staff directory): they
count as verified at once, and the audit log says so; a token a coordinator made does not vouch
(``ApiToken.vouches``), so its numbers always get a code. ``"verify": true`` texts a code instead,
and the supporter can go on call only once it is confirmed, as in the console. ``DELETE``
deactivates (the row stays: past conversations refer to it) and takes the supporter off every
schedule answer.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from console.api import body, caller, fail, only, writing
from console.context import now, services, wake
from console.present import supporter_json
from hotline import reach, roster, verification
from hotline.db import transaction
from hotline.models import Supporter
from hotline.phone import is_e164

bp = Blueprint("roster", __name__)
FIELDS = {"name", "phone", "discipline", "max_conversations", "email", "active"}
VERIFY = "verify"  # not a field of the supporter: how a number written here is checked
REFUSALS = {
    verification.Outcome.WRONG: 422,
    verification.Outcome.EXPIRED: 410,
    verification.Outcome.TOO_MANY: 429,
    verification.Outcome.NOTHING_PENDING: 409,
}


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    if "phone" in data and not (isinstance(data["phone"], str) and is_e164(data["phone"])):
        fail(422, "phone must be a valid number in E.164 form, e.g. +15551234567", "phone")
    for name in ("name", "discipline", "email"):
        if name in data and data[name] is not None and not isinstance(data[name], str):
            fail(422, f"{name} must be text", name)
    if "name" in data and data["name"] is None:
        fail(422, "name must be text", "name")
    if "max_conversations" in data and type(data["max_conversations"]) is not int:
        fail(422, "max_conversations must be a whole number", "max_conversations")
    for flag in ("active", VERIFY):
        if flag in data and not isinstance(data[flag], bool):
            fail(422, f"{flag} must be true or false", flag)
    return data


def _refuse(error: roster.RosterError) -> None:
    fail(409 if isinstance(error, roster.RosterConflict) else 422, str(error), error.field)


def find(session: Any, supporter_id: int) -> Supporter:
    found = roster.get(session, set(caller().programme_ids), supporter_id)
    if found is None:
        fail(404, "no such supporter")
    return found


@bp.get("/supporters")
def list_supporters() -> Response:
    vault = services().vault
    with transaction(services().sessions) as session:
        listed = [
            s
            for programme_id in sorted(caller().programme_ids)
            for s in roster.listing(session, programme_id)
        ]
        refusals = reach.refusals(session, listed)
        people = [supporter_json(vault, s, refusals) for s in listed]
    return jsonify(people)


@bp.post("/supporters")
def create_supporter() -> tuple[Response, int, dict[str, str]]:
    data = _checked(body())
    only(data, FIELDS | {VERIFY}, {"name", "phone"})
    verify = data.pop(VERIFY, False) or not caller().vouches
    with writing() as session:
        try:
            change = roster.add(
                session,
                services().vault,
                caller().programme_id(),
                roster.SupporterInput(**data),
                caller().actor,
                now(),
                verify=verify,
            )
        except roster.RosterError as error:
            _refuse(error)
        shown = supporter_json(services().vault, change.supporter)
    wake(change.notices)
    return jsonify(shown), 201, {"Location": f"/api/v1/supporters/{shown['id']}"}


@bp.get("/supporters/<int:supporter_id>")
def get_supporter(supporter_id: int) -> Response:
    with transaction(services().sessions) as session:
        return jsonify(supporter_json(services().vault, find(session, supporter_id)))


@bp.patch("/supporters/<int:supporter_id>")
def update_supporter(supporter_id: int) -> Response:
    data = _checked(body())
    only(data, FIELDS | {VERIFY})
    asked = data.pop(VERIFY, False)
    if asked and "phone" not in data:  # it would change nothing: say where a code comes from
        fail(
            422,
            '"verify" checks a new phone number; to text a code to the current one, '
            f"POST /api/v1/supporters/{supporter_id}/verification",
            VERIFY,
        )
    with writing() as session:
        supporter = find(session, supporter_id)
        try:
            verify = asked or not caller().vouches
            change = roster.edit(
                session, services().vault, supporter, data, caller().actor, now(), verify=verify
            )
        except roster.RosterError as error:
            _refuse(error)
        shown = supporter_json(services().vault, supporter)
    wake(change.notices, change.lapsed_offers)
    return jsonify(shown)


@bp.delete("/supporters/<int:supporter_id>")
def delete_supporter(supporter_id: int) -> tuple[str, int]:
    with writing() as session:
        change = roster.deactivate(
            session, services().vault, find(session, supporter_id), caller().actor, now()
        )
    wake(change.notices, change.lapsed_offers)
    return "", 204


@bp.post("/supporters/<int:supporter_id>/verification")
def send_code(supporter_id: int) -> tuple[Response, int]:
    """Text a fresh code to the supporter's number (it replaces any earlier code)."""
    with writing() as session:
        supporter = find(session, supporter_id)
        try:
            change = roster.resend_code(session, services().vault, supporter, caller().actor, now())
        except roster.RosterError as error:
            _refuse(error)
    wake(change.notices)
    return jsonify(
        status="code sent", expires_in_seconds=int(verification.CODE_TTL.total_seconds())
    ), 202


@bp.post("/supporters/<int:supporter_id>/verification/confirm")
def confirm_code(supporter_id: int) -> Response:
    """Confirm the code the supporter read out; the number then counts as verified."""
    data = body()
    only(data, {"code"}, {"code"})
    if not isinstance(data["code"], str):
        fail(422, "code must be text", "code")
    with writing() as session:
        supporter = find(session, supporter_id)
        outcome = roster.confirm_code(
            session, services().vault, supporter, data["code"], caller().actor, now()
        )
        shown = supporter_json(services().vault, supporter)
    if outcome != verification.Outcome.VERIFIED:
        fail(REFUSALS[outcome], verification.MESSAGES[outcome], "code")
    return jsonify(shown)
