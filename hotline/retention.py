"""What is kept, and for how long: provider-side record deletion, FORGET, and the purge.

Conversation metadata stays for the programme's aggregate reports. A clinician's identifiers
(sealed number and its hash, opt-out rows) are purged ``retention_days`` after their last
contact once nothing is pending for them, or at once when they text FORGET. Every message
record at Twilio (inbound texts, relays, offers, check-ins) is deleted after delivery, so the
provider does not keep the bodies either; every call record (the caller's leg and each leg a
``<Dial>`` rang) is deleted a few minutes after that leg ends, so it does not keep who called
whom. Both go through one queue of SIDs (``MessageDeletion`` rows) worked through a batch at a
time by per-minute wake-ups (``Task.DELETE_DUE_RECORDS``, see ``hotline.drains``) and by the
sweeper for what Redis lost; ``telephony.delete_record`` reads each SID's kind.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from hotline import drains
from hotline.checkins import PENDING as PENDING_CHECKINS
from hotline.checkins import REPLY_WINDOW
from hotline.db import transaction
from hotline.effects import Effects, schedule
from hotline.events import claim, insert_new
from hotline.models import (
    OPEN_CONVERSATION,
    Call,
    CallState,
    CheckIn,
    Clinician,
    Conversation,
    MessageDeletion,
    OptOut,
    Programme,
    Supporter,
    WebhookEvent,
)
from hotline.privacy import Vault
from hotline.programmes import own_numbers
from hotline.services import Services
from hotline.telephony import (
    NOT_FOUND,
    PermanentError,
    TelephonyError,
    delete_record,
    is_record_sid,
)
from hotline.wakeups import Task

log = logging.getLogger(__name__)

MAX_DELETE_ATTEMPTS = 8
FINAL_STATUSES = frozenset({"delivered", "undelivered", "failed", "read", "canceled", "received"})
EVENT_KEEP = timedelta(days=3)  # de-duplication only needs Twilio's retry horizon
# Twilio refuses to delete a call until it is complete and processed (error 20009; its docs
# say to wait a minute or several after the end); a refusal is retried with backoff.
INBOUND_DELETE_DELAY = timedelta(minutes=2)  # the record must be final before Twilio deletes it
CALL_DELETE_DELAY = timedelta(minutes=5)
# A call open this long with no final status is asked about at Twilio (and again at most this
# often, and at most ASK_AT_ONCE calls a sweep), rather than waiting for STALE_CALL.
ASK_ABOUT_CALL = timedelta(minutes=5)
ASK_AT_ONCE = 20
STALE_CALL = timedelta(hours=6)  # no peer support call lasts this long with no status at all
DELETE_BATCH = 50  # records claimed (and committed) together, then deleted one by one


def queue_deletion(session: Session, sid: str, due_at: datetime, effects: Effects) -> int | None:
    """Ask for record ``sid`` (a message or a call) to be deleted at the provider at ``due_at``
    (idempotent per SID); the new row's id, or None when it was queued already (perhaps by a
    concurrent callback) or ``sid`` is not a message or call SID (nothing to delete)."""
    if not is_record_sid(sid):
        return None
    row_id = insert_new(session, MessageDeletion, sid=sid, due_at=due_at)
    if row_id is None:  # queued already: brought forward if this is sooner (records.backstop)
        row_id = session.scalar(
            update(MessageDeletion)
            .where(MessageDeletion.sid == sid, MessageDeletion.due_at > due_at)
            .values(due_at=due_at)
            .returning(MessageDeletion.id)
        )
    if row_id is not None:
        wake_deletions(effects, due_at)
    return row_id


def wake_deletions(effects: Effects, due_at: datetime) -> None:
    """Ask for the run that deletes the records due at ``due_at``: its minute's, shared."""
    effects.wake(Task.DELETE_DUE_RECORDS, *drains.wake_up_for(due_at))


def after_status(session: Session, sid: str, status: str, now: datetime, effects: Effects) -> None:
    """A status callback: once a message is final, its record at the provider can go.

    ``sent`` is final for carriers that never confirm delivery, so it is tried later too;
    deleting a message that is still in flight fails and is retried.
    """
    if status in FINAL_STATUSES:
        queue_deletion(session, sid, now + timedelta(minutes=1), effects)
    elif status == "sent":
        queue_deletion(session, sid, now + timedelta(minutes=30), effects)


def after_call(session: Session, sid: str, now: datetime, effects: Effects) -> None:
    """Call leg ``sid`` is over (a final status, or a ``<Dial>`` action for the dialled leg):
    its record at the provider (numbers, times, duration) goes CALL_DELETE_DELAY later."""
    queue_deletion(session, sid, now + CALL_DELETE_DELAY, effects)


