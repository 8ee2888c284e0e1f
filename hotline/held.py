"""A clinician's texts held while nobody has their request, and sent on once a peer has it.

A clinician's texts wait, sealed, while nobody has their request (``hold_text``). Most reach the
supporter in the reply to their ACCEPT (``relay_held``, from routing.accept); the rest go from a
job, through the REST API (``send_held``): those that did not fit in that reply (Twilio sends
at most 10 messages in one), and those held while a call rang, after the call
(``ringing.follow_up_call``). The sweeper sends what a lost wake-up left.

In order, whatever arrives meanwhile, and nothing lost: a run takes the conversation's lease
(``relaying_since``, under its row lock; one run at a time) and sends the held texts oldest
first, deleting each once Twilio has taken it and renewing the lease as it goes. While the lease
is fresh, or texts are held, a clinician's new text is held behind them rather than relayed
ahead (``texts_waiting``, and the fast path's statement); the run sends those too. A text Twilio
does not take (429, 5xx, unreachable after the short retries) stays held, in its place, and the
run stops for the sweeper's next round; so does a run past its time budget (an RQ job is killed
at its timeout). A run killed mid-send leaves its lease to expire and the text it was sending
held: that one may reach the supporter twice, never not at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnExpressionArgument, Exists, delete, exists, select, update
from sqlalchemy.orm import Session

from hotline import wording
from hotline.db import transaction
from hotline.effects import LOST, Effects, remember_sent, send_one
from hotline.models import Call, Conversation, ConversationState, PendingText, Supporter
from hotline.people import supporter_phone
from hotline.privacy import Vault
from hotline.services import Services
from hotline.texting import OutboundText

log = logging.getLogger(__name__)

PENDING_TEXT_CONTEXT = b"pending-text"
JOINER = "\n\n"
# How long held texts on their way through the REST API (send_held) hold a clinician's new
# texts behind them: past this the run is taken to have died, and the sweeper resumes.
RELAY_LEASE = timedelta(minutes=2)
# A run starts no new text after this long: one text can take about 40 s (three attempts at
# Twilio's timeouts), and an RQ job is killed at 60 s (workers.queue.JOB_TIMEOUT).
BUDGET_S = 10.0


def relay_held(
    session: Session,
    vault: Vault,
    conversation_id: int,
    to: str,
    from_: str,
    effects: Effects,
    *,
    at_most: int | None = None,
) -> bool:
    """Relay the clinician's texts held for the conversation, in order, and delete them.
    ``at_most``: that many texts at most; more are joined into as few as fit (a burst of short
    texts arrives as one), and what still does not fit stays held. True if some are held
    still."""
    held = session.scalars(
        select(PendingText)
        .where(PendingText.conversation_id == conversation_id)
        .order_by(PendingText.id)
    ).all()
    bodies = [vault.open(row.sealed, PENDING_TEXT_CONTEXT) for row in held]
    if at_most is None or len(bodies) <= at_most:
        joined = [(body, 1) for body in bodies]
    else:
        joined = join_texts(bodies)
    relayed = joined if at_most is None else joined[:at_most]
    for body, _ in relayed:
        effects.text(to, from_, body)
    for row in held[: sum(count for _, count in relayed)]:
        session.delete(row)
    return len(relayed) < len(joined)


def join_texts(bodies: list[str]) -> list[tuple[str, int]]:
    """``bodies`` in order, neighbours joined by a blank line while the result fits in one
    text: each joined text with how many of ``bodies`` it holds."""
    joined: list[tuple[str, int]] = []
    for body in bodies:
        if joined and len(joined[-1][0]) + len(JOINER) + len(body) <= wording.MAX_TEXT:
            text, count = joined[-1]
            joined[-1] = (text + JOINER + body, count + 1)
        else:
            joined.append((body, 1))
    return joined


def texts_waiting(session: Session, conversation_id: int, now: datetime) -> bool:
    """Whether a clinician's text in this live conversation must wait behind held ones (still
    held, or on their way through the REST API) rather than be relayed ahead of them. Read
    under the conversation's row lock, which a sending run takes to claim and to finish.

    Not behind texts held as a call rang while that call is yet to be followed up: those go
    with its follow-up, after the call (its end lost, once the sweeper has asked Twilio about
    it); texts during and after the call are relayed as they come, as before."""
    sending = select(Conversation.relaying_since).where(Conversation.id == conversation_id)
    if relay_leased(session.scalar(sending), now):
        return True
    held = exists().where(PendingText.conversation_id == conversation_id)
    return bool(session.scalar(select(held & ~awaiting_follow_up(conversation_id))))


def relay_leased(since: datetime | None, now: datetime) -> bool:
    """Whether a run sending held texts (``relaying_since``) holds its lease still."""
    return since is not None and since > now - RELAY_LEASE


def awaiting_follow_up(conversation_id: int | ColumnExpressionArgument[int]) -> Exists:
    """The conversation has a call not yet followed up (live, or over with its follow-up text
    to come): texts held as it rang go with that follow-up. A conversation's id, or a column
    for a correlated test."""
    return exists().where(Call.conversation_id == conversation_id, Call.followed_up_at.is_(None))


def move_held(session: Session, from_id: int, to_id: int) -> None:
    """A request replaced by another (a call nobody took becoming a call-back, a new call
    superseding a waiting call-back): what the clinician texted for it goes on with it, in
    order, before the old one ends and deletes what it holds."""
    session.execute(
        update(PendingText)
        .where(PendingText.conversation_id == from_id)
        .values(conversation_id=to_id)
        .execution_options(synchronize_session=False)
    )


def hold_text(session: Session, vault: Vault, conv: Conversation, body: str) -> None:
    """Keep a clinician's text, sealed, until a supporter accepts (then it is relayed, deleted)."""
    if body.strip():
        session.add(
            PendingText(conversation_id=conv.id, sealed=vault.seal(body, PENDING_TEXT_CONTEXT))
        )


