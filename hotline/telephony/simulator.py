"""The simulator adapter: texts and calls to a phone network held in this process.

Used by ``hotline dev`` when no Twilio credentials are set: the dev phone page shows what each
simulated phone received. Development only; nothing here is persisted.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass, field
from datetime import datetime

from hotline.models import utcnow
from hotline.telephony import OptedOutError, SentText


@dataclass(frozen=True)
class SimulatedText:
    sid: str
    to: str
    from_: str
    body: str
    at: datetime


@dataclass
class PhoneNetwork:
    """Every text delivered to a simulated phone, in order; thread-safe."""

    texts: list[SimulatedText] = field(default_factory=list)
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    blocked: set[tuple[str, str]] = field(default_factory=set)  # (recipient, sender) after STOP
    deleted: set[str] = field(default_factory=set)  # provider-side records deleted (not phones)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def deliver(self, to: str, from_: str, body: str) -> SimulatedText:
        with self._lock:
            text = SimulatedText(f"SM{next(self._ids):032x}", to, from_, body, utcnow())
            self.texts.append(text)
            return text

    def inbox(self, number: str) -> list[SimulatedText]:
        with self._lock:
            return [t for t in self.texts if t.to == number]


class SimulatedTelephony:
    """The telephony port over a PhoneNetwork."""

    def __init__(self, network: PhoneNetwork) -> None:
        self.network = network

    def send_text(
        self, to: str, from_: str, body: str, status_callback: str | None = None
    ) -> SentText:
        if (to, from_) in self.network.blocked:
            raise OptedOutError("recipient opted out", code=21610, status=400)
        return SentText(sid=self.network.deliver(to, from_, body).sid, status="delivered")

    def place_call(self, to: str, from_: str, url: str, status_callback: str | None = None) -> str:
        with self.network._lock:
            self.network.calls.append((to, from_, url))
            return f"CA{len(self.network.calls):032x}"

    def delete_message(self, sid: str) -> None:
        # A phone keeps what it received; only the provider's record goes.
        with self.network._lock:
            self.network.deleted.add(sid)

    def delete_call(self, sid: str) -> None:
        with self.network._lock:
            self.network.deleted.add(sid)

    def call_status(self, sid: str) -> str | None:
        return None  # the simulator's calls are its web page's: it cannot tell

    def dialled_legs(self, sid: str) -> list[str]:
        return []  # its calls are its web page's, and keep no record here

    def finished_records(self, number: str, before: datetime, limit: int) -> list[str]:
        """The simulated texts to or from ``number`` (calls keep no record here)."""
        with self.network._lock:
            kept = [
                t.sid
                for t in reversed(self.network.texts)
                if number in (t.to, t.from_) and t.at < before and t.sid not in self.network.deleted
            ]
        return kept[: 2 * limit]
