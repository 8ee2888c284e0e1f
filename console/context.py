"""What every console and API request needs from the app: the services and the clock."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy.orm import Session

from hotline.models import Notice, Programme
from hotline.programmes import config_of
from hotline.services import Services
from hotline.wakeups import Task


def services() -> Services:
    found: Services = current_app.extensions["hotline"]
    return found


def now() -> datetime:
    return services().clock()


def wake(notices: Iterable[Notice], lapsed_offers: Iterable[int] = ()) -> None:
    """Ask for the notices' texts to be sent, and lapsed offers to go onwards, after the
    transaction that made them committed."""
    for notice in notices:
        services().wakeups.schedule(Task.SEND_NOTICE, notice.id)
    for offer_id in lapsed_offers:
        services().wakeups.schedule(Task.EXPIRE_OFFER, offer_id)


def zone_of(session: Session, programme_id: int) -> ZoneInfo:
    """The programme's time zone (its own, or the environment's default)."""
    return config_of(session.get_one(Programme, programme_id), services().settings).zone
