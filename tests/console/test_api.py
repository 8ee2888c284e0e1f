"""The admin API: tokens and scope, the roster, the schedule layers, stats, clean refusals."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from werkzeug.test import TestResponse

from hotline import accounts, retirement, verification
from hotline.db import transaction
from hotline.models import AuditEntry, Channel, Conversation, PoolNumber, Programme, Supporter
from hotline.people import is_opted_out
from hotline.programmes import ensure_programme
from tests.console.conftest import Console, add_coordinator, answered, sign_in
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline
from tests.kit.phones import Phones

ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
TYPO = "+15550108999"


@dataclass
class Api:
    hotline: Hotline
    token: str

    def call(self, method: str, path: str, json: Any = None, **kw: Any) -> TestResponse:
        headers = {"Authorization": f"Bearer {self.token}", **kw.pop("headers", {})}
        return self.hotline.client.open(
            f"/api/v1{path}", method=method, json=json, headers=headers, **kw
        )

    def ok(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        response = self.call(method, path, json)
        assert response.status_code == status, response.get_json()
        return response.get_json()

    def verified(self, name: str, phone: str) -> int:
        created = self.ok(
            "POST", "/supporters", {"name": name, "phone": phone, "verify": True}, 201
        )
        assert created["phone_verified"] is False, "on call only once the code is read back"
        with self.hotline.session() as session:
            code = verification.code_of(session, self.hotline.services.vault, created["id"])
        confirmed = self.ok(
            "POST", f"/supporters/{created['id']}/verification/confirm", {"code": code}
        )
        assert confirmed["phone_verified"] is True
        return int(created["id"])


def make_token(hotline: Hotline, programme_id: int | None) -> str:
    with transaction(hotline.services.sessions) as session:
        return accounts.create_api_token(session, "tests", programme_id)


@pytest.fixture
def api(hotline: Hotline) -> Iterator[Api]:
    yield Api(hotline, make_token(hotline, hotline.programme_id))


def test_supporters_round_trip_with_masked_phones(api: Api) -> None:
    created = api.ok(
        "POST",
        "/supporters",
        {"name": "Alice", "phone": ALICE, "discipline": "nurse", "max_conversations": 3},
        201,
    )
    assert created["phone"] == "+1•••••••001"
    assert ALICE not in str(api.ok("GET", "/supporters"))
    path = f"/supporters/{created['id']}"
    assert api.ok("PATCH", path, {"name": "Alicia"})["name"] == "Alicia"
    assert api.call("DELETE", path).status_code == 204
    assert api.ok("GET", path)["active"] is False


def test_each_field_of_a_supporter_is_written_and_read_back(api: Api) -> None:
    """CONTRACT.md's fields through PATCH: a deactivated supporter made active again is on
    call again (the clock stands on a Monday afternoon: ``/oncall`` without ``at`` is now)."""
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    later = {"starts_at": "2026-03-03T09:00:00Z", "ends_at": "2026-03-03T17:00:00Z"}
    api.ok("POST", "/shifts", {"supporter_id": alice, **later}, 201)
    bob = api.ok("POST", "/supporters", {"name": "Bob", "phone": BOB}, 201)["id"]
    now = {"starts_at": "2026-03-02T14:00:00Z", "ends_at": "2026-03-02T18:00:00Z"}
    api.ok("POST", "/shifts", {"supporter_id": bob, **now}, 201)
    answer = api.ok("GET", "/oncall")
    assert answer["at"] == "2026-03-02T15:00:00+00:00"
    assert [s["id"] for s in answer["supporters"]] == [bob]

    path = f"/supporters/{bob}"
    fields = {"phone": CAROL, "discipline": "pharmacist", "max_conversations": 3}
    changed = api.ok("PATCH", path, fields)
    assert (changed["phone"], changed["discipline"], changed["max_conversations"]) == (
        "+1•••••••003",
        "pharmacist",
        3,
    )
    assert api.ok("GET", path) == changed and CAROL not in str(api.ok("GET", "/supporters"))
    assert api.call("DELETE", path).status_code == 204
    assert api.ok("GET", "/oncall")["supporters"] == []
    assert api.ok("PATCH", path, {"active": True})["active"] is True
    assert [s["id"] for s in api.ok("GET", "/oncall")["supporters"]] == [bob]


def test_a_number_written_through_the_api_is_vouched_for_unless_verify_is_asked(
    api: Api,
) -> None:
    """The contract's flow works as written: add a supporter, add a shift, they are on call.
    The token holder vouches for the number (audited); ``verify`` texts a code instead."""
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)
    assert alice["phone_verified"] is True
    api.ok(
        "POST",
        "/shifts",
        {
            "supporter_id": alice["id"],
            "starts_at": "2026-03-03T09:00:00Z",
            "ends_at": "2026-03-03T17:00:00Z",
        },
        201,
    )
    on_call = api.ok("GET", "/oncall?at=2026-03-03T12:00:00Z")["supporters"]
    assert [s["id"] for s in on_call] == [alice["id"]]
    api.hotline.run_jobs()
    assert api.hotline.fake.messages == [], "no code texted for a vouched number"

    bob = api.ok("POST", "/supporters", {"name": "Bob", "phone": BOB, "verify": True}, 201)
    assert bob["phone_verified"] is False
    refused = api.call(
        "POST",
        "/shifts",
        {
            "supporter_id": bob["id"],
            "starts_at": "2026-03-03T09:00:00Z",
            "ends_at": "2026-03-03T17:00:00Z",
        },
    )
    assert refused.status_code == 422 and "not verified" in refused.get_json()["error"]["message"]
    api.hotline.run_jobs()
    assert [m["to"] for m in api.hotline.fake.messages] == [BOB], "Bob's code, only"

    # A changed number: vouched for again by default, or re-verified on request.
    path = f"/supporters/{alice['id']}"
    assert api.ok("PATCH", path, {"phone": "+15550108003"})["phone_verified"] is True
    changed = api.ok("PATCH", path, {"phone": "+15550108004", "verify": True})
    assert changed["phone_verified"] is False
    assert api.ok("GET", "/oncall?at=2026-03-03T12:00:00Z")["supporters"] == []
    with api.hotline.session() as session:
        checks = [
            (row.action, (row.new or {}).get("verification"))
            for row in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
            if row.action in ("supporter.add", "supporter.edit")
        ]
    assert checks == [
        ("supporter.add", "vouched for by the actor"),
        ("supporter.add", "code texted"),
        ("supporter.edit", "vouched for by the actor"),
        ("supporter.edit", "code texted"),
    ]


def test_a_number_cannot_change_under_a_live_conversation_or_a_waiting_offer(
    hotline: Hotline, api: Api, phones: Phones
) -> None:
    """A typo in a new number must not hand a clinician's texts to a stranger: the number of a
    supporter who has an offer out, or is talking with someone, stays until those have ended
    (by the API, vouched for or not, and in the console)."""
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    add_coordinator(hotline)
    console = Console(hotline, hotline.app.test_client())
    assert sign_in(console.client) == 302
    path = f"/supporters/{alice}"

    def refused() -> None:
        for change in ({"phone": TYPO, "verify": True}, {"phone": TYPO}):
            answer = api.call("PATCH", path, change)
            assert answer.status_code == 409, answer.get_json()
            assert answer.get_json()["error"]["field"] == "phone"
            assert "conversation open or an offer waiting" in answer.get_json()["error"]["message"]
        form = {"name": "Alice", "phone": TYPO, "max_conversations": 2, "active": "y"}
        page = console.post(f"/console/roster/{alice}", form)
        assert page.status_code == 422  # type: ignore[attr-defined]
        assert "conversation open or an offer waiting" in page.get_data(as_text=True)  # type: ignore[attr-defined]
        assert api.ok("GET", path)["phone"] == "+1•••••••001"

    clinician, peer = phones.phone("+15550109001"), phones.phone(ALICE)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    peer.expect_text("Reply ACCEPT")
    refused()
    peer.texts("ACCEPT")
    peer.expect_text("connected")
    peer.expect_text("hello")
    clinician.expect_text("joined")
    refused()
    clinician.texts("this stays between us")
    peer.expect_text("this stays between us")
    peer.texts("DONE")
    peer.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    assert api.ok("PATCH", path, {"phone": TYPO, "verify": True})["phone"] == "+1•••••••999"
    hotline.run_jobs()
    phones.phone(TYPO).expect_text("code")
    phones.assert_no_unexpected()


def test_the_on_call_answer_follows_rotations_and_overrides(api: Api) -> None:
    alice, bob = api.verified("Alice", ALICE), api.verified("Bob", BOB)
    api.ok("PATCH", "/programme", {"timezone": "America/New_York"})
    rotation = api.ok(
        "POST",
        "/rotations",
        {
            "name": "Weekly",
            "handoff_weekday": "monday",
            "handoff_time": "09:00",
            "anchor_date": "2026-03-01",
            "supporter_ids": [alice, bob],
        },
        201,
    )
    assert rotation["timezone"] == "America/New_York"
    at = "2026-03-10T12:00:00-04:00"  # Bob's week (the hand-off moved with DST)
    assert [s["id"] for s in api.ok("GET", f"/oncall?at={at}")["supporters"]] == [bob]
    override = api.ok(
        "POST",
        "/overrides",
        {
            "supporter_id": alice,
            "covers_for_id": bob,
            "starts_at": "2026-03-10T08:00:00-04:00",
            "ends_at": "2026-03-10T20:00:00-04:00",
        },
        201,
    )
    answer = api.ok("GET", "/oncall?at=2026-03-10T12:00:00%2B00:00")
    assert [s["id"] for s in answer["supporters"]] == [alice]
    assert [s["id"] for s in api.ok("GET", "/oncall?at=2026-03-10T12:00:00 00:00")["supporters"]]
    assert api.call("DELETE", f"/overrides/{override['id']}").status_code == 204
    assert [s["id"] for s in api.ok("GET", f"/oncall?at={at}")["supporters"]] == [bob]


def test_a_cover_for_someone_who_is_covering_takes_them_off_call_too(api: Api) -> None:
    """Anna's shift; Bob covers for Anna; then Carol covers for Bob (he is ill)."""
    anna, bob = api.verified("Anna", ALICE), api.verified("Bob", BOB)
    carol = api.verified("Carol", CAROL)
    period = {"starts_at": "2026-03-03T09:00:00+00:00", "ends_at": "2026-03-03T17:00:00+00:00"}
    api.ok("POST", "/shifts", {"supporter_id": anna, **period}, 201)
    api.ok("POST", "/overrides", {"supporter_id": bob, "covers_for_id": anna, **period}, 201)
    api.ok("POST", "/overrides", {"supporter_id": carol, "covers_for_id": bob, **period}, 201)
    answer = api.ok("GET", "/oncall?at=2026-03-03T12:00:00%2B00:00")
    assert [s["id"] for s in answer["supporters"]] == [carol]


