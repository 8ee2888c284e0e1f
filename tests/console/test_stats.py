"""Reports: aggregates only, small counts not broken down, whole weeks from Monday 00:00 UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from hotline import accounts, stats
from hotline.db import transaction
from hotline.models import (
    Channel,
    CheckIn,
    CheckInState,
    Clinician,
    Conversation,
    ConversationState,
)
from tests.console.conftest import answered
from tests.kit.harness import Hotline
from tests.kit.phones import Phones

START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        ({"sms": 12, "voice": 7}, {"sms": 12, "voice": 7}),
        ({"sms": 12, "voice": 0}, {"sms": 12, "voice": 0}),
        ({"sms": 12, "voice": 3}, {"sms": None, "voice": None}),  # 3 would single people out
        ({"sms": 1, "voice": 0}, {"sms": None, "voice": None}),
        ({"sms": 0, "voice": 0}, {"sms": 0, "voice": 0}),
    ],
)
def test_small_counts_hide_the_whole_breakdown(
    cells: dict[str, int], expected: dict[str, int | None]
) -> None:
    assert stats.suppress(cells) == expected


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [([1.0], 90, 1.0), ([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, 9), ([5, 1, 3], 50, 3)],
)
def test_percentile_is_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert stats.percentile(values, q) == expected


def test_weeks_are_utc_mondays_and_empty_weeks_are_listed() -> None:
    last_minute = datetime(2026, 3, 8, 23, 59, tzinfo=UTC)  # Sunday: still the week of 2 Mar
    rows = [(last_minute, "sms")] * 5 + [(START + timedelta(days=14), "voice")]  # 16 Mar 00:00
    found = stats.weeks(rows, START, datetime(2026, 3, 23, tzinfo=UTC))
    assert [(w.week_start, w.total, w.by_channel) for w in found] == [
        (date(2026, 3, 2), 5, {"sms": 5, "voice": 0}),
        (date(2026, 3, 9), 0, {"sms": 0, "voice": 0}),
        (date(2026, 3, 16), 1, {"sms": None, "voice": None}),
    ]


def test_report_counts_contacts_responses_fallbacks_and_checkins(hotline: Hotline) -> None:
    with transaction(hotline.services.sessions) as session:
        clinician = Clinician(programme_id=hotline.programme_id, checkins_declined=True)
        session.add(clinician)
        session.flush()
        for minutes in range(1, 11):  # ten texts answered after 1..10 minutes
            created = START + timedelta(hours=minutes)
            session.add(
                Conversation(
                    programme_id=hotline.programme_id,
                    clinician_id=clinician.id,
                    channel=Channel.SMS,
                    state=ConversationState.ENDED,
                    created_at=created,
                    accepted_at=created + timedelta(minutes=minutes),
                )
            )
        fallback = Conversation(
            programme_id=hotline.programme_id,
            channel=Channel.VOICE,
            state=ConversationState.ENDED,  # nobody took it: closed unanswered
            created_at=START + timedelta(days=1),
            fallback_at=START + timedelta(days=1),
        )
        session.add(fallback)
        session.flush()
        session.add(
            CheckIn(
                programme_id=hotline.programme_id,
                conversation_id=fallback.id,
                clinician_id=clinician.id,
                sequence=1,
                due_at=START + timedelta(days=2),
                state=CheckInState.SENT,
                sent_at=START + timedelta(days=2),
                replied_at=START + timedelta(days=2, hours=1),
            )
        )
    with hotline.session() as session:
        week = START + timedelta(days=7)
        report = stats.report(session, hotline.programme_id, START, week, now=week)
    assert (report.contacts, report.answered, report.fallbacks) == (11, 10, 1)
    assert report.response_median_s == 330  # 5.5 minutes
    assert report.response_p90_s == 540
    assert (report.checkins_sent, report.checkins_replied, report.checkins_opted_out) == (1, 1, 1)
    assert report.weeks[0].by_channel == {"sms": None, "voice": None}  # one call: hidden
    csv_text = "\n".join(",".join(row) for row in stats.csv_rows(report))
    assert "<5" in csv_text and "+1" not in csv_text


def test_a_window_cut_to_one_contact_reports_its_whole_week(hotline: Hotline) -> None:
    """A coordinator who knows who was on shift must not isolate one call (and that nobody
    took it) by asking for the second it came in, nor read one supporter's response times."""
    call_at = START + timedelta(days=2, hours=8, minutes=12)  # Wednesday 08:12
    with transaction(hotline.services.sessions) as session:
        for hours in range(1, 7):
            created = START + timedelta(hours=hours)
            session.add(answered(hotline.programme_id, created, timedelta(minutes=hours)))
        session.add(
            Conversation(
                programme_id=hotline.programme_id,
                channel=Channel.VOICE,
                created_at=call_at,
                fallback_at=call_at,
            )
        )
    monday = START + timedelta(days=7)
    with hotline.session() as session:
        week = stats.report(session, hotline.programme_id, START, monday, monday)
        cut = stats.report(
            session, hotline.programme_id, call_at, call_at + timedelta(seconds=1), monday
        )
    assert (cut.start, cut.end) == (week.start, week.end) == (START, monday)
    assert (cut.contacts, cut.fallbacks, cut.answered) == (week.contacts, 1, 6) == (7, 1, 6)
    assert cut.weeks == week.weeks


