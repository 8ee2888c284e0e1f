"""Reports: aggregate counts over a period, never a number, a message or a person.

Contacts per week by channel; time to first human response (median and 90th percentile, from
a conversation's start to a supporter accepting it); fallbacks (nobody was available); check-ins
sent, replied to, and opted out of. Breakdowns hide small counts: a week whose channels include
a count from 1 to MIN_CELL - 1 shows its total only (the split would single people out, and a
complement would give the hidden cell away), and response times count only the weeks that
have ended, with no request still waiting, and with MIN_CELL or more answered conversations
(else two reports apart by one such week, or two reads of a week whose answered conversations
are not all in, subtracted, would give its few response times away).

Every figure covers whole weeks, Monday 00:00 to Monday 00:00 UTC, whatever the programme's time
zone: boundaries that moved with a setting a coordinator can change would let two reports, one
in each zone, be subtracted down to the few contacts between them (zones 15 minutes apart exist).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from hotline.models import (
    Channel,
    CheckIn,
    Clinician,
    Conversation,
    ConversationState,
    OptOut,
    Programme,
)

MIN_CELL = 5
CHANNELS = tuple(c.value for c in Channel)


@dataclass(frozen=True)
class WeekRow:
    """One report week (from Monday 00:00 UTC): its total, and per channel unless suppressed
    (None)."""

    week_start: date
    total: int
    by_channel: dict[str, int | None]


@dataclass(frozen=True)
class Report:
    start: datetime
    end: datetime
    weeks: tuple[WeekRow, ...]
    contacts: int
    answered: int
    response_median_s: float | None  # None: no ended week with MIN_CELL answered
    response_p90_s: float | None
    fallbacks: int
    checkins_sent: int
    checkins_replied: int
    checkins_opted_out: int


def suppress(cells: dict[str, int]) -> dict[str, int | None]:
    """Hide every cell of a breakdown when any of them is a small count (1 to MIN_CELL - 1)."""
    if any(0 < n < MIN_CELL for n in cells.values()):
        return dict.fromkeys(cells)
    return dict(cells)


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile (0 < q <= 100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def week_of(at: datetime) -> date:
    """The Monday (UTC) that starts ``at``'s report week."""
    day = at.astimezone(UTC).date()
    return day - timedelta(days=day.weekday())


def weeks(rows: list[tuple[datetime, str]], start: datetime, end: datetime) -> tuple[WeekRow, ...]:
    """Contacts per week and channel, every week of the period listed (zeros too)."""
    counts: dict[date, Counter[str]] = {}
    day = week_of(start)
    while day <= week_of(end - timedelta(microseconds=1)):
        counts[day] = Counter()
        day += timedelta(days=7)
    for created_at, channel in rows:
        counts.setdefault(week_of(created_at), Counter())[channel] += 1
    return tuple(
        WeekRow(week, sum(c.values()), suppress({ch: c[ch] for ch in CHANNELS}))
        for week, c in sorted(counts.items())
    )


def timed_waits(
    answered: list[tuple[datetime, datetime]], unsettled: set[date], now: datetime
) -> list[float]:
    """Seconds from start to acceptance, of the weeks that have ended, with no request still
    waiting (``unsettled``: its acceptance would join them later), and with MIN_CELL or more
    answered conversations only. A week with fewer would let two reports, with and without
    it, be subtracted down to one conversation's response time (one supporter's, on a known
    day); so would two reads of a week whose answered conversations are not all in yet."""
    running = week_of(now)
    by_week: dict[date, list[float]] = {}
    for created_at, accepted_at in answered:
        by_week.setdefault(week_of(created_at), []).append(
            (accepted_at - created_at).total_seconds()
        )
    return [
        w
        for week, waits in by_week.items()
        if week < running and week not in unsettled and len(waits) >= MIN_CELL
        for w in waits
    ]


