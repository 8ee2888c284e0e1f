"""A running hotline for tests: real app, real database tier, Redis, and the fake Twilio.

Only Twilio is fake (its REST API at ``fake`` and, for webhooks, the signed posts this harness
makes). The core's clock is a controllable ``Clock`` so offers can time out on demand.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
import time_machine
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from hotline import retirement, tasks
from hotline.app import build_services, create_app
from hotline.db import transaction
from hotline.models import Programme, Shift
from hotline.people import new_supporter
from hotline.programmes import ensure_default_programme
from hotline.services import Services
from hotline.settings import Settings, load_settings
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.kit.servers import RedisServer
from tests.kit.signing import signed_post
from workers import context
from workers.queue import make_queue

PUBLIC_URL = "https://hotline.example.org"
HOTLINE = "+15550100000"
POOL = ("+15550100001", "+15550100002", "+15550100003")
START = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)  # a Monday afternoon
# A number of the account set up for this line as the README's table says (IT's part, at
# Twilio): ``fake.own_number(number, **SET_UP_HERE)``.
SET_UP_HERE = {
    "sms_url": f"{PUBLIC_URL}/twilio/sms",
    "voice_url": f"{PUBLIC_URL}/twilio/voice",
    "status_callback": f"{PUBLIC_URL}/twilio/status",
}
_sids = itertools.count(1)


class QuietWorker(SimpleWorker):
    """A burst worker that leaves pytest's SIGINT/SIGTERM handling alone (RQ's handlers would
    otherwise stay installed after the burst and swallow a CI timeout's SIGTERM), and without
    RQ's pub/sub listener, as ``hotline worker`` (its teardown could wait 60 s for it)."""

    def _install_signal_handlers(self) -> None:
        pass

    def subscribe(self) -> None:
        pass


class Clock:
    """Time for the whole test process, moved by hand (time-machine, not ticking).

    The core, RQ's scheduler and the worker all read the same travelled clock, so a wake-up
    scheduled for "in 180 s" runs after ``advance(seconds=181)`` and not before.
    """

    def __init__(self, now: datetime = START) -> None:
        self._traveller = time_machine.travel(now, tick=False)
        self._coordinates = self._traveller.start()

    def __call__(self) -> datetime:
        return datetime.now(UTC)

    @property
    def now(self) -> datetime:
        return datetime.now(UTC)

    @now.setter
    def now(self, when: datetime) -> None:
        self._coordinates.move_to(when)

    def advance(self, **delta: float) -> datetime:
        self._coordinates.shift(timedelta(**delta))
        return self.now

    def stop(self) -> None:
        self._traveller.stop()


def test_env(database_url: str, fake: FakeTwilio, **overrides: str) -> dict[str, str]:
    env = {
        "DATABASE_URL": database_url,
        "HOTLINE_NUMBER": HOTLINE,
        "HOTLINE_POOL_NUMBERS": ",".join(POOL),
        "HOTLINE_PUBLIC_URL": PUBLIC_URL,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.base_url,
        "HOTLINE_SECRET_KEY": "test-secret",
        "HOTLINE_DATA_KEY": "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY=",
        "HOTLINE_CHECKIN_HOURS": "",
    }
    env.update(overrides)
    return env


