"""The dev phone page and ``hotline dev``'s wiring: texts go through the signed webhook and
come back on the simulated phones; the dev worker thread runs due wake-ups."""

from __future__ import annotations

import html
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import fakeredis
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, select, update

from hotline.app import build_services, create_app
from hotline.db import transaction
from hotline.demo import DEMO_ROSTER, seed_demo_roster
from hotline.dev import DevHotline, build_dev, with_dev_defaults
from hotline.devphone import CARRIER_STOP_REPLY, DEFAULT_CLINICIAN, bp, deliver_twiml
from hotline.models import Offer, OfferState
from hotline.programmes import ensure_default_programme
from hotline.services import Services
from hotline.settings import load_settings
from hotline.telephony.simulator import PhoneNetwork, SimulatedTelephony
from hotline.wakeups import Task

HOTLINE = "+15550100000"
POOL = ("+15550100001", "+15550100002", "+15550100003")
CLINICIAN = DEFAULT_CLINICIAN
DATA_KEY = "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY="
BASE_ENV = {
    "HOTLINE_NUMBER": HOTLINE,
    "HOTLINE_POOL_NUMBERS": ",".join(POOL),
    "HOTLINE_SECRET_KEY": "dev-secret",
    "HOTLINE_DATA_KEY": DATA_KEY,
    "HOTLINE_CHECKIN_HOURS": "",
}
PRODUCTION_ENV = {
    **BASE_ENV,
    "HOTLINE_ENV": "production",
    "TWILIO_ACCOUNT_SID": "AC" + "1" * 32,
    "TWILIO_AUTH_TOKEN": "prod-token",
    "REDIS_URL": "redis://localhost:6379/0",
    "HOTLINE_PUBLIC_URL": "https://hotline.example.org",
}
# How the dev page must sign: with the secret key, with a Twilio token (no SID: still the
# simulator), and for a configured public URL instead of the request's own.
SIGNING = {
    "secret-key": {},
    "auth-token": {"TWILIO_AUTH_TOKEN": "token-without-sid"},
    "public-url": {"HOTLINE_PUBLIC_URL": "https://tunnel.example.org/"},
}


@dataclass
class Line:
    app: Flask
    client: FlaskClient
    services: Services
    network: PhoneNetwork

    def send(self, sender: str, to: str, body: str, **headers: str) -> int:
        form = {"from": sender, "to": to, "body": body, "clinician": CLINICIAN}
        return self.client.post("/dev/phones/send", data=form, headers=headers).status_code

    def page(self) -> str:
        response = self.client.get("/dev/phones")
        assert response.status_code == 200
        return response.get_data(as_text=True)


def make_line(database_url: str, tmp_path: Path, **env: str) -> Line:
    settings = load_settings({**BASE_ENV, "DATABASE_URL": database_url, **env}, tmp_path)
    network = PhoneNetwork()
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    services = build_services(settings, redis=redis, telephony=SimulatedTelephony(network))
    with transaction(services.sessions) as session:
        programme = ensure_default_programme(session, settings)
        assert seed_demo_roster(session, services.vault, programme.id, services.clock()) == 3
    app = create_app(services=services)
    return Line(app, app.test_client(), services, network)


@pytest.fixture(params=sorted(SIGNING))
def line(
    request: pytest.FixtureRequest, database_url: str, engine: Engine, tmp_path: Path
) -> Iterator[Line]:
    made = make_line(database_url, tmp_path, **SIGNING[request.param])
    yield made
    made.services.sessions.kw["bind"].dispose()


def phone_texts(page: str) -> dict[str, str]:
    """The texts shown on each phone of the page, as plain text, by phone number."""
    shown = {}
    for digits, section in re.findall(
        r'<section class="phone" id="phone-(\d+)"(.*?)</section>', page, re.S
    ):
        texts = re.search(r'<ol class="texts".*?</ol>', section, re.S)
        assert texts is not None
        shown["+" + digits] = " ".join(html.unescape(re.sub(r"<[^>]+>", " ", texts[0])).split())
    return shown


def reply_number(page: str, number: str) -> str:
    """The number a phone's send form is set to write to."""
    digits = number.lstrip("+")
    section = re.search(rf'id="phone-{digits}"(.*?)</section>', page, re.S)
    assert section is not None
    selected = re.search(r'<option value="([^"]+)" selected', section[1])
    assert selected is not None
    return selected[1]


