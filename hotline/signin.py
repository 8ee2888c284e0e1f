"""Console sign-in: passwords checked, failures throttled, sessions held server-side.

Throttling never locks anyone out for good: an email address (any programme) may fail
MAX_PER_EMAIL times and a network address MAX_PER_ADDRESS times within WINDOW; past that,
sign-in is refused until the oldest failure leaves the window. Failures are stored as keyed
rows (a hash of the email or address, never the value), so every web process sees them.

A console session is a random token in the browser's signed cookie and only its SHA-256 here;
the row can be revoked (sign-out, or an administrator), so a copied cookie dies with it. A
session idles out after IDLE and ends after LIFETIME whatever happens.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from hotline import accounts, audit
from hotline.db import is_sqlite
from hotline.models import ConsoleSession, Coordinator, LoginFailure

WINDOW = timedelta(minutes=15)
MAX_PER_EMAIL = 5
MAX_PER_ADDRESS = 30
IDLE = timedelta(minutes=30)
LIFETIME = timedelta(hours=12)
TOUCH_EVERY = timedelta(seconds=60)  # last_seen_at is written at most this often


@dataclass(frozen=True)
class Signed:
    """A live console session and its coordinator."""

    session_row: ConsoleSession
    coordinator: Coordinator


@cache
def _decoy() -> str:
    """Checked when the email is unknown, so both paths take the same argon2 time."""
    return accounts.hash_password("decoy-password-for-timing")


def _key(kind: str, value: str) -> str:
    return hashlib.sha256(f"{kind}:{value.strip().lower()}".encode()).hexdigest()


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def retry_after(session: Session, email: str, address: str, now: datetime) -> timedelta | None:
    """How long to wait before trying again, or None when a try is allowed now.

    Tries of one email or from one address are taken one at a time until the transaction
    ends (``authenticate`` records a failure in it): counted apart, a burst of guesses sent
    together would each see the same count and all be checked."""
    keys = ((_key("email", email), MAX_PER_EMAIL), (_key("addr", address), MAX_PER_ADDRESS))
    if not is_sqlite(session.get_bind()):  # SQLite serialises the writers already
        for key, _ in keys:  # always in this order: two tries never wait on each other
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"signin:{key}"}
            )
    session.execute(delete(LoginFailure).where(LoginFailure.at <= now - WINDOW))
    waits = []
    for key, limit in keys:
        times = session.scalars(
            select(LoginFailure.at)
            .where(LoginFailure.key == key)
            .order_by(LoginFailure.at.desc())
            .limit(limit)
        ).all()
        if len(times) >= limit:
            waits.append(times[-1] + WINDOW - now)
    return max(waits) if waits else None


def authenticate(
    session: Session, email: str, password: str, address: str, now: datetime
) -> Coordinator | None:
    """The coordinator for these credentials, or None (the failure is recorded)."""
    coordinator = session.scalar(
        select(Coordinator).where(Coordinator.email == email.strip().lower())
    )
    stored = coordinator.password_hash if coordinator is not None else _decoy()
    if accounts.check_password(stored, password) and coordinator and coordinator.active:
        coordinator.last_login_at = now
        session.execute(delete(LoginFailure).where(LoginFailure.key == _key("email", email)))
        return coordinator
    session.add(LoginFailure(key=_key("email", email), at=now))
    session.add(LoginFailure(key=_key("addr", address), at=now))
    return None


def open_session(session: Session, coordinator: Coordinator, now: datetime) -> str:
    """Start a console session; returns the token for the cookie (only its hash is kept)."""
    token = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            token_hash=digest(token),
            coordinator_id=coordinator.id,
            created_at=now,
            last_seen_at=now,
        )
    )
    session.flush()
    return token


def find_session(session: Session, token: str, now: datetime) -> Signed | None:
    """The live session for ``token`` (touched), or None: unknown, revoked, idle or too old."""
    row = session.scalar(select(ConsoleSession).where(ConsoleSession.token_hash == digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    if row.last_seen_at <= now - IDLE or row.created_at <= now - LIFETIME:
        row.revoked_at = now
        return None
    coordinator = session.get(Coordinator, row.coordinator_id)
    if coordinator is None or not coordinator.active:
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        row.last_seen_at = now
    return Signed(row, coordinator)


def revoke(session: Session, token: str, now: datetime) -> None:
    session.execute(
        update(ConsoleSession)
        .where(ConsoleSession.token_hash == digest(token), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def set_password(
    session: Session,
    coordinator: Coordinator,
    password: str,
    actor: str,
    now: datetime,
    keep_token: str | None = None,
) -> None:
    """A new password (AccountError when too short), set by the coordinator themselves or, for
    one who forgot theirs, by ``actor`` (``hotline coordinator password``); every console session
    of theirs but ``keep_token`` ends. Audited, without the password."""
    coordinator.password_hash = accounts.hash_password(password)
    end_sessions(session, coordinator.id, now, keep_token)
    audit.record(
        session,
        programme_id=coordinator.programme_id,
        actor=actor,
        action="coordinator.password",
        target=f"coordinator:{coordinator.id}",
        at=now,
    )


def set_active(
    session: Session, coordinator: Coordinator, active: bool, actor: str, now: datetime
) -> None:
    """Let a coordinator sign in again, or stop them (someone who has left the programme):
    a deactivated coordinator's sessions end at once and sign-in refuses them. Audited."""
    if coordinator.active == active:
        return
    coordinator.active = active
    if not active:
        end_sessions(session, coordinator.id, now)
    audit.record(
        session,
        programme_id=coordinator.programme_id,
        actor=actor,
        action="coordinator.activated" if active else "coordinator.deactivated",
        target=f"coordinator:{coordinator.id}",
        at=now,
    )


def end_sessions(
    session: Session, coordinator_id: int, now: datetime, keep_token: str | None = None
) -> None:
    """End every live console session of the coordinator (but the one of ``keep_token``)."""
    kept = [ConsoleSession.token_hash != digest(keep_token)] if keep_token else []
    session.execute(
        update(ConsoleSession)
        .where(
            ConsoleSession.coordinator_id == coordinator_id,
            ConsoleSession.revoked_at.is_(None),
            *kept,
        )
        .values(revoked_at=now)
    )


def live_sessions(session: Session, coordinator_id: int, now: datetime) -> int:
    return int(
        session.scalar(
            select(func.count(ConsoleSession.id)).where(
                ConsoleSession.coordinator_id == coordinator_id,
                ConsoleSession.revoked_at.is_(None),
                ConsoleSession.last_seen_at > now - IDLE,
            )
        )
        or 0
    )
