"""``hotline programme retire`` and ``restore`` run by two operators at the same moment
(PostgreSQL: SQLite serialises writers). Each is a real ``hotline`` process."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import select

from hotline import retirement, routing
from hotline.db import transaction
from hotline.models import AuditEntry, Programme
from tests.kit.databases import sent_behind_a_lock
from tests.kit.harness import Hotline
from tests.kit.harness import test_env as environment_for


def hotline_command(hotline: Hotline, *args: str) -> str:
    """``hotline ARGS`` in a process of its own on this test's database: what it printed."""
    env = environment_for(hotline.settings.database_url, hotline.fake)
    env["PATH"] = os.environ.get("PATH", "")
    done = subprocess.run(
        [sys.executable, "-m", "hotline.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_restores_at_once_restore_the_programme_once(hotline: Hotline) -> None:
    """Two operators run `hotline programme restore` on a retired programme at the same
    moment (the programme's lock held meanwhile, by a text opening a request, say). Restore
    took no lock: both read it retired, both said it runs, and the audit log held two
    programme.restore entries for one change. Now, as retire, it takes the programme's lock
    and reads it as committed: the second says nothing changed and writes no entry."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        retirement.retire(session, programme, hotline.clock.now)

    def restore() -> str:
        return hotline_command(hotline, "programme", "restore", "default")

    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it
        first, said = sent_behind_a_lock(engine, restore, "the first restore")
        second, said_too = sent_behind_a_lock(engine, restore, "the second restore", behind=1)
    first.join(60)
    second.join(60)
    answers = sorted([*said, *said_too])
    assert len(answers) == 2, answers
    assert "programme default is not retired: nothing changed" in answers[0]
    assert "programme default runs" in answers[1]
    with hotline.session() as session:
        assert session.scalar(select(Programme.retired_at)) is None
        actions = session.scalars(
            select(AuditEntry.action).where(AuditEntry.action.startswith("programme.r"))
        ).all()
    assert sorted(actions) == ["programme.restore"]
