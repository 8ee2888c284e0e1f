"""The services every core operation receives: one object, built by the composition roots."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from hotline.models import utcnow
from hotline.privacy import Vault
from hotline.settings import Settings
from hotline.telephony import Telephony
from hotline.wakeups import WakeUps


class CrisisTexts(dict[str, str]):
    """Each of our numbers with its programme's crisis sentence, as this process last read it.

    Read whole at start and again every ``REREAD`` while webhooks come in (after their answer
    has gone out), so a sentence a coordinator edits in another process's console reaches this
    one before an outage needs it; a first text or call on a number refreshes that number too.
    """

    REREAD = timedelta(minutes=5)
    read_at: datetime | None = None
    # Pool numbers that are no hotline number, as last read: only peers text them, so an
    # outage asks the peer to send their text again instead of answering them as a clinician.
    peer_numbers: frozenset[str] = frozenset()

    def due(self, now: datetime) -> bool:
        """Whether to read them again now; claims the reading, so one thread does it."""
        if self.read_at is not None and now - self.read_at < self.REREAD:
            return False
        self.read_at = now
        return True

    def replace(self, found: dict[str, str], peer_numbers: Iterable[str] = ()) -> None:
        """Take a whole fresh reading (a number no longer ours goes)."""
        for number in self.keys() - found.keys():
            self.pop(number, None)
        self.update(found)
        self.peer_numbers = frozenset(peer_numbers)


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
    crisis_texts: CrisisTexts = field(default_factory=CrisisTexts)

    def callback_url(self, path: str) -> str | None:
        """An absolute URL Twilio can reach (for status callbacks), or None if unknown."""
        base = self.settings.public_url
        return f"{base}{path}" if base else None
