"""Check-ins end to end: DONE schedules them, real RQ workers on the real Redis send them, once.

Conversations run through the signed webhooks; check-ins go out through the real twilio client
to the fake Twilio. Two clocks must agree: the core reads the harness ``Clock``, RQ's scheduler
reads the process's time, so ``at(hotline, when)`` sets both (time-machine).
Worker crashes and cross-process races use real subprocesses on real time.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import time_machine
from redis import Redis
from rq import SimpleWorker
from rq.job import Job
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from hotline import checkins, drains, programme_settings, programmes, wording
from hotline.db import make_engine, transaction
from hotline.effects import Effects, schedule
from hotline.models import (
    CheckIn,
    CheckInState,
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OptOut,
    Programme,
)
from hotline.people import CLINICIAN_CONTEXT, is_opted_out
from hotline.privacy import Vault
from hotline.programmes import DEFAULT_CHECKIN_TEXT, config_of
from hotline.telephony import SentText
from hotline.telephony.twilio_adapter import TwilioTelephony
from hotline.wakeups import Task
from tests.kit import harness
from tests.kit.databases import Tiers, empty_tables
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio, num_segments
from tests.kit.harness import HOTLINE, POOL, Hotline, RetiredMidSend, make_hotline, use_telephony
from tests.kit.phones import Phones
from tests.kit.servers import RedisServer
from tests.kit.signing import deliver_to
from workers.queue import make_queue

NY = ZoneInfo("America/New_York")
CLINICIAN, ALICE, BOB = "+15550109001", "+15550108001", "+15550108002"
RENUMBERED = "+15550100009"  # the programme's new hotline number
FIRST_WORDS = "I keep replaying the code blue from last night"
REPLY = "Thanks for checking in. Still rough, honestly."
CHECKIN_WORDS = "how are you doing"
CHECKIN_REPLIED = "Glad you wrote. A peer will text here."  # the answer to a reply to a check-in
CHECKIN_OFFER = (
    "Peer support request: a reply to a check-in. Reply ACCEPT to take it or PASS to pass it on."
)
PLAIN_OFFER = "Peer support request. Reply ACCEPT to take it or PASS to pass it on."
BETTER = "thanks, a bit better"
DAY, NIGHT = (clock_time(9), clock_time(20)), (clock_time(20), clock_time(8))
T0 = datetime(2026, 3, 2, 10, 0, tzinfo=NY)  # a Monday morning, well before any DST change


def local(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0
) -> datetime:
    """A wall-clock time in New York (``fold=1``: the second 01:xx of a fall-back night)."""
    return datetime(year, month, day, hour, minute, tzinfo=NY, fold=fold)


def utc(at: datetime) -> datetime:
    """The instant (PEP 495: ``==`` across zones is always False for a time in a fold or gap)."""
    return at.astimezone(UTC)


# --- unit: the delivery window and the offsets, across both DST changes of 2026 ---------------

IN_WINDOW = [
    ("inside", local(2026, 3, 8, 10), DAY, local(2026, 3, 8, 10)),
    ("at the start", local(2026, 11, 1, 9), DAY, local(2026, 11, 1, 9)),
    ("a minute before the end", local(2026, 11, 1, 19, 59), DAY, local(2026, 11, 1, 19, 59)),
    ("the end is outside", local(2026, 3, 7, 20), DAY, local(2026, 3, 8, 9)),
    ("before dawn, spring forward", local(2026, 3, 8, 1, 30), DAY, local(2026, 3, 8, 9)),
    ("evening before fall back", local(2026, 10, 31, 21, 15), DAY, local(2026, 11, 1, 9)),
    ("in the repeated hour", local(2026, 11, 1, 1, 30, fold=1), DAY, local(2026, 11, 1, 9)),
    ("overnight: midday waits", local(2026, 3, 8, 12), NIGHT, local(2026, 3, 8, 20)),
    ("overnight: just after the gap", local(2026, 3, 8, 3, 30), NIGHT, local(2026, 3, 8, 3, 30)),
    ("overnight: repeated hour", local(2026, 11, 1, 1, 30), NIGHT, local(2026, 11, 1, 1, 30)),
    ("overnight: the end", local(2026, 11, 1, 8), NIGHT, local(2026, 11, 1, 20)),
    ("overnight: late evening", local(2026, 11, 1, 23), NIGHT, local(2026, 11, 1, 23)),
    ("no window", local(2026, 3, 8, 3), None, local(2026, 3, 8, 3)),
    (
        "a start in the repeated hour is its first occurrence",
        local(2026, 10, 31, 23),
        (clock_time(1, 30), clock_time(5)),
        datetime(2026, 11, 1, 5, 30, tzinfo=UTC),  # 01:30 EDT, not 01:30 EST
    ),
    (
        "a start in the spring-forward gap opens as the clock jumps past it",
        local(2026, 3, 7, 23),
        (clock_time(2, 30), clock_time(6)),
        datetime(2026, 3, 8, 7, 0, tzinfo=UTC),  # 03:00 EDT, the first reading past 02:30
    ),
]


@pytest.mark.parametrize(
    ("at", "hours", "expected"), [case[1:] for case in IN_WINDOW], ids=[c[0] for c in IN_WINDOW]
)
def test_in_window(at: datetime, hours: tuple[clock_time, clock_time] | None, expected: datetime):
    assert checkins.in_window(utc(at), hours, NY) == utc(expected)


DUE_AFTER = [
    (
        "1d keeps 15:00 over spring forward (23 h)",
        local(2026, 3, 7, 15),
        "1d",
        local(2026, 3, 8, 15),
    ),
    ("1d keeps 15:00 over fall back (25 h)", local(2026, 10, 31, 15), "1d", local(2026, 11, 1, 15)),
    ("7d keeps 10:00", local(2026, 3, 2, 10), "7d", local(2026, 3, 9, 10)),
    ("30d keeps 09:00", local(2026, 10, 20, 9), "30d", local(2026, 11, 19, 9)),
    ("1d into the gap lands after it", local(2026, 3, 7, 2, 30), "1d", local(2026, 3, 8, 3, 30)),
    (
        "1d into the repeated hour: first",
        local(2026, 10, 31, 1, 30),
        "1d",
        local(2026, 11, 1, 1, 30),
    ),
    ("2h is absolute over the gap", local(2026, 3, 8, 1, 30), "2h", local(2026, 3, 8, 4, 30)),
    (
        "2h is absolute over fall back",
        local(2026, 11, 1, 0, 30),
        "2h",
        local(2026, 11, 1, 1, 30, fold=1),
    ),
    ("36h is not whole days: absolute", local(2026, 3, 7, 12), "36h", local(2026, 3, 9, 1)),
]


@pytest.mark.parametrize(
    ("ended", "offset", "expected"), [c[1:] for c in DUE_AFTER], ids=[c[0] for c in DUE_AFTER]
)
def test_due_after(ended: datetime, offset: str, expected: datetime) -> None:
    hours = {"h": 1, "d": 24}[offset[-1]] * int(offset[:-1])
    assert utc(checkins.due_after(utc(ended), timedelta(hours=hours), NY)) == utc(expected)


CHICAGO = ZoneInfo("America/Chicago")  # 2026: 02:00 -> 03:00 on March 8, 02:00 -> 01:00 Nov 1


def chicago(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, fold: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CHICAGO, fold=fold)


EDGES_IN_A_CHANGE = [
    # Windows whose edges fall in the spring-forward gap or the repeated hour: the answer is
    # the first instant the clock reads a time inside the window, never one before ``at``.
    (
        "a start in the gap opens as the clock jumps past it",
        chicago(2026, 3, 7, 23),
        (clock_time(2, 30), clock_time(3, 30)),
        chicago(2026, 3, 8, 3, 0),  # 03:30 CDT, a fold=0 reading, is the window's end
    ),
    (
        "a window the gap skips opens the next day",
        chicago(2026, 3, 7, 23),
        (clock_time(2), clock_time(2, 30)),
        chicago(2026, 3, 9, 2, 0),  # the clock never reads 02:00-02:30 on March 8
    ),
    (
        "an end in the gap: shut after the jump until the evening",
        chicago(2026, 3, 8, 3, 10),
        (clock_time(20), clock_time(2, 30)),
        chicago(2026, 3, 8, 20, 0),
    ),
    (
        "a start in the repeated hour, from its second pass: its second reading",
        chicago(2026, 11, 1, 1, 10, fold=1),
        (clock_time(1, 30), clock_time(5)),
        chicago(2026, 11, 1, 1, 30, fold=1),  # not 01:30 CDT, an hour before ``at``
    ),
    (
        "an end in the repeated hour: open again when the clock goes back into it",
        chicago(2026, 11, 1, 1, 40),
        (clock_time(20), clock_time(1, 30)),
        chicago(2026, 11, 1, 1, 0, fold=1),
    ),
]


@pytest.mark.parametrize(
    ("at", "hours", "expected"),
    [case[1:] for case in EDGES_IN_A_CHANGE],
    ids=[c[0] for c in EDGES_IN_A_CHANGE],
)
def test_in_window_with_an_edge_in_a_dst_change(
    at: datetime, hours: tuple[clock_time, clock_time], expected: datetime
) -> None:
    assert checkins.in_window(utc(at), hours, CHICAGO) == utc(expected)


def _first_reading_inside(at: datetime, hours: tuple[clock_time, clock_time]) -> datetime:
    """By brute force, a minute at a time: Chicago changes on the hour, these edges are on
    whole minutes, so the first minute at or after ``at`` (on the minute) read inside."""
    moment = at
    while not checkins._inside(moment.astimezone(CHICAGO).time(), *hours):
        moment += timedelta(minutes=1)
    return moment


@pytest.mark.parametrize("change", [chicago(2026, 3, 8, 1), chicago(2026, 11, 1, 1)])
@pytest.mark.parametrize(
    "hours",
    [
        (clock_time(h1, m1), clock_time(h2, m2))
        for (h1, m1), (h2, m2) in [
            ((9, 0), (20, 0)),
            ((2, 30), (20, 0)),
            ((2, 0), (3, 0)),
            ((1, 30), (2, 30)),
            ((1, 30), (5, 0)),
            ((20, 0), (1, 30)),
            ((20, 0), (2, 30)),
            ((0, 0), (2, 0)),
        ]
    ],
    ids=lambda hours: f"{hours[0]:%H:%M}-{hours[1]:%H:%M}",
)
def test_in_window_is_the_first_reading_inside_across_both_changes(
    change: datetime, hours: tuple[clock_time, clock_time]
) -> None:
    """Every 20 minutes from six hours before a change to six after: never before ``at``, never
    a reading outside the window, never a later day than the clock allows (a skipped day)."""
    start = utc(change) - timedelta(hours=6)
    for step in range(0, 12 * 60, 20):
        at = start + timedelta(minutes=step)
        assert checkins.in_window(at, hours, CHICAGO) == _first_reading_inside(at, hours), at


ELSEWHERE = [
    # (zone, a change: the hour before it on the wall clock); south of the equator clocks go
    # forward in October and back in April; London changes at 01:00 UTC; Kolkata never does.
    (ZoneInfo("Europe/London"), datetime(2026, 3, 29, 0, 30)),
    (ZoneInfo("Europe/London"), datetime(2026, 10, 25, 0, 30)),
    (ZoneInfo("Australia/Sydney"), datetime(2026, 4, 5, 2, 30)),
    (ZoneInfo("Australia/Sydney"), datetime(2026, 10, 4, 1, 30)),
    (ZoneInfo("Asia/Kolkata"), datetime(2026, 3, 8, 1, 30)),
]


@pytest.mark.parametrize(("zone", "change"), ELSEWHERE, ids=lambda c: str(c))
@pytest.mark.parametrize("hours", [DAY, NIGHT], ids=["09:00-20:00", "20:00-08:00"])
def test_in_window_holds_in_other_zones_across_their_changes(
    zone: ZoneInfo, change: datetime, hours: tuple[clock_time, clock_time]
) -> None:
    """Every 20 minutes from six hours before a change to six after, by brute force as above:
    the first minute the programme's clock reads inside the window."""
    start = change.replace(tzinfo=zone).astimezone(UTC) - timedelta(hours=6)
    for step in range(0, 12 * 60, 20):
        at = start + timedelta(minutes=step)
        moment = at
        while not checkins._inside(moment.astimezone(zone).time(), *hours):
            moment += timedelta(minutes=1)
        assert checkins.in_window(at, hours, zone) == moment, at


