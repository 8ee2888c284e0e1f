"""RQ jobs: importable functions of ids, each one call into the core. Safe to run twice."""

from __future__ import annotations

from hotline import tasks
from workers.context import services


def expire_offer(offer_id: int) -> None:
    tasks.expire_offer(services(), offer_id)


def send_checkin(checkin_id: int) -> None:
    from hotline import checkins

    checkins.send_checkin(services(), checkin_id)


def sweep() -> None:
    tasks.sweep(services())
