"""Schema migrations: Alembic driven from code, so an installed wheel needs no alembic.ini.

The database URL travels in ``Config.attributes`` to ``migrations/env.py``, which opens it with
``hotline.db.make_engine`` (SQLite gets its pragmas); nothing here reads the environment.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine

from hotline.db import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
NEEDS_UPGRADE = "needs `hotline db upgrade`"


class _NoContextLines(logging.Filter):
    """Alembic's two INFO lines on every look at the revision ("Context impl PostgresqlImpl.",
    "Will assume transactional DDL."): every CLI command and every process start printed them
    to stderr, where the IT team looks for what went wrong. "Running upgrade ..." stays."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(("Context impl ", "Will assume "))


logging.getLogger("alembic.runtime.migration").addFilter(_NoContextLines())


def alembic_config(database_url: str) -> Config:
    """An Alembic config for this package's migrations, aimed at ``database_url``."""
    config = Config(attributes={"database_url": database_url})
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Migrate the database up to ``revision``; a no-op when it is already there."""
    command.upgrade(alembic_config(database_url), revision)


def current(database_url: str) -> str | None:
    """The revision the database is at, or None when it was never migrated."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as connection:
            return revision_of(connection)
    finally:
        engine.dispose()


def revision_of(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def schema_state(engine: Engine) -> str:
    """``ok``, ``unavailable`` (no answer) or NEEDS_UPGRADE: a database this version's
    migrations have not reached answers, but every webhook would fail on it."""
    try:
        with engine.connect() as connection:
            revision = revision_of(connection)
    except Exception:
        return "unavailable"
    return NEEDS_UPGRADE if is_behind(revision) else "ok"


def head() -> str | None:
    """The newest revision shipped with this package."""
    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def is_behind(revision: str | None) -> bool:
    """True when a database at ``revision`` needs ``upgrade``: never migrated, or at an older
    revision of ours (one newer than this package's head is a later release's, not behind)."""
    if revision is None:
        return True
    script = ScriptDirectory(str(MIGRATIONS))
    known = {script_revision.revision for script_revision in script.walk_revisions()}
    return revision in known and revision != script.get_current_head()
