"""``hotline keys rotate``: everything sealed or indexed under an old data key is brought under
the new one, in batches, idempotently; afterwards the old key can go and nothing is lost."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hotline import held, keys, routing, verification
from hotline.cli import main
from hotline.db import transaction
from hotline.models import Clinician, Conversation, PendingText, Programme, Supporter
from hotline.people import (
    find_clinician,
    find_supporter,
    get_or_create_clinician,
    is_opted_out,
    new_supporter,
    record_opt_out,
    set_alert_phone,
    supporter_phone,
)
from hotline.privacy import Vault
from hotline.programmes import ensure_default_programme
from hotline.settings import load_settings

OLD = base64.urlsafe_b64encode(b"o" * 32).decode()
NEW = base64.urlsafe_b64encode(b"n" * 32).decode()
HOTLINE = "+15550100000"
CLINICIANS = [f"+1555010{9000 + i}" for i in range(5)]
SUPPORTERS = ["+15550108001", "+15550108002", "+15550108003"]
STRANGER = "+15550107777"  # texted STOP and nothing else: an opt-out with no person behind it
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def vault(*secrets: str) -> Vault:
    return Vault(tuple(base64.urlsafe_b64decode(s) for s in secrets))


def environment(database_url: str, data_key: str, tmp_path: Path) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        "HOTLINE_NUMBER": HOTLINE,
        "HOTLINE_DATA_KEY": data_key,
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
    }


@pytest.fixture
def database(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> tuple[str, sessionmaker[Session]]:
    """The tier's database, full of data sealed under OLD."""
    url = database_url
    settings = load_settings(environment(url, OLD, tmp_path))
    old = vault(OLD)
    with transaction(sessions) as session:
        programme = ensure_default_programme(session, settings)
        set_alert_phone(old, programme, SUPPORTERS[0])
        people = [new_supporter(old, programme.id, f"S{i}", n) for i, n in enumerate(SUPPORTERS)]
        session.add_all(people)
        session.flush()
        verification.start(session, old, people[0], NOW)
        for number in CLINICIANS:
            clinician = get_or_create_clinician(session, old, programme.id, number)
            session.flush()
            conv = Conversation(programme_id=programme.id, clinician_id=clinician.id, channel="sms")
            session.add(conv)
            session.flush()
            held.hold_text(session, old, conv, f"held words of {number[-4:]}")
        record_opt_out(session, old, programme.id, CLINICIANS[0], HOTLINE)
        record_opt_out(session, old, programme.id, SUPPORTERS[1], "+15550100001")
        record_opt_out(session, old, programme.id, STRANGER, HOTLINE)
    return url, sessions


def test_rotate_moves_everything_to_the_first_key_in_batches_and_is_idempotent(
    database: tuple[str, sessionmaker[Session]],
) -> None:
    _, sessions = database
    both = vault(NEW, OLD)
    assert sum(keys.stale(sessions, both).values()) == 1 + 3 + 1 + 5 + 5

    report = keys.rotate(sessions, both, batch_size=2)
    assert report.complete
    assert report.rewritten == {
        "supporters.phone_sealed": 3,
        "clinicians.phone_sealed": 5,
        "programmes.alert_phone_sealed": 1,
        "pending_texts.sealed": 5,
        "phone_verifications.code_sealed": 1,
    }
    assert report.opt_outs_reindexed == 2  # the stranger's cannot be: nobody has that number
    assert keys.stale(sessions, both) == {}
    again = keys.rotate(sessions, both, batch_size=2)
    assert (sum(again.rewritten.values()), again.opt_outs_reindexed) == (0, 0)

    # The old key is dropped: every number is found and opened, every held text read.
    new = vault(NEW)
    with sessions() as session:
        pid = session.scalars(select(Programme.id)).one()
        for number in CLINICIANS:
            assert find_clinician(session, new, pid, number) is not None
        for number in SUPPORTERS:
            person = find_supporter(session, new, pid, number)
            assert person is not None and supporter_phone(new, person) == number
        assert is_opted_out(session, new, pid, CLINICIANS[0], HOTLINE)
        assert is_opted_out(session, new, pid, SUPPORTERS[1], "+15550100001")
        bodies = [new.open(t.sealed, held.PENDING_TEXT_CONTEXT) for t in _all(session)]
        assert sorted(bodies) == sorted(f"held words of {n[-4:]}" for n in CLINICIANS)
        assert routing.alert_phone(session, new, pid) == SUPPORTERS[0]
        supporter = session.scalars(select(Supporter).order_by(Supporter.id)).first()
        assert supporter is not None
        assert verification.code_of(session, new, supporter.id) is not None


def test_a_forgotten_clinician_and_a_value_no_key_opens_are_left_alone(
    database: tuple[str, sessionmaker[Session]],
) -> None:
    _, sessions = database
    with transaction(sessions) as session:
        first = session.scalars(select(Clinician).order_by(Clinician.id)).first()
        assert first is not None
        first.phone_sealed = first.phone_hash = None  # FORGET
    report = keys.rotate(sessions, vault(NEW), batch_size=100)  # OLD already dropped: too soon
    assert not report.complete
    assert report.unreadable["clinicians.phone_sealed"] == 4
    assert sum(report.rewritten.values()) == 0


def test_the_cli_rotates_then_says_the_old_key_can_go(
    database: tuple[str, sessionmaker[Session]], tmp_path: Path
) -> None:
    url, _ = database
    runner = CliRunner(env=environment(url, f"{NEW},{OLD}", tmp_path))
    check = runner.invoke(main, ["keys", "rotate", "--check"])
    assert check.exit_code == 1 and "not under the first key: 5 in clinicians" in check.output
    done = runner.invoke(main, ["keys", "rotate", "--batch-size", "3"])
    assert done.exit_code == 0, done.output
    assert "re-sealed 5 in pending_texts.sealed" in done.output
    assert "the others can be removed" in done.output
    for number in (*CLINICIANS, *SUPPORTERS):
        assert number not in done.output
    after = CliRunner(env=environment(url, NEW, tmp_path)).invoke(main, ["keys", "rotate"])
    assert after.exit_code == 0 and "re-sealed" not in after.output


def _all(session: Session) -> list[PendingText]:
    return list(session.scalars(select(PendingText)))
