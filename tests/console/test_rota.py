"""Schedule changes in the database and who is on call as routing asks it, on both tiers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update

from hotline import roster, rota, rotation, schedule
from hotline.db import transaction
from hotline.models import AuditEntry, Programme, Rotation, Supporter
from tests.console.conftest import ACTOR, add_verified
from tests.kit.harness import Hotline

ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
MONDAY_9_NY = datetime(2026, 3, 2, 14, tzinfo=UTC)  # Monday 2 March 2026, 09:00 New York


def ny_programme(hotline: Hotline) -> None:
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).timezone = "America/New_York"


def add_rotation(hotline: Hotline, members: list[int], **fields: object) -> int:
    with transaction(hotline.services.sessions) as session:
        row = rotation.add_rotation(
            session,
            hotline.programme_id,
            "America/New_York",
            {
                "name": "Weekly",
                "handoff_weekday": "monday",
                "handoff_time": "09:00",
                "anchor_date": "2026-03-01",
                "supporter_ids": members,
                **fields,
            },
            ACTOR,
            hotline.clock.now,
        )
        return row.id


def on_call(hotline: Hotline, at: datetime) -> set[int]:
    with hotline.session() as session:
        return schedule.on_call(session, hotline.programme_id, at)


def test_rotation_turns_hand_off_at_9_local_across_dst(hotline: Hotline) -> None:
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    add_rotation(hotline, [alice, bob])
    assert on_call(hotline, MONDAY_9_NY - timedelta(minutes=1)) == set()
    assert on_call(hotline, MONDAY_9_NY) == {alice}
    daylight_handoff = datetime(2026, 3, 9, 13, tzinfo=UTC)  # 09:00 EDT
    assert on_call(hotline, daylight_handoff - timedelta(seconds=1)) == {alice}
    assert on_call(hotline, daylight_handoff) == {bob}
    assert on_call(hotline, daylight_handoff + timedelta(weeks=1)) == {alice}


def test_an_override_changes_the_answer_and_routing_sees_it(hotline: Hotline) -> None:
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    add_rotation(hotline, [alice])
    at = MONDAY_9_NY + timedelta(days=2)
    with transaction(hotline.services.sessions) as session:
        rota.add_override(
            session, hotline.programme_id, bob, alice, at, at + timedelta(hours=4), ACTOR, at
        )
    assert on_call(hotline, at - timedelta(seconds=1)) == {alice}
    assert on_call(hotline, at + timedelta(hours=1)) == {bob}
    assert on_call(hotline, at + timedelta(hours=4)) == {alice}


def test_shifts_rotations_and_overrides_add_up_in_the_timeline(hotline: Hotline) -> None:
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    carol = add_verified(hotline, "Carol", CAROL)
    start = MONDAY_9_NY
    with transaction(hotline.services.sessions) as session:
        rota.add_shift(
            session, hotline.programme_id, alice, start, start + timedelta(hours=8), ACTOR, start
        )
        rota.add_shift(
            session,
            hotline.programme_id,
            bob,
            start + timedelta(hours=10),
            start + timedelta(hours=12),
            ACTOR,
            start,
        )
        rota.add_override(
            session,
            hotline.programme_id,
            carol,
            None,
            start + timedelta(hours=7),
            start + timedelta(hours=9),
            ACTOR,
            start,
        )
    with hotline.session() as session:
        gaps = schedule.coverage_gaps(
            session, hotline.programme_id, start, start + timedelta(hours=12)
        )
        load = schedule.load(session, hotline.programme_id, start, start + timedelta(hours=12))
        next_on = schedule.next_coverage(session, hotline.programme_id, start + timedelta(hours=9))
    assert [(g.starts_at - start, g.ends_at - start) for g in gaps] == [
        (timedelta(hours=9), timedelta(hours=10))
    ]
    assert load == {alice: timedelta(hours=8), bob: timedelta(hours=2), carol: timedelta(hours=2)}
    assert next_on == start + timedelta(hours=10)


def test_next_coverage_is_none_when_nothing_is_scheduled(hotline: Hotline) -> None:
    with hotline.session() as session:
        assert schedule.next_coverage(session, hotline.programme_id, MONDAY_9_NY) is None


def test_unverified_or_inactive_supporters_cannot_be_scheduled(hotline: Hotline) -> None:
    alice = add_verified(hotline, "Alice", ALICE)
    services = hotline.services
    with transaction(services.sessions) as session:
        bob = roster.add(
            session,
            services.vault,
            hotline.programme_id,
            roster.SupporterInput("Bob", BOB),
            ACTOR,
            MONDAY_9_NY,
        ).supporter.id
        roster.deactivate(
            session, services.vault, session.get_one(Supporter, alice), ACTOR, MONDAY_9_NY
        )
    for who, reason in ((bob, "not verified"), (alice, "not active"), (9999, "no supporter")):
        with pytest.raises(rota.RotaError, match=reason), transaction(services.sessions) as session:
            rota.add_shift(
                session,
                hotline.programme_id,
                who,
                MONDAY_9_NY,
                MONDAY_9_NY + timedelta(hours=1),
                ACTOR,
                MONDAY_9_NY,
            )


def test_a_changed_number_takes_the_supporter_off_call_until_verified(hotline: Hotline) -> None:
    alice = add_verified(hotline, "Alice", ALICE)
    add_rotation(hotline, [alice])
    at = MONDAY_9_NY + timedelta(hours=1)
    assert on_call(hotline, at) == {alice}
    services = hotline.services
    with transaction(services.sessions) as session:
        roster.edit(
            session, services.vault, session.get_one(Supporter, alice), {"phone": BOB}, ACTOR, at
        )
    assert on_call(hotline, at) == set()


BAD_PERIODS = [
    ("2026-03-02T09:00:00", "2026-03-02T10:00:00-05:00", "offset"),
    ("2026-03-02T09:00:00-05:00", "2026-03-02T08:00:00-05:00", "after the start"),
    ("2026-03-02T09:00:00-05:00", "2026-09-02T09:00:00-05:00", "at most 92 days"),
    ("yesterday", "2026-03-02T10:00:00-05:00", "ISO 8601"),
    ("9999-03-02T09:00:00+00:00", "9999-03-03T09:00:00+00:00", "2000 and 2099"),
    ("2026-03-02T09:00:00+25:00", "2026-03-02T10:00:00+00:00", "ISO 8601"),
]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("starts", "ends", "message"), BAD_PERIODS)
def test_bad_periods_are_refused(hotline: Hotline, starts: str, ends: str, message: str) -> None:
    alice = add_verified(hotline, "Alice", ALICE)
    with (
        pytest.raises(rota.RotaError, match=message),
        transaction(hotline.services.sessions) as session,
    ):
        rota.add_shift(session, hotline.programme_id, alice, starts, ends, ACTOR, MONDAY_9_NY)


BAD_ROTATIONS = [
    ({"handoff_weekday": "funday"}, "weekday"),
    ({"handoff_weekday": 7}, "weekday"),
    ({"handoff_time": "25:00"}, "local time"),
    ({"handoff_time": "09:00+02:00"}, "no offset"),
    ({"anchor_date": "2026-02-30"}, "not a date"),
    ({"name": " "}, "name"),
    ({"supporter_ids": []}, "turn order"),
    ({"supporter_ids": "1,2"}, "turn order"),
    ({"supporter_ids": [1.5]}, "whole numbers"),
    ({"colour": "red"}, "unknown field"),
]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("fields", "message"), BAD_ROTATIONS)
def test_bad_rotations_are_refused(
    hotline: Hotline, fields: dict[str, object], message: str
) -> None:
    alice = add_verified(hotline, "Alice", ALICE)
    with pytest.raises(rota.RotaError, match=message):
        add_rotation(hotline, [alice], **fields)


def test_editing_a_rotation_reorders_it_and_is_audited(hotline: Hotline) -> None:
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    rotation_id = add_rotation(hotline, [alice, bob])
    with transaction(hotline.services.sessions) as session:
        row = session.get_one(rotation.Rotation, rotation_id)
        rotation.edit_rotation(
            session,
            row,
            {"supporter_ids": [bob, alice], "anchor_date": date(2026, 3, 1)},
            ACTOR,
            MONDAY_9_NY,
        )
    assert on_call(hotline, MONDAY_9_NY) == {bob}
    with hotline.session() as session:
        actions = [e.action for e in session.query(AuditEntry).order_by(AuditEntry.id)]
    assert actions[-2:] == ["rotation.add", "rotation.edit"]


def _cli(hotline: Hotline, *args: str, **env: str) -> str:
    from click.testing import CliRunner

    from hotline.cli import main
    from tests.kit.harness import test_env as environment_for

    runner = CliRunner(env={**environment_for(hotline.settings.database_url, hotline.fake), **env})
    result = runner.invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _rotation_zone(hotline: Hotline) -> str:
    with hotline.session() as session:
        (zone,) = session.scalars(select(Rotation.timezone)).all()
        return zone


@pytest.mark.sqlite_only
def test_rotations_follow_a_time_zone_set_outside_the_settings_page(hotline: Hotline) -> None:
    """``hotline programme add`` (which also updates) and a changed HOTLINE_TIMEZONE at the
    next ``hotline db upgrade`` (the release step) move the hand-offs to the new wall clock,
    as the settings page does: the console shows "Mondays 09:00" in the programme's zone."""
    from tests.kit.harness import HOTLINE, POOL

    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    add_rotation(hotline, [alice, bob])
    with transaction(hotline.services.sessions) as session:
        session.execute(update(Rotation).values(timezone="UTC"))  # made while on UTC
    monday_9_in_new_york = datetime(2026, 3, 9, 13, tzinfo=UTC)  # daylight time from 8 March
    _cli(
        hotline,
        *("programme", "add", "default", "--name", "Peer support", "--number", HOTLINE),
        *("--pool", ",".join(POOL), "--timezone", "America/New_York"),
    )
    assert _rotation_zone(hotline) == "America/New_York"
    assert on_call(hotline, monday_9_in_new_york - timedelta(minutes=1)) == {alice}
    assert on_call(hotline, monday_9_in_new_york) == {bob}
    with transaction(hotline.services.sessions) as session:  # back to the deployment's zone
        session.get_one(Programme, hotline.programme_id).timezone = None
    _cli(hotline, "db", "upgrade", HOTLINE_TIMEZONE="America/Chicago")
    assert _rotation_zone(hotline) == "America/Chicago"
    refused = _cli_error(
        hotline,
        "programme",
        "add",
        "x",
        "--name",
        "X",
        "--number",
        "+15550200000",
        "--timezone",
        "Mars/Olympus",
    )
    assert "not an IANA time zone" in refused


def _cli_error(hotline: Hotline, *args: str) -> str:
    from click.testing import CliRunner

    from hotline.cli import main
    from tests.kit.harness import test_env as environment_for

    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    result = runner.invoke(main, list(args))
    assert result.exit_code != 0
    return result.output
