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


class TokenRefused(AccountError):
    """A bearer token that does not work: unknown, revoked or expired."""

    def __init__(self, state: str, expires_at: datetime | None) -> None:
        self.state = state
        if state == "expired" and expires_at is not None:
            reason = f"that token expired at {expires_at:%Y-%m-%d %H:%M} UTC; ask for a new one"
        else:
            reason = "that token is not valid (unknown or revoked)"
        super().__init__(reason)


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
    expires_at: datetime | None = None,
    vouches: bool = True,
) -> str:
    """Store a new token's hash and return the token itself (shown once, never stored);
    audited as ``actor``'s when one is given. ``expires_at``: refused from then on (None:
    never). ``vouches``: a phone number written with it counts as verified (an
    administrator's or the command line's token); else a code is texted to it."""
    name = " ".join(name.split())
    if not name or len(name) > MAX_TOKEN_NAME:
        raise AccountError(f"a token needs a name of 1 to {MAX_TOKEN_NAME} characters")
    at = at or utcnow()
    if expires_at is not None and expires_at <= at:
        raise AccountError("a token's expiry must be in the future")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(
        name=name,
        token_hash=token_digest(token),
        programme_id=programme_id,
        created_at=at,
        expires_at=expires_at,
        vouches=vouches,
    )
    session.add(row)
    session.flush()
    if actor is not None:
        audit.record(
            session,
            programme_id=programme_id,
            actor=actor,
            action="api token created",
            at=at,
            target=_token_target(row),
            new={
                "scope": "every programme" if programme_id is None else "this programme",
                "expires": f"{expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "never",
                "phone numbers": "vouched for" if vouches else "code texted",
            },
        )
    return token


def token_state(token: ApiToken, now: datetime) -> str:
    """``live``, ``revoked`` or ``expired``: whether the token works at ``now``, and if not
    why."""
    if token.revoked_at is not None:
        return "revoked"
    if token.expires_at is not None and token.expires_at <= now:
        return "expired"
    return "live"


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


def use_api_token(session: Session, token: str, now: datetime) -> ApiToken:
    """The live token ``token`` is, its use noted; TokenRefused saying why it does not work."""
    found = session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))
    state = "unknown" if found is None else token_state(found, now)
    if found is None or state != "live":
        raise TokenRefused(state, found.expires_at if found is not None else None)
    found.last_used_at = now
    return found


def find_api_token(session: Session, token: str, now: datetime | None = None) -> ApiToken | None:
    """The live token ``token`` is (its use noted), or None."""
    try:
        return use_api_token(session, token, now or utcnow())
    except TokenRefused:
        return None
