"""The hand-written OpenAPI 3.1 document of ``/api/v1`` (served at ``/api/v1/openapi.json``).

Written by hand, next to the code it describes; tests/console/test_api_schema.py runs
schemathesis over it against the real app, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from console.openapi_schemas import ID, INSTANT, SCHEMAS, Schema, ref

ERRORS = {
    "400": "The request is malformed (not JSON, not a JSON object, or a programme must be named).",
    "401": "No bearer token, or an unknown, revoked or expired one.",
    "404": "Nothing with that id among the caller's programmes.",
    "409": "The change conflicts with existing data.",
    "410": "The verification code has expired.",
    "412": "`If-Match` names settings other than those standing now (someone changed them since "
    "they were read): nothing changed; read them again and send the change with the new ETag.",
    "415": "The body is not JSON.",
    "422": "A field is invalid; `field` names it.",
    "429": "Too many wrong codes.",
    "503": "Twilio could not be asked (whether a new pool number sends here); try again later.",
}


def responses(ok: str, schema: Schema | None, *errors: str) -> Schema:
    found: Schema = {ok: {"description": "Success."}}
    if schema is not None:
        found[ok]["content"] = {"application/json": {"schema": schema}}
    for code in ("401", *errors):
        found[code] = {"$ref": f"#/components/responses/E{code}"}
    return found


def operation(summary: str, ok: str, schema: Schema | None, *errors: str, **extra: Any) -> Schema:
    return {"summary": summary, "responses": responses(ok, schema, *errors), **extra}


def json_body(name: str) -> Schema:
    return {"required": True, "content": {"application/json": {"schema": ref(name)}}}


def query(name: str, description: str, schema: Schema = INSTANT) -> Schema:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


PROGRAMME = query(
    "programme", "Narrow an all-programme token to one programme (its slug).", {"type": "string"}
)
IF_MATCH = {
    "name": "If-Match",
    "in": "header",
    "required": False,
    "schema": {"type": "string"},
    "description": (
        "The `ETag` the settings were read with: the change applies only to those settings "
        "(412 if they have changed since). Without it, the change applies to the settings as "
        "they stand."
    ),
}
ETAG = {
    "ETag": {
        "description": "Names the settings as they stand; send it back as `If-Match`.",
        "schema": {"type": "string"},
        "required": True,
    }
}


def with_etag(found: Schema) -> Schema:
    found["responses"]["200"]["headers"] = ETAG
    return found


WINDOW = [
    query("from", "Start of the window (ISO 8601 with offset); default now."),
    query("to", "End of the window; default four weeks after `from`; at most 92 days."),
]


def path_id(name: str) -> Schema:
    return {"name": name, "in": "path", "required": True, "schema": ID}


def _roster_paths() -> Schema:
    """The supporters and their verification."""
    sid = path_id("supporter_id")
    listed = {"type": "array", "items": ref("Supporter")}
    return {
        "/supporters": {
            "parameters": [PROGRAMME],
            "get": operation("List supporters (phones masked).", "200", listed, "404"),
            "post": operation(
                "Add a supporter (see `verify`: vouched for, or verified by a texted code).",
                "201",
                ref("Supporter"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("SupporterCreate"),
            ),
        },
        "/supporters/{supporter_id}": {
            "parameters": [sid, PROGRAMME],
            "get": operation("One supporter.", "200", ref("Supporter"), "404"),
            "patch": operation(
                "Change a supporter (a new number: vouched for, or a texted code; see `verify`).",
                "200",
                ref("Supporter"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("SupporterUpdate"),
            ),
            "delete": operation(
                "Deactivate: off every schedule; the record stays.", "204", None, "404", "409"
            ),
        },
        "/supporters/{supporter_id}/verification": {
            "parameters": [sid, PROGRAMME],
            "post": operation(
                "Text a fresh verification code to the supporter (409: the programme is "
                "retired, and its line texts no codes).",
                "202",
                ref("CodeSent"),
                "404",
                "409",
            ),
        },
        "/supporters/{supporter_id}/verification/confirm": {
            "parameters": [sid, PROGRAMME],
            "post": operation(
                "Confirm the code the supporter read out.",
                "200",
                ref("Supporter"),
                "400",
                "404",
                "409",
                "410",
                "415",
                "422",
                "429",
                requestBody=json_body("CodeConfirm"),
            ),
        },
    }


def _schedule_paths() -> Schema:
    """Shifts, overrides and rotations."""
    shid, oid, rid = (path_id(n) for n in ("shift_id", "override_id", "rotation_id"))
    return {
        "/shifts": {
            "parameters": [PROGRAMME],
            "get": operation(
                "One-off shifts overlapping the window.",
                "200",
                {"type": "array", "items": ref("Shift")},
                "404",
                "422",
                parameters=WINDOW,
            ),
            "post": operation(
                "Add a one-off shift (verified, active supporters only).",
                "201",
                ref("Shift"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("ShiftCreate"),
            ),
        },
        "/shifts/{shift_id}": {
            "parameters": [shid, PROGRAMME],
            "get": operation("One shift.", "200", ref("Shift"), "404"),
            "delete": operation("Remove a shift.", "204", None, "404"),
        },
        "/overrides": {
            "parameters": [PROGRAMME],
            "get": operation(
                "Overrides overlapping the window.",
                "200",
                {"type": "array", "items": ref("Override")},
                "404",
                "422",
                parameters=WINDOW,
            ),
            "post": operation(
                "Someone covers for someone else (or is added) for a while.",
                "201",
                ref("Override"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("OverrideCreate"),
            ),
        },
        "/overrides/{override_id}": {
            "parameters": [oid, PROGRAMME],
            "get": operation("One override.", "200", ref("Override"), "404"),
            "delete": operation("Remove an override.", "204", None, "404"),
        },
        "/rotations": {
            "parameters": [PROGRAMME],
            "get": operation(
                "Weekly rotations.", "200", {"type": "array", "items": ref("Rotation")}, "404"
            ),
            "post": operation(
                "Add a weekly rotation in the programme's time zone.",
                "201",
                ref("Rotation"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("RotationCreate"),
            ),
        },
        "/rotations/{rotation_id}": {
            "parameters": [rid, PROGRAMME],
            "get": operation("One rotation.", "200", ref("Rotation"), "404"),
            "patch": operation(
                "Change a rotation (supporter_ids replaces the order).",
                "200",
                ref("Rotation"),
                "400",
                "404",
                "409",
                "415",
                "422",
                requestBody=json_body("RotationUpdate"),
            ),
            "delete": operation("Remove a rotation.", "204", None, "404"),
        },
    }


def _report_paths() -> Schema:
    """Questions about the schedule, stats, settings and this document."""
    return {
        "/oncall": {
            "parameters": [
                PROGRAMME,
                query("at", "The instant (ISO 8601 with offset); default now."),
            ],
            "get": operation(
                "Who is on call at an instant: all layers, DST-correct.",
                "200",
                ref("OnCall"),
                "404",
                "422",
            ),
        },
        "/coverage-gaps": {
            "parameters": [PROGRAMME, *WINDOW],
            "get": operation(
                "When nobody the line can text is on call in the window: a gap's "
                "`supporter_ids` are who is on call in it, all of them supporters whose phones "
                "refuse the line's texts (empty: nobody is on call).",
                "200",
                ref("Gaps"),
                "400",
                "404",
                "422",
            ),
        },
        "/stats": {
            "parameters": [
                PROGRAMME,
                query("from", "Start; default twelve weeks before `to`."),
                query("to", "End; default now."),
            ],
            "get": operation(
                "Aggregate counts only; small counts are not broken down.",
                "200",
                ref("Stats"),
                "400",
                "404",
                "422",
            ),
        },
        "/programme": {
            "parameters": [PROGRAMME],
            "get": with_etag(
                operation(
                    "The programme's settings: stored (null = default) and effective.",
                    "200",
                    ref("Programme"),
                    "400",
                    "404",
                )
            ),
            "patch": with_etag(
                operation(
                    "Change settings; null or an empty string restores the default. A number "
                    "joins `pool_numbers` only once Twilio sends its texts, calls and call "
                    "statuses here (422 otherwise, saying what IT must set up). With "
                    "`If-Match`, only if the settings are still those its ETag names.",
                    "200",
                    ref("Programme"),
                    "400",
                    "404",
                    "412",
                    "415",
                    "422",
                    "503",
                    parameters=[IF_MATCH],
                    requestBody=json_body("ProgrammeUpdate"),
                )
            ),
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "security": [],
                "responses": {
                    "200": {
                        "description": "OpenAPI 3.1",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            },
        },
    }


def paths() -> Schema:
    return {**_roster_paths(), **_schedule_paths(), **_report_paths()}


def document() -> Schema:
    """The whole OpenAPI document."""
    error = {"application/json": {"schema": ref("Error")}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Clinician peer support line: admin API",
            "version": "1.0.0",
            "description": (
                "Roster, on-call schedule and aggregate reports. Phones are written in E.164 "
                "and read back masked; nothing identifies a clinician."
            ),
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "`hotline api-token create NAME`",
                }
            },
            "schemas": SCHEMAS,
            "responses": {
                f"E{code}": {"description": text, "content": error} for code, text in ERRORS.items()
            },
        },
    }
