"""The schedule's pure core: rotation turns across DST, layering, segments, gaps and load."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from hotline.schedule import (
    Cover,
    Layers,
    RotationPlan,
    Segment,
    Span,
    gaps_of,
    load_of,
    local_instant,
    segments,
    spans_of,
)

NY = ZoneInfo("America/New_York")
LONDON = ZoneInfo("Europe/London")
A, B, C = 1, 2, 3


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


LOCAL_INSTANTS = [
    # (zone, local day, wall time, expected UTC instant, why)
    (NY, date(2026, 3, 2), time(9), utc(2026, 3, 2, 14), "standard time: UTC-5"),
    (NY, date(2026, 3, 9), time(9), utc(2026, 3, 9, 13), "daylight time: UTC-4"),
    (NY, date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 7, 30), "in the gap: after it"),
    (NY, date(2026, 11, 1), time(1, 30), utc(2026, 11, 1, 5, 30), "repeated: the first"),
    (LONDON, date(2026, 3, 29), time(1, 30), utc(2026, 3, 29, 1, 30), "London gap"),
    (LONDON, date(2026, 10, 25), time(1, 30), utc(2026, 10, 25, 0, 30), "London repeat"),
    (ZoneInfo("UTC"), date(2026, 3, 8), time(2, 30), utc(2026, 3, 8, 2, 30), "UTC"),
]


@pytest.mark.parametrize(("zone", "day", "wall", "expected", "why"), LOCAL_INSTANTS)
def test_local_instant(zone: ZoneInfo, day: date, wall: time, expected: datetime, why: str) -> None:
    assert local_instant(day, wall, zone) == expected, why


def weekly(zone: ZoneInfo = NY, weekday: int = 0, at: time = time(9), **kw: object) -> RotationPlan:
    members = kw.get("members", (A, B, C))
    anchor = kw.get("anchor", date(2026, 3, 1))
    return RotationPlan(zone, weekday, at, anchor, members)  # type: ignore[arg-type]


def test_turns_start_at_the_first_handoff_on_or_after_the_anchor() -> None:
    plan = weekly(anchor=date(2026, 2, 25))  # a Wednesday: first Monday hand-off is Mar 2
    turns = list(plan.turns(utc(2026, 2, 1), utc(2026, 3, 23)))
    assert [t.supporter_id for t in turns] == [A, B, C]
    assert turns[0].starts_at == utc(2026, 3, 2, 14)


def test_a_turn_across_spring_forward_is_167_hours_and_hands_off_at_9_local() -> None:
    turns = list(weekly().turns(utc(2026, 3, 2, 14), utc(2026, 3, 16, 13)))
    assert [(t.starts_at, t.ends_at, t.supporter_id) for t in turns] == [
        (utc(2026, 3, 2, 14), utc(2026, 3, 9, 13), A),
        (utc(2026, 3, 9, 13), utc(2026, 3, 16, 13), B),
    ]
    assert turns[0].ends_at - turns[0].starts_at == timedelta(hours=167)
    assert all(t.starts_at.astimezone(NY).hour == 9 for t in turns)


def test_a_turn_across_fall_back_is_169_hours() -> None:
    turns = list(weekly().turns(utc(2026, 10, 27), utc(2026, 11, 3)))
    across = next(t for t in turns if t.starts_at < utc(2026, 11, 1) < t.ends_at)
    assert across.ends_at - across.starts_at == timedelta(hours=169)


def test_a_handoff_in_the_spring_gap_happens_after_it() -> None:
    plan = weekly(weekday=6, at=time(2, 30))  # Sundays 02:30, which 8 March 2026 skips
    turns = list(plan.turns(utc(2026, 3, 7), utc(2026, 3, 9)))
    assert utc(2026, 3, 8, 7, 30) in [t.starts_at for t in turns]  # 03:30 EDT


def test_the_order_repeats_and_a_window_far_ahead_lands_on_the_right_member() -> None:
    plan = weekly()
    weeks_later = utc(2026, 3, 2, 14) + timedelta(weeks=100)
    (turn,) = list(plan.turns(weeks_later + timedelta(hours=1), weeks_later + timedelta(hours=2)))
    assert turn.supporter_id == (A, B, C)[100 % 3]
    assert turn.starts_at.astimezone(NY).time() == time(9)


def test_an_empty_rotation_has_no_turns() -> None:
    assert list(weekly(members=()).turns(utc(2026, 3, 1), utc(2026, 4, 1))) == []


T0 = utc(2026, 3, 2, 12)


def hours(n: float) -> datetime:
    return T0 + timedelta(hours=n)


LAYERING = [
    # (spans, covers, excluded, instant (hours after T0), expected on call, why)
    ([Span(hours(0), hours(8), A)], [], set(), 1, {A}, "a shift"),
    ([Span(hours(0), hours(8), A)], [], set(), 8, set(), "the end is exclusive"),
    ([Span(hours(0), hours(8), A)], [], set(), 0, {A}, "the start is inclusive"),
    ([Span(hours(0), hours(8), A)], [Cover(hours(2), hours(4), B, A)], set(), 3, {B}, "B covers A"),
    ([Span(hours(0), hours(8), A)], [Cover(hours(2), hours(4), B, A)], set(), 4, {A}, "A is back"),
    ([Span(hours(0), hours(8), A)], [Cover(hours(2), hours(4), B)], set(), 3, {A, B}, "B added"),
    ([Span(hours(0), hours(8), A)], [Cover(hours(2), hours(4), B, C)], set(), 3, {A, B}, "C off"),
    ([], [Cover(hours(2), hours(4), B, A)], set(), 3, {B}, "cover with nobody scheduled"),
    ([Span(hours(0), hours(8), A), Span(hours(0), hours(8), B)], [], {B}, 1, {A}, "B excluded"),
    ([], [Cover(hours(0), hours(4), B)], {B}, 1, set(), "an excluded cover is off too"),
    # Overrides apply in the order they were made: the later one wins.
    (
        [Span(hours(0), hours(8), A)],
        [Cover(hours(0), hours(8), B, A), Cover(hours(2), hours(4), C, B)],
        set(),
        3,
        {C},
        "C covers B, who covers A: B is off call too",
    ),
    (
        [Span(hours(0), hours(8), A)],
        [Cover(hours(0), hours(8), B, A), Cover(hours(2), hours(4), C, B)],
        set(),
        5,
        {B},
        "and back to B when C's cover ends",
    ),
    (
        [Span(hours(0), hours(8), A)],
        [Cover(hours(0), hours(8), B, A), Cover(hours(2), hours(4), A)],
        set(),
        3,
        {A, B},
        "a later override puts A back beside B",
    ),
]


@pytest.mark.parametrize(("spans", "covers", "excluded", "at", "expected", "why"), LAYERING)
def test_layering(
    spans: list[Span],
    covers: list[Cover],
    excluded: set[int],
    at: float,
    expected: set[int],
    why: str,
) -> None:
    layers = Layers(tuple(spans), tuple(covers), frozenset(excluded))
    assert layers.at(hours(at)) == expected, why


def test_segments_cut_where_the_answer_changes_and_merge_equal_neighbours() -> None:
    layers = Layers(
        spans=(
            Span(hours(0), hours(4), A),
            Span(hours(4), hours(8), A),
            Span(hours(6), hours(10), B),
        ),
        covers=(Cover(hours(1), hours(2), C, A),),
    )
    found = segments(layers, hours(-2), hours(12))
    assert found == [
        Segment(hours(-2), hours(0), frozenset()),
        Segment(hours(0), hours(1), frozenset({A})),
        Segment(hours(1), hours(2), frozenset({C})),
        Segment(hours(2), hours(6), frozenset({A})),
        Segment(hours(6), hours(8), frozenset({A, B})),
        Segment(hours(8), hours(10), frozenset({B})),
        Segment(hours(10), hours(12), frozenset()),
    ]
    assert [(g.starts_at, g.ends_at) for g in gaps_of(found)] == [
        (hours(-2), hours(0)),
        (hours(10), hours(12)),
    ]
    assert load_of(found) == {A: timedelta(hours=7), B: timedelta(hours=4), C: timedelta(hours=1)}
    assert spans_of(found, A) == [Span(hours(0), hours(1), A), Span(hours(2), hours(8), A)]


def test_a_stretch_only_supporters_the_line_cannot_text_cover_is_a_gap() -> None:
    """B is on call but no text of the line reaches B: a clinician texting is told nobody is
    free, as if nobody were on call. Such a stretch is a gap, naming who is on call in it, and
    runs on into a plain gap next to it (one stretch, to its real end)."""
    found = [
        Segment(hours(0), hours(1), frozenset({A})),
        Segment(hours(1), hours(2), frozenset({A, B})),
        Segment(hours(2), hours(4), frozenset({B})),
        Segment(hours(4), hours(5), frozenset()),
        Segment(hours(5), hours(6), frozenset({A})),
        Segment(hours(6), hours(7), frozenset({B, C})),
    ]
    assert gaps_of(found, untextable=frozenset({B, C})) == [
        Segment(hours(2), hours(5), frozenset({B})),
        Segment(hours(6), hours(7), frozenset({B, C})),
    ]
    assert gaps_of(found) == [Segment(hours(4), hours(5), frozenset())]


def test_an_empty_window_has_no_segments() -> None:
    assert segments(Layers(), hours(1), hours(1)) == []
