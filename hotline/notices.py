"""Texts the schedule sends: verification codes, shift reminders and coverage-gap warnings.

Each is a ``Notice`` row first, created in SQL with a unique key (creating it twice is a no-op);
then a job (``Task.SEND_NOTICE``) or the sweeper sends it. A sender claims the row (pending ->
sending) before calling the provider, so it goes out once; a row left in ``sending`` by a dead
worker is marked failed, never resent; a code or reminder Twilio took but then reports
undelivered fails too (``delivery``: its callback URL names it, ``OutboundText.noticing``).
Whether a reminder or warning is still true is checked again just before sending. Verification
codes and shift reminders go to the supporter from the programme's first pool number they have
not texted STOP to and are not using for a conversation or an offer (``_sender_for``); a
reminder to a supporter no text of the line reaches (``reach.untextable``: a landline, a STOP to
every number) is skipped, as Twilio would refuse it again, and the roster goes on showing why.
Gap warnings go to the programme's alert phone from its hotline number; a gap is a stretch
nobody the line can text is on call (``schedule``), so one only supporters whose phones refuse
its texts cover is warned of too. Both are opt-in per programme (``ScheduleSettings``); without
them the console still shows the gaps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline import reach, records, schedule, verification, wording
from hotline.db import transaction
from hotline.effects import sender_refused
from hotline.models import (
    Notice,
    NoticeKind,
    NoticeState,
    Programme,
    ScheduleSettings,
    Supporter,
)
from hotline.people import record_opt_out, supporter_phone
from hotline.programmes import ProgrammeConfig, config_of
from hotline.routing import alert_phone, open_number
from hotline.services import Services
from hotline.telephony import (
    DeliveryUnknownError,
    RecipientError,
    RetryableError,
    SenderError,
    TelephonyError,
)
from hotline.texting import OutboundText

log = logging.getLogger(__name__)

GRACE = timedelta(seconds=15)  # a verification's own wake-up goes first; the sweeper after
STALE = timedelta(hours=1)  # a reminder or warning this late is no use: skipped
STUCK_AFTER = timedelta(minutes=5)
REPLIES_FOR = timedelta(hours=1)  # a supporter's text this soon after a notice may answer it
LOOKBACK = timedelta(days=1)  # so a period's real start is seen, not the window's edge
# How far past the notice window a period is followed to find its real end; one still going on
# there is told as lasting more than that ("for more than two weeks"), never as ending at it.
FOLLOW = timedelta(days=14)
PAST = timedelta(microseconds=1)  # a gap's warning looks this far past the end it tells
TOLD = (NoticeState.PENDING, NoticeState.SENDING, NoticeState.SENT)  # sent, or to be


def options_of(session: Session, programme_id: int) -> ScheduleSettings:
    """The programme's schedule options (defaults when it has no row yet; not added)."""
    found = session.get(ScheduleSettings, programme_id)
    return found if found is not None else ScheduleSettings(programme_id=programme_id)


def send_notice(services: Services, notice_id: int) -> NoticeState | None:
    """Send one notice if it is still pending; None when another sender has it."""
    now = services.clock()
    with transaction(services.sessions) as session:
        claimed = session.execute(
            update(Notice)
            .where(Notice.id == notice_id, Notice.state == NoticeState.PENDING)
            .values(state=NoticeState.SENDING, sent_at=now)
            .execution_options(synchronize_session=False)
        )
        if not claimed.rowcount:  # type: ignore[attr-defined]
            return None
        notice = session.get_one(Notice, notice_id)
        programme_id = notice.programme_id
        message = compose(services, session, notice)
    skipped = (NoticeState.SKIPPED, None, None)
    state, sid, refused = (
        skipped if message is None else _deliver(services, replace(message, noticing=notice_id))
    )
    with transaction(services.sessions) as session:
        # Not over Twilio's report that it never arrived, come before this (delivery failed
        # it, naming its sender); over a stuck send's failure (no sender), as ever.
        recorded = session.execute(
            update(Notice)
            .where(
                Notice.id == notice_id,
                or_(Notice.state == NoticeState.SENDING, Notice.from_number.is_(None)),
            )
            .values(
                state=state,
                sent_at=now if state == NoticeState.SENT else None,
                from_number=message.from_ if message else None,
            )
        )
        records.backstop(session, [sid] if sid else [], now)
        if not recorded.rowcount:  # type: ignore[attr-defined]
            return NoticeState.FAILED
        whose = select(Notice.supporter_id).where(Notice.id == notice_id)  # the roster's
        if sid:
            reach.reached(session, whose)
        elif refused is not None:
            reach.refused(session, whose, refused, now)
        if refused == reach.STOPPED and message is not None:
            # Their STOP to that number, which the line never heard (texted while it was
            # down): kept, as for an offer (reach.stopped), so the next notice goes from
            # another of its numbers (_sender_for).
            record_opt_out(session, services.vault, programme_id, message.to, message.from_)
    return state


