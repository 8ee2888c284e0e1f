"""The migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from hotline.db import make_engine
from hotline.migrate import alembic_config, current, head, upgrade
from hotline.models import Base, WebhookEvent

KEY = "sms:SM00000000000000000000000000000001"


def test_upgrade_reaches_head(database_url: str) -> None:
    assert head() is not None
    assert current(database_url) == head()


def test_a_look_at_the_revision_logs_nothing_and_an_upgrade_only_what_it_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every CLI command and process start looks at the revision: Alembic's "Context impl
    SQLiteImpl." and "Will assume non-transactional DDL." went to stderr each time, where the
    IT team looks for what went wrong. An upgrade still says what it runs."""
    url = f"sqlite:///{tmp_path / 'quiet.db'}"
    caplog.set_level("INFO")
    upgrade(url, "0019")
    assert current(url) == "0019"
    said = [r.getMessage() for r in caplog.records if r.name.startswith("alembic")]
    assert any(line.startswith("Running upgrade 0018 -> 0019") for line in said), said
    assert not [line for line in said if line.startswith(("Context impl", "Will assume"))]


def test_migrated_schema_matches_the_models(engine: sa.Engine) -> None:
    with engine.connect() as connection:
        options = {"compare_type": True, "compare_server_default": True}
        context = MigrationContext.configure(connection, opts=options)
        differences = compare_metadata(context, Base.metadata)
    assert differences == [], "a model changed without a migration in hotline/migrations"


def test_upgrade_again_is_a_no_op(database_url: str, sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(WebhookEvent(key=KEY))
    upgrade(database_url)
    upgrade(database_url)
    assert current(database_url) == head()
    with sessions() as session:
        assert session.scalars(sa.select(WebhookEvent.key)).all() == [KEY]


def test_utc_datetime_round_trips_an_aware_datetime(sessions: sessionmaker[Session]) -> None:
    chicago = datetime(2025, 3, 9, 1, 30, 15, 123456, tzinfo=ZoneInfo("America/Chicago"))
    with sessions.begin() as session:
        session.add(WebhookEvent(key=KEY, received_at=chicago))
    with sessions() as session:
        stored = session.scalars(sa.select(WebhookEvent.received_at)).one()
        raw = session.execute(
            sa.select(sa.column("received_at", sa.DateTime())).select_from(
                sa.table("webhook_events")
            )
        ).scalar_one()
    assert stored == chicago
    assert stored.tzinfo is UTC
    assert raw == datetime(2025, 3, 9, 7, 30, 15, 123456)  # naive, in UTC


def test_utc_datetime_refuses_a_naive_datetime(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(StatementError, match="naive datetime"), sessions.begin() as session:
        session.add(WebhookEvent(key=KEY, received_at=datetime(2025, 3, 9, 7, 30)))
        session.flush()


def test_a_duplicate_webhook_key_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as session:
        session.add(WebhookEvent(key=KEY))
    with pytest.raises(IntegrityError), sessions.begin() as session:
        session.add(WebhookEvent(key=KEY))


def test_downgrade_to_base_and_up_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert current(url) is None
    assert table_names(url) == {"alembic_version"}
    upgrade(url)
    assert current(url) == head()


def test_sqlite_is_migrated_through_make_engine(tmp_path: Path) -> None:
    path = tmp_path / "hotline.db"
    upgrade(f"sqlite:///{path}")
    with closing(sqlite3.connect(path)) as connection:
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"  # set by make_engine's pragmas, and persistent in the file


def table_names(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_tokens_a_coordinator_made_before_0010_stop_vouching(tmp_path: Path) -> None:
    """Migration 0010: tokens the audit log shows a coordinator (not an administrator) made no
    longer vouch for phone numbers; the command line's and an administrator's still do."""
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    command.upgrade(alembic_config(url), "0009")
    engine = sa.create_engine(url)
    now = "2026-12-01 10:00:00"
    with engine.begin() as connection:
        for email, role in (("lead@example.org", "coordinator"), ("it@example.org", "admin")):
            connection.execute(
                sa.text(
                    "INSERT INTO coordinators (email, password_hash, role, active, created_at)"
                    " VALUES (:email, 'x', :role, 1, :now)"
                ),
                {"email": email, "role": role, "now": now},
            )
        for token_id, actor in ((1, "lead@example.org"), (2, "it@example.org"), (3, "cli")):
            connection.execute(
                sa.text(
                    "INSERT INTO api_tokens (id, name, token_hash, created_at)"
                    " VALUES (:id, :name, :hash, :now)"
                ),
                {"id": token_id, "name": f"t{token_id}", "hash": f"{token_id:064d}", "now": now},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO audit_log (actor, action, target, at)"
                    " VALUES (:actor, 'api token created', :target, :now)"
                ),
                {"actor": actor, "target": f"api token {token_id} (t{token_id})", "now": now},
            )
    engine.dispose()
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        vouching = dict(connection.execute(sa.text("SELECT id, vouches FROM api_tokens")).all())
    engine.dispose()
    assert vouching == {1: False, 2: True, 3: True}


def test_0019_records_no_pool_setting_for_a_programme_and_downgrades_keeping_it(
    tmp_path: Path,
) -> None:
    """Migration 0019: a programme from before has no record of what HOTLINE_POOL_NUMBERS
    listed (the next `hotline db upgrade` takes the setting as it stands as applied), and keeps
    its pool; downgraded, the record goes and the programme and its pool stay."""
    url = f"sqlite:///{tmp_path / 'hotline.db'}"
    command.upgrade(alembic_config(url), "0018")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "INSERT INTO programmes (id, slug, name, hotline_number, created_at)"
                " VALUES (1, 'default', 'Peer support', '+15550100000', '2026-12-01 10:00:00')"
            )
        )
        connection.execute(
            sa.text("INSERT INTO pool_numbers (programme_id, number) VALUES (1, '+15550100001')")
        )
    upgrade(url)
    assert current(url) == head()
    with engine.connect() as connection:
        row = connection.execute(sa.text("SELECT slug, applied_pool_setting FROM programmes"))
        assert row.all() == [("default", None)]
    command.downgrade(alembic_config(url), "0018")
    assert "applied_pool_setting" not in {
        c["name"] for c in sa.inspect(engine).get_columns("programmes")
    }
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT slug FROM programmes")).all() == [("default",)]
        assert connection.execute(sa.text("SELECT number FROM pool_numbers")).all() == [
            ("+15550100001",)
        ]
    engine.dispose()
    upgrade(url)
    assert current(url) == head()
