"""Work that happens later, driven by wake-ups and by the sweeper.

The database says what is due; a wake-up in Redis only makes it happen on time. Every function
here re-reads state, claims its row with a conditional update, and is safe to run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import ParamSpec, TypeVar

from sqlalchemy import exists, or_, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotline import checkins, held, notices, retention, ringing, routing, voiceline, wording
from hotline.conversations import end_conversation, offer_waiting, open_conversation
from hotline.db import run_in_transaction, transaction
from hotline.effects import UNANSWERED, Effects, schedule, send
from hotline.models import (
    OPEN_CONVERSATION,
    Call,
    CallState,
    Channel,
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
    Programme,
    Supporter,
)
from hotline.people import clinician_phone, supporter_phone
from hotline.programmes import ProgrammeConfig, config_of
from hotline.services import Services
from hotline.telephony import TelephonyError
from hotline.wakeups import Task

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")

# The sweeper leaves work this late to its wake-up: only what Redis lost is the sweeper's.
SWEEP_GRACE = timedelta(seconds=15)
CLOSE_OWED_FOR = timedelta(days=1)  # a "request closed" text not taken is retried this long
SWEEP_INTERVAL = timedelta(seconds=30)
# A conversation with no text either way for this long is closed (and check-ins follow).
INACTIVITY_TIMEOUT = timedelta(hours=48)


def expire_offer(services: Services, offer_id: int) -> bool:
    """No answer in time: the offer lapses and the next supporter is offered the conversation."""
    effects = Effects()
    now = services.clock()
    with transaction(services.sessions) as session:
        offer = session.get(Offer, offer_id)
        if offer is None or offer.state != OfferState.PENDING:
            return False
        # The programme's lock before the offer's row, as the sweeper and offer-making take
        # them (the offer first, then the programme in reserve, deadlocked with the sweeper).
        routing.lock_offers_programme(session, offer)
        if offer.expires_at > now:  # woken early (clock skew): come back on time
            effects.wake(Task.EXPIRE_OFFER, offer.id, offer.expires_at)
            expired = False
        elif expired := routing.answer(session, offer, OfferState.EXPIRED, now):
            conv = session.get_one(Conversation, offer.conversation_id)
            # A ring whose dial action never came: the request goes on by text, as a call-back
            # (a late action then replays that promise; a hang-up leaves it waiting).
            rang_out = session.execute(
                update(Call)
                .where(Call.conversation_id == conv.id, Call.state == CallState.RINGING)
                .values(state=CallState.CALLBACK)
            )
            if conv.state == ConversationState.QUEUED:
                p = config_of(session.get_one(Programme, conv.programme_id), services.settings)
                if conv.channel == Channel.VOICE and conv.clinician_id is None:
                    # A hidden number cannot be called back: nothing to offer (the caller
                    # hears so from the late action, as from fall_to_call_back).
                    end_conversation(session, p, conv, "missed", now, effects)
                else:
                    if rang_out.rowcount:  # type: ignore[attr-defined]
                        # A peer who claimed the request the call replaced hears it became a
                        # call-back before its offer, as offer_call_back tells her: after it,
                        # "nothing more is needed" reads as the offer's end.
                        ringing.settle_claims(session, services.vault, p, now, effects)
                    routing.offer_or_fall_back(session, services.vault, p, conv, now, effects)
    send(services, effects)
    schedule(services, effects)
    return expired


@dataclass(frozen=True)
class _ProgrammeSweep:
    effects: Effects
    closed: int
    offered: int
    taken_calls: list[int]
    held: list[int]


def _sweep_programme(
    services: Services, programme_id: int, now: datetime, session: Session
) -> _ProgrammeSweep:
    """One programme's part of the sweep, in one transaction (run again whole if retried)."""
    effects = Effects()  # a retried attempt starts with nothing decided
    # The programme's lock first, then conversation rows, then offers: the order of
    # offer-making, of a clinician's text, of answering an offer.
    routing.lock_programme(session, programme_id)
    p = config_of(session.get_one(Programme, programme_id), services.settings)
    if p.retired:  # nothing opens or waits there (retirement.py): only what it still owes,
        # a clinician's "request closed" and a peer's word that her claim has ended
        tell_closed(services, session, p, now, effects)
        ringing.settle_claims(session, services.vault, p, now, effects)
        return _ProgrammeSweep(effects, 0, 0, [], [])
    closed = close_idle(services, session, p, now, effects)
    tell_closed(services, session, p, now, effects)
    ringing.settle_claims(session, services.vault, p, now, effects)  # their wake-ups lost
    offered = offer_waiting(services, session, p, now, effects)
    taken_calls = calls_not_followed_up(session, p.id, now - SWEEP_GRACE)
    held_ids = held_not_relayed(session, p.id, now - SWEEP_GRACE)
    return _ProgrammeSweep(effects, closed, offered, taken_calls, held_ids)


