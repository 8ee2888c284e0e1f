"""Console sign-in: revocable server-side sessions, idle timeout, throttling, CSRF, headers."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis

from hotline import signin
from tests.console.conftest import (
    ACTOR,
    PASSWORD,
    Console,
    add_coordinator,
    csrf_of,
    sign_in,
)
from tests.kit.fake_twilio import FakeTwilio
from tests.kit.harness import Hotline, make_hotline

PAGES = ["/console/", "/console/live", "/console/roster", "/console/schedule", "/console/audit"]


def session_cookie(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


@pytest.mark.sqlite_only
def test_every_page_needs_a_signed_in_coordinator(hotline: Hotline) -> None:
    for path in PAGES:
        response = hotline.client.get(path)
        assert response.status_code == 302
        assert "/console/sign-in" in response.headers["Location"]


def test_sign_out_kills_a_copied_session_cookie(console: Console) -> None:
    stolen = session_cookie(console.client)
    thief = console.hotline.app.test_client()
    thief.set_cookie("session", stolen)
    assert thief.get("/console/live").status_code == 200  # the copy works while signed in
    response = console.post("/console/sign-out", {}, form_page="/console/live")
    assert response.status_code == 302  # type: ignore[attr-defined]
    assert thief.get("/console/live").status_code == 302
    assert console.client.get("/console/live").status_code == 302


@pytest.mark.sqlite_only
def test_an_idle_session_times_out(console: Console) -> None:
    console.hotline.clock.advance(minutes=29)
    assert console.client.get("/console/live").status_code == 200
    console.hotline.clock.advance(minutes=29)  # still within 30 minutes of the last request
    assert console.client.get("/console/live").status_code == 200
    console.hotline.clock.advance(minutes=31)
    assert console.client.get("/console/live").status_code == 302


def test_wrong_passwords_are_throttled_but_never_locked_for_good(hotline: Hotline) -> None:
    add_coordinator(hotline)
    client = hotline.app.test_client()
    for _ in range(signin.MAX_PER_EMAIL):
        assert sign_in(client, password="wrong password!") == 401
    assert sign_in(client) == 429  # even the right password waits
    page = client.get("/console/sign-in")
    assert page.status_code == 200
    hotline.clock.advance(minutes=16)
    assert sign_in(client) == 302


@pytest.mark.sqlite_only
def test_unknown_email_and_wrong_password_answer_alike(hotline: Hotline) -> None:
    add_coordinator(hotline)
    first = hotline.app.test_client()
    page = first.get("/console/sign-in").get_data(as_text=True)
    unknown = first.post(
        "/console/sign-in",
        data={"email": "nobody@example.org", "password": PASSWORD, "csrf_token": csrf_of(page)},
    )
    wrong = hotline.app.test_client()
    assert sign_in(wrong, password="not the password") == 401
    assert unknown.status_code == 401
    assert "do not match an account" in unknown.get_data(as_text=True)


@pytest.mark.sqlite_only
def test_forms_without_a_csrf_token_are_refused(console: Console) -> None:
    response = console.client.post("/console/roster", data={"name": "A", "phone": "+15550108001"})
    assert response.status_code == 400
    response = console.client.post("/console/sign-out")
    assert response.status_code == 400
    assert console.client.get("/console/live").status_code == 200  # still signed in


@pytest.mark.sqlite_only
def test_a_session_from_another_app_secret_is_worthless(hotline: Hotline) -> None:
    forged = hotline.app.test_client()
    forged.set_cookie("session", "eyJfdXNlcl9pZCI6ImZvcmdlZCJ9.aaaa.bbbb")
    assert forged.get("/console/live").status_code == 302


@pytest.mark.sqlite_only
def test_security_headers(console: Console) -> None:
    for path in ("/console/sign-in", "/console/live", "/api/v1/openapi.json"):
        headers = console.client.get(path).headers
        assert headers["X-Frame-Options"] == "DENY"
        assert "default-src 'none'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
        assert headers["Cache-Control"] == "no-store"
    cookie = console.client.get_cookie("session")
    assert cookie is not None and cookie.http_only


@pytest.mark.sqlite_only
def test_signing_in_twice_gives_separate_sessions(hotline: Hotline) -> None:
    add_coordinator(hotline)
    phone, laptop = hotline.app.test_client(), hotline.app.test_client()
    assert sign_in(phone) == 302 and sign_in(laptop) == 302
    console = Console(hotline, phone)
    console.post("/console/sign-out", {}, form_page="/console/live")
    assert laptop.get("/console/live").status_code == 200


def test_a_coordinator_changes_their_password_and_their_other_sessions_end(
    hotline: Hotline,
) -> None:
    """A password that may have leaked can be changed in the console: the current one is
    checked (and throttled like a sign-in), every other session ends, the change is audited."""
    add_coordinator(hotline)
    laptop, thief = hotline.app.test_client(), hotline.app.test_client()
    assert sign_in(laptop) == 302 and sign_in(thief) == 302
    console = Console(hotline, laptop)
    new = "a brand new passphrase"
    refusals = {
        "current": {"current": "not my password", "new": new, "repeat": new},
        "short": {"current": PASSWORD, "new": "short", "repeat": "short"},
        "differ": {"current": PASSWORD, "new": new, "repeat": new + "!"},
    }
    for why, form in refusals.items():
        page = console.post("/console/password", form)
        assert page.status_code == 422, why  # type: ignore[attr-defined]
    text = page.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "The two new passwords differ." in text
    assert thief.get("/console/live").status_code == 200  # nothing changed yet
    assert console.client.post("/console/password", data=refusals["differ"]).status_code == 400

    changed = console.post("/console/password", {"current": PASSWORD, "new": new, "repeat": new})
    assert changed.status_code == 302  # type: ignore[attr-defined]
    assert "Password changed" in console.get("/console/live")
    assert thief.get("/console/live").status_code == 302
    assert sign_in(hotline.app.test_client()) == 401
    assert sign_in(hotline.app.test_client(), password=new) == 302
    audit = console.get("/console/audit")
    assert "coordinator.password" in audit and new not in audit and PASSWORD not in audit

    guess = {"current": "a guess", "new": PASSWORD, "repeat": PASSWORD}
    for _ in range(signin.MAX_PER_EMAIL):  # a stolen session cannot guess its way in
        assert console.post("/console/password", guess).status_code == 422  # type: ignore[attr-defined]
    right = {"current": new, "new": PASSWORD, "repeat": PASSWORD}
    assert console.post("/console/password", right).status_code == 429  # type: ignore[attr-defined]


@pytest.mark.sqlite_only
@pytest.mark.parametrize("proxies", [0, 1])
def test_the_address_throttle_believes_forwarded_addresses_only_from_trusted_proxies(
    database_url: str,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: Any,
    monkeypatch: pytest.MonkeyPatch,
    proxies: int,
) -> None:
    """Behind a load balancer every request comes from its address: with
    HOTLINE_TRUSTED_PROXIES=1 the throttle counts the real client (X-Forwarded-For), so one
    guesser cannot make everyone wait; without it the header is ignored, so a guesser cannot
    dodge the throttle by inventing addresses."""
    monkeypatch.setattr(signin, "MAX_PER_ADDRESS", 3)
    env = {"HOTLINE_TRUSTED_PROXIES": str(proxies)} if proxies else {}
    line = make_hotline(database_url, redis_conn, fake_twilio, tmp_path, **env)
    try:
        add_coordinator(line)

        def from_address(address: str) -> FlaskClient:
            """A browser behind the load balancer, which ends TLS (so no Referer is sent:
            the console's Referrer-Policy is no-referrer)."""
            client = line.app.test_client()
            client.environ_base["HTTP_X_FORWARDED_FOR"] = address
            client.environ_base["HTTP_X_FORWARDED_PROTO"] = "https"
            return client

        guesser = from_address("203.0.113.7")
        for n in range(3):
            assert sign_in(guesser, f"guess{n}@example.org", "wrong password!") == 401
        assert sign_in(from_address("203.0.113.7")) == 429
        colleague = sign_in(from_address("198.51.100.9"))
        assert colleague == (302 if proxies else 429)
    finally:
        line.clock.stop()
        line.services.sessions.kw["bind"].dispose()


def test_wrong_passwords_sent_together_are_throttled_too(
    hotline: Hotline, database_url: str
) -> None:
    """Sixteen wrong passwords for one email at once: no more than the limit are checked
    against the hash (the rest are told to wait), on PostgreSQL as in production."""
    if hotline.services.sessions.kw["bind"].dialect.name != "postgresql":
        pytest.skip("SQLite serialises the writers; the race needs PostgreSQL")
    add_coordinator(hotline)
    attempts = 16
    clients = [hotline.app.test_client() for _ in range(attempts)]
    tokens = [csrf_of(c.get("/console/sign-in").get_data(as_text=True)) for c in clients]
    barrier = threading.Barrier(attempts)
    codes: list[int] = []

    def guess(i: int) -> None:
        barrier.wait()
        response = clients[i].post(
            "/console/sign-in",
            data={"email": ACTOR, "password": f"wrong guess {i:04d}", "csrf_token": tokens[i]},
        )
        codes.append(response.status_code)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    checked = codes.count(401)  # a password actually tried against the hash
    assert checked <= signin.MAX_PER_EMAIL, codes
