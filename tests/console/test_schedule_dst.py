"""The schedule on the nights clocks change, in zones north and south and without DST.

A coordinator types wall-clock times into the console; the line, the calendar page, the
calendar feed, the texted warnings and the clinician's "next peer" time must all tell the same
story of who is on call, with no phantom gap or overlap at the change.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from hotline import feeds, schedule
from hotline.db import transaction
from hotline.models import Programme, ScheduleSettings, Supporter
from hotline.people import ALERT_CONTEXT
from tests.console.conftest import Console, add_verified, sign_in
from tests.kit.phones import Phones

ALICE, BOB = "+15550108001", "+15550108002"
CLINICIAN, COORDINATOR = "+15550109001", "+15550106000"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def in_zone(console: Console, name: str) -> None:
    with transaction(console.hotline.services.sessions) as session:
        session.get_one(Programme, console.hotline.programme_id).timezone = name


def on_call(console: Console, at: datetime) -> set[int]:
    with console.hotline.session() as session:
        return schedule.on_call(session, console.hotline.programme_id, at)


def day_blocks(page: str, day: date) -> list[tuple[str, str]]:
    """The week view's blocks of ``day``: (times, who) in order."""
    heading = f"<h3>{day:%a %d %b}</h3>"
    section = page[page.index(heading) : page.index("</ul>", page.index(heading))]
    found = re.findall(r'<span class="mono">(.*?)</span>\s*(.*?)</li>', section, re.S)
    return [(times, re.sub(r"<[^>]+>", "", who).strip()) for times, who in found]


def feed_periods(console: Console, now: datetime) -> list[tuple[str, datetime, datetime]]:
    with transaction(console.hotline.services.sessions) as session:
        token = feeds.programme_token(session, console.hotline.programme_id)
        programme = feeds.programme_by_token(session, token)
        assert programme is not None
        ics = Calendar.from_ical(feeds.programme_feed(session, programme, now))
    return [
        (str(e["summary"]), e.decoded("dtstart"), e.decoded("dtend")) for e in ics.walk("VEVENT")
    ]


HANDOFFS = [
    # (zone, a Sunday, the 02:30 hand-off as an instant, as the calendar shows it, why)
    ("Australia/Sydney", date(2026, 4, 5), utc(2026, 4, 4, 15, 30), "02:30", "twice: the first"),
    ("Australia/Sydney", date(2026, 10, 4), utc(2026, 10, 3, 16, 30), "03:30", "skipped"),
    ("America/New_York", date(2027, 3, 14), utc(2027, 3, 14, 7, 30), "03:30", "skipped"),
    ("America/New_York", date(2027, 11, 7), utc(2027, 11, 7, 7, 30), "02:30", "after the repeat"),
    ("Europe/London", date(2026, 3, 29), utc(2026, 3, 29, 1, 30), "02:30", "after the skip"),
    ("Asia/Kolkata", date(2026, 3, 8), utc(2026, 3, 7, 21), "02:30", "UTC+5:30, no DST"),
]


@pytest.mark.parametrize(
    ("zone", "sunday", "handoff", "shown", "why"),
    HANDOFFS,
    ids=[f"{c[0]}-{c[1]}" for c in HANDOFFS],
)
def test_a_0230_handoff_on_a_change_night_is_one_instant_for_the_line_the_page_and_the_feed(
    console: Console, zone: str, sunday: date, handoff: datetime, shown: str, why: str
) -> None:
    hotline = console.hotline
    in_zone(console, zone)
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    page = f"/console/schedule?view=week&date={sunday}"
    console.post(
        f"/console/schedule/rotations?view=week&date={sunday}",
        {
            "rotation-name": "Weekly",
            "rotation-handoff_weekday": 6,
            "rotation-handoff_time": "02:30",
            "rotation-anchor_date": str(sunday - timedelta(weeks=2)),  # Alice, Bob, Alice
            "rotation-members-0": alice,
            "rotation-members-1": bob,
        },
        form_page=page,
    )
    assert on_call(console, handoff - timedelta(seconds=1)) == {bob}, why
    assert on_call(console, handoff) == {alice}, why
    assert on_call(console, handoff + timedelta(hours=1)) == {alice}, why
    assert day_blocks(console.get(page), sunday) == [
        (f"00:00–{shown}", "Bob"),
        (f"{shown}–24:00", "Alice"),
    ]
    periods = feed_periods(console, handoff - timedelta(days=3))
    assert [p for p in periods if p[0] == "On call: Bob" and p[2] == handoff], periods
    assert [p for p in periods if p[0] == "On call: Alice" and p[1] == handoff], periods
    with hotline.session() as session:
        day = (handoff - timedelta(hours=12), handoff + timedelta(hours=12))
        assert schedule.coverage_gaps(session, hotline.programme_id, *day) == []


NIGHTS = [
    # (zone, the Saturday before a change, real hours of a 22:00-06:00 night shift)
    ("America/New_York", date(2026, 10, 31), 9),
    ("America/New_York", date(2026, 3, 7), 7),
    ("Australia/Sydney", date(2026, 4, 4), 9),
    ("Australia/Sydney", date(2026, 10, 3), 7),
    ("Europe/London", date(2027, 10, 30), 9),
    ("Asia/Kolkata", date(2026, 3, 7), 8),
]