def whole_weeks(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """``[start, end)`` widened to whole report weeks, Monday 00:00 to Monday 00:00 UTC."""
    first = week_of(start)
    after = week_of(end - timedelta(microseconds=1)) + timedelta(days=7)
    return datetime.combine(first, time(0), UTC), datetime.combine(after, time(0), UTC)


def report(
    session: Session, programme_id: int, start: datetime, end: datetime, now: datetime
) -> Report:
    """The programme's aggregates over the whole report weeks that ``[start, end)`` touches,
    as read at ``now``. Never a narrower window: cut to the minute, a count would be one
    contact and a response time one supporter's (peer support does not feed performance
    review)."""
    start, end = whole_weeks(start, end)
    in_period = (
        Conversation.programme_id == programme_id,
        Conversation.created_at >= start,
        Conversation.created_at < end,
    )
    rows = [
        (c, str(ch))
        for c, ch in session.execute(
            select(Conversation.created_at, Conversation.channel).where(*in_period)
        )
    ]
    accepted = select(Conversation.created_at, Conversation.accepted_at).where(
        *in_period, Conversation.accepted_at.is_not(None)
    )
    answered = [(c, a) for c, a in session.execute(accepted) if a is not None]
    waiting = select(Conversation.created_at).where(
        *in_period, Conversation.state == ConversationState.QUEUED
    )
    waits = timed_waits(answered, {week_of(c) for c in session.scalars(waiting)}, now)
    enough = len(waits) >= MIN_CELL
    sent, replied, opted = _checkins(session, programme_id, start, end)
    return Report(
        start=start,
        end=end,
        weeks=weeks(rows, start, end),
        contacts=len(rows),
        answered=len(answered),
        response_median_s=statistics.median(waits) if enough else None,
        response_p90_s=percentile(waits, 90) if enough else None,
        fallbacks=_count(
            session,
            select(func.count(Conversation.id)).where(
                Conversation.programme_id == programme_id,
                Conversation.fallback_at >= start,
                Conversation.fallback_at < end,
            ),
        ),
        checkins_sent=sent,
        checkins_replied=replied,
        checkins_opted_out=opted,
    )


def _count(session: Session, query: Select[int]) -> int:
    return int(session.scalar(query) or 0)


def _checkins(
    session: Session, programme_id: int, start: datetime, end: datetime
) -> tuple[int, int, int]:
    """Sent in the period; replied to in the period; and, of the clinicians sent one, how many
    have since declined check-ins or texted STOP to the line."""
    ours = CheckIn.programme_id == programme_id
    sent = select(CheckIn.id).where(ours, CheckIn.sent_at >= start, CheckIn.sent_at < end)
    replied = select(CheckIn.id).where(ours, CheckIn.replied_at >= start, CheckIn.replied_at < end)
    reached = select(CheckIn.clinician_id).where(
        ours, CheckIn.sent_at >= start, CheckIn.sent_at < end
    )
    hotline = select(Programme.hotline_number).where(Programme.id == programme_id).scalar_subquery()
    stopped = select(OptOut.phone_hash).where(
        OptOut.programme_id == programme_id, OptOut.sender == hotline
    )
    opted = select(func.count(Clinician.id)).where(
        Clinician.id.in_(reached),
        or_(Clinician.checkins_declined.is_(True), Clinician.phone_hash.in_(stopped)),
    )
    return (
        _count(session, select(func.count()).select_from(sent.subquery())),
        _count(session, select(func.count()).select_from(replied.subquery())),
        _count(session, opted),
    )


def csv_rows(r: Report) -> list[list[str]]:
    """The report as CSV rows (suppressed cells read ``<5``)."""
    rows = [["week starting", "total", *CHANNELS]]
    for w in r.weeks:
        cells = [str(v) if v is not None else f"<{MIN_CELL}" for v in w.by_channel.values()]
        rows.append([w.week_start.isoformat(), str(w.total), *cells])
    rows.append([])
    rows.extend(
        [
            ["contacts", str(r.contacts)],
            ["answered by a supporter", str(r.answered)],
            ["median seconds to first human response", _maybe(r.response_median_s)],
            ["90th percentile seconds to first human response", _maybe(r.response_p90_s)],
            ["fallbacks (nobody available)", str(r.fallbacks)],
            ["check-ins sent", str(r.checkins_sent)],
            ["check-ins replied", str(r.checkins_replied)],
            ["check-ins opted out", str(r.checkins_opted_out)],
        ]
    )
    return rows


def _maybe(value: float | None) -> str:
    return f"{value:.0f}" if value is not None else f"no ended week with {MIN_CELL} answered"
