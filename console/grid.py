"""Calendar grids for the schedule page: the timeline cut into local days, gaps marked."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from hotline.schedule import Segment, local_instant


@dataclass(frozen=True)
class Block:
    """Part of a local day with the same people on call (none, or only people the line cannot
    text: a gap)."""

    starts: str
    ends: str
    names: tuple[str, ...]
    untextable: bool = False  # all of ``names`` are people the line cannot text

    @property
    def gap(self) -> bool:
        return not self.names or self.untextable


@dataclass(frozen=True)
class Day:
    day: date
    blocks: tuple[Block, ...]
    in_month: bool = True

    @property
    def has_gap(self) -> bool:
        return any(b.gap for b in self.blocks)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(sorted({n for b in self.blocks for n in b.names}))


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def week_window(day: date) -> tuple[date, date]:
    first = week_start(day)
    return first, first + timedelta(days=7)


def month_window(day: date) -> tuple[date, date]:
    """Whole weeks covering the month of ``day`` (Monday before the 1st to Sunday after)."""
    first = day.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    return week_start(first), week_start(following - timedelta(days=1)) + timedelta(days=7)


def bounds(first: date, last: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The UTC instants of local midnight on ``first`` and on ``last``."""
    return local_instant(first, time(0), zone), local_instant(last, time(0), zone)


def days(
    segments: list[Segment],
    zone: ZoneInfo,
    first: date,
    last: date,
    names: dict[int, str],
    month: int | None = None,
    untextable: Collection[int] = frozenset(),
) -> list[Day]:
    """One Day per local date in ``[first, last)``, each with its clipped blocks;
    ``untextable``: the ids of supporters the line cannot text (``reach.untextable``)."""
    found = []
    day = first
    while day < last:
        start, end = bounds(day, day + timedelta(days=1), zone)
        blocks = tuple(
            Block(
                _clock(max(s.starts_at, start), zone),
                "24:00" if s.ends_at >= end else _clock(s.ends_at, zone),
                tuple(sorted(names.get(i, "?") for i in s.supporter_ids)),
                s.supporter_ids.issubset(untextable),
            )
            for s in segments
            if s.starts_at < end and s.ends_at > start
        )
        found.append(Day(day, blocks, month is None or day.month == month))
        day += timedelta(days=1)
    return found


def _clock(at: datetime, zone: ZoneInfo) -> str:
    return at.astimezone(zone).strftime("%H:%M")
