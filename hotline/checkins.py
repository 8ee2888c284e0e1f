"""Follow-up check-ins after a conversation: delivery status (forward only)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import CheckIn
from hotline.texting import StatusReport

# Twilio's message states in the order they can happen; callbacks arrive out of order and twice.
DELIVERY_ORDER = {
    "accepted": 0,
    "queued": 1,
    "sending": 2,
    "sent": 3,
    "delivered": 4,
    "read": 5,
    "undelivered": 4,
    "failed": 4,
}


def record_status(session: Session, report: StatusReport) -> bool:
    """Move a check-in's delivery state forward; False when it is unknown or would go back."""
    checkin = session.scalar(select(CheckIn).where(CheckIn.provider_sid == report.sid))
    rank = DELIVERY_ORDER.get(report.status)
    if checkin is None or rank is None:
        return False
    current = DELIVERY_ORDER.get(checkin.delivery_status or "", -1)
    if rank <= current:
        return False
    checkin.delivery_status = report.status
    if report.error_code is not None:
        checkin.error_code = report.error_code
    return True
