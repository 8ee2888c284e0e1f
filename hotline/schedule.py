"""Who is on call: the answer at an instant, over a window, and when the next person comes on.

Three layers answer together. One-off shifts and weekly rotation turns put people on call;
overrides then take a supporter off (``replaces``) and put their cover on. Supporters who are
inactive, or whose phone number still awaits its texted code, are never on call. Every caller
(text-line routing, the console, the API, the calendar feeds) asks this module the same way.
A coverage gap is a stretch when nobody the line can text is on call: nobody, or only
supporters whose phones refuse its texts (``reach.untextable``), as a clinician texting then is
told nobody is free.

Rotations hand off at a local wall-clock time in their programme's time zone, so a Monday 09:00
hand-off stays at 09:00 across DST (that turn is 167 or 169 hours long). A hand-off time that
does not exist that day (spring forward) happens as far past the gap as it was into it (02:30
is 03:30 new time); one that happens twice (fall back) happens the first time (PEP 495
``fold=0``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from hotline import reach
from hotline.models import Override, PhoneVerification, Rotation, Shift, Supporter

LOOKAHEAD = timedelta(days=35)  # how far next_coverage looks for someone coming on call
_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Span:
    """One supporter on call from ``starts_at`` (inclusive) to ``ends_at`` (exclusive)."""

    starts_at: datetime
    ends_at: datetime
    supporter_id: int

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class Cover:
    """An override: ``supporter_id`` on call, ``replaces_id`` (if any) off call, in the window."""

    starts_at: datetime
    ends_at: datetime
    supporter_id: int
    replaces_id: int | None = None

    def covers(self, at: datetime) -> bool:
        return self.starts_at <= at < self.ends_at


@dataclass(frozen=True)
class RotationPlan:
    """A weekly rotation, as the pure functions below read it."""

    zone: ZoneInfo
    weekday: int  # 0 Monday .. 6 Sunday
    at: time
    anchor: date
    members: tuple[int, ...]

    def handoff(self, turn: int) -> datetime:
        """The UTC instant turn number ``turn`` (0-based) starts."""
        day = first_weekday_on_or_after(self.anchor, self.weekday) + timedelta(weeks=turn)
        return local_instant(day, self.at, self.zone)

    def turns(self, start: datetime, end: datetime) -> Iterator[Span]:
        """The turns that overlap ``[start, end)``, in order."""
        if not self.members:
            return
        first = first_weekday_on_or_after(self.anchor, self.weekday)
        turn = max(0, (start.astimezone(self.zone).date() - first).days // 7 - 1)
        while (begins := self.handoff(turn)) < end:
            ends = self.handoff(turn + 1)
            if ends > start:
                yield Span(begins, ends, self.members[turn % len(self.members)])
            turn += 1


def first_weekday_on_or_after(day: date, weekday: int) -> date:
    return day + timedelta(days=(weekday - day.weekday()) % 7)


def local_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """``day`` at wall time ``at`` in ``zone``, as UTC (gap: after it; repeat: the first)."""
    # fold=0 in a gap reads the wall time with the offset from before the change, which lands
    # after the gap: 02:30 on a spring-forward night becomes 03:30 new time. That is the rule.
    return datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(UTC)


@dataclass(frozen=True)
class Layers:
    """Everything that decides who is on call in a window, loaded once."""

    spans: tuple[Span, ...] = ()
    covers: tuple[Cover, ...] = ()
    excluded: frozenset[int] = frozenset()

    def at(self, at: datetime) -> frozenset[int]:
        """Who is on call at ``at``: shifts and turns, then each override in the order it was
        made (``covers`` is in that order), so a later one wins: when Z covers for X, who
        covers for A, X is off call; a later "X on call" puts X back."""
        ids = {s.supporter_id for s in self.spans if s.covers(at)}
        for cover in self.covers:
            if cover.covers(at):
                if cover.replaces_id is not None:
                    ids.discard(cover.replaces_id)
                ids.add(cover.supporter_id)
        return frozenset(ids - self.excluded)

    def boundaries(self, start: datetime, end: datetime) -> list[datetime]:
        """Every instant in ``[start, end)`` where the answer may change, ``start`` first."""
        edges = {start}
        periods = [(s.starts_at, s.ends_at) for s in self.spans]
        periods += [(c.starts_at, c.ends_at) for c in self.covers]
        edges.update(t for period in periods for t in period if start < t < end)
        return sorted(edges)


@dataclass(frozen=True)
class Segment:
    """A stretch of time during which the same supporters are on call (none: a gap)."""

    starts_at: datetime
    ends_at: datetime
    supporter_ids: frozenset[int]

    @property
    def length(self) -> timedelta:
        return self.ends_at - self.starts_at


def segments(layers: Layers, start: datetime, end: datetime) -> list[Segment]:
    """``[start, end)`` cut where the answer changes; neighbours with equal answers merged."""
    if end <= start:
        return []
    edges = layers.boundaries(start, end)
    found: list[Segment] = []
    for begins, ends in pairwise([*edges, end]):
        ids = layers.at(begins)
        if found and found[-1].supporter_ids == ids:
            found[-1] = Segment(found[-1].starts_at, ends, ids)
        else:
            found.append(Segment(begins, ends, ids))
    return found


def gaps_of(found: Iterable[Segment], untextable: Collection[int] = frozenset()) -> list[Segment]:
    """The stretches of consecutive ``found`` during which nobody is on call but supporters in
    ``untextable``, neighbours merged; a gap's ``supporter_ids`` are those on call in it."""
    merged: list[Segment] = []
    for s in found:
        if not s.supporter_ids.issubset(untextable):
            continue
        if merged and merged[-1].ends_at == s.starts_at:
            last = merged[-1]
            merged[-1] = Segment(last.starts_at, s.ends_at, last.supporter_ids | s.supporter_ids)
        else:
            merged.append(s)
    return merged


