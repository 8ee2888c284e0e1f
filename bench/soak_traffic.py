"""The soak's phones: clinicians and supporters scripted as state machines, and the ledger of
every text Twilio would deliver, to check that each word arrived exactly once, to the right
phone, from the right masked number.

A session is one clinician's conversation: a first text and a second one (both held until a
supporter accepts), the supporter's ACCEPT, a few texts each way, then DONE. Some offers are
ignored on purpose, so they time out and the next offer comes through the REST API (sent by the
worker); whoever receives an offer accepts it, and the texts relayed in the answer say which
conversation it was. Every word carries a unique token (``tok-`` and ten hex digits).
"""

from __future__ import annotations

import itertools
import random
import re
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.kit.signing import signed_headers

TOKEN = re.compile(r"tok-[0-9a-f]{10}")
PLAN = ("first", "held", "accept", "c", "s", "c", "s", "done")
IGNORED_OFFERS = 0.1  # share of first offers left to time out
_sids = itertools.count(1)


def clinician_number(i: int) -> str:
    """+1 NPA 555-01XX, the block reserved for fiction, over as many area codes as needed."""
    return f"+1{201 + i // 100}55501{i % 100:02d}"


def supporter_number(j: int) -> str:
    return f"+1{901 + j}5550100"


@dataclass(eq=False)
class Session:
    clinician: str
    ignore_offer: bool
    step: int = 0  # index into PLAN of the next thing to do
    supporter: str | None = None  # who was offered it, then who holds it
    pool: str | None = None
    held: list[str] = field(default_factory=list)  # tokens waiting for a supporter
    state: str = "in flight"  # in flight | ready | waiting (for a REST offer) | done


ACCEPT = PLAN.index("accept")


@dataclass
class Ledger:
    """What was expected to arrive, and what Twilio was asked to deliver (TwiML and REST)."""

    expected: dict[str, tuple[str, str]] = field(default_factory=dict)  # token -> (to, from)
    delivered: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    other: Counter[str] = field(default_factory=Counter)  # system texts by their first words
    lock: threading.Lock = field(default_factory=threading.Lock)

    def expect(self, token: str, to: str, from_: str) -> None:
        with self.lock:
            self.expected[token] = (to, from_)

    def deliver(self, to: str, from_: str, body: str) -> list[str]:
        tokens = TOKEN.findall(body)
        with self.lock:
            for token in tokens:
                self.delivered.setdefault(token, []).append((to, from_))
            if not tokens:
                self.other[" ".join(body.split()[:3])] += 1
        return tokens

    def verdict(self) -> dict[str, int]:
        with self.lock:
            counts = {t: len(self.delivered.get(t, [])) for t in self.expected}
            wrong = sum(
                1
                for t, where in self.expected.items()
                if self.delivered.get(t, [where])[0] != where
            )
            strays = sum(1 for t in self.delivered if t not in self.expected)
        return {
            "words": len(counts),
            "lost": sum(1 for n in counts.values() if n == 0),
            "duplicated": sum(1 for n in counts.values() if n > 1),
            "misrouted": wrong,
            "unexpected": strays,
        }


@dataclass
class Stats:
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: list[float] = field(default_factory=list)  # monotonic start of each answered one
    duplicates_answered: int = 0  # a redelivered MessageSid that was processed again
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, status: int | None, seconds: float, error: str | None = None) -> None:
        with self.lock:
            if status is not None:
                self.statuses[status] += 1
                self.latencies.append(seconds)
                self.started.append(time.monotonic() - seconds)
            if error:
                self.errors[error] += 1