def test_response_times_need_five_answered_conversations(hotline: Hotline) -> None:
    with hotline.session() as session:
        week = START + timedelta(days=7)
        report = stats.report(session, hotline.programme_id, START, week, now=week)
    assert report.response_median_s is None and report.response_p90_s is None


def test_two_reports_cannot_be_subtracted_down_to_one_response_time(hotline: Hotline) -> None:
    """Five answered conversations one week, one the next: the report of both weeks must not
    differ from the first week's by that one conversation's response time (the slowest, it
    would be the 90th percentile), which is one supporter's, on one known day."""
    hotline.clock.now = START + timedelta(weeks=2, hours=9)  # both weeks have ended
    with transaction(hotline.services.sessions) as session:
        for n, minutes in enumerate([1, 2, 3, 4, 5, 60]):
            created = START + timedelta(days=7 if minutes == 60 else 0, hours=n)
            session.add(answered(hotline.programme_id, created, timedelta(minutes=minutes)))
        token = accounts.create_api_token(session, "reports", hotline.programme_id)

    def report(weeks: int) -> dict[str, Any]:
        to = (START + timedelta(weeks=weeks)).isoformat().replace("+", "%2B")
        answer = hotline.client.get(
            f"/api/v1/stats?from={START.isoformat().replace('+', '%2B')}&to={to}",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert answer.status_code == 200
        found: dict[str, Any] = answer.get_json()
        return found

    one, two = report(1), report(2)
    assert one["first_response_seconds"] == {"median": 180, "p90": 300}
    assert two["answered"] == 6  # counted, as contacts are
    assert two["first_response_seconds"] == one["first_response_seconds"]


def test_the_running_week_cannot_be_read_twice_down_to_one_response_time(
    hotline: Hotline,
) -> None:
    """Read on Wednesday and again on Thursday, the running week's figures would differ by
    Thursday's one conversation (and read before and after Sunday night's request is taken,
    by that one): response times cover only weeks that have ended with nobody waiting."""
    hotline.clock.now = START + timedelta(days=2)  # Wednesday
    with transaction(hotline.services.sessions) as session:
        token = accounts.create_api_token(session, "reports", hotline.programme_id)

    def answered_in(minutes: int) -> None:
        with transaction(hotline.services.sessions) as session:
            created = hotline.clock.now - timedelta(hours=2)
            session.add(answered(hotline.programme_id, created, timedelta(minutes=minutes)))

    def timing() -> Any:
        answer = hotline.client.get("/api/v1/stats", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 200
        return answer.get_json()["first_response_seconds"]

    for minutes in (1, 2, 3, 4, 5):
        answered_in(minutes)
    assert timing() == {"median": None, "p90": None}  # Wednesday: the week runs on
    hotline.clock.advance(days=1)
    answered_in(60)
    assert timing() == {"median": None, "p90": None}  # Thursday: nothing to subtract
    hotline.clock.now = START + timedelta(days=6, hours=23)  # Sunday 23:00: a late text
    with transaction(hotline.services.sessions) as session:
        late = Conversation(
            programme_id=hotline.programme_id,
            channel=Channel.SMS,
            state=ConversationState.QUEUED,
            created_at=hotline.clock.now,
        )
        session.add(late)
    hotline.clock.now = START + timedelta(days=7, hours=1)  # Monday: ended, one still waits
    assert timing() == {"median": None, "p90": None}
    with transaction(hotline.services.sessions) as session:
        taken = session.get_one(Conversation, late.id)
        taken.state, taken.accepted_at = (
            ConversationState.ACTIVE,
            START + timedelta(days=7, hours=8),
        )
    assert timing() == {"median": 240, "p90": 9 * 3600}  # the week is whole: it counts


def test_a_stop_after_a_checkin_stays_counted_once_the_number_is_purged(
    hotline: Hotline, phones: Phones
) -> None:
    """A clinician answers the 1-day check-in with STOP. The week's report counts the opt-out;
    read again after the retention purge has erased their number (and the opt-out row with
    it), the same week must say the same, not lose every STOP older than a month."""
    hotline.add_supporter("Alice", "+15550108001")
    clinician, alice = phones.talking("+15550109001", "+15550108001")
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    hotline.clock.advance(days=1, minutes=1)
    hotline.sweep()
    clinician.expect_text("how are you doing")
    clinician.texts("STOP")

    def opted_out() -> int:
        with hotline.session() as session:
            day = START + timedelta(days=1)
            week = stats.report(session, hotline.programme_id, START, day, hotline.clock.now)
        assert week.checkins_sent == 1
        return week.checkins_opted_out

    assert opted_out() == 1
    hotline.clock.advance(days=40)
    assert hotline.sweep().clinicians_purged == 1
    assert opted_out() == 1, "the purge took a STOP out of a past week's report"
    phones.assert_no_unexpected()