def load_of(found: Iterable[Segment]) -> dict[int, timedelta]:
    """Time on call per supporter over the segments."""
    hours: dict[int, timedelta] = defaultdict(timedelta)
    for segment in found:
        for supporter_id in segment.supporter_ids:
            hours[supporter_id] += segment.length
    return dict(hours)


def spans_of(found: Iterable[Segment], supporter_id: int) -> list[Span]:
    """One supporter's on-call periods over the segments, contiguous ones merged."""
    merged: list[Span] = []
    for s in found:
        if supporter_id not in s.supporter_ids:
            continue
        if merged and merged[-1].ends_at == s.starts_at:
            merged[-1] = Span(merged[-1].starts_at, s.ends_at, supporter_id)
        else:
            merged.append(Span(s.starts_at, s.ends_at, supporter_id))
    return merged


# The database side: load the layers of one programme for a window.


def plan_of(rotation: Rotation) -> RotationPlan:
    return RotationPlan(
        zone=ZoneInfo(rotation.timezone),
        weekday=rotation.handoff_weekday,
        at=rotation.handoff_time,
        anchor=rotation.anchor_date,
        members=tuple(m.supporter_id for m in rotation.members),
    )


def load_layers(session: Session, programme_id: int, start: datetime, end: datetime) -> Layers:
    """The programme's shifts, rotation turns and overrides that overlap ``[start, end)``."""
    shifts = session.scalars(
        select(Shift).where(
            Shift.programme_id == programme_id, Shift.starts_at < end, Shift.ends_at > start
        )
    )
    rotations = session.scalars(
        select(Rotation)
        .where(Rotation.programme_id == programme_id)
        .options(selectinload(Rotation.members))
    )
    overrides = session.scalars(
        select(Override)
        .where(
            Override.programme_id == programme_id,
            Override.starts_at < end,
            Override.ends_at > start,
        )
        .order_by(Override.id)  # the order they were made in: see Layers.at
    )
    spans = [Span(s.starts_at, s.ends_at, s.supporter_id) for s in shifts]
    for rotation in rotations:
        spans.extend(plan_of(rotation).turns(start, end))
    covers = [Cover(o.starts_at, o.ends_at, o.supporter_id, o.replaces_id) for o in overrides]
    return Layers(tuple(spans), tuple(covers), _excluded(session, programme_id))


def _excluded(session: Session, programme_id: int) -> frozenset[int]:
    """Inactive supporters and those whose number awaits its code: never on call."""
    awaiting = select(PhoneVerification.supporter_id)
    rows = session.scalars(
        select(Supporter.id).where(
            Supporter.programme_id == programme_id,
            or_(Supporter.active.is_(False), Supporter.id.in_(awaiting)),
        )
    )
    return frozenset(rows)


def on_call(session: Session, programme_id: int, at: datetime) -> set[int]:
    """Ids of the supporters on call at ``at`` (starts inclusive, ends exclusive)."""
    return set(load_layers(session, programme_id, at, at + _TICK).at(at))


def timeline(session: Session, programme_id: int, start: datetime, end: datetime) -> list[Segment]:
    """Who is on call over ``[start, end)``, as consecutive segments (gaps included)."""
    return segments(load_layers(session, programme_id, start, end), start, end)


def coverage_gaps(
    session: Session, programme_id: int, start: datetime, end: datetime
) -> list[Segment]:
    """The stretches of ``[start, end)`` during which nobody the line can text is on call."""
    found = timeline(session, programme_id, start, end)
    return gaps_of(found, reach.untextable(session, programme_id).keys())


def load(
    session: Session, programme_id: int, start: datetime, end: datetime
) -> dict[int, timedelta]:
    """Time on call per supporter over ``[start, end)`` (supporters with none are absent)."""
    return load_of(timeline(session, programme_id, start, end))


def next_coverage(session: Session, programme_id: int, after: datetime) -> datetime | None:
    """When someone the line can text next comes on call after ``after`` (within LOOKAHEAD),
    or None: the time a clinician told nobody is free is given. Not a supporter whose phone
    refuses its texts (``reach.untextable``), who could take no request."""
    found = timeline(session, programme_id, after, after + LOOKAHEAD)
    untextable = reach.untextable(session, programme_id).keys()
    for before, current in pairwise(found):
        if current.supporter_ids - before.supporter_ids - untextable:
            return current.starts_at
    return None
