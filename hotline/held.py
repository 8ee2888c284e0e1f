"""A conversation's held texts sent from a job, through the REST API.

A clinician's texts wait, sealed, while nobody has their request (``routing.hold_text``). Most
reach the supporter in the reply to their ACCEPT; the rest go from here: those that did not fit
in that reply (Twilio sends at most 10 messages in one), and those held while a call rang,
after the call (``ringing.follow_up_call``). The sweeper sends what a lost wake-up left.

In order, whatever arrives meanwhile: a run claims the held texts under the conversation's row
lock (deleting them, so a second run finds none and nothing goes twice) and marks the
conversation ``relaying_since``; while that mark is fresh, or texts are held, a clinician's new
text is held behind them rather than relayed ahead (``routing.texts_waiting``, and the fast
path's statement). After sending, the mark goes under the same lock; a text Twilio did not take
(429, 5xx, unreachable after the short retries) is held again ahead of those written
meanwhile, for the sweeper's next round; what was written meanwhile is sent next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sqlalchemy import Exists, exists, select
from sqlalchemy.orm import Session

from hotline import routing
from hotline.db import transaction
from hotline.effects import LOST, remember_sent, send_one
from hotline.models import Call, Conversation, ConversationState, PendingText, Supporter
from hotline.people import supporter_phone
from hotline.services import Services
from hotline.texting import OutboundText

log = logging.getLogger(__name__)

ROUNDS = 5  # claims a run makes while texts keep arriving; then the next wake-up or sweep


@dataclass(frozen=True)
class _Claim:
    to: str
    from_: str
    bodies: list[str]


def send_held(services: Services, conversation_id: int) -> bool:
    """Send the conversation's held texts to its supporter, in order. True when none is left
    held (all taken, or nothing to send); False when some wait still (Twilio did not take
    them, another run is sending, or a call is yet to be followed up)."""
    for _ in range(ROUNDS):
        with transaction(services.sessions) as session:
            claim = _claim(services, session, conversation_id)
        if claim is None:
            return not _left(services, conversation_id)
        sent, lost = _send(services, claim)
        if sent:
            remember_sent(services, sent)
        with transaction(services.sessions) as session:
            left = _release(services, session, conversation_id, lost)
        if lost:
            log.warning("%d held texts not taken by the provider: held again", len(lost))
            return False
        if not left:
            return True
    return False


def _claim(services: Services, session: Session, conversation_id: int) -> _Claim | None:
    conv = session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    if conv is None or conv.state != ConversationState.ACTIVE:
        return None
    if conv.supporter_id is None or conv.pool_number is None:
        return None
    now = services.clock()
    if conv.relaying_since is not None and conv.relaying_since > now - routing.RELAY_LEASE:
        return None  # another run is sending them
    if session.scalar(select(_awaiting_follow_up(conversation_id))):
        return None  # held while a call rang: its follow-up sends them, after the call
    rows = _held(session, conversation_id)
    if not rows:
        return None
    vault = services.vault
    bodies = [vault.open(row.sealed, routing.PENDING_TEXT_CONTEXT) for row in rows]
    for row in rows:
        session.delete(row)
    conv.relaying_since = now
    to = supporter_phone(vault, session.get_one(Supporter, conv.supporter_id))
    return _Claim(to, conv.pool_number, bodies)


def _send(services: Services, claim: _Claim) -> tuple[list[str], list[str]]:
    """The SIDs of the texts Twilio took, and the texts from the first it did not take on."""
    callback = services.callback_url("/twilio/status")
    sent: list[str] = []
    for i, body in enumerate(claim.bodies):
        outcome = send_one(services, OutboundText(claim.to, claim.from_, body), callback)
        if outcome is LOST:
            return sent, claim.bodies[i:]
        if isinstance(outcome, str):
            sent.append(outcome)
    return sent, []


def _release(services: Services, session: Session, conversation_id: int, lost: list[str]) -> bool:
    """Done sending: the mark goes; ``lost`` is held again ahead of what was written meanwhile.
    True if texts are held still."""
    conv = session.scalar(
        select(Conversation).where(Conversation.id == conversation_id).with_for_update()
    )
    if conv is None or conv.state != ConversationState.ACTIVE:
        return False  # ended meanwhile: what was held went with it (end_conversation)
    conv.relaying_since = None
    later = _held(session, conversation_id)
    if lost:
        vault = services.vault
        bodies = [vault.open(row.sealed, routing.PENDING_TEXT_CONTEXT) for row in later]
        for row in later:
            session.delete(row)
        session.flush()
        for body in [*lost, *bodies]:
            routing.hold_text(session, vault, conv, body)
        return True
    return bool(later)


def _held(session: Session, conversation_id: int) -> list[PendingText]:
    return list(
        session.scalars(
            select(PendingText)
            .where(PendingText.conversation_id == conversation_id)
            .order_by(PendingText.id)
            .with_for_update()
        )
    )


def _left(services: Services, conversation_id: int) -> bool:
    with services.sessions() as session:
        held = exists().where(PendingText.conversation_id == conversation_id)
        return bool(session.scalar(select(held)))


def _awaiting_follow_up(conversation_id: int) -> Exists:
    return exists().where(Call.conversation_id == conversation_id, Call.followed_up_at.is_(None))
