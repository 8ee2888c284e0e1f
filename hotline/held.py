"""A conversation's held texts sent from a job, through the REST API.

A clinician's texts wait, sealed, while nobody has their request (``routing.hold_text``). Most
reach the supporter in the reply to their ACCEPT; the rest go from here: those that did not fit
in that reply (Twilio sends at most 10 messages in one), and those held while a call rang,
after the call (``ringing.follow_up_call``). The sweeper sends what a lost wake-up left.

In order, whatever arrives meanwhile, and nothing lost: a run takes the conversation's lease
(``relaying_since``, under its row lock; one run at a time) and sends the held texts oldest
first, deleting each once Twilio has taken it and renewing the lease as it goes. While the lease
is fresh, or texts are held, a clinician's new text is held behind them rather than relayed
ahead (``routing.texts_waiting``, and the fast path's statement); the run sends those too. A
text Twilio does not take (429, 5xx, unreachable after the short retries) stays held, in its
place, and the run stops for the sweeper's next round; so does a run past its time budget (an
RQ job is killed at its timeout). A run killed mid-send leaves its lease to expire and the text
it was sending held: that one may reach the supporter twice, never not at all.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from hotline import routing
from hotline.db import transaction
from hotline.effects import LOST, remember_sent, send_one
from hotline.models import Conversation, ConversationState, PendingText, Supporter
from hotline.people import supporter_phone
from hotline.services import Services
from hotline.texting import OutboundText

log = logging.getLogger(__name__)

# A run starts no new text after this long: one text can take about 40 s (three attempts at
# Twilio's timeouts), and an RQ job is killed at 60 s (workers.queue.JOB_TIMEOUT).
BUDGET_S = 10.0


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
    if take_lease and routing.relay_leased(conv.relaying_since, now):
        return False  # another run is sending them
    if session.scalar(select(routing.awaiting_follow_up(conversation_id))):
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
    texts = [(row.id, vault.open(row.sealed, routing.PENDING_TEXT_CONTEXT)) for row in rows]
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