@pytest.mark.parametrize(
    ("zone", "ended", "expected"),
    [
        # "1d" after a conversation that ended in the evening before each change: the same
        # wall time the next day (23 or 25 hours on), inside 09:00-20:00 as it was.
        (ZoneInfo("Australia/Sydney"), datetime(2026, 4, 4, 19, 30), datetime(2026, 4, 5, 19, 30)),
        (
            ZoneInfo("Australia/Sydney"),
            datetime(2026, 10, 3, 19, 30),
            datetime(2026, 10, 4, 19, 30),
        ),
        (ZoneInfo("Europe/London"), datetime(2027, 3, 27, 19, 30), datetime(2027, 3, 28, 19, 30)),
        (ZoneInfo("Europe/London"), datetime(2027, 10, 30, 19, 30), datetime(2027, 10, 31, 19, 30)),
        (ZoneInfo("Asia/Kolkata"), datetime(2026, 3, 7, 19, 30), datetime(2026, 3, 8, 19, 30)),
        # Ended just before midnight: due after the window shuts, so the next morning at 09:00.
        (ZoneInfo("Australia/Sydney"), datetime(2026, 4, 4, 23, 50), datetime(2026, 4, 6, 9)),
        (ZoneInfo("Europe/London"), datetime(2026, 3, 28, 23, 50), datetime(2026, 3, 30, 9)),
    ],
    ids=str,
)
def test_a_day_after_in_other_zones_keeps_the_wall_time_and_the_window(
    zone: ZoneInfo, ended: datetime, expected: datetime
) -> None:
    due = checkins.due_after(ended.replace(tzinfo=zone).astimezone(UTC), timedelta(days=1), zone)
    assert checkins.in_window(due, DAY, zone) == expected.replace(tzinfo=zone).astimezone(UTC)


# --- the harness: both clocks, real workers ---------------------------------------------------


@pytest.fixture
def make_line(
    database_url: str,
    real_redis: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: Any,
) -> Iterator[Callable[..., Hotline]]:
    with lines(database_url, real_redis, fake_twilio, tmp_path) as make:
        yield make


@pytest.fixture
def make_postgres_line(
    database_tiers: Tiers, real_redis: Redis, fake_twilio: FakeTwilio, tmp_path: Path
) -> Iterator[Callable[..., Hotline]]:
    """``make_line`` on the PostgreSQL tier alone (skipped, loudly, when it is unreachable)."""
    url = database_tiers.url("postgres")
    with lines(url, real_redis, fake_twilio, tmp_path) as make:
        yield make
    engine = make_engine(url)
    try:
        empty_tables(engine)
    finally:
        engine.dispose()


@contextmanager
def lines(
    database_url: str, redis: Redis, fake: FakeTwilio, tmp_path: Path
) -> Iterator[Callable[..., Hotline]]:
    """Build hotlines on the real Redis; New York, 1d/7d/30d, 09:00-20:00 unless overridden."""
    made: list[Hotline] = []

    def make(**overrides: str) -> Hotline:
        settings = {
            "HOTLINE_CHECKIN_OFFSETS": "1d,7d,30d",
            "HOTLINE_CHECKIN_HOURS": "09:00-20:00",
            "HOTLINE_TIMEZONE": "America/New_York",
        }
        made.append(make_hotline(database_url, redis, fake, tmp_path, **settings | overrides))
        return made[-1]

    yield make
    for hotline in made:
        hotline.clock.stop()
        hotline.services.sessions.kw["bind"].dispose()


@contextmanager
def at(hotline: Hotline, when: datetime) -> Iterator[None]:
    """Both clocks stopped at ``when``: the core's Clock, and the process's time, which RQ's
    scheduler reads to decide what is due."""
    hotline.clock.now = when.astimezone(UTC)
    with time_machine.travel(when, tick=False):
        yield


class BurstWorker(SimpleWorker):
    """RQ's SimpleWorker minus its pub/sub listener: a burst run takes no remote commands, and
    joining that listener's thread costs a third of a second per run."""

    def subscribe(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


def work(hotline: Hotline, when: datetime) -> None:
    """A real RQ worker with the scheduler at ``when``: due wake-ups are queued, then run."""
    with at(hotline, when):
        worker = BurstWorker([make_queue(hotline.redis)], connection=hotline.redis)
        worker.work(burst=True, with_scheduler=True, logging_level="WARNING")


def end_of_minute(when: datetime) -> datetime:
    """When a check-in due at ``when`` is woken: due check-ins share one wake-up per minute."""
    whole = when.replace(second=0, microsecond=0)
    return whole if whole == when else whole + timedelta(minutes=1)


def sweep(hotline: Hotline, when: datetime) -> int:
    """The sweeper at ``when``; returns how many check-ins it sent."""
    with at(hotline, when):
        return hotline.sweep().checkins_sent


def talk_then_done(
    hotline: Hotline, phones: Phones, when: datetime, peer: str = ALICE, checkin_reply: bool = False
) -> str:
    """A clinician texts, ``peer`` accepts, they talk, the peer texts DONE: all at ``when``.
    ``checkin_reply``: the text answers a check-in, and is answered and offered as one. The
    peer's answer to DONE."""
    clinician, supporter = phones.phone(CLINICIAN), phones.phone(peer)
    with at(hotline, when):
        clinician.texts(FIRST_WORDS)
        clinician.expect_text(CHECKIN_REPLIED if checkin_reply else "confidential", from_=HOTLINE)
        offer = supporter.expect_text("Reply ACCEPT")
        assert offer.body == (CHECKIN_OFFER if checkin_reply else PLAIN_OFFER)
        supporter.texts("ACCEPT")
        supporter.expect_text("You're connected")
        supporter.expect_text(FIRST_WORDS)
        clinician.expect_text("peer supporter has joined", from_=HOTLINE)
        supporter.texts("DONE")
        closed = supporter.expect_text("Conversation closed")
        clinician.expect_text("not alone", from_=HOTLINE)
    return closed.body


def line_with_alice(make_line: Callable[..., Hotline], when: datetime = T0, **env: str) -> Hotline:
    hotline = make_line(**env)
    hotline.clock.now = when.astimezone(UTC)
    hotline.add_supporter("Alice", ALICE)  # on call from an hour before ``when``, for 60 days
    return hotline


def rows(hotline: Hotline) -> list[CheckIn]:
    with hotline.session() as session:
        return list(session.scalars(select(CheckIn).order_by(CheckIn.id)))


def states(hotline: Hotline) -> list[CheckInState]:
    return [row.state for row in rows(hotline)]


def texts_to(hotline: Hotline, number: str) -> list[dict[str, Any]]:
    return [m for m in hotline.fake.messages if m["to"] == number]


def wake_ups(hotline: Hotline) -> dict[str, datetime]:
    """Check-in wake-ups in RQ's scheduled registry: job id -> when the scheduler queues it."""
    registry = make_queue(hotline.redis).scheduled_job_registry
    ids = [i for i in registry.get_job_ids() if i.startswith("send_due_checkins-")]
    return {ident: registry.get_scheduled_time(ident) for ident in ids}


# --- DONE schedules; a real worker sends each once, at the right local time -------------------

CADENCES = {
    "spring-forward": (
        local(2026, 3, 7, 15),
        [local(2026, 3, 8, 15), local(2026, 3, 14, 15), local(2026, 4, 6, 15)],
    ),
    "fall-back": (
        local(2026, 10, 31, 15),
        [local(2026, 11, 1, 15), local(2026, 11, 7, 15), local(2026, 11, 30, 15)],
    ),
    "evening-into-the-window": (
        local(2026, 3, 7, 21, 30),
        [local(2026, 3, 9, 9), local(2026, 3, 15, 9), local(2026, 4, 7, 9)],
    ),
}


@pytest.mark.parametrize("cadence", CADENCES)
def test_done_schedules_three_checkins_each_sent_once_at_local_time(
    make_line: Callable[..., Hotline], cadence: str
) -> None:
    done_at, expected = CADENCES[cadence]
    hotline = line_with_alice(make_line, done_at)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, done_at)

    scheduled = rows(hotline)
    assert [r.due_at for r in scheduled] == [utc(due) for due in expected]
    assert [r.state for r in scheduled] == [CheckInState.SCHEDULED] * 3
    # One wake-up per due minute (shared by everyone due then), at that minute.
    minute = {r.id: int(r.due_at.timestamp()) // 60 for r in scheduled}
    assert wake_ups(hotline) == {f"send_due_checkins-{minute[r.id]}0": r.due_at for r in scheduled}
    clinician = phones.phone(CLINICIAN)
    for due in expected:
        work(hotline, due - timedelta(minutes=1))
        clinician.expect_nothing()
        work(hotline, due + timedelta(seconds=30))
        text = clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)
        assert "Reply NOCHECKIN" in text.body and "STOP" in text.body
        assert num_segments(text.body) == 1
    checkins_sent = texts_to(hotline, CLINICIAN)
    assert len(checkins_sent) == 3
    assert all(m["status_callback"].endswith("/twilio/status") for m in checkins_sent)
    work(hotline, expected[-1] + timedelta(days=1))
    assert sweep(hotline, expected[-1] + timedelta(days=1)) == 0
    sent = rows(hotline)
    assert [(r.state, r.attempts) for r in sent] == [(CheckInState.SENT, 1)] * 3
    assert [r.sent_at for r in sent] == [utc(due + timedelta(seconds=30)) for due in expected]
    # No status callback came (none is posted here): the records went all the same.
    assert {r.provider_sid for r in sent} <= set(hotline.fake.deleted)
    assert texts_to(hotline, CLINICIAN) == []
    phones.assert_no_unexpected()


# --- stopping ---------------------------------------------------------------------------------