def last_sent_from(
    session: Session, supporter_id: int, number: str, now: datetime
) -> datetime | None:
    """When the supporter's latest shift reminder or code went out from ``number``, if within
    REPLIES_FOR: their text to that number may answer it. One from another number may not (a
    pool with the hotline number in it: a reminder from a pool number, then a text to the line)."""
    notice = last_notice_from(session, supporter_id, number, now)
    return notice.sent_at if notice is not None else None


def last_notice_from(
    session: Session, supporter_id: int, number: str, now: datetime
) -> Notice | None:
    """The supporter's latest shift reminder or code sent from ``number`` within REPLIES_FOR
    (see last_sent_from)."""
    return session.scalar(
        select(Notice)
        .where(
            Notice.supporter_id == supporter_id,
            Notice.kind.in_((NoticeKind.REMINDER, NoticeKind.VERIFICATION)),
            Notice.state == NoticeState.SENT,
            Notice.from_number == number,
            Notice.sent_at >= now - REPLIES_FOR,
        )
        .order_by(Notice.sent_at.desc(), Notice.id.desc())
        .limit(1)
    )


def _deliver(services: Services, text: OutboundText) -> tuple[NoticeState, str | None, int | None]:
    """The notice's new state, the SID of the message Twilio took (None if none), and the
    error code when Twilio refused it for good for the phone's fault (``RecipientError``)."""
    try:
        # Deletes the record at Twilio once delivered; names the notice (``noticing``).
        callback = text.status_callback(services.callback_url("/twilio/status"))
        sent = services.telephony.send_text(
            text.to, text.from_, text.body, status_callback=callback
        )
    except SenderError as error:  # our number's fault: it waits, as in an outage
        sender_refused(services, text.from_, error.code)
        return NoticeState.PENDING, None, None
    except RetryableError:
        return NoticeState.PENDING, None, None  # the sweeper tries again while not stale
    except DeliveryUnknownError:
        return NoticeState.SENT, None, None  # it may have gone out: a duplicate is worse
    except TelephonyError as error:
        log.warning("notice not sent: %s (code %s)", type(error).__name__, error.code)
        theirs = isinstance(error, RecipientError)
        return NoticeState.FAILED, None, error.code if theirs else None
    return NoticeState.SENT, sent.sid, None


