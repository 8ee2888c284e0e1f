"""Database tiers for tests: a pytest plugin, listed in the root conftest's ``pytest_plugins``.

- ``database_url`` (session): parametrized over ``sqlite`` (a temp file) and ``postgres`` (a
  fresh database ``hotline_test_<pid>_<random>`` on ``HOTLINE_TEST_POSTGRES_URL``, dropped with
  ``WITH (FORCE)`` at the end). Each tier is migrated once per run; concurrent runs never share
  a database. ``@pytest.mark.sqlite_only`` keeps a test on SQLite.
- ``engine``, ``sessions`` (per test): the tier's database; every table is emptied after the
  test, so tests are independent without re-running the migrations.
- Postgres-tier tests carry the ``postgres`` marker, so ``-m "not postgres"`` runs SQLite only.

An unreachable PostgreSQL skips its tier, loudly (also in the terminal summary); with
``HOTLINE_REQUIRE_POSTGRES=1`` (CI) it is a failure instead.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import NoReturn

import pytest
from sqlalchemy import URL, Connection, Engine, create_engine, make_url, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from hotline.db import make_engine, make_sessionmaker
from hotline.migrate import upgrade
from hotline.models import Base

TIERS = ("sqlite", "postgres")
POSTGRES_URL_ENV = "HOTLINE_TEST_POSTGRES_URL"
REQUIRE_POSTGRES_ENV = "HOTLINE_REQUIRE_POSTGRES"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True)
class Unreachable:
    where: str  # the server URL, password hidden
    cause: str

    @property
    def reason(self) -> str:
        return f"PostgreSQL not reachable at {self.where} — integration tier skipped"

    @property
    def failure(self) -> str:
        return (
            f"PostgreSQL not reachable at {self.where} and {REQUIRE_POSTGRES_ENV}=1: {self.cause}"
        )


UNREACHABLE = pytest.StashKey[Unreachable]()


class PostgresUnreachableError(Exception):
    def __init__(self, unreachable: Unreachable) -> None:
        super().__init__(unreachable.reason)
        self.unreachable = unreachable


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: run only on the SQLite database tier")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database_url" not in metafunc.fixturenames:
        return
    only_sqlite = metafunc.definition.get_closest_marker("sqlite_only") is not None
    tiers = ["sqlite"] if only_sqlite else list(TIERS)
    metafunc.parametrize("database_url", tiers, indirect=True, scope="session")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("database_url") == "postgres":
            item.add_marker(pytest.mark.postgres)


def pytest_terminal_summary(
    terminalreporter: pytest.TerminalReporter, config: pytest.Config
) -> None:
    unreachable = config.stash.get(UNREACHABLE, None)
    if unreachable is None:
        return
    write = terminalreporter.write_line
    if postgres_required():
        terminalreporter.write_sep("!", "PostgreSQL integration tier FAILED", red=True, bold=True)
        write(f"ERROR: {unreachable.failure}", red=True, bold=True)
        return
    terminalreporter.write_sep("!", "PostgreSQL integration tier SKIPPED", yellow=True, bold=True)
    write(f"WARNING: {unreachable.reason}", yellow=True, bold=True)
    write(f"  cause: {unreachable.cause}", yellow=True)
    write(f"  set {REQUIRE_POSTGRES_ENV}=1 to make this a failure", yellow=True)


class Tiers:
    """Each tier's database, created and migrated on first use, dropped at session end."""

    def __init__(self, config: pytest.Config, tmp: pytest.TempPathFactory) -> None:
        self._config = config
        self._tmp = tmp
        self._urls: dict[str, str] = {}
        self._created: list[tuple[URL, str]] = []

    def url(self, tier: str) -> str:
        if tier not in self._urls:
            self._urls[tier] = (
                self._create_sqlite() if tier == "sqlite" else self._create_postgres()
            )
        return self._urls[tier]

    def close(self) -> None:
        for server, name in self._created:
            with admin_connection(server) as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def _create_sqlite(self) -> str:
        url = f"sqlite:///{self._tmp.mktemp('sqlite-tier') / 'hotline.db'}"
        upgrade(url)
        return url

    def _create_postgres(self) -> str:
        stash = self._config.stash
        server = postgres_server()
        name = f"hotline_test_{os.getpid()}_{secrets.token_hex(4)}"
        unreachable = stash.get(UNREACHABLE, None) or create_database(server, name)
        if unreachable is not None:
            stash[UNREACHABLE] = unreachable
            refuse(unreachable)
        self._created.append((server, name))
        url = server.set(database=name).render_as_string(hide_password=False)
        upgrade(url)
        return url


