"""Engines and sessions. The same code runs on SQLite (WAL, busy timeout) and PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
CONNECT_TIMEOUT_S = 2
# A pooled connection idle this long is pinged before use (a restart or failover may have
# closed it meanwhile); one in steady use is not, which saves a round trip per transaction.
# One that died while in use fails its statement, the pool is then refreshed whole, and
# run_in_transaction tries the work again on a new connection.
PING_AFTER_IDLE_S = 5.0
T = TypeVar("T")


def make_engine(url: str, *, statement_timeout_ms: int | None = None, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, a busy timeout, foreign keys and immediate writes.
    On PostgreSQL ``statement_timeout_ms`` bounds every statement (lock waits included)."""
    parsed = make_url(url)
    # Statement parameters never go into SQLAlchemy's exception messages or logs (an error a
    # job raised is kept in RQ's failed-job registry with its message).
    kwargs.setdefault("hide_parameters", True)
    if parsed.get_backend_name() == "sqlite":
        connect_args = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False}
        engine = create_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # pysqlite's deferred BEGIN lets two writers both read, then one fails to upgrade its
        # lock without waiting (SQLITE_BUSY_SNAPSHOT); BEGIN IMMEDIATE makes writers queue on the
        # busy timeout instead, which is what the de-duplication and rotation code relies on.
        event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        # psycopg waits 130 s for a server that accepts but does not answer; a webhook must
        # fall back to the crisis line long before Twilio's 15 s (2 s is libpq's minimum).
        kwargs["connect_args"] = {
            "connect_timeout": CONNECT_TIMEOUT_S,
            **kwargs.get("connect_args", {}),
        }
    if parsed.get_backend_name() == "postgresql" and statement_timeout_ms:
        given = kwargs.setdefault("connect_args", {}).get("options") or parsed.query.get("options")
        options = given if isinstance(given, str) else ""
        kwargs["connect_args"]["options"] = f"{options} -c statement_timeout={statement_timeout_ms}"
    engine = create_engine(url, **kwargs)
    _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pessimistic disconnect handling (a checkout that raises DisconnectionError
    is retried on a new connection), for connections idle PING_AFTER_IDLE_S or more only."""

    @event.listens_for(engine, "checkin")
    def rest(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def check(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop("idle_since", None)
        if since is None or time.monotonic() - since < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as error:
            raise DisconnectionError("a pooled connection went away while idle") from error


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see make_engine)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock detected


class Retry(Exception):
    """Raised by ``run_in_transaction``'s work: a row it decided on changed before it could
    lock it (a conversation ended by a DONE committing meanwhile). Nothing is kept; the whole
    transaction runs again and sees the change."""


def is_retryable(error: DBAPIError) -> bool:
    """True for errors that a fresh attempt of the whole transaction may not meet again: a
    deadlock, a serialization failure, or a connection that turned out dead (the pool has been
    refreshed; if the database is really down the next attempt fails fast too)."""
    if error.connection_invalidated:
        return True
    code = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)
    return code in RETRYABLE_SQLSTATES


def run_in_transaction(
    factory: sessionmaker[Session], work: Callable[[Session], T], attempts: int = 3
) -> T:
    """Run ``work`` in a transaction; retry it whole after a deadlock, a serialization failure
    or a connection that dropped while ``work`` ran (nothing was committed then).

    A connection lost during COMMIT is not retried: the commit may have happened, and a repeat
    would meet its own event key and answer as a duplicate, losing the first answer. It raises,
    and the caller's fallback answers instead.
    """
    for attempt in range(1, attempts + 1):
        committing = False
        try:
            with transaction(factory) as session:
                result = work(session)
                committing = True
            return result
        except DBAPIError as error:
            lost_commit = committing and error.connection_invalidated
            if attempt == attempts or lost_commit or not is_retryable(error):
                raise
        except Retry:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")