@pytest.mark.parametrize(
    "path",
    [
        "/oncall?at=9999-12-31T23:00:00-05:00",
        "/oncall?at=0001-01-01T00:00:00%2B05:00",
        "/shifts?from=9999-12-31T23:00:00-05:00",
        "/stats?to=9999-12-31T23:00:00-05:00",
    ],
)
def test_instants_a_datetime_cannot_hold_in_utc_are_a_422(api: Api, path: str) -> None:
    api.hotline.app.testing = False  # the answer a client would get, not a re-raise
    response = api.call("GET", path)
    assert response.status_code == 422
    assert "between the years 2000 and 2099" in response.get_json()["error"]["message"]


@pytest.mark.sqlite_only
def test_rfc_3339_times_in_lower_case_are_read(api: Api) -> None:
    """The OpenAPI document says date-time (RFC 3339), which lets 't' and 'z' be lower case."""
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    period = {"starts_at": "2026-03-03t09:00:00z", "ends_at": "2026-03-03t17:00:00z"}
    shift = api.ok("POST", "/shifts", {"supporter_id": alice, **period}, 201)
    assert (shift["starts_at"], shift["ends_at"]) == (
        "2026-03-03T09:00:00+00:00",
        "2026-03-03T17:00:00+00:00",
    )
    on_call = api.ok("GET", "/oncall?at=2026-03-03t12:00:00z")["supporters"]
    assert [s["id"] for s in on_call] == [alice]