@dataclass(frozen=True)
class SweepReport:
    offers_expired: int = 0
    conversations_offered: int = 0
    conversations_closed: int = 0
    checkins_sent: int = 0
    checkins_unknown: int = 0
    provider_records_deleted: int = 0
    clinicians_purged: int = 0
    provider_records_found: int = 0  # left at the provider by a lost path (hourly)


def sweep(services: Services) -> SweepReport:
    """Do what is overdue (wake-ups Redis lost), close idle conversations, offer waiting ones.

    Safe to run from any number of processes at once: every step claims rows conditionally.
    """
    now = services.clock()
    stale_calls = Effects()
    with transaction(services.sessions) as session:
        retention.end_stale_calls(session, now, stale_calls)
        calls_to_ask_about = retention.calls_to_ask_about(session, now)
        overdue_offers = list(
            session.scalars(
                select(Offer.id).where(
                    Offer.state == OfferState.PENDING, Offer.expires_at <= now - SWEEP_GRACE
                )
            )
        )
        unknown = checkins.recover_stuck(session, now)  # first: it can make rows due again
        checkins_late = checkins.any_overdue(session, now, SWEEP_GRACE)
        deletions_late = retention.any_overdue(session, now, SWEEP_GRACE)
        purged = retention.purge_expired(
            session, now, timedelta(days=services.settings.retention_days)
        )
        # A programme retired in the last day may still owe a clinician the text that their
        # request closed, from before (tell_closed); one retired any time ago, a peer the word
        # that her claim of a request ended (ringing.settle_claims: its wake-up lost, and the
        # sweeper down since); it retired with nothing else open.
        owing = Programme.retired_at > now - CLOSE_OWED_FOR
        claims = ringing.open_claims(Programme.id)
        programme_ids = list(
            session.scalars(
                select(Programme.id).where(or_(Programme.retired_at.is_(None), owing, claims))
            )
        )
    schedule(services, stale_calls)
    try:
        for call_sid in calls_to_ask_about:  # their final status may have been lost
            voiceline.ask_whether_over(services, call_sid)
    except TelephonyError as error:  # the rest are asked about by a later sweep
        log.warning("could not ask Twilio about calls with no final status: %s", error)
    expired = sum(
        bool(_on_its_own(f"offer {offer_id}", expire_offer, services, offer_id))
        for offer_id in overdue_offers
    )
    sent = checkins.send_due(services).sent if checkins_late else 0
    deleted = retention.delete_due(services) if deletions_late else 0
    closed = offered = 0
    for programme_id in programme_ids:
        # A deadlock with a webhook or a job that took these rows in another order (PostgreSQL
        # picks one to abort) is retried whole rather than losing the rest of the sweep.
        work = partial(_sweep_programme, services, programme_id, now)
        done = _on_its_own(f"programme {programme_id}", run_in_transaction, services.sessions, work)
        if done is None:
            continue
        closed, offered = closed + done.closed, offered + done.offered
        send(services, done.effects)
        schedule(services, done.effects)
        # Each on its own too: a supporter's number or a held text no data key opens would
        # fail here every sweep, and every later programme's pass with it.
        for call_id in done.taken_calls:
            _on_its_own(f"follow-up of call {call_id}", ringing.follow_up_call, services, call_id)
        for conversation_id in done.held:
            what = f"held texts of conversation {conversation_id}"
            _on_its_own(what, held.send_held, services, conversation_id)
    # Verification codes, shift reminders, coverage-gap warnings: each on its own as well.
    for notice_id in _on_its_own("notice planning", notices.plan_due, services) or []:
        _on_its_own(f"notice {notice_id}", notices.send_notice, services, notice_id)
    reconciled = retention.reconcile(services)  # last: it waits on the provider's lists
    report = SweepReport(expired, offered, closed, sent, unknown, deleted, purged, reconciled)
    if report != SweepReport():
        log.info("sweep: %s", report)
    return report


