"""iCalendar feeds: a supporter's own periods, the programme's schedule, valid iCalendar."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from hotline import feeds, rota
from hotline.db import transaction
from hotline.models import Programme, Supporter
from tests.console.conftest import ACTOR, add_verified
from tests.kit.harness import Hotline

ALICE, BOB = "+15550108001", "+15550108002"


def test_feeds_list_on_call_periods_and_only_the_supporters_own(hotline: Hotline) -> None:
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    now = hotline.clock.now
    with transaction(hotline.services.sessions) as session:
        rota.add_shift(
            session, hotline.programme_id, alice, now, now + timedelta(hours=8), ACTOR, now
        )
        rota.add_shift(
            session,
            hotline.programme_id,
            bob,
            now + timedelta(days=1),
            now + timedelta(days=2),
            ACTOR,
            now,
        )
        token = feeds.programme_token(session, hotline.programme_id)
        assert feeds.programme_token(session, hotline.programme_id) == token
    with hotline.session() as session:
        supporter = session.get_one(Supporter, alice)
        assert supporter.calendar_token and feeds.supporter_by_token(
            session, supporter.calendar_token
        )
        assert feeds.supporter_by_token(session, "short") is None
        own = Calendar.from_ical(feeds.supporter_feed(session, supporter, "Peer support", now))
        programme = feeds.programme_by_token(session, token)
        assert isinstance(programme, Programme)
        everyone = Calendar.from_ical(feeds.programme_feed(session, programme, now))
    own_events = own.walk("VEVENT")
    assert [(e.decoded("dtstart"), e.decoded("dtend")) for e in own_events] == [
        (now, now + timedelta(hours=8))
    ]
    assert sorted(str(e["summary"]) for e in everyone.walk("VEVENT")) == [
        "On call: Alice",
        "On call: Bob",
    ]
    assert ALICE not in everyone.to_ical().decode() and ALICE not in own.to_ical().decode()


def test_a_period_under_way_keeps_its_start_and_uid_from_one_fetch_to_the_next(
    hotline: Hotline,
) -> None:
    """A calendar polls the feed: a period that began before the feed's two weeks back is the
    same event each time, with its real start, and one over before then is not listed."""
    alice = add_verified(hotline, "Alice", ALICE)
    now = hotline.clock.now
    long_ago, under_way = now - timedelta(days=40), now - timedelta(days=20)
    with transaction(hotline.services.sessions) as session:
        for begins, ends in ((long_ago, long_ago + timedelta(days=5)), (under_way, now)):
            rota.add_shift(session, hotline.programme_id, alice, begins, ends, ACTOR, begins)

    def fetch(at: timedelta) -> list[tuple[str, object, object]]:
        with hotline.session() as session:
            supporter = session.get_one(Supporter, alice)
            own = Calendar.from_ical(feeds.supporter_feed(session, supporter, "Peer", now + at))
            token = feeds.programme_token(session, hotline.programme_id)
            programme = feeds.programme_by_token(session, token)
            assert programme is not None
            everyone = Calendar.from_ical(feeds.programme_feed(session, programme, now + at))
        found = [
            (str(e["uid"]), e.decoded("dtstart"), e.decoded("dtend"))
            for e in [*own.walk("VEVENT"), *everyone.walk("VEVENT")]
        ]
        return found

    first = fetch(timedelta(0))
    assert [(start, end) for _, start, end in first] == [(under_way, now)] * 2
    assert fetch(timedelta(minutes=30)) == first
    assert fetch(timedelta(days=1)) == first


def test_a_feed_that_fails_mid_request_keeps_its_secret_out_of_the_error_log(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """A calendar app polls the feed while the database restarts: Flask logs the failure with
    the request's path, which for a feed is its secret."""
    alice = add_verified(hotline, "Alice", ALICE)
    with hotline.session() as session:
        token = session.get_one(Supporter, alice).calendar_token
    engine = hotline.services.sessions.kw["bind"]

    def database_gone(*_args: Any) -> None:
        raise OperationalError("SELECT", None, Exception("server closed the connection"))

    event.listen(engine, "before_cursor_execute", database_gone)
    try:
        with caplog.at_level("ERROR"):
            response = hotline.client.get(f"/calendar/supporter/{token}.ics")
    finally:
        event.remove(engine, "before_cursor_execute", database_gone)
    assert response.status_code == 500
    assert "Exception on /calendar/supporter/[secret].ics [GET]" in caplog.text
    assert token and token not in caplog.text
