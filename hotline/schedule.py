"""Who is on call: the answer at an instant, and when the next person comes on.

One-off shifts are the layer this module reads today; weekly rotations and overrides add
their own layers here, so every caller asks the same two questions.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import Shift


def on_call(session: Session, programme_id: int, at: datetime) -> set[int]:
    """Ids of the supporters on call at ``at`` (shift start inclusive, end exclusive)."""
    rows = session.scalars(
        select(Shift.supporter_id).where(
            Shift.programme_id == programme_id, Shift.starts_at <= at, Shift.ends_at > at
        )
    )
    return set(rows)


def next_coverage(session: Session, programme_id: int, after: datetime) -> datetime | None:
    """When the next shift starts after ``after``, or None if nothing is scheduled."""
    return session.scalar(
        select(Shift.starts_at)
        .where(Shift.programme_id == programme_id, Shift.starts_at > after)
        .order_by(Shift.starts_at)
        .limit(1)
    )
