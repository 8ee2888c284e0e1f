"""Coordinator accounts and admin API tokens: argon2id passwords, hashed bearer tokens."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import audit
from hotline.models import ApiToken, Coordinator, Role, utcnow

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 12
TOKEN_PREFIX = "hl_"  # noqa: S105 - a visible prefix, not a secret
MAX_TOKEN_NAME = 100  # api_tokens.name


class AccountError(ValueError):
    """A clear, user-facing reason an account operation was refused."""


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise AccountError(f"passwords need at least {MIN_PASSWORD} characters")
    return _hasher.hash(password)


def check_password(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def create_coordinator(
    session: Session, email: str, password: str, programme_id: int | None, admin: bool = False
) -> Coordinator:
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise AccountError("that is not an email address")
    if session.scalar(select(Coordinator.id).where(Coordinator.email == email)):
        raise AccountError("a coordinator with that email exists already")
    coordinator = Coordinator(
        email=email,
        password_hash=hash_password(password),
        programme_id=None if admin else programme_id,
        role=Role.ADMIN if admin else Role.COORDINATOR,
    )
    session.add(coordinator)
    session.flush()
    return coordinator


def token_digest(token: str) -> str:
    """Bearer tokens are long random strings: a plain SHA-256 is the right hash for lookup."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_api_token(
    session: Session,
    name: str,
    programme_id: int | None,
    *,
    actor: str | None = None,
    at: datetime | None = None,
) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored);
    audited as ``actor``'s when one is given."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_TOKEN_NAME:
        raise AccountError(f"a token needs a name of 1 to {MAX_TOKEN_NAME} characters")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name, token_hash=token_digest(token), programme_id=programme_id)
    session.add(row)
    session.flush()
    if actor is not None:
        audit.record(
            session,
            programme_id=programme_id,
            actor=actor,
            action="api token created",
            at=at or utcnow(),
            target=_token_target(row),
            new={"scope": "every programme" if programme_id is None else "this programme"},
        )
    return token


def api_tokens(session: Session, programme_id: int | None) -> list[ApiToken]:
    """Tokens, live ones first, newest first: those scoped to ``programme_id``, or with None
    every token (an administrator's view, all-programme tokens included)."""
    query = select(ApiToken).order_by(ApiToken.revoked_at.is_not(None), ApiToken.id.desc())
    if programme_id is not None:
        query = query.where(ApiToken.programme_id == programme_id)
    return list(session.scalars(query))


def revoke_api_token(session: Session, token: ApiToken, actor: str, at: datetime) -> bool:
    """Stop ``token`` working from the next request on; False if it was revoked already."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = at
    audit.record(
        session,
        programme_id=token.programme_id,
        actor=actor,
        action="api token revoked",
        at=at,
        target=_token_target(token),
    )
    return True


def _token_target(token: ApiToken) -> str:
    return f"api token {token.id} ({token.name})"


def find_api_token(session: Session, token: str) -> ApiToken | None:
    found = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == token_digest(token), ApiToken.revoked_at.is_(None)
        )
    )
    if found is not None:
        found.last_used_at = utcnow()
    return found