@pytest.mark.sqlite_only
def test_page_lists_the_demo_supporters(line: Line) -> None:
    page = line.page()
    for demo in DEMO_ROSTER:
        assert html.escape(demo.name) in page and demo.phone in page and demo.discipline in page
    assert set(phone_texts(page)) == {CLINICIAN, *(d.phone for d in DEMO_ROSTER)}
    assert "No texts yet." in page


@pytest.mark.sqlite_only
def test_clinician_is_greeted_supporter_offered_then_connected(line: Line) -> None:
    assert line.send(CLINICIAN, HOTLINE, "hello") == 303
    page = line.page()
    shown = phone_texts(page)
    assert "confidential" in shown[CLINICIAN] and f"From {HOTLINE}" in shown[CLINICIAN]
    offered = [n for n, texts in shown.items() if "Reply ACCEPT" in texts]
    assert len(offered) == 1
    supporter = offered[0]
    assert "hello" not in shown[supporter]  # the offer never carries the clinician's words
    assert reply_number(page, supporter) in POOL

    assert line.send(supporter, reply_number(page, supporter), "ACCEPT") == 303
    shown = phone_texts(line.page())
    assert "You're connected" in shown[supporter] and "hello" in shown[supporter]
    assert "joined" in shown[CLINICIAN]
    assert CLINICIAN not in shown[supporter] and supporter not in shown[CLINICIAN]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("line", ["secret-key"], indirect=True)
def test_a_cross_origin_post_is_refused(line: Line) -> None:
    assert line.send(CLINICIAN, HOTLINE, "hello", Origin="http://evil.example") == 403
    assert line.send(CLINICIAN, HOTLINE, "hello", Referer="http://evil.example/x") == 403
    assert line.network.texts == []
    assert line.send(CLINICIAN, HOTLINE, "hello", Origin="http://localhost") == 303
    assert line.network.inbox(CLINICIAN)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("line", ["secret-key"], indirect=True)
def test_stop_is_answered_and_blocked_as_twilio_does(line: Line) -> None:
    line.send(CLINICIAN, HOTLINE, "hello")
    before = len(line.network.inbox(CLINICIAN))
    assert line.send(CLINICIAN, HOTLINE, "STOP") == 303
    assert [t.body for t in line.network.inbox(CLINICIAN)[before:]] == [CARRIER_STOP_REPLY]
    assert (CLINICIAN, HOTLINE) in line.network.blocked


@pytest.mark.parametrize(
    ("twiml", "expected"),
    [
        ("<Response/>", []),
        ("<Response><Message>hi</Message></Response>", [(CLINICIAN, HOTLINE, "hi")]),
        (
            f'<Response><Message to="{DEMO_ROSTER[0].phone}" from="{POOL[0]}">x</Message>'
            "<Message><Body>y</Body></Message></Response>",
            [(DEMO_ROSTER[0].phone, POOL[0], "x"), (CLINICIAN, HOTLINE, "y")],
        ),
    ],
)
def test_twiml_messages_are_delivered_where_twilio_would(
    twiml: str, expected: list[tuple[str, str, str]]
) -> None:
    network = PhoneNetwork()
    deliver_twiml(network, CLINICIAN, HOTLINE, twiml)
    assert [(t.to, t.from_, t.body) for t in network.texts] == expected


@pytest.mark.sqlite_only
def test_a_production_app_has_no_dev_phones(
    database_url: str, engine: Engine, tmp_path: Path
) -> None:
    settings = load_settings({**PRODUCTION_ENV, "DATABASE_URL": database_url}, tmp_path)
    services = build_services(
        settings,
        redis=fakeredis.FakeRedis(server=fakeredis.FakeServer()),
        telephony=SimulatedTelephony(PhoneNetwork()),
    )
    app = create_app(services=services)
    client = app.test_client()
    assert client.get("/dev/phones").status_code == 404
    assert client.post("/dev/phones/send", data={"from": CLINICIAN}).status_code == 404
    guarded = create_app(services=services)
    guarded.register_blueprint(bp)  # even if someone registers it, it refuses to serve
    assert guarded.test_client().get("/dev/phones").status_code == 404
    services.sessions.kw["bind"].dispose()