@dataclass
class Hotline:
    settings: Settings
    services: Services
    app: Flask
    client: FlaskClient
    fake: FakeTwilio
    clock: Clock
    redis: Redis
    programme_id: int
    seen_rest: int = field(default=0)

    def post(self, path: str, **params: str) -> TestResponse:
        """A webhook as Twilio sends it: form-encoded and signed for the public URL."""
        return signed_post(self.client, PUBLIC_URL, path, params, AUTH_TOKEN)

    def sms(self, from_: str, to: str, body: str, num_media: int = 0, **extra: str) -> TestResponse:
        sid = extra.pop("MessageSid", f"SM{next(_sids):032x}")
        params = {
            "MessageSid": sid,
            "SmsSid": sid,
            "SmsMessageSid": sid,
            "AccountSid": ACCOUNT_SID,
            "From": from_,
            "To": to,
            "Body": body,
            "NumMedia": str(num_media),
            "NumSegments": "1",
            "SmsStatus": "received",
            "ApiVersion": "2010-04-01",
        }
        params.update(extra)
        # Twilio's STOP filtering comes before the webhook
        self.fake.text_in(from_, to, body, extra.get("OptOutType"))
        return self.post("/twilio/sms", **params)

    def session(self) -> Session:
        return self.services.sessions()

    def add_supporter(self, name: str, phone: str, *, on_call: bool = True, **fields: Any) -> int:
        with transaction(self.services.sessions) as session:
            supporter = new_supporter(self.services.vault, self.programme_id, name, phone, **fields)
            session.add(supporter)
            session.flush()
            if on_call:
                session.add(
                    self._shift(
                        supporter.id,
                        self.clock.now - timedelta(hours=1),
                        self.clock.now + timedelta(days=60),
                    )
                )
            return supporter.id

    def add_shift(self, supporter_id: int, starts_at: datetime, ends_at: datetime) -> None:
        with transaction(self.services.sessions) as session:
            session.add(self._shift(supporter_id, starts_at, ends_at))

    def _shift(self, supporter_id: int, starts_at: datetime, ends_at: datetime) -> Shift:
        return Shift(
            programme_id=self.programme_id,
            supporter_id=supporter_id,
            starts_at=starts_at,
            ends_at=ends_at,
        )

    def sweep(self) -> tasks.SweepReport:
        return tasks.sweep(self.services)

    def run_jobs(self) -> None:
        """Run every queued job with a real RQ worker (in this process, like ``hotline dev``)."""
        QuietWorker([make_queue(self.redis)], connection=self.redis).work(
            burst=True, with_scheduler=True
        )


def make_hotline(
    database_url: str, redis: Redis, fake: FakeTwilio, tmp_path: Path, **overrides: str
) -> Hotline:
    settings = load_settings(test_env(database_url, fake, **overrides), instance_path=tmp_path)
    clock = Clock()
    services = build_services(settings, redis=redis, clock=clock)
    with transaction(services.sessions) as session:
        programme: Programme = ensure_default_programme(session, settings)
        programme_id = programme.id
    app = create_app(services=services, redis=redis)
    context.install(services)
    return Hotline(settings, services, app, app.test_client(), fake, clock, redis, programme_id)


@pytest.fixture
def fake_twilio() -> Iterator[FakeTwilio]:
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture
def redis_conn(redis_server: RedisServer | None) -> Iterator[Redis]:
    """The real Redis of the integration tier, or the embedded stand-in when there is none."""
    if redis_server is None:
        yield fakeredis.FakeRedis(server=fakeredis.FakeServer())
        return
    redis_server.start()
    client = Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def hotline(
    database_url: str,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: Any,
) -> Iterator[Hotline]:
    harness = make_hotline(database_url, redis_conn, fake_twilio, tmp_path)
    yield harness
    harness.clock.stop()
    harness.services.sessions.kw["bind"].dispose()


def use_telephony(hotline: Hotline, telephony: Any) -> None:
    """Swap the Twilio adapter (the edge) for the core and the in-process workers."""
    hotline.services = dataclasses.replace(hotline.services, telephony=telephony)
    context.install(hotline.services)


@contextmanager
def retiring(hotline: Hotline) -> Iterator[Engine]:
    """`hotline programme retire` under way: inside the block the programme's retirement is
    written, under its lock, and not committed; it commits as the block ends. Yields the
    database's engine (for ``sent_behind_a_lock``). PostgreSQL only: on SQLite, which
    serialises writers, the test is skipped."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: these interleavings need PostgreSQL")
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)
        session.flush()
        yield engine


@dataclass
class RetiredMidSend:
    """The Twilio adapter, whose next text finds the programme retired meanwhile (the operator
    ran ``hotline programme retire`` as it went out) and is not taken (a 503)."""

    hotline: Hotline
    real: Any

    def send_text(self, to: str, from_: str, body: str, status_callback: str | None = None) -> Any:
        hotline = self.hotline
        with transaction(hotline.services.sessions) as session:
            programme = session.get_one(Programme, hotline.programme_id)
            retirement.retire(session, programme, hotline.clock.now)
        hotline.fake.fail_next(status=503, code=None)
        return self.real.send_text(to, from_, body, status_callback=status_callback)
