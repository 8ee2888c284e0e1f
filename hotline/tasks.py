"""Work that happens later, driven by wake-ups and by the sweeper.

The database says what is due; a wake-up in Redis only makes it happen on time. Every function
here re-reads state, claims its row with a conditional update, and is safe to run twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select

from hotline import routing
from hotline.db import transaction
from hotline.effects import Effects, schedule, send
from hotline.models import Conversation, ConversationState, Offer, OfferState, Programme
from hotline.programmes import config_of
from hotline.services import Services
from hotline.textline import offer_waiting
from hotline.wakeups import Task

log = logging.getLogger(__name__)

# The sweeper leaves work this late to its wake-up: only what Redis lost is the sweeper's.
SWEEP_GRACE = timedelta(seconds=15)
SWEEP_INTERVAL = timedelta(seconds=30)


def expire_offer(services: Services, offer_id: int) -> bool:
    """No answer in time: the offer lapses and the next supporter is offered the conversation."""
    effects = Effects()
    now = services.clock()
    with transaction(services.sessions) as session:
        offer = session.get(Offer, offer_id)
        if offer is None or offer.state != OfferState.PENDING:
            return False
        if offer.expires_at > now:  # woken early (clock skew): come back on time
            effects.wake(Task.EXPIRE_OFFER, offer.id, offer.expires_at)
            expired = False
        elif expired := routing.answer(session, offer, OfferState.EXPIRED, now):
            conv = session.get_one(Conversation, offer.conversation_id)
            if conv.state == ConversationState.QUEUED:
                p = config_of(session.get_one(Programme, conv.programme_id), services.settings)
                routing.offer_or_fall_back(session, services.vault, p, conv, now, effects)
    send(services, effects)
    schedule(services, effects)
    return expired


@dataclass(frozen=True)
class SweepReport:
    offers_expired: int = 0
    conversations_offered: int = 0


def sweep(services: Services) -> SweepReport:
    """Do what is overdue (wake-ups lost with Redis) and offer waiting conversations."""
    now = services.clock()
    with transaction(services.sessions) as session:
        overdue = list(
            session.scalars(
                select(Offer.id).where(
                    Offer.state == OfferState.PENDING, Offer.expires_at <= now - SWEEP_GRACE
                )
            )
        )
        programmes = list(session.scalars(select(Programme)))
    expired = sum(expire_offer(services, offer_id) for offer_id in overdue)
    offered = 0
    for programme in programmes:
        effects = Effects()
        with transaction(services.sessions) as session:
            p = config_of(programme, services.settings)
            offered += offer_waiting(services, session, p, now, effects)
        send(services, effects)
        schedule(services, effects)
    if expired or offered:
        log.info("sweep: %d offers expired, %d conversations offered", expired, offered)
    return SweepReport(offers_expired=expired, conversations_offered=offered)