class Traffic:
    """Chooses and performs the next request; thread-safe (requests run on a pool)."""

    def __init__(
        self, base_url: str, hotline: str, supporters: int, max_active: int, seed: int = 7
    ) -> None:
        self.base_url = base_url
        self.hotline = hotline
        self.max_active = max_active
        self.supporters = [supporter_number(j) for j in range(supporters)]
        self.sessions: list[Session] = []
        self.by_token: dict[str, Session] = {}
        self.ledger = Ledger()
        self.stats = Stats()
        self.starting = True
        self._ready: deque[Session] = deque()
        self._offers: deque[tuple[str, str]] = deque()  # REST offers to accept: (supporter, pool)
        self._recent: deque[dict[str, str]] = deque(maxlen=200)
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._local = threading.local()

    # --- what to do next ----------------------------------------------------------------------

    def next_request(self, fillers: bool = True) -> Callable[[], None] | None:
        with self._lock:
            if self._offers:
                supporter, pool = self._offers.popleft()
                return lambda: self._accept_offer(supporter, pool)
            if self._ready:
                session = self._ready.popleft()
                session.state = "in flight"
                return lambda: self._step(session)
            if self.starting and self.active() < self.max_active:
                session = Session(
                    clinician_number(len(self.sessions)),
                    self._rng.random() < IGNORED_OFFERS,
                )
                self.sessions.append(session)
                return lambda: self._step(session)
            if fillers and self._recent and self._rng.random() < 0.5:
                params = self._rng.choice(list(self._recent))
                return lambda: self._redeliver(params)
            if fillers:
                return self._status_callback
        return None

    def active(self) -> int:
        return sum(1 for s in self.sessions if s.state != "done")

    def unfinished(self) -> list[Session]:
        with self._lock:
            return [s for s in self.sessions if s.state != "done"]

    def offered(self, supporter: str, pool: str) -> None:
        """A REST offer reached ``supporter`` on ``pool``: they accept it next."""
        with self._lock:
            self._offers.append((supporter, pool))

    # --- the steps of a session ---------------------------------------------------------------
    # HTTP happens outside the lock; a session's state changes only under it. A REST offer for a
    # conversation can be accepted while its own step is in flight: whichever comes second sees
    # what the first did.

    def _step(self, s: Session) -> None:
        kind = PLAN[s.step]
        if kind in ("first", "held"):
            if self._clinician_text(s, kind):
                return
        elif kind == "accept":
            assert s.supporter is not None and s.pool is not None
            self._accept_offer(s.supporter, s.pool)
            with self._lock:
                if s.step == ACCEPT:  # the offer was gone (timed out): a REST one will come
                    s.supporter = s.pool = None
                    s.state = "waiting"
                    return
        elif kind in ("c", "s"):
            self._conversation_text(s, kind)
        else:
            assert s.supporter is not None and s.pool is not None
            self._text(s.supporter, s.pool, "DONE")
            with self._lock:
                s.state = "done"
            return
        with self._lock:
            s.state = "ready"
            self._ready.append(s)

    def _clinician_text(self, s: Session, kind: str) -> bool:
        """The first or second text; True when the session now waits for a REST offer."""
        token = _token()
        with self._lock:
            s.held.append(token)  # before it is sent: an ACCEPT elsewhere may relay it
            self.by_token[token] = s
        texts = self._text(s.clinician, self.hotline, f"{_words()} {token}")
        with self._lock:
            if s.step > ACCEPT:  # accepted meanwhile: this one was relayed, or is held
                return False
            if kind == "first" and not s.ignore_offer:
                offer = next(((to, f) for to, f, b in texts if "Reply ACCEPT" in b), None)
                s.supporter, s.pool = offer if offer else (None, None)
            s.step += 1
            if s.step == ACCEPT and s.supporter is None:
                s.state = "waiting"  # ignored, or nobody free: a REST offer will come
                return True
            return False

    def _conversation_text(self, s: Session, kind: str) -> None:
        assert s.supporter is not None and s.pool is not None
        token = _token()
        if kind == "c":
            self.ledger.expect(token, s.supporter, s.pool)
            self._text(s.clinician, self.hotline, f"{_words()} {token}")
        else:
            self.ledger.expect(token, s.clinician, self.hotline)
            self._text(s.supporter, s.pool, f"{_words()} {token}")
        s.step += 1

    def _accept_offer(self, supporter: str, pool: str) -> None:
        """ACCEPT from ``supporter`` on ``pool``: the held texts relayed in the answer name the
        conversation it took (an offer already gone names none)."""
        texts = self._text(supporter, pool, "ACCEPT")
        tokens = [t for to, _, b in texts if to == supporter for t in TOKEN.findall(b)]
        with self._lock:
            for s in {self.by_token[t] for t in tokens}:
                for token in s.held:
                    self.ledger.expect(token, supporter, pool)
                s.held.clear()
                s.supporter, s.pool = supporter, pool
                s.step = max(s.step, ACCEPT + 1)
                if s.state == "waiting":
                    s.state = "ready"
                    self._ready.append(s)

    # --- requests -----------------------------------------------------------------------------

    def _text(self, from_: str, to: str, body: str) -> list[tuple[str, str, str]]:
        sid = f"SM{next(_sids):032x}"
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": "0",
            "ApiVersion": "2010-04-01",
        }
        texts = self._post("/twilio/sms", params)
        with self._lock:  # redelivered only once answered: a retry follows the original
            self._recent.append(params)
        for recipient, sender, text in texts:
            self.ledger.deliver(recipient or from_, sender or to, text)
        return [(r or from_, s or to, b) for r, s, b in texts]

    def _redeliver(self, params: dict[str, str]) -> None:
        """Twilio delivering a text twice: the second answer must be empty."""
        if self._post("/twilio/sms", params):
            with self.stats.lock:
                self.stats.duplicates_answered += 1

    def _status_callback(self) -> None:
        sid = f"SM{secrets.token_hex(16)}"
        self._post("/twilio/status", {"MessageSid": sid, "MessageStatus": "delivered"})

    def _post(self, path: str, params: dict[str, str]) -> list[tuple[str, str, str]]:
        url = self.base_url + path
        headers = signed_headers(url, params, AUTH_TOKEN)
        started = time.monotonic()
        try:
            response = self._http().post(url, data=params, headers=headers, timeout=15)
        except requests.RequestException as error:
            self.stats.record(None, time.monotonic() - started, type(error).__name__)
            return []
        self.stats.record(response.status_code, time.monotonic() - started)
        if response.status_code != 200 or not response.content:
            return []
        root = ET.fromstring(response.content)  # noqa: S314 - our own server's TwiML
        return [
            (m.get("to", ""), m.get("from", ""), m.findtext("Body") or m.text or "")
            for m in root.iter("Message")
        ]

    def _http(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session


def _token() -> str:
    return f"tok-{secrets.token_hex(5)}"


_PHRASES = (
    "I keep going over the shift",
    "thank you for being here",
    "the family was in the room",
    "I haven't slept much",
    "that helps to hear",
)


def _words() -> str:
    return random.choice(_PHRASES)


def describe(stats: Stats) -> dict[str, Any]:
    ordered = sorted(stats.latencies)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0

    first = min(stats.started, default=0.0)
    slow: Counter[int] = Counter(
        int((t - first) // 10) * 10
        for t, s in zip(stats.started, stats.latencies, strict=True)
        if s > 2
    )
    return {
        "requests": sum(stats.statuses.values()) + sum(stats.errors.values()),
        "statuses": dict(sorted(stats.statuses.items())),
        "errors": dict(stats.errors),
        "p50_ms": round(at(0.5) * 1000, 1),
        "p99_ms": round(at(0.99) * 1000, 1),
        "max_ms": round(at(1.0) * 1000, 1),
        "over_2s_by_10s_window": dict(sorted(slow.items())),
    }