def test_stop_cancels_every_pending_checkin_and_start_does_not_bring_them_back(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    dues = [r.due_at for r in rows(hotline)]
    clinician = phones.phone(CLINICIAN)

    with at(hotline, T0 + timedelta(hours=2)):
        clinician.texts("STOP")
    assert states(hotline) == [CheckInState.CANCELLED] * 3
    # Their minutes' wake-ups stay (others due then share them); they find nothing to send.
    with at(hotline, T0 + timedelta(hours=3)):
        clinician.texts("START")
    assert states(hotline) == [CheckInState.CANCELLED] * 3
    for due in dues:
        work(hotline, due + timedelta(minutes=1))
        assert sweep(hotline, due + timedelta(minutes=2)) == 0
    assert states(hotline) == [CheckInState.CANCELLED] * 3
    assert texts_to(hotline, CLINICIAN) == []
    phones.assert_no_unexpected()


def test_nocheckin_cancels_checkins_and_keeps_the_line_open(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    first_due = rows(hotline)[0].due_at
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)

    with at(hotline, T0 + timedelta(hours=1)):
        clinician.texts("nocheckin")
    clinician.expect_text("no more check-in texts", from_=HOTLINE)
    assert states(hotline) == [CheckInState.CANCELLED] * 3
    # Their minutes' wake-ups stay (others due then share them); they find nothing to send.
    work(hotline, first_due + timedelta(minutes=1))
    clinician.expect_nothing()

    talk_then_done(hotline, phones, first_due + timedelta(hours=2))  # the line still answers
    assert states(hotline) == [CheckInState.CANCELLED] * 3  # and schedules none again
    alice.expect_nothing()
    phones.assert_no_unexpected()


def test_no_more_check_ins_in_words_declines_them_and_wakes_no_peer(
    hotline: Hotline, phones: Phones
) -> None:
    """A clinician answers a check-in with "No more check-ins, thanks" rather than the one word
    NOCHECKIN: it declines them. It used to open a request: a peer was offered it, and when
    that peer closed it with DONE, a fresh 1d/7d/30d cadence began."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice, _ = phones.checked_in(CLINICIAN, ALICE)
    clinician.texts("No more check-ins, thanks")
    clinician.expect_text("no more check-in texts", from_=HOTLINE)
    alice.expect_nothing()
    with hotline.session() as session:
        assert session.scalar(select(Clinician.checkins_declined)) is True
        assert len(session.scalars(select(Conversation.id)).all()) == 1
    assert states(hotline) == [CheckInState.SENT] + [CheckInState.CANCELLED] * 2
    phones.assert_no_unexpected()


def test_a_programme_s_own_checkin_text_still_says_how_to_stop_them(
    hotline: Hotline, phones: Phones
) -> None:
    """The coordinator writes the programme's own check-in text and leaves out how to stop
    them: the check-in still ends by saying so (as a greeting always carries the crisis line).
    One that says it already is sent as written."""
    own = "Hi from the forYOU team. Thinking of you: how are you doing? Reply any time."
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).checkin_text = own
    hotline.add_supporter("Alice", ALICE)
    clinician, _, text = phones.checked_in(CLINICIAN, ALICE, own)
    assert text.body.endswith("Reply NOCHECKIN to stop check-ins, STOP to stop all texts."), (
        text.body
    )

    said = f"{own} Text NOCHECKIN and they stop."
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).checkin_text = said
    hotline.clock.advance(days=6)
    hotline.sweep()
    assert clinician.expect_text(own, from_=HOTLINE).body == said
    phones.assert_no_unexpected()


def test_no_check_in_in_words_while_talking_with_a_peer_is_said_to_the_peer(
    hotline: Hotline, phones: Phones
) -> None:
    """Inside a live conversation a phrase is the clinician answering their peer ("Did anyone
    check in on you?" "No check-in."), as a field's word is there: relayed, not taken by the
    line (the peer would wait for an answer that never came). The one word NOCHECKIN still
    declines; the peer's DONE schedules check-ins as usual."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    clinician.texts("No check-in.")
    alice.expect_text("No check-in.", from_=POOL[0])
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    with hotline.session() as session:
        assert session.scalar(select(Clinician.checkins_declined)) is False
    assert states(hotline) == [CheckInState.SCHEDULED] * 3
    phones.assert_no_unexpected()


def test_a_checkin_due_during_a_live_conversation_is_skipped(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    first_due = rows(hotline)[0].due_at
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    with at(hotline, first_due - timedelta(hours=1)):
        clinician.texts("Can we talk again?")
        alice.expect_text("Reply ACCEPT")
        alice.texts("ACCEPT")
    clinician.expect_text("confidential")
    alice.expect_text("You're connected")
    alice.expect_text("Can we talk again?")
    clinician.expect_text("peer supporter has joined")

    work(hotline, first_due + timedelta(minutes=1))
    assert states(hotline) == [CheckInState.CANCELLED] + [CheckInState.SCHEDULED] * 2
    assert texts_to(hotline, CLINICIAN) == []
    phones.assert_no_unexpected()


# --- durability: Redis loses the wake-ups, workers race, a worker dies ------------------------


def test_redis_flushed_before_the_due_time_still_sends_once(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    due = rows(hotline)[0].due_at
    hotline.redis.flushdb()

    assert sweep(hotline, due - timedelta(minutes=1)) == 0
    work(hotline, due + timedelta(minutes=1))
    assert texts_to(hotline, CLINICIAN) == []  # the wake-up is gone
    assert sweep(hotline, due + timedelta(minutes=1)) == 1  # the database still knows
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS, from_=HOTLINE)
    work(hotline, due + timedelta(minutes=2))
    assert sweep(hotline, due + timedelta(minutes=3)) == 0
    assert len(texts_to(hotline, CLINICIAN)) == 1
    assert states(hotline) == [CheckInState.SENT] + [CheckInState.SCHEDULED] * 2
    phones.assert_no_unexpected()


def test_sweeper_and_wake_up_both_firing_send_once(make_line: Callable[..., Hotline]) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    due = rows(hotline)[0].due_at
    assert sweep(hotline, due + timedelta(minutes=1)) == 1
    work(hotline, due + timedelta(minutes=1))  # the wake-up runs too, and finds it sent
    assert len(texts_to(hotline, CLINICIAN)) == 1
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS)
    phones.assert_no_unexpected()


def test_threads_racing_on_the_same_due_checkin_send_it_once(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line, HOTLINE_CHECKIN_OFFSETS="1h,2h,3h,4h,5h,6h")
    talk_then_done(hotline, Phones(hotline), T0)
    ids = [r.id for r in rows(hotline)]
    hotline.clock.now = (T0 + timedelta(days=1)).astimezone(UTC)  # all six are due
    racers = 4
    barrier = threading.Barrier(racers, timeout=30)

    def race(ident: int) -> CheckInState | None:
        barrier.wait()
        return checkins.send_checkin(hotline.services, ident)

    with ThreadPoolExecutor(racers) as pool:
        outcomes = [list(pool.map(race, [ident] * racers)) for ident in ids]
    assert all(o.count(CheckInState.SENT) == 1 and o.count(None) == racers - 1 for o in outcomes)
    assert len(texts_to(hotline, CLINICIAN)) == len(ids)
    assert states(hotline) == [CheckInState.SENT] * len(ids)


RACER = """
import sys
from sqlalchemy import text
from hotline import checkins
from hotline.app import build_services
from hotline.settings import load_settings
services = build_services(load_settings())
with services.sessions() as session:
    session.execute(text("SELECT 1"))  # connected before the start line
print("ready", flush=True)
sys.stdin.readline()
outcomes = [checkins.send_checkin(services, int(ident)) for ident in sys.argv[1:]]
print(sum(outcome == "sent" for outcome in outcomes), flush=True)
"""


def real_now() -> datetime:
    hatch = time_machine.escape_hatch
    return hatch.datetime.datetime.now(UTC) if hatch.is_travelling() else datetime.now(UTC)


def worker_env(hotline: Hotline, redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    """The environment of a separate worker process on this test's database, Redis and fake."""
    settings = hotline.settings
    hours = settings.checkin_hours
    overrides = {
        "REDIS_URL": redis_server.url,
        "HOTLINE_INSTANCE_PATH": str(tmp_path),
        "HOTLINE_TIMEZONE": settings.timezone,
        "HOTLINE_CHECKIN_HOURS": f"{hours[0]:%H:%M}-{hours[1]:%H:%M}" if hours else "",
        "HOTLINE_CHECKIN_OFFSETS": ",".join(
            f"{int(offset.total_seconds())}s" for offset in settings.checkin_offsets
        ),
    }
    env = harness.test_env(settings.database_url, hotline.fake, **overrides)
    return {"PATH": os.environ.get("PATH", ""), **env}


@pytest.mark.postgres
def test_two_processes_racing_send_each_checkin_once(
    make_postgres_line: Callable[..., Hotline], redis_server: RedisServer, tmp_path: Path
) -> None:
    """PostgreSQL only: SQLite locks the file the same way for threads and processes, so the
    thread race covers it, and each process costs seconds of imports."""
    hotline = line_with_alice(
        make_postgres_line, HOTLINE_CHECKIN_OFFSETS="1h,2h,3h,4h,5h,6h", HOTLINE_CHECKIN_HOURS=""
    )
    talk_then_done(hotline, Phones(hotline), T0)  # months ago: all six are due in real time
    ids = [str(r.id) for r in rows(hotline)]
    env = worker_env(hotline, redis_server, tmp_path)
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, *ids],
            env=env,
            cwd=tmp_path,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for racer in racers:
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        sent = [int(racer.communicate(timeout=60)[0]) for racer in racers]
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert sum(sent) == len(ids)
    assert len(texts_to(hotline, CLINICIAN)) == len(ids)
    assert states(hotline) == [CheckInState.SENT] * len(ids)


def test_a_worker_killed_after_twilio_accepted_never_resends(
    make_line: Callable[..., Hotline], redis_server: RedisServer, tmp_path: Path
) -> None:
    now = real_now()  # a worker process's time
    done_at = now - timedelta(days=1, minutes=10)  # the 1d check-in fell due ten minutes ago
    hotline = line_with_alice(make_line, done_at, HOTLINE_CHECKIN_HOURS="")
    talk_then_done(hotline, Phones(hotline), done_at)
    first = rows(hotline)[0]
    work(hotline, first.due_at - timedelta(minutes=1))  # earlier jobs out of the way
    hotline.fake.hang_next(3)  # Twilio takes the next message, then is slow to say so

    worker = subprocess.Popen(
        [sys.executable, "-m", "hotline.cli", "worker", "--burst"],
        env=worker_env(hotline, redis_server, tmp_path),
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # killed as a process manager kills: with any forked scheduler
    )
    try:
        deadline = time.monotonic() + 30
        while not texts_to(hotline, CLINICIAN) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert worker.poll() is None, "the worker finished instead of hanging on Twilio"
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    assert worker.returncode == -9
    claimed = rows(hotline)[0]
    assert claimed.state == CheckInState.SENDING and claimed.claimed_at is not None

    assert sweep(hotline, claimed.claimed_at + timedelta(minutes=1)) == 0
    assert rows(hotline)[0].state == CheckInState.SENDING  # maybe sent: not the sweeper's
    with at(hotline, claimed.claimed_at + checkins.STUCK_AFTER + timedelta(minutes=1)):
        assert hotline.sweep().checkins_unknown == 1
    work(hotline, claimed.claimed_at + checkins.STUCK_AFTER + timedelta(minutes=2))
    assert checkins.send_checkin(hotline.services, first.id) is None
    assert rows(hotline)[0].state == CheckInState.UNKNOWN
    assert len(texts_to(hotline, CLINICIAN)) == 1


# --- Twilio errors ----------------------------------------------------------------------------


def test_21610_marks_the_clinician_opted_out_and_cancels_the_rest(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    dues = [r.due_at for r in rows(hotline)]
    hotline.fake.fail_for(CLINICIAN, code=21610)  # they texted STOP to Twilio, not to us

    work(hotline, dues[0] + timedelta(seconds=30))
    first, *rest = rows(hotline)
    assert (first.state, first.error_code) == (CheckInState.FAILED, 21610)
    assert [r.state for r in rest] == [CheckInState.CANCELLED] * 2
    # Their minutes' wake-ups stay (others due then share them); they find nothing to send.
    with hotline.session() as session:
        assert is_opted_out(
            session, hotline.services.vault, hotline.programme_id, CLINICIAN, HOTLINE
        )
    for due in dues[1:]:
        work(hotline, due + timedelta(minutes=1))
    assert texts_to(hotline, CLINICIAN) == []
    phones.assert_no_unexpected()


def test_21610_in_a_status_callback_marks_the_clinician_opted_out_and_cancels_the_rest(
    make_line: Callable[..., Hotline],
) -> None:
    """Twilio took the first check-in, then reported it failed with 21610: the clinician had
    texted STOP to the line's number while the line was down (it never heard it). As when
    the send itself is refused, the pair is kept blocked and the rest of the cadence cancelled,
    not tried (and refused) one by one over the next month."""
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    dues = [r.due_at for r in rows(hotline)]
    work(hotline, dues[0] + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS)  # Twilio took it; it never arrives
    hotline.fake.fail_for(CLINICIAN, code=21610)  # Twilio blocks the pair from now on

    answer = hotline.fake.post_status(sid, "failed", 21610, deliver=deliver_to(hotline.client))
    assert answer == 204
    first, *rest = rows(hotline)
    assert (first.state, first.error_code) == (CheckInState.FAILED, 21610)
    assert [r.state for r in rest] == [CheckInState.CANCELLED] * 2
    with hotline.session() as session:
        assert is_opted_out(
            session, hotline.services.vault, hotline.programme_id, CLINICIAN, HOTLINE
        )
    for due in dues[1:]:
        work(hotline, due + timedelta(minutes=1))
    assert [r.error_code for r in rows(hotline)] == [21610, None, None]  # none tried again
    phones.assert_no_unexpected()


def test_21610_reported_after_a_renumbering_blocks_the_number_the_check_in_came_from(
    make_line: Callable[..., Hotline],
) -> None:
    """The first check-in went from the line's number; the programme was then renumbered (the
    old number kept in its pool, saved on clinicians' phones) before Twilio reported the
    check-in failed with 21610: the clinician's STOP was to the old number. It was kept
    against the new one, which they never stopped: texting it later, they were never told a
    peer had joined (the line took them for opted out of it). Now it is kept against the
    number Twilio says the check-in came from."""
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    due = rows(hotline)[0].due_at
    work(hotline, due + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)  # Twilio took it; it never arrives
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programmes.ensure_programme(
            session, slug=programme.slug, name=None, hotline_number=RENUMBERED, pool_numbers=()
        )

    answer = hotline.fake.post_status(sid, "failed", 21610, deliver=deliver_to(hotline.client))
    assert answer == 204
    with hotline.session() as session:
        vault, programme_id = hotline.services.vault, hotline.programme_id
        assert is_opted_out(session, vault, programme_id, CLINICIAN, HOTLINE)
        assert not is_opted_out(session, vault, programme_id, CLINICIAN, RENUMBERED)
    with at(hotline, due + timedelta(minutes=5)):
        clinician.texts("it got worse", to=RENUMBERED)
        clinician.expect_text("confidential", from_=RENUMBERED)
        alice.expect_text("Reply ACCEPT")
        alice.texts("ACCEPT")
        alice.expect_text("You're connected")  # was: the clinician has stopped texts
        alice.expect_text("it got worse")
        clinician.expect_text("peer supporter has joined", from_=RENUMBERED)  # was: nothing
    phones.assert_no_unexpected()


def test_forget_after_a_21610_kept_against_the_old_number_erases_that_opt_out_too(
    make_line: Callable[..., Hotline],
) -> None:
    """A check-in's 21610 reported after a renumbering is kept against the old number, now in
    the pool. The clinician then texts FORGET: the opt-out rows, their number's blind index,
    go at once (docs/SECURITY.md), that one too; it stayed, read as a supporter's, until the
    retention sweep (30 days)."""
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    due = rows(hotline)[0].due_at
    work(hotline, due + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None
    clinician = phones.phone(CLINICIAN)
    clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programmes.ensure_programme(
            session, slug=programme.slug, name=None, hotline_number=RENUMBERED, pool_numbers=()
        )
    assert hotline.fake.post_status(sid, "failed", 21610, deliver=deliver_to(hotline.client))
    with at(hotline, due + timedelta(minutes=5)):
        clinician.texts("FORGET", to=RENUMBERED)
        clinician.expect_text("erased", from_=RENUMBERED)
    with hotline.session() as session:
        vault, programme_id = hotline.services.vault, hotline.programme_id
        assert not is_opted_out(session, vault, programme_id, CLINICIAN, HOTLINE)
        assert session.scalars(select(OptOut)).all() == []


@pytest.mark.parametrize("sent_from", [None, "+15550100077"], ids=["not reported", "not ours"])
def test_21610_from_no_number_of_the_programmes_blocks_its_hotline_number(
    make_line: Callable[..., Hotline], sent_from: str | None
) -> None:
    """A 21610 callback that names no sender, or one that is not the programme's: the STOP is
    kept against the hotline number, from which check-ins go."""
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    work(hotline, rows(hotline)[0].due_at + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS, from_=HOTLINE)
    reported = {"From": sent_from} if sent_from else {}
    status = {"MessageSid": sid, "MessageStatus": "failed", "ErrorCode": "21610"}
    assert hotline.post("/twilio/status", **status, To=CLINICIAN, **reported).status_code == 204
    with hotline.session() as session:
        assert is_opted_out(
            session, hotline.services.vault, hotline.programme_id, CLINICIAN, HOTLINE
        )
    assert [r.state for r in rows(hotline)[1:]] == [CheckInState.CANCELLED] * 2
    phones.assert_no_unexpected()


@pytest.mark.parametrize(("status", "code"), [(503, None), (429, 20429), (401, 20003)])
def test_a_refused_send_is_retried_later_with_backoff_then_sent_once(
    make_line: Callable[..., Hotline], status: int, code: int | None
) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    first = rows(hotline)[0]
    hotline.fake.fail_for(CLINICIAN, status=status, code=code)

    when = first.due_at + timedelta(seconds=30)
    work(hotline, when)
    retry = rows(hotline)[0]
    assert (retry.state, retry.attempts) == (CheckInState.SCHEDULED, 1)
    assert retry.due_at == when + timedelta(minutes=4)
    work(hotline, retry.due_at - timedelta(seconds=30))  # not yet
    assert rows(hotline)[0].attempts == 1
    woken = end_of_minute(retry.due_at)  # the wake-up of the retry's minute, refused again
    work(hotline, woken)
    again = rows(hotline)[0]
    assert (again.state, again.attempts) == (CheckInState.SCHEDULED, 2)
    assert again.due_at - woken == timedelta(minutes=8)
    hotline.fake.clear_faults()  # Twilio is back
    work(hotline, end_of_minute(again.due_at))
    sent = rows(hotline)[0]
    assert (sent.state, sent.attempts) == (CheckInState.SENT, 3)
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS)
    assert len(texts_to(hotline, CLINICIAN)) == 1
    phones.assert_no_unexpected()


@pytest.mark.parametrize("code", [21606, 21212])
def test_a_checkin_from_a_hotline_number_twilio_will_not_send_from_waits_until_it_is_fixed(
    make_line: Callable[..., Hotline], code: int
) -> None:
    """The hotline number is not one Twilio sends from for this account (21606: released, or
    moved to another account) or not a valid one (21212): our number's fault, not the
    clinician's. The check-in was marked failed at once, for good, and never went. It waits an
    hour at a time, using up none of its attempts, while the number is refused, and goes
    once it is fixed."""
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    hotline.fake.fail_from(HOTLINE, code=code)
    when = rows(hotline)[0].due_at + timedelta(seconds=30)
    for _ in range(checkins.MAX_ATTEMPTS + 1):
        work(hotline, when)
        row = rows(hotline)[0]
        assert (row.state, row.attempts) == (CheckInState.SCHEDULED, 0)
        assert row.due_at == when + checkins.SENDER_WAIT
        when = end_of_minute(row.due_at)
    hotline.fake.clear_faults()  # fixed in Twilio's console
    work(hotline, when)
    assert rows(hotline)[0].state == CheckInState.SENT
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS)
    phones.assert_no_unexpected()


def test_retries_stop_after_max_attempts(make_line: Callable[..., Hotline]) -> None:
    hotline = line_with_alice(make_line)
    talk_then_done(hotline, Phones(hotline), T0)
    hotline.fake.fail_for(CLINICIAN, status=503, code=None)  # an outage page, no error code
    when = rows(hotline)[0].due_at + timedelta(seconds=30)
    waits = []
    for _attempt in range(checkins.MAX_ATTEMPTS - 1):
        work(hotline, when)
        row = rows(hotline)[0]
        assert row.state == CheckInState.SCHEDULED
        waits.append(row.due_at - when)
        when = end_of_minute(row.due_at)
    work(hotline, when)
    failed = rows(hotline)[0]
    assert (failed.state, failed.attempts) == (CheckInState.FAILED, checkins.MAX_ATTEMPTS)
    assert waits == [timedelta(minutes=m) for m in (4, 8, 16, 32)]
    work(hotline, when + timedelta(hours=1))
    assert sweep(hotline, when + timedelta(hours=1)) == 0
    assert rows(hotline)[0].attempts == checkins.MAX_ATTEMPTS
    assert texts_to(hotline, CLINICIAN) == []


def test_a_read_timeout_marks_the_checkin_unknown_and_never_resends(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    talk_then_done(hotline, Phones(hotline), T0)
    due = rows(hotline)[0].due_at
    impatient = TwilioTelephony(ACCOUNT_SID, AUTH_TOKEN, hotline.fake.base_url, timeout=(2, 0.3))
    use_telephony(hotline, impatient)
    work(hotline, due - timedelta(minutes=1))  # earlier jobs out of the way
    hotline.fake.hang_next(1.0)

    work(hotline, due + timedelta(seconds=30))
    assert rows(hotline)[0].state == CheckInState.UNKNOWN
    work(hotline, due + timedelta(hours=1))
    assert sweep(hotline, due + timedelta(hours=2)) == 0
    assert rows(hotline)[0].state == CheckInState.UNKNOWN
    assert len(texts_to(hotline, CLINICIAN)) == 1  # Twilio did take it: one text, not two


# --- delivery status --------------------------------------------------------------------------


def test_status_callbacks_only_move_delivery_forward(make_line: Callable[..., Hotline]) -> None:
    hotline = line_with_alice(make_line)
    talk_then_done(hotline, Phones(hotline), T0)
    work(hotline, rows(hotline)[0].due_at + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None

    def callback(status: str, **extra: str) -> str | None:
        params = {"MessageSid": sid, "MessageStatus": status, "AccountSid": ACCOUNT_SID}
        assert hotline.post("/twilio/status", **params | extra).status_code == 204
        return rows(hotline)[0].delivery_status

    assert callback("sent") == "sent"
    assert callback("delivered") == "delivered"
    assert callback("delivered") == "delivered"  # a duplicate
    assert callback("sent") == "delivered"  # late and out of order
    assert callback("queued") == "delivered"
    assert hotline.fake.post_status(sid, "sent", deliver=deliver_to(hotline.client)) == 204
    assert callback("read") == "read"
    final = rows(hotline)[0]
    assert (final.state, final.error_code) == (CheckInState.SENT, None)
    unknown = {"MessageSid": "SM" + "0" * 32, "MessageStatus": "delivered"}
    assert hotline.post("/twilio/status", **unknown).status_code == 204


def test_an_undelivered_callback_keeps_its_error_through_later_ones(
    make_line: Callable[..., Hotline],
) -> None:
    hotline = line_with_alice(make_line)
    talk_then_done(hotline, Phones(hotline), T0)
    work(hotline, rows(hotline)[0].due_at + timedelta(seconds=30))
    sid = rows(hotline)[0].provider_sid
    assert sid is not None
    for status, code in (("undelivered", "30003"), ("sent", ""), ("queued", "")):
        params = {"MessageSid": sid, "MessageStatus": status, "ErrorCode": code}
        assert hotline.post("/twilio/status", **params).status_code == 204
    row = rows(hotline)[0]
    assert (row.delivery_status, row.error_code, row.state) == (
        "undelivered",
        30003,
        CheckInState.SENT,
    )


# --- a reply to a check-in --------------------------------------------------------------------


@pytest.mark.parametrize("alice_on_call", [True, False], ids=["alice-on-call", "alice-off-call"])
def test_a_reply_to_a_checkin_goes_first_to_the_last_supporter_if_on_call(
    make_line: Callable[..., Hotline], alice_on_call: bool
) -> None:
    hotline = make_line()
    hotline.clock.now = T0.astimezone(UTC)
    alice_id = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(
        alice_id, T0 - timedelta(hours=1), T0 + timedelta(days=2 if alice_on_call else 0, hours=2)
    )
    hotline.add_supporter("Bob", BOB)  # never offered anything: round-robin would pick him
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0, peer=ALICE)
    due = rows(hotline)[0].due_at
    work(hotline, due + timedelta(seconds=30))
    clinician = phones.phone(CLINICIAN)
    clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)

    with at(hotline, due + timedelta(hours=1)):
        clinician.texts(REPLY)
    clinician.expect_text(CHECKIN_REPLIED, from_=HOTLINE)
    first, other = (ALICE, BOB) if alice_on_call else (BOB, ALICE)
    assert phones.phone(first).expect_text(from_=POOL[0]).body == CHECKIN_OFFER
    phones.phone(other).expect_nothing()
    with at(hotline, due + timedelta(hours=1, minutes=1)):
        phones.phone(first).texts("ACCEPT")
    phones.phone(first).expect_text("You're connected")
    phones.phone(first).expect_text(REPLY)
    clinician.expect_text("peer supporter has joined")
    assert rows(hotline)[0].replied_at is not None
    with hotline.session() as session:
        assert session.scalar(select(Offer.id).where(Offer.state == "pending")) is None
        assert len(session.scalars(select(Conversation.id)).all()) == 2
    phones.assert_no_unexpected()


def test_a_reply_to_the_last_checkin_reaches_the_peer_after_the_nightly_purge(
    make_line: Callable[..., Hotline],
) -> None:
    """The 30-day check-in goes out as the clinician's number reaches the retention period;
    the purge keeps it for a reply window, so a reply days later still finds Alice."""
    hotline = make_line()
    hotline.clock.now = T0.astimezone(UTC)
    hotline.add_supporter("Alice", ALICE, on_call=True)
    hotline.add_supporter("Bob", BOB)  # never offered anything: round-robin would pick him
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0, peer=ALICE)
    clinician = phones.phone(CLINICIAN)
    for row in rows(hotline):
        work(hotline, row.due_at + timedelta(seconds=30))
        clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)
    last = rows(hotline)[-1].due_at
    assert last.astimezone(NY).date() - T0.date() == timedelta(days=30)
    with at(hotline, last + timedelta(days=1)):
        assert hotline.sweep().clinicians_purged == 0

    with at(hotline, last + timedelta(days=2)):
        clinician.texts(REPLY)
    clinician.expect_text(CHECKIN_REPLIED, from_=HOTLINE)
    assert phones.phone(ALICE).expect_text(from_=POOL[0]).body == CHECKIN_OFFER
    phones.phone(BOB).expect_nothing()
    assert rows(hotline)[-1].replied_at is not None
    phones.assert_no_unexpected()


