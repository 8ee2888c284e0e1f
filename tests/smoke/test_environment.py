"""CONTRACT.md's settings as the phones notice them: a line started with its own crisis sentence
and offer time-out says and does what the environment gives, not the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from redis import Redis

from hotline.settings import DEFAULT_CRISIS_TEXT
from hotline.speech import digit_by_digit
from tests.kit.calls import Calls, Script
from tests.kit.fake_twilio import FakeTwilio
from tests.kit.harness import HOTLINE, Hotline, make_hotline
from tests.kit.phones import Phones
from tests.kit.sms import is_gsm7, segments

CRISIS = "In an emergency call 999, or the Samaritans free on 116 123, day or night."
CLINICIAN, CALLER, SECOND = "+15550109001", "+15550109002", "+15550109003"
ALICE, BOB = "+15550108001", "+15550108002"
OFFER = "Reply ACCEPT to take it or PASS"


@pytest.fixture
def hotline(
    request: pytest.FixtureRequest,
    database_url: str,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: Any,
) -> Iterator[Hotline]:
    line = make_hotline(
        database_url,
        redis_conn,
        fake_twilio,
        tmp_path,
        HOTLINE_CRISIS_TEXT=getattr(request, "param", CRISIS),
        HOTLINE_OFFER_TIMEOUT="45",
    )
    yield line
    line.clock.stop()
    line.services.sessions.kw["bind"].dispose()


def test_the_crisis_sentence_of_the_environment_is_in_the_greeting_and_the_fallback(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    clinician = phones.phone(CLINICIAN)
    clinician.texts("is anyone there?")  # nobody on call: the greeting says so
    fallback = clinician.expect_text("No peer is free", from_=HOTLINE)
    assert CRISIS in fallback.body and DEFAULT_CRISIS_TEXT not in fallback.body
    clinician.texts("HELP")
    assert CRISIS in clinician.expect_text("confidential", from_=HOTLINE).body
    call = calls.place(CALLER, HOTLINE, Script())
    assert call.hears(digit_by_digit(CRISIS)) and not call.hears("9 8 8")
    hotline.run_jobs()
    assert CRISIS in phones.phone(CALLER).expect_text("No peer", from_=HOTLINE).body

    hotline.add_supporter("Alice", ALICE)
    other = phones.phone(SECOND)
    other.texts("hello")
    greeting = other.expect_text("confidential", from_=HOTLINE)
    assert CRISIS in greeting.body and "No peer" not in greeting.body
    phones.phone(ALICE).expect_text(OFFER)
    phones.assert_no_unexpected()


def test_the_offer_time_out_of_the_environment_is_how_long_a_peer_has_to_answer(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician = phones.phone(CLINICIAN)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    phones.phone(ALICE).expect_text(OFFER)
    hotline.clock.advance(seconds=40)
    hotline.run_jobs()
    phones.phone(BOB).expect_nothing()  # Alice still has five seconds
    hotline.clock.advance(seconds=6)
    hotline.run_jobs()
    phones.phone(BOB).expect_text(OFFER)  # HOTLINE_OFFER_TIMEOUT=45, not the default 180
    phones.assert_no_unexpected()


# IT pasted the crisis sentence from a document: curly quotes, a dash.
PASTED = "In an emergency call 999 \u2013 or \u201cthe Samaritans\u201d, they\u2019re there."


@pytest.mark.parametrize("hotline", [PASTED], indirect=True)
def test_a_crisis_sentence_pasted_with_curly_quotes_reaches_the_clinician_plain(
    hotline: Hotline, phones: Phones
) -> None:
    """One such character sends the whole greeting as UCS-2, 70 characters a segment instead
    of 160 (three segments become six); Settings' texts were made plain already."""
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    clinician.texts("hello")
    greeting = clinician.expect_text("confidential", from_=HOTLINE).body
    said = 'In an emergency call 999 - or "the Samaritans", they\'re there.'
    assert said in greeting and is_gsm7(greeting), greeting
    assert segments(greeting) <= 3