def test_an_override_error_names_the_field_the_api_has(api: Api) -> None:
    alice = api.verified("Alice", ALICE)
    period = {"starts_at": "2026-03-03T09:00:00+00:00", "ends_at": "2026-03-03T17:00:00+00:00"}
    response = api.call(
        "POST", "/overrides", {"supporter_id": alice, "covers_for_id": alice, **period}
    )
    assert response.status_code == 422
    assert response.get_json()["error"]["field"] == "covers_for_id"


def test_verify_without_a_new_number_says_where_a_code_comes_from(api: Api) -> None:
    alice = api.verified("Alice", ALICE)
    response = api.call("PATCH", f"/supporters/{alice}", {"verify": True})
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["field"] == "verify" and f"/supporters/{alice}/verification" in error["message"]
    assert api.hotline.fake.messages == []  # no code texted, nothing changed


def test_a_verification_code_text_is_deleted_at_twilio_without_its_status_callback(
    api: Api,
) -> None:
    api.ok("POST", "/supporters", {"name": "Bob", "phone": BOB, "verify": True}, 201)
    api.hotline.run_jobs()
    (code,) = api.hotline.fake.messages  # the notice job sent it; no callback is posted here
    api.hotline.clock.advance(hours=1, seconds=30)
    api.hotline.sweep()
    assert code["sid"] in api.hotline.fake.deleted


def test_shifts_gaps_and_stats(api: Api) -> None:
    alice = api.verified("Alice", ALICE)
    shift = api.ok(
        "POST",
        "/shifts",
        {
            "supporter_id": alice,
            "starts_at": "2026-03-03T09:00:00Z",
            "ends_at": "2026-03-03T17:00:00Z",
        },
        201,
    )
    listed = api.ok("GET", "/shifts?from=2026-03-01T00:00:00Z&to=2026-03-08T00:00:00Z")
    assert listed == [shift]
    gaps = api.ok("GET", "/coverage-gaps?from=2026-03-03T00:00:00Z&to=2026-03-04T00:00:00Z")
    assert [(g["starts_at"], g["ends_at"]) for g in gaps["gaps"]] == [
        ("2026-03-03T00:00:00+00:00", "2026-03-03T09:00:00+00:00"),
        ("2026-03-03T17:00:00+00:00", "2026-03-04T00:00:00+00:00"),
    ]
    stats = api.ok("GET", "/stats")
    assert stats["contacts"] == 0 and stats["small_count_threshold"] == 5
    assert api.call("DELETE", f"/shifts/{shift['id']}").status_code == 204
    assert api.call("GET", f"/shifts/{shift['id']}").status_code == 404


