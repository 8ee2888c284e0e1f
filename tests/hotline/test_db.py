"""run_in_transaction: which failures run the work again, and which must not; SQLite's
writers queue rather than fail."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotline.db import make_engine, make_sessionmaker, run_in_transaction, transaction

pytestmark = pytest.mark.sqlite_only


def dropped() -> OperationalError:
    """What SQLAlchemy raises when the server closed the connection under it."""
    orig = Exception("server closed the connection unexpectedly")
    return OperationalError("SELECT 1", {}, orig, connection_invalidated=True)


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    yield engine
    engine.dispose()


def test_a_connection_dropped_while_working_runs_the_work_again(engine: Engine) -> None:
    runs: list[int] = []

    def work(session: Session) -> str:
        runs.append(1)
        session.execute(text("SELECT 1"))
        if len(runs) == 1:
            raise dropped()
        return "answered"

    assert run_in_transaction(make_sessionmaker(engine), work) == "answered"
    assert len(runs) == 2


def test_a_connection_dropped_during_commit_is_not_run_again(engine: Engine) -> None:
    """The commit may have happened: a repeat would find its own event key and answer as a
    duplicate, losing the first answer. It raises, so the webhook answers with its fallback."""
    runs: list[int] = []

    def work(session: Session) -> str:
        runs.append(1)
        session.execute(text("SELECT 1"))
        return "answered"

    def lose_commit(_connection: Any) -> None:
        raise dropped()

    event.listen(engine, "commit", lose_commit)
    with pytest.raises(OperationalError):
        run_in_transaction(make_sessionmaker(engine), work)
    assert len(runs) == 1


def test_a_second_sqlite_writer_waits_for_the_first_instead_of_failing(tmp_path: Path) -> None:
    """The web process and an RQ worker on one SQLite file (``hotline dev``, the first tier):
    each its own engine and connection. While one holds a write transaction, the other's
    write waits on the busy timeout and goes through once the first commits; it does not fail
    at once with 'database is locked'."""
    url = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    web, worker = make_engine(url), make_engine(url)
    with transaction(make_sessionmaker(web)) as session:
        session.execute(text("CREATE TABLE texts (id INTEGER PRIMARY KEY, side TEXT)"))
    holding, errors = threading.Event(), []

    def write_slowly() -> None:
        try:
            with transaction(make_sessionmaker(worker)) as session:
                session.execute(text("INSERT INTO texts (side) VALUES ('worker')"))
                holding.set()
                time.sleep(0.5)
        except Exception as error:  # reported below, where the test can fail on it
            errors.append(error)

    first = threading.Thread(target=write_slowly)
    first.start()
    try:
        assert holding.wait(5)
        with transaction(make_sessionmaker(web)) as session:
            session.execute(text("INSERT INTO texts (side) VALUES ('web')"))
    finally:
        first.join()
    assert errors == []
    # Queued behind the worker's transaction (BEGIN IMMEDIATE): its row came second.
    with web.connect() as conn:
        sides = conn.execute(text("SELECT side FROM texts ORDER BY id")).scalars().all()
    assert sides == ["worker", "web"]
    web.dispose()
    worker.dispose()
