"""run_in_transaction: which failures run the work again, and which must not."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotline.db import make_engine, make_sessionmaker, run_in_transaction

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