@dataclass(frozen=True)
class _Batch:
    to: str
    from_: str
    texts: list[tuple[int, str]]  # (pending_texts.id, body), oldest first


def send_held(services: Services, conversation_id: int) -> bool:
    """Send the conversation's held texts to its supporter, in order. True when none is left
    held (all taken, the conversation ended, or nothing to send); False when some wait still:
    Twilio did not take one, the time budget ran out, another run holds the lease, or a call
    is yet to be followed up (its follow-up sends them)."""
    deadline = time.monotonic() + BUDGET_S
    callback = services.callback_url("/twilio/status")
    first = True
    while True:
        with transaction(services.sessions) as session:
            batch = _next(services, session, conversation_id, take_lease=first)
        if isinstance(batch, bool):
            return batch
        first = False
        for pending_id, body in batch.texts:
            if time.monotonic() > deadline:
                _release(services, conversation_id)
                return False
            sid = send_one(services, OutboundText(batch.to, batch.from_, body), callback)
            if sid is LOST:
                log.warning("a held text was not taken by the provider: it stays held")
                _release(services, conversation_id)
                return False
            if isinstance(sid, str):
                remember_sent(services, [sid])
            with transaction(services.sessions) as session:
                if not _taken(services, session, conversation_id, pending_id):
                    return True  # the conversation ended meanwhile: what was held went with it


def _next(
    services: Services, session: Session, conversation_id: int, *, take_lease: bool
) -> _Batch | bool:
    """The held texts to send now, under the conversation's row lock and lease; else whether
    none is left held (True) or some wait for another run or a follow-up (False)."""
    conv = session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    if conv is None or conv.state != ConversationState.ACTIVE:
        return True
    if conv.supporter_id is None or conv.pool_number is None:
        return True
    now = services.clock()
    if take_lease and relay_leased(conv.relaying_since, now):
        return False  # another run is sending them
    if session.scalar(select(awaiting_follow_up(conversation_id))):
        conv.relaying_since = None
        return False  # held while a call rang: its follow-up sends them, after the call
    rows = session.execute(
        select(PendingText.id, PendingText.sealed)
        .where(PendingText.conversation_id == conversation_id)
        .order_by(PendingText.id)
    ).all()
    if not rows:
        conv.relaying_since = None
        return True
    conv.relaying_since = now
    vault = services.vault
    texts = [(row.id, vault.open(row.sealed, PENDING_TEXT_CONTEXT)) for row in rows]
    to = supporter_phone(vault, session.get_one(Supporter, conv.supporter_id))
    return _Batch(to, conv.pool_number, texts)


def _taken(services: Services, session: Session, conversation_id: int, pending_id: int) -> bool:
    """Twilio took (or refused for good) held text ``pending_id``: deleted, the lease renewed.
    False if the conversation has ended meanwhile."""
    conv = session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    session.execute(delete(PendingText).where(PendingText.id == pending_id))
    if conv is None or conv.state != ConversationState.ACTIVE:
        return False
    conv.relaying_since = services.clock()
    return True


def _release(services: Services, conversation_id: int) -> None:
    """The run stops before its texts are all sent: the lease goes, so the sweeper goes on."""
    with transaction(services.sessions) as session:
        conv = session.scalar(
            select(Conversation).where(Conversation.id == conversation_id).with_for_update()
        )
        if conv is not None:
            conv.relaying_since = None