def assert_not_the_greeting(body: str) -> None:
    """The first-contact greeting's preamble and field hint: had once, not said again."""
    assert "confidential" not in body and "NURSE" not in body, body


def test_a_reply_to_a_checkin_is_answered_briefly_and_offered_as_one(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician answering a check-in ("thanks, a bit better") was greeted when they first
    wrote: they are told, in one segment, that a peer will text them here, with the crisis
    sentence, not the whole greeting again. Every peer it is offered to (their last one first,
    then the next) and a reminder on the offer's number say it answers a check-in, so the peer
    can open as to someone they know ("glad to hear from you again"); nothing of what they
    wrote is in an offer."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice, _ = phones.checked_in(CLINICIAN, ALICE)
    hotline.add_supporter("Bob", BOB)  # never offered anything: round-robin would pick him
    hotline.clock.advance(hours=2)

    clinician.texts(BETTER)
    answer = clinician.expect_text(hotline.settings.crisis_text, from_=HOTLINE)
    assert "peer will text" in answer.body, answer.body
    assert_not_the_greeting(answer.body)
    assert num_segments(answer.body) == 1, answer.body
    assert alice.expect_text(from_=POOL[0]).body == CHECKIN_OFFER  # her thread with them
    phones.phone(BOB).expect_nothing()

    alice.texts("one minute, finishing a note")
    reminder = alice.expect_text("Reply ACCEPT", from_=POOL[0])
    assert "a reply to a check-in" in reminder.body, reminder.body
    alice.texts("PASS")
    alice.expect_text("Passed on")
    bob = phones.phone(BOB)
    assert bob.expect_text().body == CHECKIN_OFFER
    bob.texts("ACCEPT")
    bob.expect_text("You're connected")
    bob.expect_text(BETTER)
    clinician.expect_text("peer supporter has joined", from_=HOTLINE)
    assert rows(hotline)[0].replied_at is not None
    phones.assert_no_unexpected()


@pytest.mark.parametrize("before", ["no check-in yet", "a check-in over a week ago"])
def test_a_new_text_answering_no_recent_checkin_is_greeted_and_offered_as_before(
    hotline: Hotline, phones: Phones, before: str
) -> None:
    """A clinician who talked before and writes again with no check-in sent since (or one
    sent longer ago than a reply counts for) is a new request as ever: the whole greeting,
    and the plain offer."""
    hotline.add_supporter("Alice", ALICE)
    if before == "no check-in yet":
        clinician, alice = phones.talking(CLINICIAN, ALICE)
        alice.texts("DONE")
        alice.expect_text("Conversation closed")
        clinician.expect_text("not alone")
        hotline.clock.advance(hours=3)
    else:
        clinician, alice, _ = phones.checked_in(CLINICIAN, ALICE)
        hotline.clock.advance(days=checkins.REPLY_WINDOW.days, hours=1)  # the 7-day one unsent

    clinician.texts("Rough shift again")
    greeting = clinician.expect_text("confidential", from_=HOTLINE)
    assert "NURSE" in greeting.body and hotline.settings.crisis_text in greeting.body
    assert alice.expect_text(from_=POOL[0]).body == PLAIN_OFFER
    assert all(row.replied_at is None for row in rows(hotline))
    phones.assert_no_unexpected()


def test_a_reply_to_a_checkin_with_nobody_free_is_told_briefly_when_a_peer_comes_on(
    hotline: Hotline, phones: Phones
) -> None:
    """Nobody on call as the clinician answers a check-in: one short text says the request
    waits and when the next peer comes on call, with the crisis sentence (not the greeting and
    its field hint again); the peer who comes on call is offered it as a check-in's reply, and
    reminded so when she writes on its number after letting the offer lapse."""
    start = hotline.clock.now
    alice_id = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(alice_id, start - timedelta(hours=1), start + timedelta(days=1, hours=2))
    back_on = start + timedelta(days=2)
    hotline.add_shift(alice_id, back_on, back_on + timedelta(hours=8))
    clinician, alice, _ = phones.checked_in(CLINICIAN, ALICE)
    hotline.clock.advance(hours=3)  # her shift is over

    clinician.texts(BETTER)
    answer = clinician.expect_text("No peer is free right now", from_=HOTLINE)
    assert "The next peer comes on call at" in answer.body, answer.body
    assert answer.body.endswith(hotline.settings.crisis_text)
    assert_not_the_greeting(answer.body)
    assert num_segments(answer.body) <= 2, answer.body
    alice.expect_nothing()

    hotline.clock.now = back_on + timedelta(minutes=1)
    hotline.sweep()
    assert alice.expect_text(from_=POOL[0]).body == CHECKIN_OFFER
    hotline.clock.advance(minutes=10)
    hotline.sweep()  # her offer lapses; nobody else is on call
    alice.texts("sorry, was with a patient")
    reminder = alice.expect_text("Reply ACCEPT", from_=POOL[0])
    assert "a reply to a check-in" in reminder.body, reminder.body
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text(BETTER)
    clinician.expect_text("peer supporter has joined", from_=HOTLINE)
    phones.assert_no_unexpected()


@pytest.mark.parametrize("peer", ["on call", "nobody free"])
def test_a_checkin_reply_s_answer_with_a_crisis_sentence_too_long_to_share_goes_apart(
    hotline: Hotline, phones: Phones, peer: str
) -> None:
    """A programme's crisis sentence so long (as the environment may set it) that with the
    answer it would pass Twilio's limit, and be refused with the crisis line in it: the
    answer, then the crisis sentence whole, apart."""
    alice_id = hotline.add_supporter("Alice", ALICE, on_call=peer == "on call")
    if peer == "nobody free":
        start = hotline.clock.now
        hotline.add_shift(alice_id, start - timedelta(hours=1), start + timedelta(days=1))
    clinician, alice, _ = phones.checked_in(CLINICIAN, ALICE)
    crisis = ("In crisis, call or text 988 now, any hour. " * 40)[: wording.MAX_TEXT - 20]
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).crisis_text = crisis
    hotline.clock.advance(hours=2)

    clinician.texts(BETTER)
    answer = clinician.expect_text(from_=HOTLINE)
    assert_not_the_greeting(answer.body)
    assert crisis not in answer.body and len(answer.body) <= wording.MAX_TEXT
    assert clinician.expect_text(from_=HOTLINE).body == crisis
    if peer == "on call":
        assert "peer will text" in answer.body, answer.body
        assert alice.expect_text(from_=POOL[0]).body == CHECKIN_OFFER
    else:
        assert "No peer is free right now" in answer.body, answer.body
    phones.assert_no_unexpected()