# --- hotline dev -----------------------------------------------------------------------------


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[DevHotline]:
    built = build_dev({"HOTLINE_CHECKIN_HOURS": ""}, instance_path=tmp_path)
    yield built
    built.background.stop()
    assert not built.background.alive
    built.services.sessions.kw["bind"].dispose()


def test_dev_defaults_fill_only_what_is_unset() -> None:
    assert with_dev_defaults({})["HOTLINE_POOL_NUMBERS"].startswith("+1555010000")
    mine = with_dev_defaults({"HOTLINE_NUMBER": "+15550100042"})
    assert mine["HOTLINE_NUMBER"] == "+15550100042" and "HOTLINE_POOL_NUMBERS" not in mine


def test_dev_with_its_own_hotline_number_set_still_has_its_made_up_pool(tmp_path: Path) -> None:
    # The README has the CLI run with HOTLINE_NUMBER=+15550100000 beside `make dev`; exported
    # (or in .env), it made `make dev` start with the hotline number as its only pool number.
    built = build_dev({"HOTLINE_NUMBER": HOTLINE, "HOTLINE_CHECKIN_HOURS": ""}, tmp_path)
    page = built.app.test_client().get("/dev/phones").get_data(as_text=True)
    built.services.sessions.kw["bind"].dispose()
    assert f"Hotline number {HOTLINE} · pool {', '.join(POOL)}" in page


def test_dev_builds_on_a_fresh_instance_and_seeds_once(dev: DevHotline, tmp_path: Path) -> None:
    assert dev.seeded == len(DEMO_ROSTER) and dev.network is not None
    assert (tmp_path / "hotline.sqlite3").exists()
    client = dev.app.test_client()
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json == {
        "status": "ok",
        "database": "ok",
        "redis": "ok (embedded)",
    }
    assert client.get("/dev/phones").status_code == 200
    again = build_dev({"HOTLINE_CHECKIN_HOURS": ""}, instance_path=tmp_path)
    assert again.seeded == 0  # a roster exists: left alone
    again.services.sessions.kw["bind"].dispose()


def test_dev_worker_thread_runs_scheduled_and_due_wake_ups(dev: DevHotline) -> None:
    network, services = dev.network, dev.services
    assert network is not None
    client = dev.app.test_client()
    client.post("/dev/phones/send", data={"from": CLINICIAN, "to": HOTLINE, "body": "hello"})
    dev.background.start()

    first = _pending_offer(services)
    _expire_soon(services, first)
    services.wakeups.schedule(Task.EXPIRE_OFFER, first, services.clock() + timedelta(seconds=1))
    second = _wait_for(lambda: _next_offer(services, first))  # the scheduler moved it

    _expire_soon(services, second)
    services.wakeups.schedule(Task.EXPIRE_OFFER, second, services.clock() - timedelta(seconds=1))
    _wait_for(lambda: _next_offer(services, second))  # due: queued at once

    offers = [t for t in network.texts if "Reply ACCEPT" in t.body]
    assert len({t.to for t in offers}) == 3  # every demo supporter was offered in turn


def _pending_offer(services: Services) -> int:
    with transaction(services.sessions) as session:
        offer_id = session.scalar(select(Offer.id).where(Offer.state == OfferState.PENDING))
    assert offer_id is not None
    return offer_id


def _expire_soon(services: Services, offer_id: int) -> None:
    at = services.clock() - timedelta(seconds=1)
    with transaction(services.sessions) as session:
        session.execute(update(Offer).where(Offer.id == offer_id).values(expires_at=at))


def _next_offer(services: Services, after: int) -> int | None:
    with transaction(services.sessions) as session:
        return session.scalar(
            select(Offer.id).where(Offer.id > after, Offer.state == OfferState.PENDING)
        )


def _wait_for(probe: Callable[[], int | None], seconds: float = 30.0) -> int:
    """Poll until ``probe`` finds something. A bound on liveness, not a timing: it returns as
    soon as the work is done; 8 s proved too short for RQ's scheduler on a loaded machine."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = probe()
        if found is not None:
            return found
        time.sleep(0.1)
    raise AssertionError(f"nothing happened within {seconds} s")
