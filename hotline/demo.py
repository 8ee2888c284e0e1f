"""The demo roster ``hotline dev`` starts with, so a fresh clone has someone on call to text.

Every number is fictional (the 555-01xx range), so nothing here can reach a real phone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Shift, Supporter
from hotline.people import new_supporter
from hotline.privacy import Vault


@dataclass(frozen=True)
class DemoSupporter:
    name: str
    phone: str  # E.164, fictional
    discipline: str


DEMO_ROSTER = (
    DemoSupporter("Alex Rivera", "+15550108001", "nurse"),
    DemoSupporter("Sam Okafor", "+15550108002", "physician"),
    DemoSupporter("Jordan Lee", "+15550108003", "pharmacist"),
)
SHIFT_LEAD_IN = timedelta(hours=1)
SHIFT_LENGTH = timedelta(days=90)


def seed_demo_roster(session: Session, vault: Vault, programme_id: int, now: datetime) -> int:
    """Add the demo supporters to a programme that has none; return how many were added.

    Each one is on call through a one-off shift from ``now`` - 1 h to ``now`` + 90 days. A
    programme that already has any supporter (a real roster, or the demo from an earlier run)
    is left alone and 0 is returned. ``now`` must be an aware UTC datetime.
    """
    if _has_supporters(session, programme_id):
        return 0
    for demo in DEMO_ROSTER:
        supporter = new_supporter(
            vault, programme_id, demo.name, demo.phone, discipline=demo.discipline
        )
        session.add(supporter)
        session.flush()
        session.add(
            Shift(
                programme_id=programme_id,
                supporter_id=supporter.id,
                starts_at=now - SHIFT_LEAD_IN,
                ends_at=now + SHIFT_LENGTH,
            )
        )
    session.flush()
    return len(DEMO_ROSTER)


def _has_supporters(session: Session, programme_id: int) -> bool:
    query = select(Supporter.id).where(Supporter.programme_id == programme_id).limit(1)
    return session.scalar(query) is not None
