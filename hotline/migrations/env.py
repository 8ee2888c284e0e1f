"""Alembic environment. Build the config with ``hotline.migrate.alembic_config``.

The URL comes from the config (``attributes["database_url"]``, else ``sqlalchemy.url``), never
from the environment. Each upgrade is one transaction on both backends, so a failed migration
leaves the schema where it was.
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from sqlalchemy import Connection, text

from hotline.db import make_engine
from hotline.models import Base, UTCDateTime

# Two processes starting at once (web and worker) must not both run the same migration.
MIGRATION_LOCK_KEY = 0x686F746C696E65  # "hotline"


def database_url() -> str:
    config = context.config
    url = config.attributes.get("database_url") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("no database URL: build the config with hotline.migrate.alembic_config")
    return str(url)


def run_offline() -> None:
    """Print the SQL (``alembic upgrade --sql``) for a DBA to review."""
    url = database_url()
    context.configure(
        url=url,
        target_metadata=Base.metadata,
        literal_binds=True,
        render_as_batch=url.startswith("sqlite"),
        render_item=render_item,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    engine = make_engine(database_url())
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                migrate_sqlite(connection)
            else:
                migrate(connection)
    finally:
        engine.dispose()


def migrate(connection: Connection) -> None:
    sqlite = connection.dialect.name == "sqlite"
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        # SQLite cannot ALTER most things: batch mode copies the table instead.
        render_as_batch=sqlite,
        render_item=render_item,
        # make_engine issues BEGIN itself, so SQLite DDL is transactional too.
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            lock = text("SELECT pg_advisory_xact_lock(:key)")
            connection.execute(lock, {"key": MIGRATION_LOCK_KEY})
        context.run_migrations()
        if sqlite:
            check_foreign_keys(connection)


def migrate_sqlite(connection: Connection) -> None:
    """Migrate with foreign keys off, as SQLite's own recipe for altering tables prescribes.

    A batch migration drops and recreates a table; with enforcement on, that drop would delete
    (or cascade-delete) every row that references it. The pragma is a no-op inside a
    transaction, so it goes to the driver before Alembic begins one.
    """
    driver: Any = connection.connection.driver_connection
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        migrate(connection)
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def render_item(kind: str, item: Any, _autogen: Any) -> str | Literal[False]:
    """Autogenerate writes UTCDateTime as ``sa.DateTime()``: migrations must not import models."""
    if kind == "type" and isinstance(item, UTCDateTime):
        return "sa.DateTime()"
    return False


def check_foreign_keys(connection: Connection) -> None:
    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    if broken:
        tables = sorted({row[0] for row in broken})
        raise RuntimeError(f"migration left dangling foreign keys in: {', '.join(tables)}")


if context.is_offline_mode():
    run_offline()
else:
    run_online()