REFUSALS = [
    ("POST", "/supporters", {"name": "A", "phone": "5550108001"}, 422, "E.164"),
    ("POST", "/supporters", {"name": "A", "phone": "+1555010800"}, 422, "E.164"),
    ("POST", "/supporters", {"name": "A", "phone": "+15550108001\x00"}, 422, "NUL"),
    ("POST", "/supporters", {"name": "A"}, 422, "phone is required"),
    ("POST", "/supporters", {"name": "A", "phone": ALICE, "admin": True}, 422, "unknown field"),
    ("POST", "/supporters", {"name": "A", "phone": ALICE, "max_conversations": "2"}, 422, "whole"),
    ("POST", "/supporters", {"name": "A", "phone": ALICE, "verify": "yes"}, 422, "true or false"),
    ("POST", "/supporters", ["not", "an", "object"], 400, "JSON object"),
    ("PATCH", "/programme", {"timezone": "Mars/Olympus_Mons"}, 422, "IANA"),
    ("PATCH", "/programme", {"timezone": "../../../etc/passwd"}, 422, "IANA"),
    ("PATCH", "/programme", {"checkin_hours": "all day"}, 422, "window"),
    ("GET", "/oncall?at=tomorrow", None, 422, "ISO 8601"),
    ("GET", "/oncall?at=2026-03-10T12:00:00", None, 422, "offset"),
    ("GET", "/shifts?from=2026-03-10T00:00:00Z&to=2026-01-01T00:00:00Z", None, 422, "after"),
    ("POST", "/shifts", {"supporter_id": 1, "starts_at": "x", "ends_at": "y"}, 422, "supporter"),
    ("GET", "/supporters/99999999999999999999", None, 404, "no such"),
    ("GET", "/nothing-here", None, 404, "not found"),
]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("method", "path", "json", "status", "message"), REFUSALS)
def test_bad_requests_are_refused_cleanly(
    api: Api, method: str, path: str, json: Any, status: int, message: str
) -> None:
    response = api.call(method, path, json)
    assert response.status_code == status
    error = response.get_json()["error"]
    assert error["status"] == status and message in error["message"]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("raw", ['{"name": "A", "phone": "+15550108001",}', "{name: 'A'}", ""])
def test_a_body_that_is_not_json_is_named_as_such(api: Api, raw: str) -> None:
    """A trailing comma or single quotes is the client's commonest slip: the answer says the
    JSON is broken, not that it should be an object (which it looks like)."""
    response = api.call("POST", "/supporters", data=raw, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]["message"] == "the body is not valid JSON"


def test_changing_the_time_zone_cannot_cut_a_report_down_to_a_few_contacts(api: Api) -> None:
    """Week boundaries that followed the programme's zone could be moved by a coordinator:
    two reads, in zones 15 minutes apart (Kathmandu +5:45, Kolkata +5:30), then a subtraction,
    would isolate one call on a Sunday evening and that nobody took it."""
    hotline = api.hotline
    hotline.clock.now = datetime(2026, 3, 11, 12, tzinfo=UTC)
    call_at = datetime(2026, 3, 8, 18, 20, tzinfo=UTC)  # Sunday 18:20 UTC
    with transaction(hotline.services.sessions) as session:
        for hours in range(1, 11):  # ten answered texts on Tuesday
            created = datetime(2026, 3, 10, hours, tzinfo=UTC)
            session.add(answered(hotline.programme_id, created, timedelta(minutes=hours)))
        session.add(
            Conversation(
                programme_id=hotline.programme_id,
                channel=Channel.VOICE,
                created_at=call_at,
                fallback_at=call_at,
            )
        )
    seen = []
    for zone in ("Asia/Kathmandu", "Asia/Kolkata", "America/Chicago"):
        api.ok("PATCH", "/programme", {"timezone": zone})
        seen.append(api.ok("GET", "/stats?from=2026-03-09T12:00:00Z"))
    assert seen[0] == seen[1] == seen[2]
    assert seen[0]["from"].startswith("2026-03-09T00:00:00")  # Monday 00:00 UTC
    assert seen[0]["contacts"] == 10  # the Sunday call is the week before, in every zone


def test_a_body_the_database_or_the_parser_cannot_take_is_refused_not_a_500(api: Api) -> None:
    """Both tiers: PostgreSQL enforces column lengths (SQLite does not), and json's decoder
    recurses once per level of nesting before the API's own depth check can run."""
    before = api.ok("GET", "/programme")
    for changes in (
        {"checkin_offsets": ",".join(["1d"] * 80)},  # a valid cadence, longer than its column
        {"checkin_hours": "09:00:00.000000-20:00:00.000000"},
    ):
        response = api.call("PATCH", "/programme", changes)
        assert response.status_code == 422, response.status_code
        assert "at most" in response.get_json()["error"]["message"]
    assert api.ok("GET", "/programme") == before
    nested = api.hotline.client.post(
        "/api/v1/supporters",
        data="[" * 100_000,
        headers={"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"},
    )
    assert nested.status_code == 400
    assert "nested too deeply" in nested.get_json()["error"]["message"]


