"""De-duplication of Twilio deliveries by a unique key in SQL (Redis may be the thing down)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from hotline.models import WebhookEvent


def claim(session: Session, key: str) -> bool:
    """Record delivery ``key`` in the caller's transaction; False if it was processed already.

    Concurrent deliveries of one key serialize on the unique index: the second waits for the
    first to commit and then sees the duplicate. If the first rolls back, the second processes.
    """
    return insert_new(session, WebhookEvent, key=key[:120]) is not None


def insert_new(session: Session, model: Any, **values: Any) -> int | None:
    """INSERT a row unless its unique key is taken; the new row's id, or None if it was.

    One statement (``INSERT .. ON CONFLICT DO NOTHING RETURNING id``, PostgreSQL and SQLite)
    where a savepoint around a caught IntegrityError costs three round trips on every webhook.
    An insert of a key that another transaction holds uncommitted waits for it, as before.
    """
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    row_id: int | None = session.scalar(
        insert(model).values(**values).on_conflict_do_nothing().returning(model.id)
    )
    return row_id
