"""Live status for the console: who is on call, what is waiting, who is busy. Counts only.

Nothing here can name or point at a clinician: conversations and offers are counted, per
supporter at most. Upcoming coverage gaps come with it, so the coordinator is warned ahead: a
stretch when only supporters whose phones refuse the line's texts are on call is one too
(``schedule``), naming them, and those on call now are marked so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hotline import reach, schedule
from hotline.models import (
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    ScheduleSettings,
    Supporter,
)

DEFAULT_WARNING_HOURS = 48
# How far past the warning horizon a gap is followed to its real end (as the texted warnings,
# notices.FOLLOW); one still going on there is shown as lasting more than that.
FOLLOW = timedelta(days=14)


@dataclass(frozen=True)
class Untextable:
    """A supporter on call whom no text of the line reaches; ``rung``: a call still rings
    them (``reach.Refusal.rung``)."""

    name: str
    rung: bool


@dataclass(frozen=True)
class Gap:
    """Nobody the line can text on call from ``starts_at`` to ``ends_at`` (None: still so
    FOLLOW past the warning horizon); ``on_call``: who is, in it (none: nobody at all)."""

    starts_at: datetime
    ends_at: datetime | None
    on_call: tuple[Untextable, ...] = ()


@dataclass(frozen=True)
class SupporterNow:
    supporter_id: int
    name: str
    on_call: bool
    open_conversations: int
    on_break_until: datetime | None
    active: bool = True
    cannot_text: Untextable | None = None  # on call, but no text of the line reaches them


@dataclass(frozen=True)
class LiveStatus:
    at: datetime
    on_call: tuple[SupporterNow, ...]
    # Anyone with an open conversation, on call or not, and active or not: deactivating a
    # supporter leaves them the conversations they are in.
    busy: tuple[SupporterNow, ...]
    on_break: tuple[SupporterNow, ...]
    offers_waiting: int  # offers out, not yet answered
    queued: int  # conversations nobody has accepted yet
    gaps: tuple[Gap, ...]  # nobody on call, starting before the warning horizon
    horizon: timedelta


def warning_horizon(session: Session, programme_id: int) -> timedelta:
    """How far ahead the console warns of gaps: the texted-warning horizon, or 48 hours."""
    options = session.get(ScheduleSettings, programme_id)
    hours = options.gap_warning_hours if options is not None else None
    return timedelta(hours=hours or DEFAULT_WARNING_HOURS)


def gaps_ahead(
    session: Session, programme_id: int, now: datetime, horizon: timedelta
) -> tuple[Gap, ...]:
    """The gaps that begin between ``now`` and the horizon, each to its real end: cut at the
    horizon, a gap would read as ending there, as if cover came then."""
    edge = now + horizon + FOLLOW
    refused = reach.untextable(session, programme_id)
    found = schedule.gaps_of(schedule.timeline(session, programme_id, now, edge), refused.keys())
    return tuple(
        Gap(
            g.starts_at,
            None if g.ends_at >= edge else g.ends_at,
            tuple(sorted(_untextable(session, g.supporter_ids, refused), key=lambda u: u.name)),
        )
        for g in found
        if g.starts_at < now + horizon
    )


def _untextable(
    session: Session, ids: Iterable[int], refused: Mapping[int, reach.Refusal]
) -> list[Untextable]:
    return [Untextable(session.get_one(Supporter, i).name, refused[i].rung) for i in ids]


def live(session: Session, programme_id: int, now: datetime) -> LiveStatus:
    """The programme right now."""
    horizon = warning_horizon(session, programme_id)
    on_call = schedule.on_call(session, programme_id, now)
    refused = reach.untextable(session, programme_id)
    open_counts = _open_counts(session, programme_id)
    people = [
        SupporterNow(
            s.id,
            s.name,
            s.id in on_call,
            open_counts[s.id],
            s.break_until if s.break_until and s.break_until > now else None,
            s.active,
            Untextable(s.name, refused[s.id].rung) if s.id in refused else None,
        )
        for s in session.scalars(
            select(Supporter)
            .where(
                Supporter.programme_id == programme_id,
                or_(Supporter.active.is_(True), Supporter.id.in_(list(open_counts))),
            )
            .order_by(Supporter.name, Supporter.id)
        )
    ]
    return LiveStatus(
        at=now,
        on_call=tuple(p for p in people if p.on_call),
        busy=tuple(p for p in people if p.open_conversations),
        on_break=tuple(p for p in people if p.on_break_until and p.active),
        offers_waiting=_pending_offers(session, programme_id),
        queued=_queued(session, programme_id),
        gaps=gaps_ahead(session, programme_id, now, horizon),
        horizon=horizon,
    )


def _open_counts(session: Session, programme_id: int) -> Counter[int]:
    rows = session.execute(
        select(Conversation.supporter_id, func.count(Conversation.id))
        .where(
            Conversation.programme_id == programme_id,
            Conversation.state == ConversationState.ACTIVE,
            Conversation.supporter_id.is_not(None),
        )
        .group_by(Conversation.supporter_id)
    )
    return Counter({supporter_id: n for supporter_id, n in rows if supporter_id is not None})


def _pending_offers(session: Session, programme_id: int) -> int:
    query = (
        select(func.count(Offer.id))
        .join(Conversation, Conversation.id == Offer.conversation_id)
        .where(Conversation.programme_id == programme_id, Offer.state == OfferState.PENDING)
    )
    return int(session.scalar(query) or 0)


def _queued(session: Session, programme_id: int) -> int:
    query = select(func.count(Conversation.id)).where(
        Conversation.programme_id == programme_id,
        Conversation.state == ConversationState.QUEUED,
    )
    return int(session.scalar(query) or 0)
