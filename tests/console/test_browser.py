"""The console in a real headless Chromium (Debian's ``chromium``, driven by Playwright).

The real app serves on a loopback port (werkzeug in a thread) over the SQLite tier with the
fake Twilio; the harness clock stands at Monday 2 March 2026, 15:00 UTC. A coordinator signs
in, adds and verifies two supporters (codes read from the fake Twilio), builds a weekly
rotation and an override, watches the on-call answer change and a coverage-gap warning appear
when a supporter drops out, and checks that signing out kills a copied session cookie.

Without Chromium these tests skip with a loud reason: run ``scripts/ensure-browser`` first.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import make_server

from tests.console.conftest import ACTOR, PASSWORD, add_coordinator
from tests.kit.harness import Hotline

CHROMIUM = Path(os.environ.get("HOTLINE_CHROMIUM", "/usr/bin/chromium"))
ALICE, BOB = "+15550108001", "+15550108002"
MISSING = (
    f"!!! NO CHROMIUM at {CHROMIUM}: browser tests SKIPPED. Run scripts/ensure-browser "
    "(installs Debian's chromium) or set HOTLINE_CHROMIUM."
)

pytestmark = [
    pytest.mark.sqlite_only,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING),
]


@pytest.fixture
def base_url(hotline: Hotline) -> Iterator[str]:
    """The hotline's real app on a loopback port, served from a thread."""
    server = make_server("127.0.0.1", 0, hotline.app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(10)


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        yield launched
        launched.close()


def sign_in(page: Any, base_url: str) -> None:
    page.goto(f"{base_url}/console/live")
    assert "/console/sign-in" in page.url
    page.get_by_label("Email").fill(ACTOR)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/console/live$"))


def add_and_verify(page: Any, base_url: str, hotline: Hotline, name: str, phone: str) -> None:
    page.goto(f"{base_url}/console/roster")
    page.get_by_label("Name").fill(name)
    page.get_by_label("Mobile number").fill(phone)
    page.get_by_label("Discipline").select_option("nurse")
    page.get_by_role("button", name="Add supporter").click()
    page.wait_for_url(re.compile(r"/console/roster/\d+$"))
    assert phone not in page.content()
    hotline.run_jobs()  # the worker texts the code; the supporter reads it out
    body = next(m["body"] for m in reversed(hotline.fake.messages) if m["to"] == phone)
    code = re.search(r"\b(\d{6})\b", str(body))
    assert code is not None
    page.get_by_label("Code the supporter received").fill(code.group(1))
    page.get_by_role("button", name="Verify").click()
    assert page.get_by_text("Phone number verified.").is_visible()


def on_call_at(page: Any, base_url: str, local: str) -> str:
    page.goto(f"{base_url}/console/schedule?date=2026-03-02")
    page.locator("#at").fill(local)
    page.get_by_role("button", name="Check").click()
    return str(page.locator("#on-call-answer").inner_text())


def test_a_coordinator_builds_the_schedule_in_a_real_browser(
    hotline: Hotline, base_url: str, browser: Any
) -> None:
    add_coordinator(hotline)
    page = browser.new_context().new_page()
    sign_in(page, base_url)
    assert "Nobody is on call right now." in page.content()
    add_and_verify(page, base_url, hotline, "Alice", ALICE)
    add_and_verify(page, base_url, hotline, "Bob", BOB)

    page.goto(f"{base_url}/console/schedule?date=2026-03-02")
    page.get_by_label("Name").fill("Weekly")
    page.get_by_label("Hand-off day").select_option(label="Monday")
    page.get_by_label("Hand-off time (local)").fill("09:00")
    page.get_by_label("Starting on or after").fill("2026-03-02")
    page.get_by_label("Turn 1").select_option(label="Alice")
    page.get_by_label("Turn 2").select_option(label="Bob")
    page.get_by_role("button", name="Add rotation").click()
    assert page.get_by_text("Schedule updated.").is_visible()
    assert "Alice" in on_call_at(page, base_url, "2026-03-03T12:00")

    page.locator("#override-supporter_id").select_option(label="Bob")
    page.locator("#override-covers_for_id").select_option(label="Alice")
    page.locator("#override-starts_at").fill("2026-03-03T10:00")
    page.locator("#override-ends_at").fill("2026-03-03T14:00")
    page.get_by_role("button", name="Add override").click()
    assert page.get_by_text("Schedule updated.").is_visible()
    assert "Bob" in on_call_at(page, base_url, "2026-03-03T12:00")

    page.goto(f"{base_url}/console/live")
    assert page.locator("#no-gaps").is_visible()
    assert page.get_by_role("heading", name="On call now").is_visible()
    page.goto(f"{base_url}/console/roster")
    page.get_by_role("link", name="Bob").click()
    page.get_by_role("button", name="Deactivate").click()
    page.goto(f"{base_url}/console/live")
    warning = page.get_by_role("alert")
    assert "Coverage gap ahead" in warning.inner_text()
    assert "Tue 03 Mar 10:00 – Tue 03 Mar 14:00" in warning.inner_text()
    assert "nobody" in on_call_at(page, base_url, "2026-03-03T12:00")


def test_signing_out_kills_a_copied_session_cookie(
    hotline: Hotline, base_url: str, browser: Any
) -> None:
    add_coordinator(hotline)
    mine = browser.new_context()
    page = mine.new_page()
    sign_in(page, base_url)
    copy = browser.new_context()
    copy.add_cookies(mine.cookies())
    thief = copy.new_page()
    thief.goto(f"{base_url}/console/roster")
    assert thief.url.endswith("/console/roster")  # the copied cookie works while signed in
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(re.compile(r"/console/sign-in"))
    thief.goto(f"{base_url}/console/roster")
    assert "/console/sign-in" in thief.url
    assert thief.get_by_role("heading", name="Sign in").is_visible()
