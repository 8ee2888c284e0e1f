"""Coordinator accounts and admin API tokens: argon2id passwords, hashed bearer tokens."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline.models import ApiToken, Coordinator, Role, utcnow

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
MIN_PASSWORD = 12
TOKEN_PREFIX = "hl_"  # noqa: S105 - a visible prefix, not a secret


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


def create_api_token(session: Session, name: str, programme_id: int | None) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name, token_hash=token_digest(token), programme_id=programme_id))
    session.flush()
    return token


def find_api_token(session: Session, token: str) -> ApiToken | None:
    found = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == token_digest(token), ApiToken.revoked_at.is_(None)
        )
    )
    if found is not None:
        found.last_used_at = utcnow()
    return found
