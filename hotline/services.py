"""The services every core operation receives: one object, built by the composition roots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from hotline.models import utcnow
from hotline.privacy import Vault
from hotline.settings import Settings
from hotline.telephony import Telephony
from hotline.wakeups import WakeUps


@dataclass(frozen=True)
class Services:
    settings: Settings
    sessions: sessionmaker[Session]
    vault: Vault
    telephony: Telephony
    wakeups: WakeUps
    clock: Callable[[], datetime] = field(default=utcnow)
    # Each of our numbers' programme crisis sentence, as last read: what a webhook answers with
    # when the database cannot be reached (the environment's for a number not read yet).
    crisis_texts: dict[str, str] = field(default_factory=dict)

    def callback_url(self, path: str) -> str | None:
        """An absolute URL Twilio can reach (for status callbacks), or None if unknown."""
        base = self.settings.public_url
        return f"{base}{path}" if base else None