def delete_due(services: Services, ident: int = 0, *, budget: float = drains.BUDGET) -> int:
    """Delete the provider records that are due, a batch at a time, until none are left; after
    ``budget`` seconds a fresh job carries on. ``ident`` is this run's wake-up (see
    ``hotline.drains``), 0 when the sweeper calls. The number of records gone (or given up).

    A refusal, a call not yet complete included, is retried with backoff up to
    MAX_DELETE_ATTEMPTS times; "not found" (20404) means it is gone already.
    """
    gone = 0

    def claim(session: Session, now: datetime) -> tuple[int, list[Any]]:
        batch = _claim(session, [MessageDeletion.due_at <= now], now)
        return len(batch), batch

    def work(batch: list[Any], deadline: float) -> bool:
        nonlocal gone
        done, finished = _delete_all(services, batch, deadline)
        gone += done
        return finished

    drains.drain(
        services,
        Task.DELETE_DUE_RECORDS,
        ident,
        claim=claim,
        work=work,
        next_due=_next_due,
        batch_size=DELETE_BATCH,
        budget=budget,
    )
    return gone


def delete_at_provider(services: Services, deletion_id: int) -> bool:
    """Delete one due record; True once it is gone (or given up). What a wake-up queued by an
    older release (one per record) runs; tests use it to drive one row."""
    now = services.clock()
    with transaction(services.sessions) as session:
        batch = _claim(
            session, [MessageDeletion.id == deletion_id, MessageDeletion.due_at <= now], now
        )
    return _delete_all(services, batch, time.monotonic() + drains.BUDGET)[0] > 0


def _claim(session: Session, where: list[Any], now: datetime) -> list[Any]:
    """Take up to DELETE_BATCH rows matching ``where`` for drains.LEASE, counting the attempt.

    Rows another worker holds are skipped and ``where`` is checked again on the locked row, so
    a row is claimed once (``drains.picked``)."""
    pick = drains.picked(MessageDeletion.id, MessageDeletion.due_at, where, DELETE_BATCH)
    rows = session.execute(
        update(MessageDeletion)
        .where(MessageDeletion.id.in_(pick), *where)
        .values(attempts=MessageDeletion.attempts + 1, due_at=now + drains.LEASE)
        .returning(MessageDeletion.id, MessageDeletion.sid, MessageDeletion.attempts)
        .execution_options(synchronize_session=False)
    ).all()
    return sorted(rows, key=lambda row: row.id)


def _next_due(session: Session, now: datetime, end: datetime) -> datetime | None:
    return session.scalar(
        select(func.min(MessageDeletion.due_at)).where(
            MessageDeletion.due_at > now, MessageDeletion.due_at <= end
        )
    )


def _delete_all(services: Services, batch: list[Any], deadline: float) -> tuple[int, bool]:
    """Delete the claimed records one by one: how many are gone (or given up), and whether
    every one was tried (False: out of time, the rest were handed back).

    Whatever happens, even an error that ends the run, what is done is recorded and what was
    not tried goes back uncounted; the one in hand keeps its attempt and its lease."""
    finished: list[int] = []
    tried = 0
    try:
        for row in batch:
            if time.monotonic() > deadline:
                break
            tried += 1
            if _delete_one(services, row):
                finished.append(row.id)
    finally:
        _settle(services, finished, [row.id for row in batch[tried:]])
    return len(finished), tried == len(batch)


def _delete_one(services: Services, row: Any) -> bool:
    """One claimed record: True once it is gone (or given up), False if it is tried later."""
    try:
        delete_record(services.telephony, row.sid)
        return True
    except Exception as error:  # anything unforeseen counts as a refusal: no row stalls a run
        # Permanent refusals are retried too: Twilio answers 4xx for a record in flight.
        if isinstance(error, PermanentError) and error.code == NOT_FOUND:  # or never existed
            return True
        if row.attempts < MAX_DELETE_ATTEMPTS:
            _retry_later(services, row.id, row.attempts, error)
            return False
        log.warning("gave up deleting provider record %s after %d attempts", row.sid, row.attempts)
        return True


def _settle(services: Services, finished: list[int], untried: list[int]) -> None:
    if not (finished or untried):
        return
    with transaction(services.sessions) as session:
        if finished:
            session.execute(delete(MessageDeletion).where(MessageDeletion.id.in_(finished)))
        if untried:  # due again now, the attempt not counted
            session.execute(
                update(MessageDeletion)
                .where(MessageDeletion.id.in_(untried))
                .values(attempts=MessageDeletion.attempts - 1, due_at=services.clock())
                .execution_options(synchronize_session=False)
            )


