"""The ``hotline`` command, run as an operator would (through click, against a real database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hotline.accounts import check_password, find_api_token
from hotline.cli import main
from hotline.db import make_engine, make_sessionmaker
from hotline.models import (
    ApiToken,
    AuditEntry,
    Coordinator,
    PoolNumber,
    Programme,
    Shift,
    Supporter,
)

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        "HOTLINE_NUMBER": "+15550100000",
        "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002",
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    }
    runner = CliRunner(env=env)

    def invoke(*args: str, input: str | None = None) -> str:
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    invoke("db", "upgrade")
    engine = make_engine(env["DATABASE_URL"])
    invoke.sessions = make_sessionmaker(engine)  # type: ignore[attr-defined]
    invoke.runner = runner  # type: ignore[attr-defined]
    yield invoke
    engine.dispose()


def test_db_upgrade_creates_the_first_programme_from_the_environment(run) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")  # idempotent
    with run.sessions() as session:
        programme = session.scalar(select(Programme))
        assert programme.hotline_number == "+15550100000"
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
        assert pool == ["+15550100001", "+15550100002"]


def test_coordinator_and_api_token(run) -> None:  # type: ignore[no-untyped-def]
    out = run("coordinator", "create", "Lead@Example.org", input="a long passphrase\n" * 2)
    assert "lead@example.org" in out
    token = run("api-token", "create", "ops").strip()
    assert token.startswith("hl_") and len(token) > 30
    with run.sessions() as session, session.begin():
        person = session.scalar(select(Coordinator))
        assert check_password(person.password_hash, "a long passphrase")
        assert "passphrase" not in person.password_hash
        assert find_api_token(session, token) is not None
        assert find_api_token(session, token + "x") is None


def test_api_tokens_are_listed_and_revoked(run) -> None:  # type: ignore[no-untyped-def]
    token = run("api-token", "create", "directory sync").strip()
    listed = run("api-token", "list")
    assert "directory sync" in listed and "live" in listed and "never used" in listed
    assert token not in listed
    with run.sessions() as session, session.begin():
        assert find_api_token(session, token) is not None
    token_id = listed.split("\t", 1)[0]
    assert "revoked" in run("api-token", "revoke", token_id)
    assert "already revoked" in run("api-token", "revoke", token_id)
    assert "revoked 20" in run("api-token", "list")
    with run.sessions() as session, session.begin():
        assert find_api_token(session, token) is None  # refused from now on
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-2:] == ["api token created", "api token revoked"]
    missing = run.runner.invoke(main, ["api-token", "revoke", "999"])
    assert missing.exit_code != 0 and "no API token 999" in missing.output


def test_an_api_token_can_be_made_to_expire(run) -> None:  # type: ignore[no-untyped-def]
    token = run("api-token", "create", "quarterly export", "--expires-in", "90").strip()
    listed = run("api-token", "list")
    assert "quarterly export" in listed and "live until 20" in listed
    with run.sessions() as session, session.begin():
        row = session.scalar(select(ApiToken))
        assert row.expires_at - row.created_at == timedelta(days=90)
        assert find_api_token(session, token, row.expires_at - timedelta(seconds=1)) is not None
        assert find_api_token(session, token, row.expires_at) is None
    refused = run.runner.invoke(main, ["api-token", "create", "x", "--expires-in", "0"])
    assert refused.exit_code != 0 and "--expires-in" in refused.output
    unnamed = run.runner.invoke(main, ["api-token", "create", "   "])
    assert unnamed.exit_code != 0 and "name" in unnamed.output


def test_roster_shortcuts_seal_numbers_and_refuse_bad_input(run) -> None:  # type: ignore[no-untyped-def]
    supporter_id = run("supporter", "add", "Alice", "(555) 010-8001", "--discipline", "nurse")
    run("shift", "add", supporter_id.strip(), "2026-03-02T19:00-05:00", "2026-03-03T07:00-05:00")
    with run.sessions() as session:
        alice = session.scalar(select(Supporter))
        assert b"5550108001" not in alice.phone_sealed
        shift = session.scalar(select(Shift))
        assert shift.starts_at.isoformat() == "2026-03-03T00:00:00+00:00"
    bad = run.runner.invoke(main, ["supporter", "add", "Bob", "not a number"])
    assert bad.exit_code != 0 and "not a valid phone number" in bad.output
    naive = run.runner.invoke(main, ["shift", "add", "1", "2026-03-02T19:00", "2026-03-03T07:00"])
    assert naive.exit_code != 0 and "offset" in naive.output
    year = run.runner.invoke(main, ["shift", "add", "1", "2026-03-02T19:00Z", "2027-03-02T19:00Z"])
    assert year.exit_code != 0 and "at most 92 days" in year.output
    with run.sessions() as session:
        assert session.get_one(Supporter, alice.id).phone_verified_at is not None, "vouched for"
        actions = [
            (e.actor, e.action) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    assert actions == [("command line", "supporter.add"), ("command line", "shift.add")]


def test_short_passwords_are_refused(run) -> None:  # type: ignore[no-untyped-def]
    result = run.runner.invoke(
        main, ["coordinator", "create", "x@example.org"], input="short\nshort\n"
    )
    assert result.exit_code != 0 and "12 characters" in result.output


def test_db_upgrade_keeps_pool_numbers_added_since(run) -> None:  # type: ignore[no-untyped-def]
    with run.sessions() as session, session.begin():
        programme = session.scalar(select(Programme))
        programme.pool_numbers.append(PoolNumber(number="+15550100009"))  # as the console does
    run("db", "upgrade")
    with run.sessions() as session:
        pool = set(session.scalars(select(PoolNumber.number)))
    assert pool == {"+15550100001", "+15550100002", "+15550100009"}


def test_a_worker_without_redis_url_refuses_to_start(run) -> None:  # type: ignore[no-untyped-def]
    result = run.runner.invoke(main, ["worker", "--burst"])
    assert result.exit_code == 2
    assert "REDIS_URL" in result.output and "hotline dev" in result.output


def test_programme_add_refuses_another_programmes_number(run) -> None:  # type: ignore[no-untyped-def]
    """A number serves one programme: given to a second, its texts would reach only one."""
    for number, pool in (("+15550100001", "+15550200001"), ("+15550200000", "+15550100000")):
        args = ["programme", "add", "north", "--name", "North", "--number", number, "--pool", pool]
        refused = run.runner.invoke(main, args)
        assert refused.exit_code != 0 and "another programme's number" in refused.output
    run("programme", "add", "north", "--name", "North", "--number", "+15550200000")
    with run.sessions() as session:
        assert session.scalars(select(Programme.slug).order_by(Programme.id)).all() == [
            "default",
            "north",
        ]
    refused = run.runner.invoke(
        main, ["programme", "add", "default", "--name", "x", "--number", "+15550200000"]
    )
    assert refused.exit_code != 0 and "+15550200000" in refused.output