def postgres_server() -> URL:
    """The server test databases are created on; a bare ``postgresql://`` means psycopg 3."""
    url = make_url(os.environ.get(POSTGRES_URL_ENV) or DEFAULT_POSTGRES_URL)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    return url


@contextmanager
def admin_connection(server: URL) -> Iterator[Connection]:
    """An autocommit connection (CREATE/DROP DATABASE refuse transactions) to ``server``."""
    engine = create_engine(
        server,
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_S},
    )
    try:
        try:
            connection = engine.connect()
        except OperationalError as error:
            where = server.render_as_string(hide_password=True)
            cause = " ".join(str(error.orig).split())  # psycopg spreads it over lines
            raise PostgresUnreachableError(Unreachable(where, cause)) from error
        with connection:
            yield connection
    finally:
        engine.dispose()


def create_database(server: URL, name: str) -> Unreachable | None:
    """Create ``name`` on ``server``, or say why the server could not be reached."""
    try:
        with admin_connection(server) as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except PostgresUnreachableError as error:
        return error.unreachable
    return None


def refuse(unreachable: Unreachable) -> NoReturn:
    """Skip the postgres tier, or fail it when CI says PostgreSQL is required."""
    if postgres_required():
        pytest.fail(unreachable.failure, pytrace=False)
    pytest.skip(unreachable.reason)


def postgres_required() -> bool:
    return os.environ.get(REQUIRE_POSTGRES_ENV, "").lower() in ("1", "true", "yes")


def empty_tables(engine: Engine) -> None:
    """Delete every row, children first; the schema and ``alembic_version`` stay."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # A test that leaked an open transaction would otherwise hang the run right here.
            connection.exec_driver_sql("SET LOCAL lock_timeout = '10s'")
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())


@pytest.fixture(scope="session")
def database_tiers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Tiers]:
    tiers = Tiers(request.config, tmp_path_factory)
    yield tiers
    tiers.close()


@pytest.fixture(scope="session")
def database_url(request: pytest.FixtureRequest, database_tiers: Tiers) -> str:
    """A migrated database of the test's tier (``sqlite`` when not parametrized)."""
    return database_tiers.url(getattr(request, "param", "sqlite"))


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the tier's database; every table is emptied after the test."""
    engine = make_engine(database_url)
    yield engine
    try:
        empty_tables(engine)
    finally:
        engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return make_sessionmaker(engine)


def waiting_on_a_lock(engine: Engine) -> int:
    """How many sessions of this database wait on a lock (a new transaction each time: the
    activity view is a snapshot taken once per transaction). PostgreSQL only."""
    with engine.connect() as conn:
        waiting = conn.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
    return int(waiting)


def sent_behind_a_lock(
    engine: Engine, send: Callable[[], str], what: str, *, behind: int = 0
) -> tuple[threading.Thread, list[str]]:
    """``send`` (a webhook, answering its body) started in a thread of its own, once it waits
    on a lock the caller holds (asserted, naming ``what``), ``behind`` others already waiting
    there (a queue of webhooks, let through in the order they came): the thread, to join once
    the caller lets go, and the list its answer lands in."""
    answers: list[str] = []
    sent = threading.Thread(target=lambda: answers.append(send()))
    sent.start()
    deadline = time.monotonic() + 60  # a process of its own may take seconds to start
    while time.monotonic() < deadline and waiting_on_a_lock(engine) <= behind:
        time.sleep(0.05)
    assert waiting_on_a_lock(engine) > behind, f"{what} did not reach the lock"
    return sent, answers