# --- confidentiality: Redis holds ids, never numbers or words ---------------------------------


class BrokenTelephony:
    """An adapter with a bug: it raises outside the port's error family (a failed RQ job)."""

    def send_text(
        self, to: str, from_: str, body: str, status_callback: str | None = None
    ) -> SentText:
        raise RuntimeError("adapter bug")


def redis_contents(redis: Redis) -> list[bytes]:
    """Every key and value in Redis, with zlib-compressed values (RQ's job data) inflated."""
    blobs: list[bytes] = []
    for key in redis.keys("*"):
        for value in [key, *_values(redis, key)]:
            blobs.append(value)
            with suppress(zlib.error):
                blobs.append(zlib.decompress(value))
    return blobs


def _values(redis: Redis, key: bytes) -> list[bytes]:
    kind = redis.type(key)
    if kind == b"string":
        return [redis.get(key)]
    if kind == b"hash":
        return [part for pair in redis.hgetall(key).items() for part in pair]
    if kind == b"list":
        return list(redis.lrange(key, 0, -1))
    if kind == b"set":
        return list(redis.smembers(key))
    if kind == b"zset":
        return list(redis.zrange(key, 0, -1))
    assert kind == b"stream", kind
    return [part for _, fields in redis.xrange(key) for pair in fields.items() for part in pair]