def delete_unqueued(services: Services, sid: str, attempt: int = 1) -> bool:
    """Delete record ``sid`` that a webhook could not queue (the database was down): straight
    at the provider; if it refuses (a message still in flight, a call not yet complete), into
    the database's queue and its retries, or, still down, again later from Redis."""
    try:
        delete_record(services.telephony, sid)
        return True
    except TelephonyError as error:
        if isinstance(error, PermanentError) and error.code == NOT_FOUND:
            return True
    now = services.clock()
    try:
        effects = Effects()
        with transaction(services.sessions) as session:
            queue_deletion(session, sid, now + timedelta(minutes=2), effects)
        schedule(services, effects)
    except SQLAlchemyError:
        if attempt >= MAX_DELETE_ATTEMPTS:
            log.warning("gave up deleting provider record %s after %d attempts", sid, attempt)
            return False
        services.wakeups.delete_record_later(sid, now + timedelta(minutes=2**attempt), attempt + 1)
    return False


def _retry_later(services: Services, deletion_id: int, attempts: int, error: Exception) -> None:
    code = error.code if isinstance(error, TelephonyError) else None
    log.info("provider record deletion retried later (%s %s)", type(error).__name__, code)
    due = services.clock() + timedelta(minutes=2**attempts)
    effects = Effects()
    with transaction(services.sessions) as session:
        session.execute(
            update(MessageDeletion)
            .where(MessageDeletion.id == deletion_id)
            .values(due_at=due)
            .execution_options(synchronize_session=False)
        )
    wake_deletions(effects, due)
    schedule(services, effects)


# The hourly reconciliation: every record of our numbers still at the provider an hour after
# it began (past the sent-text backstop's hour and every first attempt) is queued for deletion.
RECONCILE_EVERY = timedelta(hours=1)
RECONCILE_AFTER = timedelta(hours=1)
RECONCILE_LIMIT = 1000  # records read of each kind and direction, per number and run
RECONCILE_QUEUE = 1000  # records queued per run; the rest are listed again the next hour
RECONCILE_SPACING = timedelta(seconds=2)  # between their deletions: no burst on the queue
RECONCILE_BUDGET_S = 120.0  # listing stops starting new numbers after this long