def test_tokens_are_required_and_scoped(hotline: Hotline, api: Api) -> None:
    assert hotline.client.get("/api/v1/supporters").status_code == 401
    bad = hotline.client.get("/api/v1/supporters", headers={"Authorization": "Bearer hl_nope"})
    assert bad.status_code == 401 and bad.headers["WWW-Authenticate"].startswith("Bearer")
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    with transaction(hotline.services.sessions) as session:
        other = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
    theirs = Api(hotline, make_token(hotline, other))
    assert theirs.call("GET", f"/supporters/{alice}").status_code == 404
    assert theirs.call("PATCH", f"/supporters/{alice}", {"name": "x"}).status_code == 404
    assert theirs.call("DELETE", f"/supporters/{alice}").status_code == 404
    assert theirs.ok("GET", "/supporters") == []
    assert theirs.call("GET", "/supporters?programme=default").status_code == 404
    everyone = Api(hotline, make_token(hotline, None))
    assert [s["id"] for s in everyone.ok("GET", "/supporters")] == [alice]
    refused = everyone.call("POST", "/supporters", {"name": "Bob", "phone": BOB})
    assert (
        refused.status_code == 400 and "?programme=SLUG" in refused.get_json()["error"]["message"]
    )
    everyone.ok("POST", "/supporters?programme=north", {"name": "Bob", "phone": BOB}, 201)
    # A token for every programme lists them all: each says which programme it is on.
    listed = {s["name"]: s["programme"] for s in everyone.ok("GET", "/supporters")}
    assert listed == {"Alice": "default", "Bob": "north"}
    assert api.ok("GET", f"/supporters/{alice}")["programme"] == "default"


def test_injection_strings_are_stored_inertly(api: Api) -> None:
    name = "Robert'); DROP TABLE supporters;-- <script>alert(1)</script>"
    created = api.ok("POST", "/supporters", {"name": name, "phone": ALICE}, 201)
    assert api.ok("GET", f"/supporters/{created['id']}")["name"] == name
    assert len(api.ok("GET", "/supporters")) == 1
    response = api.call("GET", "/supporters")
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_the_openapi_document_is_public_and_names_every_route(hotline: Hotline) -> None:
    document = hotline.client.get("/api/v1/openapi.json").get_json()
    assert document["openapi"].startswith("3.1")
    routes = {
        rule.rule.removeprefix("/api/v1").replace("<int:", "{").replace(">", "}")
        for rule in hotline.app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1")
    }
    assert routes == set(document["paths"])


def test_the_spoken_greeting_is_set_and_reset_through_the_api(api: Api) -> None:
    changed = api.ok("PATCH", "/programme", {"call_greeting": "You've reached the forYOU team."})
    assert changed["stored"]["call_greeting"] == "You've reached the forYOU team."
    assert changed["effective"]["call_greeting"] == "You've reached the forYOU team."
    reset = api.ok("PATCH", "/programme", {"call_greeting": None})
    assert reset["stored"]["call_greeting"] is None
    assert reset["effective"]["call_greeting"].startswith("You've reached the clinician")
    refused = api.call("PATCH", "/programme", {"call_greeting": "x" * 501})
    assert refused.status_code == 422


def test_a_coordinators_token_does_not_vouch_for_numbers_an_administrators_does(
    hotline: Hotline,
) -> None:
    """In the console only an administrator may count a number verified without its code; a
    token a coordinator makes is held to the same: what it writes gets a code."""
    for email, admin in (("lead@example.org", False), ("admin@example.org", True)):
        add_coordinator(hotline, email, admin=admin)
    tokens = {}
    for email in ("lead@example.org", "admin@example.org"):
        console = Console(hotline, hotline.app.test_client())
        assert sign_in(console.client, email) == 302
        page = console.post("/console/tokens", {"name": email}).get_data(as_text=True)  # type: ignore[attr-defined]
        tokens[email] = re.search(r"hl_[A-Za-z0-9_-]{20,}", page).group(0)  # type: ignore[union-attr]
    lead, admin = (
        Api(hotline, tokens["lead@example.org"]),
        Api(hotline, tokens["admin@example.org"]),
    )
    alice = lead.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)
    assert alice["phone_verified"] is False
    hotline.run_jobs()
    moved = lead.ok("PATCH", f"/supporters/{alice['id']}", {"phone": CAROL})
    assert moved["phone_verified"] is False
    hotline.run_jobs()
    assert [m["to"] for m in hotline.fake.messages] == [ALICE, CAROL]  # a code each time
    bob = admin.ok("POST", "/supporters", {"name": "Bob", "phone": BOB}, 201)
    assert bob["phone_verified"] is True


def test_revoking_a_token_id_out_of_range_in_the_console_is_a_404(hotline: Hotline) -> None:
    """PostgreSQL cannot compare a 32-bit id column with 99999999999: no 500 for a bad URL."""
    add_coordinator(hotline)
    console = Console(hotline, hotline.app.test_client())
    assert sign_in(console.client) == 302
    answer = console.post("/console/tokens/99999999999/revoke", {}, form_page="/console/tokens")
    assert answer.status_code == 404  # type: ignore[attr-defined]