def _on_its_own(what: str, work: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R | None:
    """``work``'s result, or None when it fails on something of its own (a number no data key
    opens, a bug that one row brings out), logged, so the rest of the sweep still runs: it
    would fail there again every sweep, and every later step with it. The database down or
    timing out is everyone's: raised, and the sweep stops as a whole."""
    try:
        return work(*args, **kwargs)
    except OperationalError:
        raise
    except Exception:
        log.exception("sweep: %s failed; the rest of the sweep goes on", what)
        return None


def calls_not_followed_up(session: Session, programme_id: int, ended_by: datetime) -> list[int]:
    """Calls a supporter took, over by ``ended_by``, whose follow-up text has not gone out
    (its wake-up lost with Redis, or the run sending it killed). From the programme's live
    conversations, which are few."""
    return list(
        session.scalars(
            select(Call.id)
            .join(Conversation, Conversation.id == Call.conversation_id)
            .where(
                Conversation.programme_id == programme_id,
                Conversation.state == ConversationState.ACTIVE,
                Call.state == CallState.ENDED,
                ringing.follow_up_owed(ended_by),
                Call.ended_at <= ended_by,
            )
        )
    )


def held_not_relayed(session: Session, programme_id: int, accepted_by: datetime) -> list[int]:
    """Live conversations, taken by ``accepted_by``, with texts held still: the rest of an
    ACCEPT's reply whose wake-up was lost, or texts Twilio did not take. Not those with a call
    not yet followed up: its follow-up sends them, after the call."""
    holds = exists().where(PendingText.conversation_id == Conversation.id)
    return list(
        session.scalars(
            select(Conversation.id).where(
                Conversation.programme_id == programme_id,
                Conversation.state == ConversationState.ACTIVE,
                Conversation.accepted_at <= accepted_by,
                holds,
                ~held.awaiting_follow_up(Conversation.id),
                or_(
                    Conversation.relaying_since.is_(None),
                    Conversation.relaying_since <= accepted_by - held.RELAY_LEASE,
                ),
            )
        )
    )


def close_idle(
    services: Services, session: Session, p: ProgrammeConfig, now: datetime, effects: Effects
) -> int:
    """End conversations with no text either way for INACTIVITY_TIMEOUT; check-ins follow.

    A request nobody took in that time closes too: its held texts are deleted (they must not
    wait for good) and the clinician is told, with the crisis line, to write again any time.
    """
    idle = session.scalars(
        select(Conversation).where(
            Conversation.programme_id == p.id,
            Conversation.state.in_(OPEN_CONVERSATION),
            Conversation.last_activity_at <= now - INACTIVITY_TIMEOUT,
        )
    ).all()
    closed = 0
    for conv in idle:
        if not _still_idle(session, conv, now - INACTIVITY_TIMEOUT):
            continue  # a text, or a peer accepting, got there first
        closed += 1
        if conv.state == ConversationState.QUEUED:
            clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
            to = clinician_phone(services.vault, clinician) if clinician else None
            call_back = conv.channel == Channel.VOICE
            body = wording.request_closed(p, call_back)
            effects.text(to, p.hotline_number, body, owed_by=conv.id, closing=True)
            end_conversation(session, p, conv, UNANSWERED, now, effects)
            continue
        if conv.supporter_id is not None and conv.pool_number is not None:
            supporter = session.get_one(Supporter, conv.supporter_id)
            effects.text(
                supporter_phone(services.vault, supporter), conv.pool_number, wording.closed_idle()
            )
        end_conversation(session, p, conv, "inactive", now, effects)
    return closed


def tell_closed(
    services: Services, session: Session, p: ProgrammeConfig, now: datetime, effects: Effects
) -> int:
    """Tell again the clinicians whose "your request has closed" text Twilio did not take
    (``effects.owe_again``), for a day after it closed; claimed, so each is told once a round.
    Once the programme has retired meanwhile, "text here any time to try again" is no longer
    true: they are told the line has closed instead, with where to turn, as a text to it is
    (in one text: ``wording.line_closed_in_one``)."""
    owed = session.scalars(
        select(Conversation).where(
            Conversation.programme_id == p.id,
            Conversation.close_owed_at.is_not(None),
            Conversation.ended_at > now - CLOSE_OWED_FOR,
        )
    ).all()
    for conv in owed:
        claimed = session.execute(
            update(Conversation)
            .where(Conversation.id == conv.id, Conversation.close_owed_at.is_not(None))
            .values(close_owed_at=None)
            .execution_options(synchronize_session=False)
        )
        clinician = session.get(Clinician, conv.clinician_id) if conv.clinician_id else None
        if not claimed.rowcount or clinician is None:  # type: ignore[attr-defined]
            continue
        if open_conversation(session, clinician) is not None:
            continue  # they wrote again since: a new request has them, and its own answers
        to = clinician_phone(services.vault, clinician)
        call_back = conv.channel == Channel.VOICE
        # One text either way: two could half go, and the retry of both repeat the half.
        told = wording.line_closed_in_one(p) if p.retired else wording.request_closed(p, call_back)
        effects.text(to, p.hotline_number, told, owed_by=conv.id, closing=True)
    return len(owed)


def _still_idle(session: Session, conv: Conversation, cutoff: datetime) -> bool:
    """Claim closing ``conv``: True if, as the database says now, it is in the state it was
    read in and idle since ``cutoff`` (the row stays locked to this transaction)."""
    claimed = session.execute(
        update(Conversation)
        .where(
            Conversation.id == conv.id,
            Conversation.state == conv.state,
            Conversation.last_activity_at <= cutoff,
        )
        .values(last_activity_at=Conversation.last_activity_at)
        .execution_options(synchronize_session=False)
    )
    return bool(claimed.rowcount)  # type: ignore[attr-defined]
