"""De-duplication of Twilio deliveries by a unique key in SQL (Redis may be the thing down)."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hotline.models import WebhookEvent


def claim(session: Session, key: str) -> bool:
    """Record delivery ``key`` in the caller's transaction; False if it was processed already.

    Concurrent deliveries of one key serialize on the unique index: the second waits for the
    first to commit and then sees the duplicate. If the first rolls back, the second processes.
    """
    try:
        with session.begin_nested():
            session.add(WebhookEvent(key=key[:120]))
    except IntegrityError:
        return False
    return True