def test_one_of_the_lines_own_numbers_is_not_a_supporters_phone(hotline: Hotline, api: Api) -> None:
    """Texts from the line's own numbers are ignored (the loop guard) and offers sent to one
    reach no one: a supporter given one, vouched for, would be on call at once and every
    clinician offered to them would wait out the offer for nothing."""
    with transaction(hotline.services.sessions) as session:
        ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        )
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    for number in (HOTLINE, POOL[1], "+15550200000"):
        refused = api.call("POST", "/supporters", {"name": "Line", "phone": number})
        assert refused.status_code == 422, refused.get_json()
        assert refused.get_json()["error"] == {
            "status": 422,
            "message": "that is one of the line's own numbers, not a supporter's phone",
            "field": "phone",
        }
        assert api.call("PATCH", f"/supporters/{alice}", {"phone": number}).status_code == 422
    assert [s["name"] for s in api.ok("GET", "/supporters")] == ["Alice"]
    assert api.ok("GET", f"/supporters/{alice}")["phone"] == "+1•••••••001"


@pytest.mark.parametrize("where", ["api", "console"])
def test_an_offer_to_a_supporter_taken_off_the_roster_goes_on_at_once(
    hotline: Hotline, api: Api, phones: Phones, where: str
) -> None:
    """The clinician does not wait out the offer timeout (up to an hour) for someone who can
    no longer take it: deactivating them passes their waiting offer on straight away."""
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    bob = api.ok("POST", "/supporters", {"name": "Bob", "phone": BOB}, 201)["id"]
    for supporter in (alice, bob):
        hotline.add_shift(supporter, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    clinician = phones.phone("+15550109001")
    clinician.texts("hello")
    clinician.expect_text("confidential")
    phones.phone(ALICE).expect_text("Reply ACCEPT")
    if where == "api":
        assert api.call("DELETE", f"/supporters/{alice}").status_code == 204
    else:
        add_coordinator(hotline)
        console = Console(hotline, hotline.app.test_client())
        assert sign_in(console.client) == 302
        path = f"/console/roster/{alice}"
        assert console.post(f"{path}/deactivate", {}, form_page=path).status_code == 302  # type: ignore[attr-defined]
    hotline.run_jobs()
    phones.phone(BOB).expect_text("Reply ACCEPT")
    phones.phone(BOB).texts("ACCEPT")
    phones.phone(BOB).expect_text("connected")
    phones.phone(BOB).expect_text("hello")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def signed_in(hotline: Hotline) -> Console:
    add_coordinator(hotline)
    console = Console(hotline, hotline.app.test_client())
    assert sign_in(console.client) == 302
    return console


@pytest.mark.parametrize("until", ["delivered", "START"])
def test_a_supporter_who_texted_stop_to_a_line_number_shows_as_unreachable_until_reached(
    hotline: Hotline, api: Api, until: str
) -> None:
    """Alice texted STOP to a pool number: Twilio refuses the line's texts to her from it, and
    routing passed her over there, but the coordinator never learned why. The roster page and
    the API say so, with what to ask of her, until a text to her is delivered or she texts
    START."""
    alice = api.verified("Alice", ALICE)
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    console = signed_in(hotline)
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None
    assert hotline.sms(ALICE, POOL[0], "STOP").status_code == 200

    refused = api.ok("GET", f"/supporters/{alice}")["texts_refused"]
    assert refused["code"] == 21610 and refused["at"] is not None
    assert "replied STOP to 1 of the line's 3 numbers" in refused["advice"]
    assert f"text START to {POOL[0]}" in refused["advice"]
    for page in (console.get("/console/roster"), console.get(f"/console/roster/{alice}")):
        assert "Texts refused" in page and f"text START to {POOL[0]}" in page
    if until == "START":
        assert hotline.sms(ALICE, POOL[0], "START").status_code == 200
    else:
        reply = ET.fromstring(hotline.sms("+15550109001", HOTLINE, "hello").get_data())  # noqa: S314
        (offer,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
        assert offer.get("from") != POOL[0]
        callback = offer.get("action", "").removeprefix(PUBLIC_URL)
        delivered = {"MessageSid": "SM" + "d1" * 16, "MessageStatus": "delivered"}
        assert hotline.post(callback, **delivered).status_code == 204
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None
    assert "Texts refused" not in console.get("/console/roster")


def test_a_stop_to_a_number_taken_out_of_the_pool_no_longer_shows_on_the_roster(
    hotline: Hotline, api: Api
) -> None:
    """Alice texted STOP to the first pool number, and the roster asked the coordinator to
    have her text START to it. The coordinator then took that number out of the pool: the
    line no longer texts her from it, yet the roster went on saying her texts are refused,
    now naming no number. A STOP to numbers the line still has shows as ever."""
    alice = api.verified("Alice", ALICE)
    console = signed_in(hotline)
    assert hotline.sms(ALICE, POOL[0], "STOP").status_code == 200
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is not None

    api.ok("PATCH", "/programme", {"pool_numbers": ",".join(POOL[1:])})
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None
    assert "Texts refused" not in console.get("/console/roster")
    assert "Texts refused" not in console.get(f"/console/roster/{alice}")

    assert hotline.sms(ALICE, POOL[1], "STOP").status_code == 200
    refused = api.ok("GET", f"/supporters/{alice}")["texts_refused"]
    assert "replied STOP to 1 of the line's 2 numbers" in refused["advice"]
    assert f"text START to {POOL[1]}." in refused["advice"]


def test_a_stop_from_someone_not_on_the_roster_is_kept_for_when_they_join_it(
    hotline: Hotline, api: Api
) -> None:
    """Alice, not on the roster (a stranger who was given the number, or a supporter's phone
    before she joined), texted STOP to the first pool number: Twilio blocks that number to her
    for good, yet the line kept nothing of it, and answered her STOP with a text Twilio
    refuses. Added to the roster later, her code came from that number, which Twilio refuses
    (21610): she never got it. Now her STOP is kept as anyone's, by its blind index: it gets no
    answer of the line's (Twilio answers it), her code comes from another number, and her
    offers keep off that one, until her START."""
    reply = ET.fromstring(hotline.sms(ALICE, POOL[0], "STOP").get_data())  # noqa: S314
    assert list(reply.iter("Message")) == []
    with transaction(hotline.services.sessions) as session:
        assert is_opted_out(session, hotline.services.vault, hotline.programme_id, ALICE, POOL[0])
    added = {"name": "Alice", "phone": ALICE, "verify": True}
    alice = api.ok("POST", "/supporters", added, 201)["id"]
    hotline.run_jobs()
    (code,) = [m for m in hotline.fake.messages if m["to"] == ALICE]
    assert "code" in code["body"] and code["from_"] != POOL[0]
    with transaction(hotline.services.sessions) as session:
        verification.vouch(session, session.get_one(Supporter, alice), hotline.clock.now)
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    reply = ET.fromstring(hotline.sms("+15550109001", HOTLINE, "hello").get_data())  # noqa: S314
    (offer,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
    assert offer.get("from") != POOL[0]


def test_a_stop_to_every_line_number_before_joining_the_roster_shows_there(
    hotline: Hotline, api: Api
) -> None:
    """Alice, not yet on the roster, texted STOP to each of the line's numbers. Added (her
    number vouched for), the roster said nothing, and the line offered her requests Twilio
    refuses. It shows that no offer can reach her, and what to ask of her."""
    for number in POOL:
        assert hotline.sms(ALICE, number, "STOP").status_code == 200
    alice = api.ok("POST", "/supporters", {"name": "Alice", "phone": ALICE}, 201)["id"]
    refused = api.ok("GET", f"/supporters/{alice}")["texts_refused"]
    assert refused is not None and "No offer can reach them" in refused["advice"]
    assert f"text START to {POOL[0]} and to {POOL[1]}" in refused["advice"]
    assert hotline.sms(ALICE, POOL[0], "START").status_code == 200
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None


def test_a_retired_programme_texts_no_verification_code_and_the_api_says_why(
    hotline: Hotline, api: Api
) -> None:
    """After `hotline programme retire` a code asked for (a fresh one, a new supporter's, a
    new number's) was texted from the closed line, which answers the supporter's reply that
    it has closed: the API refuses it, saying the programme is retired, and nothing is sent.
    A number the token vouches for needs no code, and is still written."""
    alice = api.verified("Alice", ALICE)
    hotline.run_jobs()
    before = len(hotline.fake.messages)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
    for method, path, json in (
        ("POST", f"/supporters/{alice}/verification", None),
        ("POST", "/supporters", {"name": "Bob", "phone": BOB, "verify": True}),
        ("PATCH", f"/supporters/{alice}", {"phone": CAROL, "verify": True}),
    ):
        response = api.call(method, path, json)
        assert response.status_code == 409, (path, response.get_json())
        assert "programme is retired" in response.get_json()["error"]["message"]
    hotline.run_jobs()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert len(hotline.fake.messages) == before
    assert api.ok("GET", f"/supporters/{alice}")["phone_verified"] is True
    api.ok("POST", "/supporters", {"name": "Bob", "phone": BOB}, 201)  # vouched for


def test_a_supporters_stop_to_a_retired_programme_shows_on_the_roster(
    hotline: Hotline, api: Api
) -> None:
    """Alice texts STOP to a pool number of a retired programme: the block was kept (as for a
    clinician) but the roster said nothing, where on a running line it shows her STOP with
    what to ask of her; restored, the coordinator would not know why no offer came from it."""
    alice = api.verified("Alice", ALICE)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
    assert hotline.sms(ALICE, POOL[0], "STOP").status_code == 200
    refused = api.ok("GET", f"/supporters/{alice}")["texts_refused"]
    assert refused is not None and refused["code"] == 21610 and refused["at"] is not None
    assert f"text START to {POOL[0]}" in refused["advice"]
    assert "Texts refused" in signed_in(hotline).get(f"/console/roster/{alice}")
    assert hotline.sms(ALICE, POOL[0], "START").status_code == 200
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None


def test_a_supporter_who_stopped_every_line_number_shows_as_unreachable(
    hotline: Hotline, api: Api
) -> None:
    """With the pool the hotline number alone (HOTLINE_POOL_NUMBERS unset), Alice's STOP to it
    blocks every number an offer could come from: routing never offered her anything again,
    and nothing told the coordinator."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.pool_numbers.clear()
        session.flush()
        programme.pool_numbers.append(PoolNumber(number=HOTLINE))
    alice = api.verified("Alice", ALICE)
    assert hotline.sms(ALICE, HOTLINE, "STOP").status_code == 200
    refused = api.ok("GET", f"/supporters/{alice}")["texts_refused"]
    assert refused["code"] == 21610
    assert "No offer can reach them" in refused["advice"]
    assert f"text START to {HOTLINE}" in refused["advice"]
    assert "Texts refused" in signed_in(hotline).get("/console/roster")


def test_a_stretch_only_a_supporter_the_line_cannot_text_covers_is_a_coverage_gap(
    hotline: Hotline, api: Api
) -> None:
    """Bob texted STOP to every number of the line: routing offers him nothing, so a clinician
    texting during his shift is told nobody is free, yet coverage-gaps listed no gap then. It
    lists his shift, run on into the plain gap after it, with him as who is on call in it."""
    alice, bob = api.verified("Alice", ALICE), api.verified("Bob", BOB)
    for who, starts, ends in ((alice, "09:00", "13:00"), (bob, "13:00", "17:00")):
        period = {"starts_at": f"2026-03-03T{starts}:00Z", "ends_at": f"2026-03-03T{ends}:00Z"}
        api.ok("POST", "/shifts", {"supporter_id": who, **period}, 201)
    window = "/coverage-gaps?from=2026-03-03T00:00:00Z&to=2026-03-04T00:00:00Z"
    assert len(api.ok("GET", window)["gaps"]) == 2
    for number in POOL:
        assert hotline.sms(BOB, number, "STOP").status_code == 200
    gaps = api.ok("GET", window)["gaps"]
    assert [(g["starts_at"], g["ends_at"], g["supporter_ids"]) for g in gaps] == [
        ("2026-03-03T00:00:00+00:00", "2026-03-03T09:00:00+00:00", []),
        ("2026-03-03T13:00:00+00:00", "2026-03-04T00:00:00+00:00", [bob]),
    ]


def test_a_number_that_cannot_take_texts_shows_until_it_is_corrected(
    hotline: Hotline, api: Api
) -> None:
    """The code texted to a number that is not a mobile one was refused (21614): the API and
    the roster say so with what to do, and a corrected number clears it."""
    hotline.fake.fail_for(TYPO, code=21614)
    created = api.ok("POST", "/supporters", {"name": "Alice", "phone": TYPO, "verify": True}, 201)
    path = f"/supporters/{created['id']}"
    hotline.run_jobs()
    refused = api.ok("GET", path)["texts_refused"]
    assert refused["code"] == 21614 and "not a mobile number" in refused["advice"]
    assert TYPO not in str(refused)
    assert "Texts refused" in signed_in(hotline).get("/console/roster")
    api.ok("PATCH", path, {"phone": ALICE, "verify": True})
    assert api.ok("GET", path)["texts_refused"] is None


def test_a_late_report_of_a_stop_to_an_old_number_is_not_held_against_the_new_one(
    hotline: Hotline, api: Api
) -> None:
    """An offer went to Alice's old phone from the first pool number; it lapsed unanswered and
    the coordinator put her new number in. Twilio's report on that text came only then
    (it can come half an hour late): refused, the old phone had texted STOP to that number
    (21610). Her new phone was taken to have done so: the roster said her texts are refused,
    and her offers kept off that pool number. The block is the old phone's, as the report
    names it; her new number is clear."""
    alice = api.verified("Alice", TYPO)
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(days=1))
    reply = ET.fromstring(hotline.sms("+15550109001", HOTLINE, "hello").get_data())  # noqa: S314
    (offer,) = [m for m in reply.iter("Message") if m.get("to") == TYPO]
    assert offer.get("from") == POOL[0]
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    api.ok("PATCH", f"/supporters/{alice}", {"phone": ALICE})
    callback = offer.get("action", "").removeprefix(PUBLIC_URL)
    failed = {"MessageSid": "SM" + "e1" * 16, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert hotline.post(callback, **failed, To=TYPO, From=POOL[0]).status_code == 204
    hotline.run_jobs()
    assert api.ok("GET", f"/supporters/{alice}")["texts_refused"] is None
    with transaction(hotline.services.sessions) as session:
        vault, programme = hotline.services.vault, hotline.programme_id
        assert is_opted_out(session, vault, programme, TYPO, POOL[0])
        assert not is_opted_out(session, vault, programme, ALICE, POOL[0])
    reply = ET.fromstring(hotline.sms("+15550109002", HOTLINE, "hello").get_data())  # noqa: S314
    (offer,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
    assert offer.get("from") == POOL[0]


def test_a_retired_programme_says_so_in_the_api_and_the_console(api: Api) -> None:
    """After `hotline programme retire`, the programme resource gives when, and the console's
    header names the programme as retired; a running one gives null."""
    assert api.ok("GET", "/programme")["retired_at"] is None
    with transaction(api.hotline.services.sessions) as session:
        programme = session.get_one(Programme, api.hotline.programme_id)
        retirement.retire(session, programme, api.hotline.clock.now)
    assert api.ok("GET", "/programme")["retired_at"] is not None
    add_coordinator(api.hotline, "coordinator@example.org")
    console = api.hotline.app.test_client()
    assert sign_in(console, "coordinator@example.org") == 302
    assert "(retired)" in console.get("/console/live").get_data(as_text=True)