def compose(services: Services, session: Session, notice: Notice) -> OutboundText | None:
    """The text for ``notice``, or None when it no longer applies or has nobody to go to.
    A retired programme (retirement.py) texts nobody: a notice planned or in flight as it
    retired is not sent, a code included (the roster asks for none since: roster.py)."""
    p = config_of(session.get_one(Programme, notice.programme_id), services.settings)
    if p.retired:
        return None
    if notice.kind == NoticeKind.GAP:
        return _gap_text(services, session, p, notice)
    supporter = session.get(Supporter, notice.supporter_id) if notice.supporter_id else None
    if supporter is None:
        return None
    to = supporter_phone(services.vault, supporter)
    if notice.kind == NoticeKind.VERIFICATION:
        row = verification.pending(session, supporter.id)
        if row is None or notice.key != row.notice_key:
            return None  # confirmed already, or replaced by a newer code
        code = verification.code_of(session, services.vault, supporter.id) or ""
        minutes = int(verification.CODE_TTL.total_seconds() // 60)
        body = wording.verification_code(p, code, minutes)
        return OutboundText(to, _sender_for(services, session, p, supporter), body)
    assert notice.starts_at is not None
    if not supporter.active or supporter.id not in schedule.on_call(
        session, p.id, notice.starts_at
    ):
        return None
    if _untextable(session, supporter):
        return None  # Twilio would refuse it again; the roster shows the coordinator why
    body = wording.shift_reminder(p, notice.starts_at, notice.ends_at)
    return OutboundText(to, _sender_for(services, session, p, supporter), body)


def _untextable(session: Session, supporter: Supporter) -> bool:
    """No text of the line reaches the supporter (``reach.Refusal.untextable``): their phone
    refuses its texts, or they texted STOP to every number a reminder could come from."""
    refusal = reach.refusals(session, [supporter]).get(supporter.id)
    return refusal is not None and refusal.untextable


def _sender_for(
    services: Services, session: Session, p: ProgrammeConfig, supporter: Supporter
) -> str:
    """A pool number the supporter has not texted STOP to, free on her phone
    (routing.open_number: in a live conversation's thread a "Thanks!" to the notice is relayed
    to the clinician); the first if every one is blocked."""
    return open_number(session, services.vault, p, supporter) or p.pool_numbers[0]


def _gap_text(
    services: Services, session: Session, p: ProgrammeConfig, notice: Notice
) -> OutboundText | None:
    assert notice.starts_at is not None
    to = alert_phone(session, services.vault, p.id)
    at = max(notice.starts_at, services.clock())
    end = notice.ends_at + PAST if notice.ends_at else at + FOLLOW
    found = schedule.coverage_gaps(session, p.id, at, end)
    if to is None or not found or found[0].starts_at != at:
        return None  # someone the line can text is on call by now
    if notice.ends_at is not None and found[0].ends_at > notice.ends_at:
        return None  # it runs on past its end now: a warning keyed by its new end tells it
    refused = bool(found[0].supporter_ids)  # on call in it: only those it cannot text
    body = wording.coverage_gap(p, notice.starts_at, notice.ends_at, texts_refused=refused)
    return OutboundText(to, p.hotline_number, body)


@dataclass(frozen=True)
class Planned:
    kind: NoticeKind
    key: str
    starts_at: datetime
    ends_at: datetime | None  # None: still going on FOLLOW past the notice window
    supporter_id: int | None = None


def plan(session: Session, options: ScheduleSettings, now: datetime) -> list[Planned]:
    """The reminders and gap warnings due by ``now`` for the programme of ``options``."""
    lead = timedelta(minutes=options.reminder_minutes or 0)
    horizon = timedelta(hours=options.gap_warning_hours or 0)
    if not lead and not horizon:
        return []
    pid = options.programme_id
    edge = now + max(lead, horizon) + FOLLOW  # periods are followed to their real ends
    found = schedule.timeline(session, pid, now - LOOKBACK, edge)

    def end(at: datetime) -> datetime | None:
        return None if at >= edge else at

    def start(at: datetime) -> datetime:  # a gap cut at the look-back's edge is told from now
        return now if at <= now - LOOKBACK else at

    planned = [
        Planned(
            NoticeKind.GAP,
            _gap_key(session, pid, g, now, end(g.ends_at)),
            start(g.starts_at),
            end(g.ends_at),
        )
        for g in schedule.gaps_of(found, reach.untextable(session, pid).keys())
        if horizon and g.ends_at > now and g.starts_at < now + horizon
    ]
    for supporter_id in {s for segment in found for s in segment.supporter_ids} if lead else ():
        planned.extend(
            Planned(
                NoticeKind.REMINDER,
                f"reminder:{supporter_id}:{span.starts_at:%Y%m%dT%H%M%S}",
                span.starts_at,
                end(span.ends_at),
                supporter_id,
            )
            for span in schedule.spans_of(found, supporter_id)
            if now <= span.starts_at <= now + lead
        )
    return planned


def _gap_key(
    session: Session,
    programme_id: int,
    gap: schedule.Segment,
    now: datetime,
    ends_at: datetime | None,
) -> str:
    """The key of a warning of ``gap``, which ends at ``ends_at`` (None: past the window). One
    per gap, by its start; and one more each time it runs on past every end a warning of it
    told or will tell (a supporter's texts refused since, a shift after it deleted): the
    coordinator, who may have found cover up to that end only, is told the new one. A gap
    that ends sooner than told is not warned of again."""
    # A gap that began before the window was cut at its edge, which moves: one warning a day.
    if gap.starts_at <= now - LOOKBACK:
        key = f"gap:{programme_id}:ongoing:{now:%Y%m%d}"
    else:
        key = f"gap:{programme_id}:{gap.starts_at:%Y%m%dT%H%M%S}"
    told = _told_ends(session, programme_id, key, gap.starts_at)
    if not told or None in told:  # none told (yet, or skipped), or told it runs on past all
        return key
    if ends_at is not None and ends_at <= max(e for e in told if e is not None):
        return key
    return f"{key}:to:{ends_at:%Y%m%dT%H%M%S}" if ends_at else f"{key}:to:later"


def _told_ends(
    session: Session, programme_id: int, key: str, starts_at: datetime
) -> list[datetime | None]:
    """The ends told, or to be told, by the warnings of the gap ``key`` names, which starts at
    ``starts_at`` (only warnings that end after it can be its own)."""
    rows = session.execute(
        select(Notice.key, Notice.ends_at).where(
            Notice.programme_id == programme_id,
            Notice.kind == NoticeKind.GAP,
            Notice.state.in_(TOLD),
            or_(Notice.ends_at.is_(None), Notice.ends_at > starts_at),
        )
    )
    return [ends for k, ends in rows if k == key or k.startswith(f"{key}:to:")]


def create(session: Session, programme_id: int, planned: Planned, now: datetime) -> bool:
    """Insert the notice unless its key exists; True when this call created it."""
    if session.scalar(select(Notice.id).where(Notice.key == planned.key)) is not None:
        return False
    try:
        with session.begin_nested():
            session.add(
                Notice(
                    programme_id=programme_id,
                    key=planned.key,
                    kind=planned.kind,
                    supporter_id=planned.supporter_id,
                    starts_at=planned.starts_at,
                    ends_at=planned.ends_at,
                    due_at=now,
                    created_at=now,
                )
            )
        return True
    except IntegrityError:
        return False  # another sweeper created it


def plan_due(services: Services) -> list[int]:
    """Plan due reminders and warnings, tidy stale and stuck rows: the notices due now, for
    the sweeper to send each on its own (``send_notice``), so that one that cannot be sent (a
    number no data key opens) holds up no other. Safe to run from any number of processes at
    once."""
    now = services.clock()
    with transaction(services.sessions) as session:
        running = select(Programme.id).where(Programme.retired_at.is_(None))
        for options in session.scalars(
            select(ScheduleSettings).where(ScheduleSettings.programme_id.in_(running))
        ):
            for planned in plan(session, options, now):
                create(session, options.programme_id, planned, now)
        return _tidy_and_list_due(session, now)


def _tidy_and_list_due(session: Session, now: datetime) -> list[int]:
    session.execute(
        update(Notice)
        .where(Notice.state == NoticeState.SENDING, Notice.sent_at <= now - STUCK_AFTER)
        .values(state=NoticeState.FAILED)
    )
    session.execute(
        update(Notice)
        .where(Notice.state == NoticeState.PENDING, Notice.due_at <= now - STALE)
        .values(state=NoticeState.SKIPPED)
    )
    return list(
        session.scalars(
            select(Notice.id).where(
                Notice.state == NoticeState.PENDING,
                or_(
                    Notice.due_at <= now - GRACE,  # its own wake-up had time to run first
                    and_(Notice.kind != NoticeKind.VERIFICATION, Notice.due_at <= now),
                ),
            )
        )
    )