def reconcile(services: Services) -> int:
    """Once an hour for the whole deployment: ask the provider which records of our numbers it
    still keeps, an hour or more old and over, and queue them for deletion, spaced out.

    The backstop behind every other path, for records whose SID never reached us or whose row
    was lost: a relay sent in a webhook's TwiML whose status callback never came, a dialled
    supporter's leg whose action and callback were both lost, an inbound text whose handling
    rolled back. Only our own numbers' records are listed (the account may serve other
    applications); only their SIDs are kept. A number whose list fails is skipped until the
    next hour. Returns how many were queued.
    """
    now = services.clock()
    hour = int(now.timestamp() // RECONCILE_EVERY.total_seconds())
    with transaction(services.sessions) as session:
        if not claim(session, f"reconcile:{hour}"):
            return 0  # this hour's is done, or another process is doing it
        numbers = sorted(own_numbers(session))
    found: list[str] = []
    deadline = time.monotonic() + RECONCILE_BUDGET_S
    for number in numbers:
        if time.monotonic() > deadline or len(found) >= RECONCILE_QUEUE:
            break  # the rest next hour: the worker's next sweep must not wait on the provider
        try:
            found += services.telephony.finished_records(
                number, now - RECONCILE_AFTER, RECONCILE_LIMIT
            )
        except Exception as error:  # a garbled page too; never its text (it may hold a body)
            code = getattr(error, "code", None)
            log.warning(
                "provider records of one number not listed (%s %s)", type(error).__name__, code
            )
    effects = Effects()
    with transaction(services.sessions) as session:
        queued = [
            sid
            for i, sid in enumerate(list(dict.fromkeys(found))[:RECONCILE_QUEUE])
            if queue_deletion(session, sid, now + i * RECONCILE_SPACING, effects)
        ]
    schedule(services, effects)
    if queued:
        log.info("reconciliation: %d provider records queued for deletion", len(queued))
    return len(queued)


def any_overdue(session: Session, now: datetime, grace: timedelta) -> bool:
    """Whether a deletion is ``grace`` past due: its wake-up was lost (Redis), or the minute's
    runs are behind; the sweeper then runs one too."""
    return session.scalar(select(exists().where(MessageDeletion.due_at <= now - grace))) or False


def forget(session: Session, clinician: Clinician) -> None:
    """Erase a clinician's identifiers now (FORGET, or the purge): their number, its hash,
    their opt-outs.

    Conversation rows stay as anonymous counts; pending check-ins are cancelled by the caller.
    A STOP they never undid stays counted in the reports ("check-ins opted out") as declining
    check-ins: the opt-out row goes, and with it the only other record of it; the row, with no
    number, can never be sent anything again.
    """
    if clinician.phone_hash is not None:
        stopped = session.execute(
            delete(OptOut)
            .where(
                OptOut.programme_id == clinician.programme_id,
                OptOut.phone_hash == clinician.phone_hash,
                _to_the_hotline(),
            )
            .returning(OptOut.id)
        ).first()
        if stopped is not None:
            clinician.checkins_declined = True
    clinician.phone_sealed = None
    clinician.phone_hash = None


def forget_opt_outs(session: Session, vault: Vault, programme_id: int, phone: str) -> None:
    """FORGET: the number's opt-out rows go too, under every configured key."""
    session.execute(
        delete(OptOut).where(
            OptOut.programme_id == programme_id,
            OptOut.phone_hash.in_(vault.blind_indexes(phone)),
            _to_the_hotline(),
        )
    )


def _to_the_hotline() -> Any:
    """Opt-outs that are a clinician's: of the programme's hotline number, or of a pool number
    when no supporter of the programme has that phone (a check-in's STOP to its old hotline
    number, kept in the pool after a renumbering: checkins.record_status). One of a pool
    number is a supporter's when she has it (routing keeps off it), even when the supporter is
    also a clinician."""
    hotline = select(Programme.hotline_number).where(Programme.id == OptOut.programme_id)
    supporters = select(Supporter.id).where(
        Supporter.programme_id == OptOut.programme_id, Supporter.phone_hash == OptOut.phone_hash
    )
    return or_(OptOut.sender == hotline.scalar_subquery(), ~supporters.exists())


def calls_to_ask_about(session: Session, now: datetime) -> list[str]:
    """Callers' legs open ASK_ABOUT_CALL or more with no final status, not asked about for as
    long: claimed (``status_asked_at``), so of sweepers running at once one asks about each."""
    quiet_since = now - ASK_ABOUT_CALL
    due = (
        select(Call.id)
        .where(
            Call.state != CallState.ENDED,
            Call.created_at <= quiet_since,
            or_(Call.status_asked_at.is_(None), Call.status_asked_at <= quiet_since),
        )
        .order_by(Call.status_asked_at.is_not(None), Call.status_asked_at, Call.id)
        .limit(ASK_AT_ONCE)
    )
    claimed = session.execute(
        update(Call)
        .where(
            Call.id.in_(due.scalar_subquery()),
            or_(Call.status_asked_at.is_(None), Call.status_asked_at <= quiet_since),
        )
        .values(status_asked_at=now)
        .returning(Call.call_sid)
        .execution_options(synchronize_session=False)
    )
    return list(claimed.scalars())


def end_stale_calls(session: Session, now: datetime, effects: Effects) -> int:
    """Calls whose final status callback never came (lost, or sent while the database
    was down) after STALE_CALL: over, and the caller's leg queued for deletion at Twilio."""
    stale = session.scalars(
        select(Call).where(
            Call.state.in_(tuple(s for s in CallState if s != CallState.ENDED)),
            Call.created_at <= now - STALE_CALL,
        )
    ).all()
    for call in stale:
        if call.followed_up_at is None and call.state != CallState.BRIDGED:
            call.followed_up_at = now  # nobody took it: no follow-up is owed
        call.state, call.ended_at = CallState.ENDED, now
        after_call(session, call.call_sid, now, effects)
    return len(stale)


def purge_expired(session: Session, now: datetime, retention: timedelta) -> int:
    """Forget clinicians silent for ``retention`` with nothing open or pending for them, nor
    a check-in sent within REPLY_WINDOW: its reply goes to the peer who supported them, which
    needs their number still known (the last check-in is often sent ``retention`` after the
    conversation, when the number would otherwise go that night)."""
    pending_checkin = exists().where(
        CheckIn.clinician_id == Clinician.id,
        CheckIn.state.in_(PENDING_CHECKINS),
    )
    recent_checkin = exists().where(
        CheckIn.clinician_id == Clinician.id,
        CheckIn.sent_at > now - REPLY_WINDOW,
    )
    open_conversation = exists().where(
        Conversation.clinician_id == Clinician.id,
        Conversation.state.in_(OPEN_CONVERSATION),
    )
    stale = session.scalars(
        select(Clinician).where(
            Clinician.phone_hash.is_not(None),
            Clinician.last_contact_at <= now - retention,
            ~pending_checkin,
            ~recent_checkin,
            ~open_conversation,
        )
    ).all()
    for clinician in stale:
        forget(session, clinician)

    # Opt-outs no clinician or supporter row refers to (a STOP from someone who never wrote):
    # Twilio keeps its own block; ours has nothing left to guard after the retention period.
    def known(model: type[Clinician] | type[Supporter]) -> Any:
        return exists().where(
            model.programme_id == OptOut.programme_id, model.phone_hash == OptOut.phone_hash
        )

    session.execute(
        delete(OptOut).where(
            OptOut.created_at <= now - retention, ~known(Clinician), ~known(Supporter)
        )
    )
    session.execute(delete(WebhookEvent).where(WebhookEvent.received_at <= now - EVENT_KEEP))
    return len(stale)