def registered_jobs(redis: Redis) -> dict[str, list[str]]:
    """Job ids in the queue and in every RQ registry of it."""
    queue = make_queue(redis)
    registries = {
        "scheduled": queue.scheduled_job_registry,
        "failed": queue.failed_job_registry,
        "finished": queue.finished_job_registry,
        "started": queue.started_job_registry,
        "deferred": queue.deferred_job_registry,
        "canceled": queue.canceled_job_registry,
    }
    return {"queued": queue.get_job_ids()} | {n: r.get_job_ids() for n, r in registries.items()}


def test_redis_never_holds_a_number_or_a_message(make_line: Callable[..., Hotline]) -> None:
    hotline = line_with_alice(make_line)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    dues = [r.due_at for r in rows(hotline)]
    work(hotline, dues[0] + timedelta(seconds=30))  # sent, and left in no registry
    phones.phone(CLINICIAN).expect_text(CHECKIN_WORDS)
    healthy = hotline.services.telephony
    use_telephony(hotline, BrokenTelephony())
    work(hotline, dues[1] + timedelta(seconds=30))  # a failed job, kept for a week
    use_telephony(hotline, healthy)

    with at(hotline, dues[1] + timedelta(minutes=1)):  # registries drop entries past their TTL
        held = registered_jobs(hotline.redis)
    assert held["scheduled"] and held["failed"], held  # the scan below has something to read
    jobs = Job.fetch_many(sorted(set().union(*held.values())), connection=hotline.redis)
    for job in jobs:
        assert job is not None
        assert all(type(arg) is int for arg in job.args) and not job.kwargs, job.id
    secrets = [CLINICIAN, CLINICIAN[2:], ALICE, ALICE[2:], FIRST_WORDS, DEFAULT_CHECKIN_TEXT[:40]]
    contents = redis_contents(hotline.redis)
    for secret in secrets:
        assert not [b for b in contents if secret.encode() in b], f"Redis holds {secret[:4]}…"
    phones.assert_no_unexpected()


# --- many due in one minute: one shared wake-up, sent in batches ------------------------------


def ended_together(hotline: Hotline, count: int, when: datetime) -> list[str]:
    """``count`` clinicians whose conversations all ended at ``when`` (through the core's own
    scheduling, wake-ups and all); their fictional numbers (555-01XX in NPAs 201, 202...)."""
    numbers = [f"+1{201 + i // 100}55501{i % 100:02d}" for i in range(count)]
    vault, effects = hotline.services.vault, Effects()
    with at(hotline, when), transaction(hotline.services.sessions) as session:
        p = config_of(session.get_one(Programme, hotline.programme_id), hotline.settings)
        for number in numbers:
            clinician = Clinician(
                programme_id=p.id,
                phone_sealed=vault.seal(number, CLINICIAN_CONTEXT),
                phone_hash=vault.blind_index(number),
            )
            session.add(clinician)
            session.flush()
            conv = Conversation(
                programme_id=p.id,
                clinician_id=clinician.id,
                channel="sms",
                state=ConversationState.ENDED,
                accepted_at=when,
                ended_at=when,
            )
            session.add(conv)
            session.flush()
            checkins.schedule_after(session, p, conv, when, effects)
    with at(hotline, when):
        schedule(hotline.services, effects)
    return numbers


def claim_batch(hotline: Hotline, when: datetime) -> Any:
    """What a worker's run does first at ``when``: claim a batch (and commit)."""
    with at(hotline, when), transaction(hotline.services.sessions) as session:
        now = hotline.clock.now
        return checkins._claim(hotline.services, session, checkins._due_rows(now), now)


def deliver_batch(hotline: Hotline, batch: Any, when: datetime) -> list[CheckInState]:
    """...and what it does next, at ``when``: hand the batch to Twilio one by one."""
    with at(hotline, when):
        return checkins._deliver_all(hotline.services, batch, time.monotonic() + 60)


def due_an_hour_after(
    make_line: Callable[..., Hotline], count: int
) -> tuple[Hotline, list[str], datetime]:
    """A line with one check-in an hour after a conversation ends, at any hour, and ``count``
    clinicians whose conversations ended at T0: the line, their numbers, when theirs are due."""
    hotline = make_line(HOTLINE_CHECKIN_OFFSETS="1h", HOTLINE_CHECKIN_HOURS="")
    return hotline, ended_together(hotline, count, T0), T0 + timedelta(hours=1)


def out_of_time(hotline: Hotline, due: datetime) -> tuple[int, checkins.DrainReport]:
    """The minute's own run at ``due``, out of time at once (Twilio slow); its ident and
    report. Redis is emptied first, so the queue then holds only what the run asked for."""
    hotline.redis.flushdb()
    ident = drains.wake_up_for(due)[0]
    with at(hotline, due):
        return ident, checkins.send_due(hotline.services, ident, budget=0.0)


def once_each(hotline: Hotline, numbers: list[str]) -> bool:
    sent = Counter(m["to"] for m in hotline.fake.messages)
    return all(sent[n] == 1 for n in numbers) and sum(sent.values()) == len(numbers)


MANY = 2 * checkins.DRAIN_BATCH + 7  # three batches, the last one short


def test_checkins_due_in_one_minute_share_one_wake_up_and_each_goes_once(
    make_line: Callable[..., Hotline],
) -> None:
    hotline, numbers, due = due_an_hour_after(make_line, MANY)
    minute = int(due.timestamp()) // 60
    assert wake_ups(hotline) == {f"send_due_checkins-{minute}0": due}

    work(hotline, due - timedelta(seconds=1))
    assert hotline.fake.messages == []
    work(hotline, due)  # the minute's run wakes more lanes when it finds a full batch
    assert once_each(hotline, numbers)
    assert [(r.state, r.attempts) for r in rows(hotline)] == [(CheckInState.SENT, 1)] * MANY
    assert all(m["body"] == DEFAULT_CHECKIN_TEXT for m in hotline.fake.messages)


def test_a_run_out_of_time_hands_its_batch_back_and_a_fresh_job_finishes(
    make_line: Callable[..., Hotline],
) -> None:
    """A run stops claiming after its budget (Twilio slow): what it claimed but did not send
    goes back to ``scheduled`` untouched, and the job it queues carries on. On PostgreSQL this
    also shows that one claim takes one batch, not every due row (see ``_claim``)."""
    hotline, numbers, due = due_an_hour_after(make_line, MANY)
    ident, report = out_of_time(hotline, due)
    assert report == checkins.DrainReport(claimed=checkins.DRAIN_BATCH, sent=0)
    assert hotline.fake.messages == []
    assert [(r.state, r.attempts, r.claimed_at) for r in rows(hotline)] == [
        (CheckInState.SCHEDULED, 0, None)
    ] * MANY
    # The other lanes a full first batch calls in, and the run continuing this one.
    queued = sorted(make_queue(hotline.redis).get_job_ids())
    lanes = [ident + lane for lane in range(1, drains.LANES)]
    assert queued == [f"send_due_checkins-{i}" for i in [*lanes, ident + drains.CONTINUED]]

    work(hotline, due + timedelta(seconds=5))
    assert once_each(hotline, numbers)
    assert states(hotline) == [CheckInState.SENT] * MANY


def test_a_batch_whose_claim_lapsed_sends_nothing_the_sweeper_took_over(
    make_line: Callable[..., Hotline],
) -> None:
    """A worker stalls between claiming a batch and sending it (a long pause, a hung
    connection): after CLAIM_LEASE the sweeper sends the batch; the stalled worker, when it
    carries on, finds the rows no longer its own and sends none of them again."""
    hotline, numbers, due = due_an_hour_after(make_line, 5)
    stalled = claim_batch(hotline, due)
    assert states(hotline) == [CheckInState.CLAIMED] * 5
    assert sweep(hotline, due + checkins.CLAIM_LEASE - timedelta(seconds=1)) == 0  # still held
    assert sweep(hotline, due + checkins.CLAIM_LEASE + timedelta(seconds=1)) == 5
    outcomes = deliver_batch(hotline, stalled, due + checkins.CLAIM_LEASE + timedelta(minutes=1))
    assert outcomes == [None] * 5  # not ours any more: untouched
    assert once_each(hotline, numbers)
    assert states(hotline) == [CheckInState.SENT] * 5


def test_runs_racing_over_one_minute_of_checkins_send_each_once(
    make_line: Callable[..., Hotline],
) -> None:
    """The lanes of one minute and the sweeper drain the same rows side by side."""
    hotline, numbers, due = due_an_hour_after(make_line, MANY)
    hotline.clock.now = due.astimezone(UTC)
    minute = drains.wake_up_for(due)[0]
    idents = [minute + lane for lane in range(drains.LANES)] + [0]  # 0: the sweeper
    barrier = threading.Barrier(len(idents), timeout=30)

    def race(ident: int) -> checkins.DrainReport:
        barrier.wait()
        return checkins.send_due(hotline.services, ident)

    with ThreadPoolExecutor(len(idents)) as pool:
        reports = list(pool.map(race, idents))
    assert sum(r.sent for r in reports) == MANY
    assert once_each(hotline, numbers)
    assert states(hotline) == [CheckInState.SENT] * MANY


def test_a_wake_up_asked_for_twice_before_it_runs_is_queued_once(
    make_line: Callable[..., Hotline],
) -> None:
    """Queued twice, two workers would run the same job side by side, and the first to finish
    deletes it under the other (RQ then fails that one)."""
    hotline = make_line()
    hotline.redis.flushdb()
    for _ in range(3):
        hotline.services.wakeups.schedule(Task.SEND_DUE_CHECKINS, 10)
    assert make_queue(hotline.redis).get_job_ids() == ["send_due_checkins-10"]


