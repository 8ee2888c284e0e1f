"""iCalendar feeds of the schedule: one per supporter, one per programme, at secret URLs.

A feed lists on-call periods that end after PAST before now and begin by the end of the day
AHEAD after it, as computed by schedule.py (rotations, shifts and overrides together). A period
keeps its true start, and so its UID, from one fetch to the next: the schedule is read from a
day boundary LOOK_BACK before now, not from now - PAST (which cut a period under way there at a
new instant each fetch, so calendars saw a new event every time they polled). A supporter's
feed holds only their own periods; the programme's names who is on call. Nothing about a
conversation is in either.
Secrets are random URL-safe tokens (``Supporter.calendar_token``,
``ScheduleSettings.calendar_token``); looking one up is a plain equality on a unique column.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import audit, rota, schedule
from hotline.models import Programme, ScheduleSettings, Supporter

PAST = timedelta(days=14)
AHEAD = timedelta(days=90)
# Back to where any period still shown could have begun: a shift or override lasts at most
# rota.MAX_PERIOD. Only a longer unbroken stretch (one person on call for months) is cut, at a
# day boundary, so its start moves once a day.
LOOK_BACK = PAST + rota.MAX_PERIOD
PRODID = "-//Clinician peer support line//Schedule//EN"
MIN_TOKEN = 20  # shorter tokens name nothing (and are never issued)


def new_token() -> str:
    return secrets.token_urlsafe(24)


def supporter_by_token(session: Session, token: str) -> Supporter | None:
    if len(token) < MIN_TOKEN:
        return None
    return session.scalar(
        select(Supporter).where(Supporter.calendar_token == token, Supporter.active.is_(True))
    )


def programme_by_token(session: Session, token: str) -> Programme | None:
    if len(token) < MIN_TOKEN:
        return None
    options = session.scalar(
        select(ScheduleSettings).where(ScheduleSettings.calendar_token == token)
    )
    return session.get(Programme, options.programme_id) if options else None


def new_supporter_link(session: Session, supporter: Supporter, actor: str, now: datetime) -> None:
    """A fresh secret for the supporter's feed: the old link (forwarded, leaked) stops working."""
    supporter.calendar_token = new_token()
    audit.record(
        session,
        programme_id=supporter.programme_id,
        actor=actor,
        action="calendar.new_link",
        target=f"supporter:{supporter.id}",
        at=now,
    )


def new_programme_link(session: Session, programme_id: int, actor: str, now: datetime) -> None:
    """A fresh secret for the programme's feed: the old link stops working."""
    programme_token(session, programme_id)
    options = session.get_one(ScheduleSettings, programme_id)
    options.calendar_token = new_token()
    audit.record(
        session,
        programme_id=programme_id,
        actor=actor,
        action="calendar.new_link",
        target=f"programme:{programme_id}",
        at=now,
    )


def programme_token(session: Session, programme_id: int) -> str:
    """The programme feed's token, issued on first use."""
    options = session.get(ScheduleSettings, programme_id)
    if options is None:
        options = ScheduleSettings(programme_id=programme_id)
        session.add(options)
    if not options.calendar_token:
        options.calendar_token = new_token()
        session.flush()
    return options.calendar_token


def _calendar(name: str) -> Calendar:
    calendar = Calendar()
    calendar.add("prodid", PRODID)
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", name)
    return calendar


def _event(uid: str, span: schedule.Span, summary: str, now: datetime) -> Event:
    event = Event()
    event.add("uid", uid)
    event.add("dtstamp", now)
    event.add("dtstart", span.starts_at)
    event.add("dtend", span.ends_at)
    event.add("summary", summary)
    return event


def _midnight(at: datetime) -> datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def _timeline(session: Session, programme_id: int, now: datetime) -> list[schedule.Segment]:
    """The schedule from a day boundary LOOK_BACK ago to one at least AHEAD from now."""
    start = _midnight(now - LOOK_BACK)
    end = _midnight(now + AHEAD) + timedelta(days=1)
    return schedule.timeline(session, programme_id, start, end)


def _spans(found: list[schedule.Segment], supporter_id: int, now: datetime) -> list[schedule.Span]:
    """A supporter's periods whole, those over before the feed's window left out."""
    return [s for s in schedule.spans_of(found, supporter_id) if s.ends_at > now - PAST]


def supporter_feed(
    session: Session, supporter: Supporter, programme_name: str, now: datetime
) -> bytes:
    """The supporter's own on-call periods as an iCalendar document."""
    found = _timeline(session, supporter.programme_id, now)
    calendar = _calendar(f"{programme_name}: on call")
    for span in _spans(found, supporter.id, now):
        uid = f"oncall-{supporter.id}-{span.starts_at:%Y%m%dT%H%M%SZ}@hotline"
        calendar.add_component(_event(uid, span, f"On call: {programme_name}", now))
    return bytes(calendar.to_ical())


def programme_feed(session: Session, programme: Programme, now: datetime) -> bytes:
    """Everyone's on-call periods for the programme, one event per person and period."""
    found = _timeline(session, programme.id, now)
    shown = {s: _spans(found, s, now) for segment in found for s in segment.supporter_ids}
    ids = [s for s in sorted(shown) if shown[s]]
    rows = session.execute(select(Supporter.id, Supporter.name).where(Supporter.id.in_(ids)))
    names = {supporter_id: name for supporter_id, name in rows}
    calendar = _calendar(f"{programme.name}: on-call schedule")
    for supporter_id in ids:
        for span in shown[supporter_id]:
            uid = f"oncall-{supporter_id}-{span.starts_at:%Y%m%dT%H%M%SZ}@hotline"
            calendar.add_component(
                _event(uid, span, f"On call: {names.get(supporter_id, '?')}", now)
            )
    return bytes(calendar.to_ical())
