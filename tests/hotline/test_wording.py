"""Every text the hotline writes is GSM-7 and inside its SMS segment budget.

One character outside GSM-7 (a curly quote, a dash, an ellipsis, an emoji) sends a whole text
as UCS-2: 70 characters a segment instead of 160, 67 instead of 153 when split. The budgets
below are met by today's texts with realistic inputs: the default programme's texts, a long
programme name, the longest discipline and the longest local time. A few more words past the
margin, or one typographic character, fails them.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hotline import keywords, verification, wording
from hotline.models import Programme
from hotline.programme_settings import TEXT_LIMITS
from hotline.programmes import (
    DEFAULT_CHECKIN_TEXT,
    DEFAULT_GREETING,
    DEFAULT_RESOURCES,
    config_of,
)
from hotline.settings import DEFAULT_CRISIS_TEXT, Settings
from tests.kit import fake_twilio
from tests.kit.sms import non_gsm7, segments

HOTLINE = "+15550100000"
# The default programme as config_of resolves it: every text falls back to its default.
DEFAULT = config_of(
    Programme(name="Peer support", hotline_number=HOTLINE),
    Settings(hotline_number=HOTLINE, timezone="America/New_York"),
)
NAMED = replace(DEFAULT, name="Riverside Health Clinician Support")
# A programme's resources and crisis sentence as long as the console allows.
LONGEST = replace(
    DEFAULT,
    resources_text=("Call the EAP at 555-0100, any hour. " * 50)[: TEXT_LIMITS["resources_text"]],
    crisis_text=("In crisis, call or text 988 now. " * 20)[: TEXT_LIMITS["crisis_text"]],
)
NOON = datetime(2025, 11, 12, 17, 30, tzinfo=UTC)  # "Wed 12:30 PM": the longest local time
EVENING = datetime(2025, 11, 13, 22, 45, tzinfo=UTC)
TODAY = NOON - timedelta(hours=20)  # the next peer comes on call within the week: a weekday
WEEKS_BEFORE = NOON - timedelta(days=12)  # a schedule empty for a while: dated
DISCIPLINE = max(keywords.DISCIPLINES.values(), key=len)
CODE_MINUTES = int(verification.CODE_TTL.total_seconds() // 60)
# 1 November 2026, New York: the clock reads 01:00-01:59 twice, first EDT, then EST.
FIRST_1_10 = datetime(2026, 11, 1, 5, 10, tzinfo=UTC)
SECOND_1_10 = FIRST_1_10 + timedelta(hours=1)
OWN_CHECKIN = replace(DEFAULT, checkin_text="Thinking of you: how are you doing? Reply any time.")

# (text function, its arguments, at most this many segments)
Row = tuple[Callable[..., str], tuple[object, ...], int]
ROWS: dict[str, Row] = {
    # The clinician: the first reply carries what the line is, the discipline words and the
    # crisis sentence (134 characters by default), so it may take three segments, no more.
    "greeting": (wording.greeting, (DEFAULT,), 3),
    # HELP must carry the crisis sentence too: two segments, with a long programme name.
    "clinician help": (wording.clinician_help, (NAMED,), 2),
    "joined": (wording.joined, (), 1),
    "joined, call-back": (wording.joined, (True,), 1),
    "discipline noted": (wording.discipline_noted, (DISCIPLINE,), 1),
    # Nobody free at 3 a.m.: what happens next, when, and the crisis sentence, in two.
    "fallback": (wording.fallback, (DEFAULT, None, TODAY), 2),
    "fallback, next on call": (wording.fallback, (DEFAULT, NOON, TODAY), 2),
    "fallback, call-back": (wording.fallback, (DEFAULT, NOON, TODAY, True), 2),
    "fallback, call-back, next on call weeks ahead": (
        wording.fallback,
        (DEFAULT, NOON, WEEKS_BEFORE, True),
        2,
    ),
    # A first text nobody is free for: greeting and fallback in one, the crisis sentence once.
    "greeting, nobody free": (wording.greeting_nobody_free, (DEFAULT, NOON, WEEKS_BEFORE), 3),
    # A reply to a check-in, greeted before: that a peer will text, and the crisis sentence.
    "check-in replied": (wording.checkin_replied, (DEFAULT,), 1),
    "check-in replied, crisis sentence apart": (wording.checkin_replied, (DEFAULT, False), 1),
    "check-in replied, nobody free": (
        wording.checkin_replied_nobody_free,
        (DEFAULT, NOON, WEEKS_BEFORE),
        2,
    ),
    "check-in replied, nobody free, crisis sentence apart": (
        wording.checkin_replied_nobody_free,
        (DEFAULT, NOON, WEEKS_BEFORE, False),
        1,
    ),
    "closing": (wording.closing, (DEFAULT,), 2),
    "closing, resources apart": (wording.closing, (DEFAULT, False), 1),
    "forgotten": (wording.forgotten, (), 1),
    "forgotten, line closed": (wording.forgotten, (True,), 1),
    "check-ins declined": (wording.checkins_declined, (), 1),
    "stopped (punctuated STOP)": (wording.stopped, (), 1),
    "ended by clinician": (wording.ended_by_clinician, (), 1),
    "peer left": (wording.peer_left, (DEFAULT,), 2),
    "still waiting": (wording.still_waiting, (DEFAULT, NOON, WEEKS_BEFORE), 2),
    "still finding": (wording.still_finding, (DEFAULT,), 2),
    "request closed": (wording.request_closed, (DEFAULT,), 2),
    "request closed, call-back": (wording.request_closed, (DEFAULT, True), 2),
    "media not relayed": (wording.media_not_relayed, (), 1),
    "not a line": (wording.not_a_line, (HOTLINE,), 1),
    # A retired programme: the closing, the resources and the crisis sentence, as the greeting.
    "line closed": (wording.line_closed, (NAMED,), 3),
    "line closed, resources apart": (wording.line_closed, (NAMED, False), 2),
    # Owed to a clinician: one text, the programme's own texts as long as the console allows.
    "line closed, owed": (wording.line_closed_in_one, (NAMED,), 3),
    "line closed, owed, the longest": (wording.line_closed_in_one, (LONGEST,), 11),
    # The supporter, between patients: one segment each, the reply words in capitals.
    "offer": (wording.offer, (None,), 1),
    "offer, a discipline": (wording.offer, (DISCIPLINE,), 1),
    "offer, call-back": (wording.offer, (DISCIPLINE, True), 1),
    "offer, a reply to a check-in": (wording.offer, (None, False, True), 1),
    "offer, a reply to a check-in, a discipline": (wording.offer, (DISCIPLINE, False, True), 1),
    "offer reminder": (wording.offer_reminder, (), 1),
    "offer reminder, a reply to a check-in": (wording.offer_reminder, (True,), 1),
    "ringing now": (wording.ringing_now, (), 1),
    "offer gone": (wording.offer_gone, (), 1),
    "accepted as the clinician calls": (wording.accepted_during_call, (), 1),
    "claimed as the clinician called, lapsed": (wording.claim_lapsed, (), 1),
    "late ACCEPT after a STOP": (wording.accept_after_stop, (HOTLINE,), 1),
    "a text on a lapsed offer's number after a STOP": (wording.offered_after_stop, (HOTLINE,), 1),
    "claimed, lapsed after a STOP": (wording.claim_lapsed_after_stop, (HOTLINE,), 1),
    "claimed, passed after a STOP": (wording.claim_passed_after_stop, (HOTLINE,), 1),
    "claimed as the clinician called, taken by phone": (wording.claim_taken_by_phone, (), 1),
    "claimed as the clinician called, a call-back": (wording.claim_call_back, (), 1),
    "claimed as the clinician called, closed": (wording.claim_closed, (), 1),
    "at the limit": (wording.at_limit, (10,), 1),
    "at the limit, with an offer waiting": (wording.at_limit, (10, True), 1),
    "at the limit, holding a claim": (wording.at_limit_holding_a_claim, (), 1),
    "answer where offered": (wording.answer_where_offered, (), 1),
    "answer where talking": (wording.answer_where_talking, (), 1),
    "passed": (wording.passed, (), 1),
    "accepted": (wording.accepted_for_supporter, (), 1),
    "accepted, call-back": (wording.accepted_for_supporter, (True,), 1),
    "accepted, texts stopped": (wording.accepted_texts_stopped, (), 2),
    "accepted, on a break": (wording.accepted_on_break, (NOON, DEFAULT.zone), 1),
    "already connected": (wording.already_connected, (), 1),
    "nothing to answer here": (wording.nothing_to_answer_here, (), 1),
    "after a call": (wording.after_call, (), 1),
    "after a call, no check-ins": (wording.after_call, (False,), 1),
    "after a hidden caller's call": (wording.after_hidden_call, (), 1),
    "done": (wording.done_for_supporter, (), 1),
    "done, no check-ins": (wording.done_for_supporter, (False,), 1),
    "closed when idle": (wording.closed_idle, (), 1),
    "resources sent": (wording.resources_sent, (), 1),
    "conversation ended": (wording.conversation_ended, (), 1),
    "nothing to answer (a PASS)": (wording.nothing_to_answer, (), 1),
    "on a break": (wording.on_break, (NOON, DEFAULT.zone), 1),
    "on a break, requests passed on": (wording.on_break, (NOON, DEFAULT.zone, 10), 1),
    "back": (wording.back, (), 1),
    "back, off call": (wording.back, (False,), 1),
    "break or back, off the roster": (wording.off_the_roster, (), 1),
    "supporter help": (wording.supporter_help, (), 1),
    # Coordinators and supporters being enrolled.
    "coordinator alert": (wording.coordinator_alert, (NAMED,), 1),
    "coordinator alert, a call-back": (wording.coordinator_alert, (NAMED, True), 1),
    "alert phone answered": (wording.alert_phone_answer, (NAMED,), 1),
    # Her "Thanks!" most likely, but she may be writing for herself: the crisis line too.
    "notice answered": (wording.notice_answer, (NAMED,), 2),
    "shift reminder declined (a No)": (wording.shift_declined, (NAMED,), 1),
    "verification code": (wording.verification_code, (NAMED, "482913", CODE_MINUTES), 1),
    "shift reminder": (wording.shift_reminder, (NAMED, NOON, EVENING), 1),
    "shift reminder, open-ended": (wording.shift_reminder, (NAMED, NOON, None), 1),
    "coverage gap": (wording.coverage_gap, (NAMED, NOON, EVENING), 1),
    "coverage gap, open-ended": (wording.coverage_gap, (NAMED, NOON, None), 1),
    "coverage gap, texts refused": (wording.coverage_gap, (NAMED, NOON, EVENING, True), 2),
    # A time in the hour the clock reads twice names its offset (" EDT"): once a year, one more
    # segment, rather than a time the reader cannot place.
    "coverage gap, the clock reading twice": (
        wording.coverage_gap,
        (NAMED, FIRST_1_10, SECOND_1_10),
        2,
    ),
    # A check-in as sent: the default as written; a programme's own text that does not say how
    # to stop them with that said after it, still one segment for a short one.
    "check-in as sent": (wording.checkin, (DEFAULT,), 1),
    "check-in as sent, own text": (wording.checkin, (OWN_CHECKIN,), 1),
}
# The programme's own texts, sent as they are: a check-in is one segment (issue 5).
PROGRAMME_TEXTS = {
    "check-in": (DEFAULT.checkin_text, 1),
    "resources (RESOURCES)": (DEFAULT.resources_text, 1),
    "crisis sentence": (DEFAULT.crisis_text, 1),
}
TEXTS = {name: (fn(*args), budget) for name, (fn, args, budget) in ROWS.items()} | PROGRAMME_TEXTS


def test_the_default_programme_uses_the_default_texts() -> None:
    assert DEFAULT.greeting == DEFAULT_GREETING
    assert DEFAULT.crisis_text == DEFAULT_CRISIS_TEXT
    assert DEFAULT.resources_text == DEFAULT_RESOURCES
    assert DEFAULT.checkin_text == DEFAULT_CHECKIN_TEXT


def test_every_text_function_is_measured_here() -> None:
    functions = {
        name
        for name, fn in inspect.getmembers(wording, inspect.isfunction)
        if fn.__module__ == wording.__name__ and not name.startswith("_")
    }
    measured = {fn.__name__ for fn, _, _ in ROWS.values()} | {"truncate", "which_reading"}
    assert functions == measured, "add the new text to ROWS with its segment budget"


@pytest.mark.parametrize(("text", "budget"), TEXTS.values(), ids=TEXTS.keys())
def test_text_is_gsm7(text: str, budget: int) -> None:
    assert non_gsm7(text) == [], f"non-GSM-7 characters make this UCS-2: {text!r}"


@pytest.mark.parametrize(("text", "budget"), TEXTS.values(), ids=TEXTS.keys())
def test_text_fits_its_segment_budget(text: str, budget: int) -> None:
    assert segments(text) <= budget, f"{len(text)} characters, {segments(text)} segments: {text}"


def test_no_string_in_wording_is_outside_gsm7() -> None:
    """Also the branches no row above reaches."""
    tree = ast.parse(Path(inspect.getfile(wording)).read_text(encoding="utf-8"))
    strings = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
    assert [s for s in strings if isinstance(s, str) and non_gsm7(s)] == []


def test_the_line_closed_text_owed_is_one_text_ending_in_the_crisis_sentence() -> None:
    """Even with the longest resources and crisis sentence: Twilio takes it whole, the crisis
    sentence last and whole, and most of where to turn, cut at a word (tasks.tell_closed)."""
    text = wording.line_closed_in_one(LONGEST)
    assert len(text) <= wording.MAX_TEXT
    assert text.endswith(f"... Text here for the rest. {LONGEST.crisis_text}")
    kept = text.split("reach a peer. ", 1)[1].split("... Text here")[0]
    assert LONGEST.resources_text.startswith(kept)
    assert LONGEST.resources_text[len(kept)] == " "  # cut at a word
    assert len(kept) >= len(LONGEST.resources_text) * 0.6
    assert wording.line_closed_in_one(NAMED) == wording.line_closed(NAMED)


@pytest.mark.parametrize(
    "name",
    [
        "greeting",
        "clinician help",
        "fallback, next on call",
        "greeting, nobody free",
        "check-in replied",
        "check-in replied, nobody free",
        "peer left",
        "still waiting",
        "request closed",
    ],
)
def test_clinician_texts_that_must_carry_the_crisis_sentence_do(name: str) -> None:
    text, _ = TEXTS[name]
    assert DEFAULT.crisis_text in text


def test_the_first_reply_says_what_the_line_is() -> None:
    text, _ = TEXTS["greeting"]
    for needed in ("peer support", "confidential", "voluntary", "not for emergencies"):
        assert needed in text


def test_check_in_invites_a_reply_and_says_how_to_stop() -> None:
    text, _ = TEXTS["check-in"]
    assert "Reply any time" in text and "NOCHECKIN" in text and "STOP" in text


OFFERS = [n for n, (fn, _, _) in ROWS.items() if fn is wording.offer]


@pytest.mark.parametrize("name", OFFERS)
def test_an_offer_names_both_reply_words(name: str) -> None:
    assert TEXTS[name][0].endswith("Reply ACCEPT to take it or PASS to pass it on.")


def test_a_reply_to_a_checkin_is_not_greeted_again() -> None:
    """Greeted when they first wrote: not the preamble or the field hint again."""
    for name in ("check-in replied", "check-in replied, nobody free"):
        text, _ = TEXTS[name]
        assert DEFAULT.greeting not in text and wording.DISCIPLINE_HINT not in text


def test_every_reply_word_a_text_names_is_a_keyword() -> None:
    named = {w for text, _ in TEXTS.values() for w in re.findall(r"\b[A-Z]{4,}\b", text)}
    assert named >= {"ACCEPT", "PASS", "DONE", "BACK", "NOCHECKIN", "STOP", "NURSE"}
    assert [w for w in sorted(named) if keywords.parse(w) is None] == []


@pytest.mark.parametrize(
    ("body", "expected_segments"),
    [
        ("I keep replaying the shift. " * 100, 11),  # GSM-7 stays GSM-7: 1,600 / 153
        ("é" * 2000, 11),  # é is in GSM-7
        ("🙏" * 2000, 48),  # the sender's own emoji: UCS-2 already, left as written
    ],
)
def test_a_truncated_relay_fits_twilio_and_adds_no_ucs2(body: str, expected_segments: int) -> None:
    cut = wording.truncate(body)
    assert len(cut) == 1600 and cut.endswith("...") and body.startswith(cut[:-3])
    assert segments(cut) == expected_segments


def test_a_relay_within_the_limit_is_left_as_written() -> None:
    body = "“I’m fine” – I’m not…" * 76  # 1,596 characters, typography and all
    assert wording.truncate(body) == body


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("", 1),
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("[" * 80, 1),  # extension characters cost two septets
        ("[" * 81, 2),
        ("’" * 70, 1),  # one curly quote: UCS-2
        ("’" + "a" * 69, 1),
        ("’" + "a" * 70, 2),
        ("a" * 134 + "’", 3),
        ("🙏" * 35, 1),  # outside the BMP: two UTF-16 units each
        ("🙏" * 36, 2),
        ("\u00a0", 1),
    ],
)
def test_segment_counter(body: str, expected: int) -> None:
    assert segments(body) == expected
    assert fake_twilio.num_segments(body) == expected, "the fake Twilio counts the same way"


@pytest.mark.parametrize("typographic", ["’", "“", "”", "–", "—", "…", "\u00a0", "🙏"])
def test_typographic_characters_are_not_gsm7(typographic: str) -> None:
    assert non_gsm7(f"It{typographic}s") == [typographic]


def test_the_next_peer_on_call_is_dated_a_week_or_more_ahead() -> None:
    """A schedule with nobody for a week or more: "Wed 12:30 PM" would read as the coming
    Wednesday, so the clinician is given the date; within the week, the weekday is enough."""
    assert "at Wed 12:30 PM." in wording.fallback(DEFAULT, NOON, TODAY)
    assert "at Wed 12 Nov 12:30 PM." in wording.fallback(DEFAULT, NOON, WEEKS_BEFORE)
    assert "at Wed 12 Nov 12:30 PM." in wording.still_waiting(DEFAULT, NOON, WEEKS_BEFORE)


def test_a_time_the_clock_reads_twice_says_which_reading() -> None:
    """The night clocks go back, 1:10 AM happens twice: a supporter's hour-long break from the
    first reading "until Sun 1:10 AM" reads as no break at all, and a peer on call from the
    second reading as one already on. Such a time names its offset; no other time does."""
    assert "until Sun 1:10 AM EST:" in wording.on_break(SECOND_1_10, DEFAULT.zone)
    assert "until Sun 1:10 AM EDT:" in wording.on_break(FIRST_1_10, DEFAULT.zone)
    assert "until Sun 2:10 AM:" in wording.on_break(SECOND_1_10 + timedelta(hours=1), DEFAULT.zone)
    assert "until Sun 12:10 AM:" in wording.on_break(FIRST_1_10 - timedelta(hours=1), DEFAULT.zone)
    assert "no new requests until Sun 1:10 AM EST." in wording.accepted_on_break(
        SECOND_1_10, DEFAULT.zone
    )
    assert "at Sun 1:10 AM EST." in wording.fallback(DEFAULT, SECOND_1_10, FIRST_1_10)
    gap = wording.coverage_gap(DEFAULT, FIRST_1_10, SECOND_1_10)
    assert "from Sun 1 Nov 1:10 AM EDT to Sun 1 Nov 1:10 AM EST." in gap
    reminder = wording.shift_reminder(DEFAULT, SECOND_1_10, SECOND_1_10 + timedelta(hours=8))
    assert "from Sun 1 Nov 1:10 AM EST to Sun 1 Nov 9:10 AM." in reminder