def test_nocheckin_or_a_new_conversation_stops_a_checkin_already_in_a_batch(
    make_line: Callable[..., Hotline],
) -> None:
    """Between a run's claim and its send (up to its 20 s budget, longer if it stalls) a
    clinician may write NOCHECKIN, or text the line again: neither gets the check-in now (the
    second's waits with their request: if nobody takes it, it goes later)."""
    hotline, (declines, writes, waits), due = due_an_hour_after(make_line, 3)
    hotline.add_supporter("Alice", ALICE)
    batch = claim_batch(hotline, due)
    assert len(batch.targets) == 3
    with at(hotline, due):
        hotline.sms(declines, HOTLINE, "NOCHECKIN")
        hotline.sms(writes, HOTLINE, "Can we talk again?")
    outcomes = deliver_batch(hotline, batch, due)
    # None: NOCHECKIN had already cancelled it; the hand-over holds the next one back.
    assert outcomes == [None, CheckInState.SCHEDULED, CheckInState.SENT]
    checkin_texts = [m["to"] for m in hotline.fake.messages if m["body"] == DEFAULT_CHECKIN_TEXT]
    assert checkin_texts == [waits]
    assert states(hotline) == [CheckInState.CANCELLED, CheckInState.SCHEDULED, CheckInState.SENT]


def test_woken_before_its_minute_by_a_slow_clock_the_run_comes_back_on_time(
    make_line: Callable[..., Hotline],
) -> None:
    """Machines' clocks differ: the scheduler's may say the minute is over while this
    worker's says it is not quite. The run finds nothing due yet and asks to come back."""
    hotline, numbers, due = due_an_hour_after(make_line, 2)
    hotline.redis.flushdb()
    ident = drains.wake_up_for(due)[0]
    queue = make_queue(hotline.redis)
    # The scheduler has handed the minute's run over; this worker's clock says 2 s to go.
    queue.enqueue("workers.jobs.send_due_checkins", ident, job_id=f"send_due_checkins-{ident}")
    work(hotline, due - timedelta(seconds=2))
    assert hotline.fake.messages == []
    again = f"send_due_checkins-{ident}-again"  # the run's own id is its job's until it ends
    assert queue.scheduled_job_registry.get_job_ids() == [again]
    assert queue.scheduled_job_registry.get_scheduled_time(again) == due
    work(hotline, due)
    assert once_each(hotline, numbers)


def test_a_number_no_data_key_opens_fails_its_checkin_and_not_the_batch(
    make_line: Callable[..., Hotline],
) -> None:
    """A row whose number was sealed under a key since removed must not stop every later
    check-in (it would lead every batch, being the oldest due)."""
    hotline, numbers, due = due_an_hour_after(make_line, 3)
    retired = Vault((b"r" * 32,))  # a key this line no longer has
    with transaction(hotline.services.sessions) as session:
        first = session.scalars(select(Clinician).order_by(Clinician.id)).first()
        assert first is not None
        first.phone_sealed = retired.seal(numbers[0], CLINICIAN_CONTEXT)
    work(hotline, due)
    assert states(hotline) == [CheckInState.FAILED, CheckInState.SENT, CheckInState.SENT]
    assert once_each(hotline, numbers[1:])


def test_a_run_that_hands_back_a_short_batch_still_queues_a_run_to_carry_on(
    make_line: Callable[..., Hotline],
) -> None:
    """Twilio slow: the run's time is up partway through a batch of fewer than 50. What it
    hands back must not wait for the sweeper."""
    hotline, numbers, due = due_an_hour_after(make_line, 5)
    ident, report = out_of_time(hotline, due)
    assert report == checkins.DrainReport(claimed=5, sent=0)
    assert states(hotline) == [CheckInState.SCHEDULED] * 5
    carry_on = f"send_due_checkins-{ident + drains.CONTINUED}"
    assert make_queue(hotline.redis).get_job_ids() == [carry_on]
    work(hotline, due + timedelta(seconds=5))
    assert once_each(hotline, numbers)


def test_a_stalled_run_handing_back_leaves_a_newer_claim_of_the_same_rows_alone(
    make_line: Callable[..., Hotline],
) -> None:
    """Run A stalls past its lease; the rows go back and run B claims them. When A wakes and
    hands its batch back, B's claim must stand (else B's hand-over finds nothing and the rows
    wait another round)."""
    hotline, numbers, due = due_an_hour_after(make_line, 3)
    stalled = claim_batch(hotline, due)
    later = due + checkins.CLAIM_LEASE + timedelta(seconds=1)
    with transaction(hotline.services.sessions) as session:
        checkins.recover_stuck(session, later)
    fresh = claim_batch(hotline, later)
    ids = [t.checkin_id for t in stalled.targets]
    checkins._release(hotline.services, ids, stalled.claimed_at)
    assert states(hotline) == [CheckInState.CLAIMED] * 3
    assert deliver_batch(hotline, fresh, later) == [CheckInState.SENT] * 3
    assert once_each(hotline, numbers)


