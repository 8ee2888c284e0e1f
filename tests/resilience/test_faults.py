"""Faults with the real services stopped and started: nothing is lost, nothing is sent twice,
and Twilio always gets an answer in time.

- Redis stopped, or hung (SIGSTOP), when texts arrive: the relay and the offer still go out in
  the TwiML, within two seconds; once Redis is back, the sweeper does what its wake-ups would.
- PostgreSQL refusing connections mid-run (backends terminated, the database closed to new
  ones), or accepting connections and never answering: Twilio gets the crisis line, no 5xx, no
  trace of the internals.
- Twilio answering 429 or 503, or hanging: texts from jobs are retried a bounded number of times
  and webhooks stay fast, since they never call Twilio.
- A ``hotline worker`` process SIGKILLed while Twilio hangs on a check-in: the check-in is never
  sent again, and the work queued behind it and the offer time-outs still happen.

The check-in retry policy itself (backoff, attempts, read timeouts) is tested in
tests/checkins/test_checkins.py; this file is about the faults around it.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import create_engine, event, select
from sqlalchemy.pool import NullPool

from hotline import app as app_module
from hotline import db, tasks
from hotline.app import build_services, create_app
from hotline.db import transaction
from hotline.effects import RETRY_DELAYS, owe_again
from hotline.models import (
    CheckIn,
    CheckInState,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    OptOut,
    Programme,
    Supporter,
)
from hotline.people import set_alert_phone
from hotline.settings import load_settings
from hotline.speech import digit_by_digit
from hotline.wakeups import Task
from tests.kit.databases import Tiers, empty_tables, postgres_server
from tests.kit.fake_twilio import AUTH_TOKEN, FakeTwilio
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline, make_hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phones
from tests.kit.servers import RedisServer
from tests.kit.signing import signed_post
from workers import main as worker_main
from workers.queue import connect

CLINICIAN, SECOND, THIRD = "+15550109001", "+15550109002", "+15550109003"
COORDINATOR = "+15550106000"
ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
OFFER = "Reply ACCEPT"
DAY = timedelta(days=1)
FAST = 2.0  # seconds: what a webhook may take whatever is down
CRISIS = "988"
CRISIS_SAID = digit_by_digit(CRISIS)  # in a <Say>: "9 8 8"


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    result = call()
    return result, time.monotonic() - started


def twiml_texts(body: bytes) -> list[tuple[str, str]]:
    """(to, body) of each <Message>; raises on a document Twilio could not parse."""
    root = ET.fromstring(body)  # noqa: S314 - our own TwiML
    return [(m.get("to", ""), m.findtext("Body") or m.text or "") for m in root.iter("Message")]


def texted(
    hotline: Hotline, sender: str, to: str, body: str
) -> tuple[list[tuple[str, str]], float]:
    response, seconds = timed(lambda: hotline.sms(sender, to, body))
    assert response.status_code == 200, response.status_code
    return twiml_texts(response.get_data()), seconds


def rest_texts(hotline: Hotline, to: str, containing: str = "") -> list[str]:
    return [m["body"] for m in hotline.fake.messages if m["to"] == to and containing in m["body"]]


def sent_to(hotline: Hotline, to: str) -> list[str]:
    """Every text Twilio took for ``to``, its record since deleted or not."""
    return [m["body"] for m in hotline.fake.sent if m["to"] == to]


def rq_keys(redis: Redis) -> list[str]:
    return [str(k) for k in redis.keys("rq:*") if "rq:worker" not in str(k)]


@pytest.fixture
def line(
    database_url: str,
    redis_server: RedisServer | None,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: object,  # empties the tables afterwards
) -> Iterator[Hotline]:
    """A hotline on the production Redis client (``workers.queue.connect``: short timeouts)."""
    if redis_server is None:
        pytest.skip("no real Redis server (integration tier skipped)")
    redis_server.start()
    redis = connect(redis_server.url)
    redis.flushdb()
    harness = make_hotline(database_url, redis, fake_twilio, tmp_path)
    try:
        yield harness
    finally:
        harness.clock.stop()
        harness.services.sessions.kw["bind"].dispose()
        redis_server.start()  # whatever the test stopped
        redis.flushdb()
        redis.close()


@contextmanager
def paused(server: RedisServer) -> Iterator[None]:
    """Redis hung: the process is stopped (SIGSTOP), so connections open but nothing answers."""
    assert server.process is not None
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


# --- Redis ------------------------------------------------------------------------------------


def test_with_redis_stopped_texts_still_relay_and_offer_and_the_sweeper_recovers(
    line: Hotline, redis_server: RedisServer
) -> None:
    line.add_supporter("Alice", ALICE)
    line.add_supporter("Bob", BOB)
    redis_server.stop()

    first, seconds = texted(line, CLINICIAN, HOTLINE, "I need to talk to someone")
    assert seconds < FAST
    assert [to for to, _ in first] == [CLINICIAN, ALICE]
    assert OFFER in first[1][1]
    held, seconds = texted(line, CLINICIAN, HOTLINE, "are you there?")
    assert seconds < FAST and held == []

    redis_server.start()  # empty: the offer's time-out wake-up is gone
    assert rq_keys(line.redis) == []
    line.clock.advance(seconds=line.settings.offer_timeout + tasks.SWEEP_GRACE.seconds + 1)
    assert line.sweep().offers_expired == 1
    assert len(rest_texts(line, BOB, OFFER)) == 1

    redis_server.stop()  # and down again while they talk
    accepted, seconds = texted(line, BOB, POOL[0], "ACCEPT")
    assert seconds < FAST
    assert [b for to, b in accepted if to == BOB][1:] == [
        "I need to talk to someone",
        "are you there?",
    ]
    relayed, seconds = texted(line, CLINICIAN, HOTLINE, "thank you")
    assert seconds < FAST and relayed == [(BOB, "thank you")]
    closed, seconds = texted(line, BOB, POOL[0], "DONE")
    assert seconds < FAST and {to for to, _ in closed} == {BOB, CLINICIAN}

    redis_server.start()  # the check-ins' wake-ups were lost too: the sweeper sends them
    line.clock.advance(days=1, minutes=1)
    assert line.sweep().checkins_sent == 1
    assert len(rest_texts(line, CLINICIAN)) == 1
    assert line.sweep().checkins_sent == 0


@pytest.mark.sqlite_only
def test_with_redis_hung_a_text_is_answered_in_time_and_health_says_so(
    line: Hotline, redis_server: RedisServer
) -> None:
    line.add_supporter("Alice", ALICE)
    with paused(redis_server):
        first, seconds = texted(line, CLINICIAN, HOTLINE, "hello?")
        assert seconds < FAST, f"a hung Redis held the webhook {seconds:.1f} s"
        assert [to for to, _ in first] == [CLINICIAN, ALICE]
        again, seconds = texted(line, SECOND, HOTLINE, "hello?")
        assert seconds < FAST and len(again) == 2
        health, seconds = timed(lambda: line.client.get("/healthz"))
        assert seconds < FAST
        assert health.get_json()["redis"] == "unavailable"
    line.clock.advance(seconds=line.settings.offer_timeout + tasks.SWEEP_GRACE.seconds + 1)
    assert line.sweep().offers_expired == 2


# --- the database -----------------------------------------------------------------------------


@contextmanager
def closed_database(name: str) -> Iterator[None]:
    """PostgreSQL stops serving ``name``: every backend terminated, new connections refused."""
    admin = create_engine(postgres_server(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
    terminate_backends(name)
    try:
        yield
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.dispose()


def terminate_backends(name: str) -> None:
    """Every connection to ``name`` dropped by the server, as a restart or failover does."""
    admin = create_engine(postgres_server(), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %(name)s AND pid <> pg_backend_pid()",
            {"name": name},
        )
    admin.dispose()


@pytest.fixture
def on_postgres(
    database_tiers: Tiers, fake_twilio: FakeTwilio, tmp_path: Path
) -> Iterator[tuple[Hotline, str]]:
    """A hotline on the PostgreSQL tier only (the fault is PostgreSQL's), with its database."""
    url = database_tiers.url("postgres")
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    harness = make_hotline(url, redis, fake_twilio, tmp_path)
    engine = harness.services.sessions.kw["bind"]
    try:
        yield harness, str(engine.url.database)
    finally:
        harness.clock.stop()
        empty_tables(engine)
        engine.dispose()


def assert_crisis_fallback(response: Any, seconds: float) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert seconds < FAST, f"the fallback took {seconds:.1f} s"
    assert CRISIS in body or CRISIS_SAID in body
    for leak in ("Traceback", "Error", "psycopg", "sqlalchemy", "postgres", CLINICIAN):
        assert leak not in body


@pytest.mark.postgres
def test_postgres_closing_mid_run_gets_the_crisis_line_fast_then_recovers(
    on_postgres: tuple[Hotline, str], caplog: pytest.LogCaptureFixture
) -> None:
    hotline, name = on_postgres
    hotline.add_supporter("Alice", ALICE)
    assert len(texted(hotline, CLINICIAN, HOTLINE, "hello")[0]) == 2  # pooled connections now

    with closed_database(name):
        response, seconds = timed(lambda: hotline.sms(SECOND, HOTLINE, "is anyone there"))
        assert_crisis_fallback(response, seconds)
        call = {"CallSid": "CA" + "e1" * 16, "From": SECOND, "To": HOTLINE}
        response, seconds = timed(lambda: hotline.post("/twilio/voice", **call))
        assert_crisis_fallback(response, seconds)
        status = hotline.post("/twilio/status", MessageSid="SM" + "e2" * 16, MessageStatus="sent")
        assert status.status_code == 204  # acknowledged: a 5xx would only alert at Twilio
        assert hotline.client.get("/healthz").get_json()["database"] == "unavailable"

    # Back: the same pool reconnects (pre-ping), and the text Twilio retries is handled.
    retried, seconds = texted(hotline, SECOND, HOTLINE, "is anyone there")
    assert seconds < FAST and retried[0][0] == SECOND
    assert "is anyone there" not in caplog.text and SECOND not in caplog.text


@pytest.mark.postgres
@pytest.mark.parametrize("ping_after_idle", [0.0, 3600.0], ids=["pinged", "retried"])
def test_connections_dropped_between_texts_cost_no_text(
    on_postgres: tuple[Hotline, str], monkeypatch: pytest.MonkeyPatch, ping_after_idle: float
) -> None:
    """A database restart or failover between two texts drops every pooled connection; the
    next text is handled as usual. A connection idle long enough is pinged and replaced before
    use; one reused at once fails its first statement and the transaction runs again."""
    hotline, name = on_postgres
    monkeypatch.setattr(db, "PING_AFTER_IDLE_S", ping_after_idle)
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    assert len(texted(hotline, CLINICIAN, HOTLINE, "hello")[0]) == 2  # pooled connections now

    failures: list[bool] = []  # statements that failed, by whether the connection was dead
    engine = hotline.services.sessions.kw["bind"]
    event.listen(engine, "handle_error", lambda context: failures.append(context.is_disconnect))
    terminate_backends(name)

    answer, _ = texted(hotline, SECOND, HOTLINE, "is anyone there")
    assert failures == ([] if ping_after_idle == 0 else [True])
    assert len(answer) == 2 and answer[0][0] == SECOND, "the greeting and an offer"
    assert CRISIS in answer[0][1] and "peer" in answer[1][1].lower()


@pytest.mark.postgres
def test_a_text_stuck_behind_a_lock_gets_the_crisis_line_before_twilio_gives_up(
    database_tiers: Tiers, fake_twilio: FakeTwilio, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stuck transaction holds the programme's rotation lock: the next first text waits no
    longer than the statement timeout, then gets the fallback, not Twilio's silence at 15 s."""
    monkeypatch.setattr(app_module, "STATEMENT_TIMEOUT_MS", 500)
    url = database_tiers.url("postgres")
    hotline = make_hotline(
        url, fakeredis.FakeRedis(server=fakeredis.FakeServer()), fake_twilio, tmp_path
    )
    engine = hotline.services.sessions.kw["bind"]
    blocker = create_engine(url, poolclass=NullPool)
    try:
        hotline.add_supporter("Alice", ALICE)
        with blocker.connect() as stuck:
            stuck.exec_driver_sql("SELECT id FROM programmes FOR UPDATE")  # and never commits
            response, seconds = timed(lambda: hotline.sms(CLINICIAN, HOTLINE, "hello"))
            assert_crisis_fallback(response, seconds)
            assert seconds >= 0.5, "it waited for the lock as long as allowed"
            stuck.rollback()
        answer, _ = texted(hotline, CLINICIAN, HOTLINE, "hello again")
        assert len(answer) == 2 and answer[1][0] == ALICE, "greeting and an offer once it is free"
    finally:
        blocker.dispose()
        hotline.clock.stop()
        empty_tables(engine)
        engine.dispose()


class SilentServer:
    """A TCP port that accepts connections and never says a word: a hung database server."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted.append(connection)

    def close(self) -> None:
        self.socket.close()
        for connection in self.accepted:
            connection.close()


@pytest.fixture
def hung_database(tmp_path: Path, fake_twilio: FakeTwilio) -> Iterator[Flask]:
    server = SilentServer()
    url = f"postgresql+psycopg://postgres@127.0.0.1:{server.port}/hotline"
    settings = load_settings(environment_for(url, fake_twilio), instance_path=tmp_path)
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    services = build_services(settings, redis=redis)
    try:
        yield create_app(services=services, redis=redis)
    finally:
        services.sessions.kw["bind"].dispose()
        server.close()


def test_a_database_that_accepts_and_never_answers_still_gets_twilio_the_crisis_line(
    hung_database: Flask,
) -> None:
    """psycopg's default is to wait 130 s; libpq's shortest connect timeout is 2 s."""
    params = {"MessageSid": "SM" + "e3" * 16, "From": CLINICIAN, "To": HOTLINE, "Body": "hi"}
    client = hung_database.test_client()
    response, seconds = timed(
        lambda: signed_post(client, PUBLIC_URL, "/twilio/sms", params, AUTH_TOKEN)
    )
    assert response.status_code == 200
    assert seconds < 3.5, f"a hung database held the webhook {seconds:.1f} s"
    assert CRISIS in response.get_data(as_text=True)


# --- Twilio's REST API ------------------------------------------------------------------------


def pending_offer(hotline: Hotline) -> Offer:
    with hotline.session() as session:
        return session.scalars(select(Offer).where(Offer.state == OfferState.PENDING)).one()


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("status", "code"), [(429, 20429), (503, None)], ids=["429", "503"])
def test_a_refused_text_from_a_job_is_retried_briefly_then_given_up(
    line: Hotline, status: int, code: int | None
) -> None:
    """An offer after a time-out goes out through the API: a refusal is retried, a bounded
    number of times; if Twilio still refuses (an outage), the offer times out to the next
    peer in turn. Not at once: a few seconds' outage would run through every peer on call,
    tell the clinician nobody is free and use up each peer's asks."""
    line.add_supporter("Alice", ALICE)
    line.add_supporter("Bob", BOB)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.fake.fail_next(n=len(RETRY_DELAYS), status=status, code=code)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert len(rest_texts(line, BOB, OFFER)) == 1, "sent once, on the last attempt"

    texted(line, BOB, POOL[0], "ACCEPT")
    texted(line, SECOND, HOTLINE, "hello")  # Alice is offered this one
    line.fake.fail_next(n=len(RETRY_DELAYS) + 5, status=status, code=code)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    _, seconds = timed(lambda: tasks.expire_offer(line.services, pending_offer(line).id))
    assert seconds < sum(RETRY_DELAYS) + 1.5, "bounded"
    assert len(rest_texts(line, BOB, OFFER)) == 1, "given up: Bob's second offer never went"
    line.fake.clear_faults()
    line.run_jobs()  # no time passes: the offer stands, SECOND is not told nobody is free
    assert pending_offer(line) is not None and rest_texts(line, SECOND) == []
    line.clock.advance(seconds=line.settings.offer_timeout + tasks.SWEEP_GRACE.seconds + 1)
    assert line.sweep().offers_expired == 1  # nobody else is left: SECOND is told so
    assert len(rest_texts(line, SECOND)) == 1


@pytest.mark.sqlite_only
@pytest.mark.parametrize("code", [21610, 21614, 21211])
def test_an_offer_twilio_refuses_for_good_goes_to_the_next_peer_at_once(
    line: Hotline, code: int
) -> None:
    """Bob texted STOP to the pool number, or his number is not a mobile one, or not valid:
    Twilio will never deliver his offer, so the request goes on to Carol at once."""
    line.add_supporter("Alice", ALICE)
    line.add_supporter("Bob", BOB)
    line.add_supporter("Carol", CAROL)
    texted(line, CLINICIAN, HOTLINE, "hello")  # Alice is offered it
    line.fake.fail_for(BOB, code=code, status=400)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert rest_texts(line, BOB) == []
    line.run_jobs()  # no time passes
    assert len(rest_texts(line, CAROL, OFFER)) == 1
    assert rest_texts(line, CLINICIAN) == []  # not told nobody is free: Carol is asked
    with line.session() as session:  # his STOP, missed by the line, is kept as if heard
        blocked = session.execute(
            select(OptOut.sender, Offer.pool_number)
            .join(Offer, Offer.pool_number == OptOut.sender)
            .join(Supporter, Supporter.id == Offer.supporter_id)
            .where(Supporter.name == "Bob")
        )
        assert len(blocked.all()) == (1 if code == 21610 else 0)


def refusal_of(hotline: Hotline, supporter_id: int) -> tuple[int | None, datetime | None]:
    """What the roster shows of texts to the supporter's phone refused: code and time."""
    with hotline.session() as session:
        s = session.get_one(Supporter, supporter_id)
        return s.texts_refused_code, s.texts_refused_at


@pytest.mark.sqlite_only
def test_a_supporter_whose_phone_twilio_refuses_is_marked_until_a_text_to_them_is_taken(
    line: Hotline,
) -> None:
    """Bob's number is not a mobile one (21614): his offer goes on at once, and he was passed
    over, offer after offer, with nothing to tell the coordinator. The refusal is kept on him
    (the code and when, no text) for the roster, until a later text to him is taken."""
    line.add_supporter("Alice", ALICE)
    bob = line.add_supporter("Bob", BOB)
    texted(line, CLINICIAN, HOTLINE, "hello")  # Alice is offered it
    line.fake.fail_for(BOB, code=21614)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert refusal_of(line, bob) == (21614, line.clock.now)
    line.run_jobs()

    line.fake.clear_faults()  # his carrier put it right
    texted(line, SECOND, HOTLINE, "hello")  # Alice is offered this one
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert len(rest_texts(line, BOB, OFFER)) == 1
    assert refusal_of(line, bob) == (None, None)


@pytest.mark.sqlite_only
@pytest.mark.parametrize("code", [21606, 21212])
def test_an_offer_from_a_pool_number_twilio_will_not_send_from_times_out_as_in_an_outage(
    line: Hotline, code: int, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool numbers are not ones Twilio sends from for this account (21606: released, or
    moved to another account) or not valid ones (21212). That is our numbers' fault, the same
    for every peer, and says nothing of Bob: his offer was passed on at once, so the request
    ran through every peer on call in seconds and the clinician was told nobody is free. It
    times out as an offer lost to an outage does, and IT reads an error naming the code and
    which of the line's numbers it is (never a number)."""
    line.add_supporter("Alice", ALICE)
    bob = line.add_supporter("Bob", BOB)
    line.add_supporter("Carol", CAROL)
    texted(line, CLINICIAN, HOTLINE, "hello")  # Alice is offered it in the reply
    for number in POOL:
        line.fake.fail_from(number, code=code)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    with caplog.at_level(logging.ERROR, logger="hotline"):
        assert tasks.expire_offer(line.services, pending_offer(line).id)
        line.run_jobs()  # no time passes
    assert sent_to(line, BOB) == sent_to(line, CAROL) == []
    assert sent_to(line, CLINICIAN) == [], "told nobody is free before the offer timeout"
    assert pending_offer(line).supporter_id == bob
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert str(code) in error and "pool number" in error
    assert not any(n in caplog.text for n in (*POOL, HOTLINE, BOB, CLINICIAN))

    line.fake.clear_faults()  # fixed in Twilio's console
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert len(sent_to(line, CAROL)) == 1


@pytest.mark.sqlite_only
def test_a_nobody_is_free_text_twilio_refused_is_owed_and_the_sweeper_sends_it(
    line: Hotline,
) -> None:
    """The only peer's offer lapses and Twilio refuses the job's "nobody is free" text on every
    attempt: the clinician, told a peer would text, must not be left with silence. The text is
    owed again, and the sweeper sends it once Twilio takes texts again, once."""
    line.add_supporter("Alice", ALICE)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.fake.fail_next(n=len(RETRY_DELAYS) + 1, status=503, code=None)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert rest_texts(line, CLINICIAN) == []
    with line.session() as session:
        assert session.scalar(select(Conversation.fallback_at)) is None  # owed
    line.sweep()
    line.sweep()
    (told,) = rest_texts(line, CLINICIAN)
    assert "No peer supporter is free" in told and "988" in told


@pytest.mark.sqlite_only
def test_a_coordinator_is_alerted_once_when_the_nobody_is_free_text_is_owed_again(
    line: Hotline,
) -> None:
    """Twilio refuses the clinician's "nobody is free" text and takes the coordinator's alert
    (a brief outage ending between the two): the text is owed again and goes with the next
    sweep, but the alert phone is not alerted a second time about the same request."""
    line.add_supporter("Alice", ALICE)
    with transaction(line.services.sessions) as session:
        programme = session.get_one(Programme, line.programme_id)
        set_alert_phone(line.services.vault, programme, COORDINATOR)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.fake.fail_next(n=len(RETRY_DELAYS) + 1, status=503, code=None)
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    assert sent_to(line, CLINICIAN) == []
    line.sweep()
    line.sweep()
    (told,) = sent_to(line, CLINICIAN)
    assert "No peer supporter is free" in told
    (alert,) = sent_to(line, COORDINATOR)
    assert "nobody available" in alert


@pytest.mark.sqlite_only
def test_a_request_closed_text_twilio_refused_is_owed_and_the_sweeper_sends_it(
    line: Hotline,
) -> None:
    """Nobody took the request in two days and Twilio refuses the sweeper's "your request has
    closed" text: the clinician must still be told, with the crisis line, once."""
    line.add_supporter("Alice", ALICE)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    assert tasks.expire_offer(line.services, pending_offer(line).id)
    (told,) = rest_texts(line, CLINICIAN)
    assert "No peer supporter is free" in told
    line.clock.advance(hours=48)
    line.fake.fail_for(CLINICIAN, code=None, status=503)
    assert line.sweep().conversations_closed == 1
    line.fake.clear_faults()
    assert len(sent_to(line, CLINICIAN)) == 1  # not taken
    line.clock.advance(seconds=30)
    line.sweep()
    line.sweep()
    told, closed = sent_to(line, CLINICIAN)
    assert "closed" in closed and "988" in closed
    with line.session() as session:
        assert session.scalar(select(Conversation.close_owed_at)) is None


@pytest.mark.sqlite_only
def test_a_lost_nobody_is_free_text_does_not_owe_a_closed_notice(line: Hotline) -> None:
    """The 'nobody is free' text lost as the sweeper closes the request: the clinician gets
    the closing text (with the crisis line) once, not a second one for the lost text."""
    line.add_supporter("Alice", ALICE)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.clock.advance(hours=48, seconds=1)
    line.sweep()  # closes it, unanswered, and tells them
    with line.session() as session:
        conv_id = session.scalar(select(Conversation.id))
    owe_again(line.services, {conv_id}, set())  # a 'nobody is free' text lost meanwhile
    line.sweep()
    closing = [t for t in sent_to(line, CLINICIAN) if "closed" in t]
    assert len(closing) == 1


@pytest.mark.sqlite_only
def test_webhooks_stay_fast_while_twilio_hangs_on_a_job(line: Hotline) -> None:
    """A job stuck in a hanging Twilio call does not slow any webhook: they never call Twilio."""
    line.add_supporter("Alice", ALICE)
    line.add_supporter("Bob", BOB)
    texted(line, CLINICIAN, HOTLINE, "hello")
    line.clock.advance(seconds=line.settings.offer_timeout + 1)
    line.fake.hang_next(4.0, n=20)  # every API request now takes 4 s to answer
    offer_id = pending_offer(line).id
    job = threading.Thread(target=tasks.expire_offer, args=(line.services, offer_id))
    job.start()
    try:
        # Twilio has taken the offer to Bob (then hangs): the rotation has moved on to Alice.
        wait_for(lambda: bool(rest_texts(line, BOB, OFFER)), seconds=10)
        slowest = 0.0
        for step, (sender, to, body) in enumerate(
            [
                (SECOND, HOTLINE, "hello"),
                (ALICE, POOL[0], "ACCEPT"),
                (SECOND, HOTLINE, "thanks for answering"),
                (ALICE, POOL[0], "of course"),
                (ALICE, POOL[0], "DONE"),
            ]
        ):
            texts, seconds = texted(line, sender, to, body)
            assert texts, f"step {step} answered nothing"
            slowest = max(slowest, seconds)
        status = line.post("/twilio/status", MessageSid="SM" + "e4" * 16, MessageStatus="sent")
        assert status.status_code == 204
        assert job.is_alive(), "the job should still be waiting on Twilio"
        assert slowest < 1.0, f"a webhook took {slowest:.1f} s"
    finally:
        line.fake.clear_faults()
        job.join(30)
    assert len(rest_texts(line, BOB, OFFER)) == 1


# --- a worker killed mid-job ------------------------------------------------------------------


def real_now(redis: Redis) -> datetime:
    """The real time (the test's clock travels; a worker process's does not): Redis's clock."""
    seconds, micros = redis.time()
    return datetime.fromtimestamp(seconds + micros / 1e6, UTC)


def worker_env(
    hotline: Hotline, redis_server: RedisServer | None, tmp_path: Path
) -> dict[str, str]:
    env = environment_for(hotline.settings.database_url, hotline.fake)
    redis = {"REDIS_URL": redis_server.url} if redis_server is not None else {}
    return {
        **env,
        **redis,
        "PATH": os.environ.get("PATH", ""),
        "HOTLINE_INSTANCE_PATH": str(tmp_path),
    }


def start_worker(
    hotline: Hotline, redis_server: RedisServer | None, tmp_path: Path, **env: str
) -> subprocess.Popen[bytes]:
    """``hotline worker`` as the Procfile runs it (with ``env`` changed), logging to
    ``worker.log``."""
    with open(tmp_path / "worker.log", "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hotline.cli", "worker"],
            env=worker_env(hotline, redis_server, tmp_path) | env,
            cwd=tmp_path,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: RQ forks the scheduler into a child process, and a kill
            # that leaves that child orphaned would keep holding the scheduler lock for later
            # tests (as a process manager kills the whole group, so does this test).
            start_new_session=True,
        )


def wait_for(probe: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not probe():
        assert time.monotonic() < deadline, "nothing happened in time"
        time.sleep(0.02)


def two_checkins_due(line: Hotline) -> None:
    """Two clinicians whose first check-in fell due ten minutes ago (on the real clock, which
    a worker process reads); the jobs due before them already run."""
    now = real_now(line.redis)
    line.clock.now = now - timedelta(days=1, minutes=10)
    line.add_supporter("Alice", ALICE)
    line.add_supporter("Bob", BOB)
    phones = Phones(line)
    talk_then_done(phones, CLINICIAN, ALICE)
    talk_then_done(phones, SECOND, BOB)
    line.clock.now = now - timedelta(minutes=11)
    line.run_jobs()  # the jobs due before the check-ins (message record deletions)
    line.clock.now = now


def talk_then_done(phones: Phones, clinician: str, supporter: str) -> None:
    phones.phone(clinician).texts("hello")
    phones.phone(supporter).expect_text(OFFER)
    phones.phone(supporter).texts("ACCEPT")
    phones.phone(supporter).texts("DONE")


def checkins_of(hotline: Hotline) -> list[CheckIn]:
    with hotline.session() as session:
        return list(session.scalars(select(CheckIn).where(CheckIn.sequence == 1)))


def test_a_worker_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    line: Hotline, redis_server: RedisServer, tmp_path: Path
) -> None:
    two_checkins_due(line)
    texted(line, THIRD, HOTLINE, "hello")  # an offer whose time-out is still to come
    line.fake.hang_next(2.0)  # Twilio takes the next message, then is slow to say so

    worker = start_worker(line, redis_server, tmp_path)
    try:
        wait_for(lambda: bool(line.fake.messages) or worker.poll() is not None)
        assert worker.poll() is None, "the worker exited instead of waiting on Twilio"
        assert len(line.fake.messages) == 1
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    stuck = [c for c in checkins_of(line) if c.state == CheckInState.SENDING]
    assert len(stuck) == 1 and stuck[0].claimed_at is not None
    # The other one was claimed in the same batch but never handed to Twilio: its claim
    # lapses (CLAIM_LEASE) and it is due again.
    behind = [c for c in checkins_of(line) if c.state == CheckInState.CLAIMED]
    assert len(behind) == 1

    # A replacement worker (in this process, on the test's clock) and the sweeper take over.
    line.clock.now = stuck[0].claimed_at + timedelta(seconds=line.settings.offer_timeout + 30)
    line.run_jobs()
    line.sweep()
    assert [c.state for c in checkins_of(line) if c.id == behind[0].id] == [CheckInState.SENT]
    offers = [m for m in line.fake.messages if OFFER in m["body"]]
    assert len(offers) == 1, "the time-out moved the third request on, once"

    line.clock.advance(minutes=5)  # the stuck row is past STUCK_AFTER: in doubt, never resent
    assert line.sweep().checkins_unknown == 1
    line.services.wakeups.schedule(Task.SEND_CHECKIN, stuck[0].id)  # RQ re-running it
    line.run_jobs()
    line.sweep()
    states = {c.id: c.state for c in checkins_of(line)}
    assert states[stuck[0].id] == CheckInState.UNKNOWN
    for clinician in (CLINICIAN, SECOND):
        assert len(rest_texts(line, clinician, "Checking in")) == 1, "each exactly once"


@pytest.mark.sqlite_only
def test_a_worker_busy_when_redis_restarts_carries_on_once_it_is_back(
    line: Hotline, redis_server: RedisServer, tmp_path: Path
) -> None:
    """RQ's worker quits when Redis goes away mid-job; ``hotline worker`` starts it again
    instead of exiting with nothing left to run the wake-ups and the sweeper."""
    two_checkins_due(line)
    with line.session() as session:
        ids = list(session.scalars(select(CheckIn.id).where(CheckIn.sequence == 1)))
    line.redis.delete("rq:queue:hotline")  # one at a time: the second is enqueued later
    line.services.wakeups.schedule(Task.SEND_CHECKIN, ids[0])
    line.fake.hang_next(2.0)
    worker = start_worker(line, redis_server, tmp_path)
    try:
        wait_for(lambda: bool(line.fake.messages) or worker.poll() is not None)
        redis_server.stop()  # while the job waits on Twilio
        time.sleep(3.0)
        redis_server.start()  # empty
        line.services.wakeups.schedule(Task.SEND_CHECKIN, ids[1])
        wait_for(lambda: len(line.fake.messages) == 2 or worker.poll() is not None)
        log = (tmp_path / "worker.log").read_text()
        assert worker.poll() is None, f"the worker process exited: {log[-3000:]}"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    assert "starting it again" in (tmp_path / "worker.log").read_text()  # the path under test
    for clinician in (CLINICIAN, SECOND):
        assert len(rest_texts(line, clinician, "Checking in")) == 1


@pytest.mark.sqlite_only
def test_a_worker_whose_redis_cannot_be_reached_names_it_and_keeps_trying(
    line: Hotline, tmp_path: Path
) -> None:
    """A REDIS_URL with the wrong host or port: the operator reads which Redis and why in the
    worker's log, and the worker stays up (its sweeper still sends what is due)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    url = f"redis://:not-for-logs@127.0.0.1:{port}/0"
    worker = start_worker(line, None, tmp_path, REDIS_URL=url)
    try:
        wait_for(lambda: (tmp_path / "worker.log").read_text().count("starting it again") >= 1)
        time.sleep(3)  # three restarts more, one a second: not logged again (once a minute)
        assert worker.poll() is None
        assert (tmp_path / "worker.log").read_text().count("starting it again") == 1
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)
    first = next(
        row for row in (tmp_path / "worker.log").read_text().splitlines() if "again" in row
    )
    assert "REDIS_URL" in first and f"127.0.0.1:{port}" in first, first
    assert "not-for-logs" not in (tmp_path / "worker.log").read_text()
    # It said it had started, and where it looks for jobs: RQ's own lines are turned down.
    started = f"hotline worker started: jobs from Redis at 127.0.0.1:{port} db 0, the sweeper"
    assert started in (tmp_path / "worker.log").read_text()


@pytest.mark.sqlite_only
def test_a_worker_on_a_database_not_yet_migrated_says_what_to_run(
    line: Hotline, redis_server: RedisServer, tmp_path: Path
) -> None:
    """Not only 'sweep failed (OperationalError)' every 30 s: what is wrong and what to do."""
    never_migrated = f"sqlite:///{tmp_path / 'never-migrated.sqlite3'}"
    worker = start_worker(line, redis_server, tmp_path, DATABASE_URL=never_migrated)
    try:
        wait_for(lambda: "hotline db upgrade" in (tmp_path / "worker.log").read_text())
        assert worker.poll() is None  # it stays up: the upgrade may be running right now
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(10)


@pytest.mark.sqlite_only
def test_a_worker_told_to_stop_exits_promptly_every_time(
    line: Hotline, redis_server: RedisServer, tmp_path: Path
) -> None:
    """A deploy or a scale-down sends SIGTERM and waits (Heroku: 30 s) before SIGKILL. With
    RQ's pub/sub listener a worker sometimes took a minute to exit (see workers.main._Worker);
    the race was about one stop in ten, so the test stops a worker several times."""
    assert redis_server is not None
    for _attempt in range(4):
        worker = start_worker(line, redis_server, tmp_path)
        try:
            wait_for(lambda: bool(line.redis.smembers("rq:workers")))
            assert line.redis.pubsub_channels("rq:pubsub:*") == []  # no listener to wait for
            time.sleep(0.2)
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(10)  # TimeoutExpired fails the test
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(10)
        log = (tmp_path / "worker.log").read_text()
        assert worker.returncode == 0, log[-3000:]
        wait_for(lambda: not line.redis.smembers("rq:workers"))


def test_worker_restarts_are_logged_once_a_minute_and_a_new_outage_at_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A long Redis outage is one line a minute with the count, not one a second; after the
    worker has run a minute again, the next failure is a new outage, logged at once (with the
    restarts the last outage's lines had not counted yet)."""
    clock = [1000.0]
    monkeypatch.setattr(worker_main.time, "monotonic", lambda: clock[0])
    restarts = worker_main._Restarts()

    def fail_after(seconds: float) -> None:
        started = clock[0]
        clock[0] += seconds
        restarts.note(started, "Redis failed")

    with caplog.at_level(logging.WARNING, logger="workers.main"):
        for _ in range(90):  # an outage: a restart a second for a minute and a half
            fail_after(1.0)
        fail_after(120.0)  # back for two minutes, then gone again
    lines = [r.getMessage() for r in caplog.records if "Redis failed" in r.getMessage()]
    assert lines[0] == "Redis failed; starting it again"
    assert lines[1] == "Redis failed; starting it again (60 restarts since the last such line)"
    # The new outage, at once, with the 29 restarts of the first one its lines had not counted
    assert lines[2] == (
        "Redis failed; starting it again (29 restarts in the previous outage after its last line)"
    )
    fail_after(120.0)  # back again, then a third outage: nothing was left uncounted
    lines = [r.getMessage() for r in caplog.records if "Redis failed" in r.getMessage()]
    assert lines[3] == "Redis failed; starting it again"
    assert len(lines) == 4


def test_one_programmes_fault_does_not_stop_the_sweep_of_the_others(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """A clinician's number that no data key opens any more (a key removed too soon) makes
    telling them of a lapsed offer, and closing their request, fail every sweep. The next
    programme's request, waiting as long, still closes and its clinician is told: the faults
    stay the first programme's, logged."""
    from hotline.models import Clinician
    from hotline.people import CLINICIAN_CONTEXT
    from hotline.privacy import Vault
    from hotline.programmes import ensure_programme

    with transaction(hotline.services.sessions) as session:
        ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        )
    first, second = "+15550109001", "+15550109002"
    hotline.add_supporter("Alice", "+15550108001")  # on call for the first programme only
    assert hotline.sms(first, HOTLINE, "hello").status_code == 200  # offered to Alice
    assert hotline.sms(second, "+15550200000", "hello").status_code == 200
    with transaction(hotline.services.sessions) as session:
        clinician = session.scalars(select(Clinician).order_by(Clinician.id)).first()
        assert clinician is not None
        clinician.phone_sealed = Vault((b"r" * 32,)).seal(first, CLINICIAN_CONTEXT)
    hotline.clock.advance(seconds=49 * 3600)  # both requests idle past their 48 hours
    told = len(hotline.fake.sent)
    with caplog.at_level(logging.ERROR, logger="hotline.tasks"):
        hotline.sweep()
    assert f"sweep: programme {hotline.programme_id} failed" in caplog.text
    assert "sweep: offer " in caplog.text  # Alice's, lapsed: telling the clinician failed
    with hotline.session() as session:
        states = session.scalars(select(Conversation.state).order_by(Conversation.id)).all()
    assert states == [ConversationState.QUEUED, ConversationState.ENDED]
    closed = [m["body"] for m in hotline.fake.sent[told:] if m["to"] == second]
    assert len(closed) == 1 and "has closed" in closed[0]


def test_held_texts_no_key_opens_do_not_stop_the_sweep_of_the_others(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """A held text that no data key opens (a key removed too soon) makes sending it fail on
    every sweep, after its programme's pass. The next programme's waiting request is still
    offered to the supporter who has come on call: the fault stays that conversation's."""
    from hotline.held import PENDING_TEXT_CONTEXT
    from hotline.models import PendingText, Shift
    from hotline.people import new_supporter
    from hotline.privacy import Vault
    from hotline.programmes import ensure_programme

    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        ).id
    hotline.add_supporter("Alice", ALICE)
    Phones(hotline).talking(CLINICIAN, ALICE)
    assert hotline.sms(SECOND, "+15550200000", "hello").status_code == 200  # nobody on call
    now = hotline.clock.now
    with transaction(hotline.services.sessions) as session:
        bob = new_supporter(hotline.services.vault, north, "Bob", BOB)
        session.add(bob)
        session.flush()
        session.add(
            Shift(programme_id=north, supporter_id=bob.id, starts_at=now, ends_at=now + DAY)
        )
        conv = session.scalars(
            select(Conversation).where(Conversation.programme_id == hotline.programme_id)
        ).one()
        sealed = Vault((b"r" * 32,)).seal("written as a key was removed", PENDING_TEXT_CONTEXT)
        session.add(PendingText(conversation_id=conv.id, sealed=sealed))
    hotline.clock.advance(minutes=1)  # past the sweeper's grace: its wake-up taken as lost
    with caplog.at_level(logging.ERROR, logger="hotline.tasks"):
        hotline.sweep()
    assert f"held texts of conversation {conv.id} failed" in caplog.text
    assert [OFFER in m["body"] for m in hotline.fake.sent if m["to"] == BOB] == [True]
