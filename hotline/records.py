"""A backstop for the records of texts the line sends through Twilio's REST API.

Such a record (the body, both numbers) is deleted once its status callback says it is final
(``retention.after_status``). A callback can be lost: ``/twilio/status`` cannot note it while the
database is down, and Twilio does not retry it. So each SID the API returns is queued for
deletion when it is sent, due BACKSTOP later; the callback brings that forward, and the
sweeper deletes what falls due (no wake-up per text: the sweep is the backstop's clock).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from hotline.events import insert_new
from hotline.models import MessageDeletion
from hotline.telephony import is_record_sid

BACKSTOP = timedelta(hours=1)


def backstop(session: Session, sids: Iterable[str], now: datetime) -> None:
    """Queue each sent message's record for deletion BACKSTOP from ``now`` (a no-op for one
    already queued)."""
    for sid in sids:
        if is_record_sid(sid):
            insert_new(session, MessageDeletion, sid=sid, due_at=now + BACKSTOP)