def test_the_database_failing_as_a_send_is_recorded_hands_the_rest_back_at_once(
    make_line: Callable[..., Hotline],
) -> None:
    """The database fails twice while recording that Twilio took the second text: first in
    the hand-over of the third row, then in the run's last attempt to record it. The rest of
    the batch must still go back at once (not wait out the claim's lease), the second row must
    stay in doubt and never be resent, and the next run sends the rest once each."""
    hotline, numbers, due = due_an_hour_after(make_line, 4)
    batch = claim_batch(hotline, due)
    failures = [2]

    def fail_recording_a_send(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        recording = statement.startswith("UPDATE checkins") and "provider_sid" in statement
        if recording and len(hotline.fake.messages) == 2 and failures[0]:
            failures[0] -= 1
            raise OperationalError(statement, None, Exception("server closed the connection"))

    engine = hotline.services.sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", fail_recording_a_send)
    try:
        with pytest.raises(OperationalError):
            deliver_batch(hotline, batch, due)
    finally:
        event.remove(engine, "before_cursor_execute", fail_recording_a_send)
    assert failures == [0]
    assert states(hotline) == [
        CheckInState.SENT,
        CheckInState.SENDING,  # Twilio took it; whether it was recorded is in doubt
        CheckInState.SCHEDULED,
        CheckInState.SCHEDULED,
    ]

    later = due + checkins.STUCK_AFTER + timedelta(seconds=1)
    sweep(hotline, later)
    work(hotline, later)
    assert states(hotline) == [
        CheckInState.SENT,
        CheckInState.UNKNOWN,
        CheckInState.SENT,
        CheckInState.SENT,
    ]
    assert once_each(hotline, numbers)


# --- the delivery window holds at send time --------------------------------------------------


def test_a_checkin_retried_past_the_window_waits_for_the_next_morning(
    make_line: Callable[..., Hotline],
) -> None:
    """Due 19:50, Twilio refuses it twice (retried 4, then 8 minutes on): the retry falls at
    20:02, after the window (09:00-20:00 New York): it waits for 09:00, not the next minute."""
    done_at = local(2026, 3, 2, 19, 50)
    hotline = line_with_alice(make_line, done_at)
    talk_then_done(hotline, Phones(hotline), done_at)
    assert utc(rows(hotline)[0].due_at) == utc(local(2026, 3, 3, 19, 50))
    hotline.fake.fail_for(CLINICIAN, status=503, code=None)
    work(hotline, utc(local(2026, 3, 3, 19, 50)))
    work(hotline, end_of_minute(rows(hotline)[0].due_at))  # 19:54, refused again
    retry = rows(hotline)[0]
    assert utc(retry.due_at) == utc(local(2026, 3, 3, 20, 2))
    hotline.fake.clear_faults()
    work(hotline, end_of_minute(retry.due_at))
    assert texts_to(hotline, CLINICIAN) == []
    waiting = rows(hotline)[0]
    assert waiting.state == CheckInState.SCHEDULED
    assert utc(waiting.due_at) == utc(local(2026, 3, 4, 9, 0))
    work(hotline, utc(local(2026, 3, 4, 9, 0)))  # the wake-up asked for that minute
    assert len(texts_to(hotline, CLINICIAN)) == 1
    sent = rows(hotline)[0]
    assert sent.state == CheckInState.SENT and sent.sent_at is not None
    assert sent.sent_at.astimezone(NY).hour == 9


def test_a_checkin_due_in_the_windows_last_minute_goes_that_evening(
    make_line: Callable[..., Hotline],
) -> None:
    """Due 19:59:30, inside the window (09:00-20:00 New York): its wake-up comes at the end of
    its minute, 20:00, when the window has just shut. It goes then, not 13 hours later."""
    done_at = local(2026, 3, 2, 19, 59) + timedelta(seconds=30)
    hotline = line_with_alice(make_line, done_at)
    talk_then_done(hotline, Phones(hotline), done_at)
    due = rows(hotline)[0].due_at
    assert utc(due) == utc(local(2026, 3, 3, 19, 59) + timedelta(seconds=30))
    work(hotline, end_of_minute(due))
    assert len(texts_to(hotline, CLINICIAN)) == 1
    assert rows(hotline)[0].state == CheckInState.SENT


def chicago_line(make_line: Callable[..., Hotline], done_at: datetime, **env: str) -> Hotline:
    return line_with_alice(make_line, done_at, HOTLINE_TIMEZONE="America/Chicago", **env)


def test_a_window_opening_in_the_spring_forward_gap_sends_once_as_the_clock_jumps(
    make_line: Callable[..., Hotline],
) -> None:
    """Chicago, window 02:30-06:00: on March 8 the clock goes from 01:59 to 03:00, so the
    window opens at 03:00. The check-in due at 01:00 goes then, once (it waited for 03:30,
    a reading past 02:30 taken as if the clock had not jumped)."""
    done_at = chicago(2026, 3, 7, 1, 0)
    hotline = chicago_line(
        make_line, done_at, HOTLINE_CHECKIN_HOURS="02:30-06:00", HOTLINE_CHECKIN_OFFSETS="1d"
    )
    talk_then_done(hotline, Phones(hotline), done_at)
    assert utc(rows(hotline)[0].due_at) == utc(chicago(2026, 3, 8, 3, 0))
    work(hotline, utc(chicago(2026, 3, 8, 1, 59)))
    assert texts_to(hotline, CLINICIAN) == []
    work(hotline, utc(chicago(2026, 3, 8, 3, 0)))
    assert len(texts_to(hotline, CLINICIAN)) == 1
    assert sweep(hotline, utc(chicago(2026, 3, 8, 5, 0))) == 0
    assert [(r.state, r.attempts) for r in rows(hotline)] == [(CheckInState.SENT, 1)]


def test_a_checkin_due_in_the_repeated_hour_before_its_window_waits_for_the_second_opening(
    make_line: Callable[..., Hotline],
) -> None:
    """Chicago, window 01:30-05:00, "2h" after a DONE at 00:10 on the night clocks go back:
    due at 01:10 on the clock's second pass, before the window by that clock. It goes at the
    second 01:30, once; it went at the first, 80 minutes after DONE, before it was due."""
    done_at = chicago(2026, 11, 1, 0, 10)
    hotline = chicago_line(
        make_line, done_at, HOTLINE_CHECKIN_HOURS="01:30-05:00", HOTLINE_CHECKIN_OFFSETS="2h"
    )
    talk_then_done(hotline, Phones(hotline), done_at)
    second = chicago(2026, 11, 1, 1, 30, fold=1)
    assert [utc(r.due_at) for r in rows(hotline)] == [utc(second)]
    work(hotline, utc(chicago(2026, 11, 1, 1, 30)))  # the first 01:30, an hour earlier
    assert texts_to(hotline, CLINICIAN) == []
    work(hotline, utc(second))
    assert len(texts_to(hotline, CLINICIAN)) == 1
    assert sweep(hotline, utc(chicago(2026, 11, 1, 4, 0))) == 0
    assert [(r.state, r.attempts) for r in rows(hotline)] == [(CheckInState.SENT, 1)]


def test_a_checkin_due_in_the_repeated_hour_goes_at_its_first_reading_and_only_then(
    make_line: Callable[..., Hotline],
) -> None:
    """Chicago, window 20:00-08:00, "1d" after a DONE at 01:30 the night before clocks go
    back: due at the first 01:30 (24 hours on the clock, 25 elapsed would be the second). It
    goes then; the clock reading 01:30 again an hour later sends nothing more."""
    done_at = chicago(2026, 10, 31, 1, 30)
    hotline = chicago_line(
        make_line, done_at, HOTLINE_CHECKIN_HOURS="20:00-08:00", HOTLINE_CHECKIN_OFFSETS="1d"
    )
    talk_then_done(hotline, Phones(hotline), done_at)
    first, second = chicago(2026, 11, 1, 1, 30), chicago(2026, 11, 1, 1, 30, fold=1)
    assert [utc(r.due_at) for r in rows(hotline)] == [utc(first)]
    work(hotline, utc(first))
    assert len(texts_to(hotline, CLINICIAN)) == 1
    work(hotline, utc(second))
    assert sweep(hotline, utc(second) + timedelta(minutes=1)) == 0
    assert [(r.state, r.attempts) for r in rows(hotline)] == [(CheckInState.SENT, 1)]


def test_a_checkin_overdue_after_an_outage_is_not_sent_at_night(
    make_line: Callable[..., Hotline],
) -> None:
    """The worker and Redis were down from before 19:50 until 02:30: the sweeper finds the
    check-in overdue at 02:30 and holds it until the window opens."""
    done_at = local(2026, 3, 2, 19, 50)
    hotline = line_with_alice(make_line, done_at)
    talk_then_done(hotline, Phones(hotline), done_at)
    hotline.redis.flushdb()  # the wake-ups went with the outage
    assert sweep(hotline, utc(local(2026, 3, 4, 2, 30))) == 0
    assert texts_to(hotline, CLINICIAN) == []
    assert utc(rows(hotline)[0].due_at) == utc(local(2026, 3, 4, 9, 0))
    assert sweep(hotline, utc(local(2026, 3, 4, 9, 1))) == 1
    assert len(texts_to(hotline, CLINICIAN)) == 1


def test_checkins_follow_a_time_zone_set_after_they_were_scheduled(
    make_line: Callable[..., Hotline],
) -> None:
    """Scheduled while the programme ran on UTC (09:00-20:00 UTC); the coordinator then sets
    New York: the 09:00 UTC check-in (04:00 there) waits for 09:00 New York."""
    from hotline.programme_settings import update_settings

    done_at = datetime(2026, 3, 2, 8, 30, tzinfo=UTC)
    hotline = line_with_alice(make_line, done_at, HOTLINE_TIMEZONE="UTC")
    talk_then_done(hotline, Phones(hotline), done_at)
    first = rows(hotline)[0]
    assert utc(first.due_at) == datetime(2026, 3, 3, 9, 0, tzinfo=UTC)  # 04:00 in New York
    with transaction(hotline.services.sessions) as session:
        programme = session.scalars(select(Programme)).one()
        changes = {"timezone": "America/New_York"}
        update_settings(
            session,
            hotline.services.vault,
            programme,
            changes,
            "c@x.org",
            done_at,
            "UTC",
            gate=None,  # no number changes
        )
    work(hotline, end_of_minute(first.due_at))
    assert texts_to(hotline, CLINICIAN) == []
    assert utc(rows(hotline)[0].due_at) == utc(local(2026, 3, 3, 9, 0))
    work(hotline, utc(local(2026, 3, 3, 9, 0)))
    assert len(texts_to(hotline, CLINICIAN)) == 1


def test_a_checkin_due_while_a_request_waits_waits_too_and_goes_if_nobody_takes_it(
    make_line: Callable[..., Hotline],
) -> None:
    """The 1-day check-in falls due while the clinician's new request waits with nobody on
    call: it waits too (a request nobody takes schedules no check-ins of its own), and goes
    once the request has closed unanswered."""
    hotline = make_line()
    hotline.clock.now = T0.astimezone(UTC)
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(alice, T0 - timedelta(hours=1), T0 + timedelta(hours=2))  # then nobody
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    first, second, _ = rows(hotline)
    clinician = phones.phone(CLINICIAN)

    with at(hotline, first.due_at - timedelta(minutes=30)):
        clinician.texts("Are you there? Bad night again.")  # queued: nobody on call
    clinician.expect_text("No peer", from_=HOTLINE)
    work(hotline, first.due_at + timedelta(seconds=30))
    assert rows(hotline)[0].state == CheckInState.SCHEDULED  # waits with the request

    closed_at = first.due_at + timedelta(hours=49)
    sweep(hotline, closed_at)  # the request closes, nobody took it
    clinician.expect_text("no peer could take your request", from_=HOTLINE)
    # In the next days, before the 7-day check-in, it goes: once.
    for day in range(1, 4):
        when = utc(local(2026, 3, 5 + day, 10))
        assert when < second.due_at
        work(hotline, when)
        sweep(hotline, when + timedelta(minutes=2))
    got = [m for m in hotline.fake.sent if m["to"] == CLINICIAN and CHECKIN_WORDS in m["body"]]
    assert len(got) == 1, "the check-in held back by a request nobody took never went"


def test_a_later_new_contact_is_not_counted_as_a_reply_to_an_older_checkin(
    make_line: Callable[..., Hotline],
) -> None:
    """Cadence 1d,3d: the clinician ignores the 1-day check-in, answers the 3-day one, talks,
    and writes again that afternoon: that is not a reply to the 1-day check-in."""
    hotline = make_line(HOTLINE_CHECKIN_OFFSETS="1d,3d")
    hotline.clock.now = T0.astimezone(UTC)
    hotline.add_supporter("Alice", ALICE)
    phones = Phones(hotline)
    talk_then_done(hotline, phones, T0)
    first, second = rows(hotline)
    clinician = phones.phone(CLINICIAN)
    for row in (first, second):
        work(hotline, row.due_at + timedelta(seconds=30))
        clinician.expect_text(CHECKIN_WORDS, from_=HOTLINE)

    talk_then_done(hotline, phones, second.due_at + timedelta(hours=1), checkin_reply=True)
    assert rows(hotline)[1].replied_at is not None
    assert rows(hotline)[0].replied_at is None

    talk_then_done(hotline, phones, second.due_at + timedelta(hours=5))  # a new contact
    replied = [r.sequence for r in rows(hotline)[:2] if r.replied_at is not None]
    assert replied == [2], f"check-ins counted as replied: {replied}"


def test_two_checkins_moved_to_the_same_opening_do_not_both_go(
    make_line: Callable[..., Hotline],
) -> None:
    """Cadence 2h,12h: a conversation ending at 19:00 puts both outside 09:00-20:00, so both
    would move to 09:00 the next morning: the clinician gets one text, not the same one twice."""
    done_at = local(2026, 3, 2, 19, 0)
    hotline = make_line(HOTLINE_CHECKIN_OFFSETS="2h,12h")
    hotline.clock.now = utc(done_at)
    hotline.add_supporter("Alice", ALICE)
    talk_then_done(hotline, Phones(hotline), done_at)
    assert [utc(r.due_at) for r in rows(hotline)] == [utc(local(2026, 3, 3, 9, 0))]
    work(hotline, utc(local(2026, 3, 3, 9, 0)))
    got = [m for m in texts_to(hotline, CLINICIAN) if CHECKIN_WORDS in str(m["body"])]
    assert len(got) == 1, f"{len(got)} identical check-ins sent at 09:00"


def test_a_cadence_written_out_of_order_schedules_every_checkin(
    make_line: Callable[..., Hotline],
) -> None:
    """HOTLINE_CHECKIN_OFFSETS=7d,1d,30d (or the same in the console): each check-in was
    compared with the one scheduled before it, so after 7d the earlier 1d was taken for a
    duplicate and silently dropped. They go out in time order, numbered in that order."""
    done_at = local(2026, 3, 2, 15, 0)
    hotline = make_line(HOTLINE_CHECKIN_OFFSETS="7d, 1d,30d")
    hotline.clock.now = utc(done_at)
    hotline.add_supporter("Alice", ALICE)
    talk_then_done(hotline, Phones(hotline), done_at)
    assert [(r.sequence, utc(r.due_at)) for r in rows(hotline)] == [
        (1, utc(local(2026, 3, 3, 15, 0))),
        (2, utc(local(2026, 3, 9, 15, 0))),
        (3, utc(local(2026, 4, 1, 15, 0))),
    ]


def test_a_programme_that_sends_no_checkins_schedules_none_and_promises_none(
    hotline: Hotline, phones: Phones
) -> None:
    """A programme whose peers follow up by phone themselves sets its cadence to ``none`` in
    the console: a conversation's end schedules no check-in, the peer's DONE is not told that
    check-ins will follow, and the settings page shows the cadence as none."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme_settings.update_settings(
            session,
            hotline.services.vault,
            programme,
            {"checkin_offsets": "None"},
            "coordinator@example.org",
            hotline.clock.now,
            "UTC",
            gate=None,
        )
    hotline.add_supporter("Alice", ALICE)
    closed = talk_then_done(hotline, phones, hotline.clock.now)
    assert rows(hotline) == []
    assert closed == "Conversation closed. Thank you."
    with hotline.session() as session:
        p = config_of(session.get_one(Programme, hotline.programme_id), hotline.services.settings)
    assert programme_settings.effective(p)["checkin_offsets"] == "none"


def test_a_checkin_in_flight_as_its_programme_retires_is_not_retried_from_the_closed_line(
    make_line: Callable[..., Hotline],
) -> None:
    """`hotline programme retire` cancels the check-ins not yet handed to Twilio. One being
    handed over at that very moment, which Twilio does not take (a 503), was retried minutes
    later from a line that now answers every text that it has closed: it is not sent again."""
    hotline, (clinician,), due = due_an_hour_after(make_line, 1)
    real = hotline.services.telephony
    use_telephony(hotline, RetiredMidSend(hotline, real))
    work(hotline, due + timedelta(seconds=30))
    assert states(hotline) == [CheckInState.SCHEDULED]  # to be retried, as in any outage
    use_telephony(hotline, real)
    work(hotline, due + timedelta(minutes=10))
    assert texts_to(hotline, clinician) == []
    assert states(hotline) == [CheckInState.CANCELLED]
