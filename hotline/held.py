"""A conversation's held texts sent from a job, through the REST API.

A clinician's texts wait, sealed, while nobody has their request (``routing.hold_text``). Most
reach the supporter in the reply to their ACCEPT; the rest go from here: those that did not fit
in that reply (Twilio sends at most 10 messages in one), and those held while a call rang,
after the call (``ringing.follow_up_call``). The sweeper sends what a lost wake-up left.

Taken under the conversation's held rows' locks and deleted before sending (a second run finds
none, so nothing goes twice); a text Twilio did not take (429, 5xx, unreachable after the short
retries) is held again, sealed, and the sweeper sends it on a later round.
"""

from __future__ import annotations

import logging

from sqlalchemy import select

from hotline import routing
from hotline.db import transaction
from hotline.effects import LOST, remember_sent, send_one
from hotline.models import Conversation, ConversationState, PendingText, Supporter
from hotline.people import supporter_phone
from hotline.services import Services
from hotline.texting import OutboundText

log = logging.getLogger(__name__)


def send_held(services: Services, conversation_id: int) -> int:
    """Send the conversation's held texts to its supporter, in order; how many were taken."""
    vault = services.vault
    with transaction(services.sessions) as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None or conv.state != ConversationState.ACTIVE:
            return 0
        if conv.supporter_id is None or conv.pool_number is None:
            return 0
        rows = session.scalars(
            select(PendingText)
            .where(PendingText.conversation_id == conversation_id)
            .order_by(PendingText.id)
            .with_for_update()
        ).all()
        if not rows:
            return 0
        bodies = [vault.open(row.sealed, routing.PENDING_TEXT_CONTEXT) for row in rows]
        for row in rows:
            session.delete(row)
        to = supporter_phone(vault, session.get_one(Supporter, conv.supporter_id))
        from_ = conv.pool_number
    callback = services.callback_url("/twilio/status")
    sent: list[str] = []
    for i, body in enumerate(bodies):
        outcome = send_one(services, OutboundText(to, from_, body), callback)
        if outcome is LOST:
            _hold_again(services, conversation_id, bodies[i:])
            break
        if isinstance(outcome, str):
            sent.append(outcome)
    if sent:
        remember_sent(services, sent)
    return len(sent)


def _hold_again(services: Services, conversation_id: int, bodies: list[str]) -> None:
    """Twilio did not take these: held again, in order, for the sweeper's next round."""
    with transaction(services.sessions) as session:
        conv = session.get(Conversation, conversation_id)
        if conv is None or conv.state != ConversationState.ACTIVE:
            return  # ended meanwhile: held texts go with the conversation
        for body in bodies:
            routing.hold_text(session, services.vault, conv, body)
    log.warning("%d held texts not taken by the provider: held again", len(bodies))