@pytest.mark.parametrize(
    ("zone", "saturday", "hours"), NIGHTS, ids=[f"{c[0]}-{c[1]}" for c in NIGHTS]
)
def test_a_night_shift_over_a_change_lasts_its_real_hours_and_hands_over_without_a_gap(
    console: Console, zone: str, saturday: date, hours: int
) -> None:
    hotline = console.hotline
    in_zone(console, zone)
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    sunday = saturday + timedelta(days=1)
    page = f"/console/schedule?view=week&date={saturday}"
    for who, starts, ends in (
        (alice, f"{saturday}T22:00", f"{sunday}T06:00"),
        (bob, f"{sunday}T06:00", f"{sunday}T14:00"),
    ):
        console.post(
            "/console/schedule/shifts",
            {"shift-supporter_id": who, "shift-starts_at": starts, "shift-ends_at": ends},
            form_page=page,
        )
    tz = ZoneInfo(zone)
    start = datetime(saturday.year, saturday.month, saturday.day, 22, tzinfo=tz).astimezone(UTC)
    end = datetime(sunday.year, sunday.month, sunday.day, 14, tzinfo=tz).astimezone(UTC)
    with hotline.session() as session:
        pid = hotline.programme_id
        assert schedule.load(session, pid, start, end) == {
            alice: timedelta(hours=hours),
            bob: timedelta(hours=8),
        }
        assert schedule.coverage_gaps(session, pid, start, end) == []
    assert end - start == timedelta(hours=hours + 8)
    for quarter in range(4 * (hours + 8)):
        at = start + timedelta(minutes=15 * quarter)
        assert on_call(console, at) == ({alice} if quarter < 4 * hours else {bob}), at
    assert day_blocks(console.get(page), sunday) == [
        ("00:00–06:00", "Alice"),
        ("06:00–14:00", "Bob"),
        ("14:00–24:00", "Gap: nobody on call"),
    ]


def test_a_gap_over_the_night_clocks_go_back_is_warned_of_in_the_times_typed(
    console: Console,
) -> None:
    """New York, 1 November 2026: Alice until 01:30 (the first, as typed), Bob from 02:00.
    The gap is 90 minutes; the warning names the times as typed, and which 1:30 AM."""
    hotline = console.hotline
    in_zone(console, "America/New_York")
    with transaction(hotline.services.sessions) as session:
        session.add(ScheduleSettings(programme_id=hotline.programme_id, gap_warning_hours=24))
        programme = session.get_one(Programme, hotline.programme_id)
        programme.alert_phone_sealed = hotline.services.vault.seal(COORDINATOR, ALERT_CONTEXT)
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    page = "/console/schedule?view=week&date=2026-10-31"
    for who, starts, ends in (
        (alice, "2026-10-31T18:00", "2026-11-01T01:30"),
        (bob, "2026-11-01T02:00", "2026-11-01T12:00"),
    ):
        console.post(
            "/console/schedule/shifts",
            {"shift-supporter_id": who, "shift-starts_at": starts, "shift-ends_at": ends},
            form_page=page,
        )
    hotline.clock.now = utc(2026, 10, 31, 22)  # 18:00 EDT on Saturday
    with hotline.session() as session:
        gaps = schedule.coverage_gaps(
            session, hotline.programme_id, hotline.clock.now, utc(2026, 11, 1, 12)
        )
    (gap,) = gaps
    assert (gap.starts_at, gap.length) == (utc(2026, 11, 1, 5, 30), timedelta(minutes=90))
    hotline.sweep()
    warnings = [str(m["body"]) for m in hotline.fake.messages if m["to"] == COORDINATOR]
    told = "nobody is on call from Sun 1 Nov 1:30 AM EDT to Sun 1 Nov 2:00 AM."
    assert [w for w in warnings if told in w], warnings  # and one of the gap after Bob's


def test_the_next_peer_time_a_clinician_is_told_is_the_handoff_after_the_skip(
    console: Console,
) -> None:
    """New York, the night of 8 March 2026: nobody on call until a 02:30 hand-off, which the
    clock skips. A clinician texting at 11 PM is told the hand-off the calendar shows."""
    hotline = console.hotline
    in_zone(console, "America/New_York")
    alice = add_verified(hotline, "Alice", ALICE)
    console.post(
        "/console/schedule/rotations",
        {
            "rotation-name": "Weekly",
            "rotation-handoff_weekday": 6,
            "rotation-handoff_time": "02:30",
            "rotation-anchor_date": "2026-03-08",
            "rotation-members-0": alice,
        },
        form_page="/console/schedule",
    )
    hotline.clock.now = utc(2026, 3, 8, 4)  # Saturday 23:00 EST
    phones = Phones(hotline)
    phones.phone(CLINICIAN).texts("hello")
    reply = phones.phone(CLINICIAN).expect_text("No peer")
    assert "The next peer comes on call at Sun 3:30 AM." in reply.body
    assert on_call(console, utc(2026, 3, 8, 7, 30)) == {alice}  # 03:30 EDT
    assert on_call(console, utc(2026, 3, 8, 7, 30) - timedelta(seconds=1)) == set()


def test_a_break_ending_in_the_repeated_hour_shows_which_reading_on_the_live_page(
    console: Console,
) -> None:
    """Alice, in New York, takes an hour's break at the first 1:10 AM on the night clocks go
    back: it ends at the second 1:10. The Live page read "until Sun 01:10", over already at
    first sight; now it names the reading, as her own text does ("EST")."""
    hotline = console.hotline
    in_zone(console, "America/New_York")
    hotline.clock.now = utc(2026, 11, 1, 5, 10)  # 01:10 EDT, the first reading
    alice = hotline.add_supporter("Alice", ALICE)
    with transaction(hotline.services.sessions) as session:
        session.get_one(Supporter, alice).break_until = utc(2026, 11, 1, 6, 10)  # 01:10 EST
    assert sign_in(console.client) == 302  # signed in again: the session is months old
    live = console.get("/console/live")
    assert "until Sun 01:10 EST" in live, live
    assert "As of Sun 01 Nov 2026 01:10 EDT" in live
