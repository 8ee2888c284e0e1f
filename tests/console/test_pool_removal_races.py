"""Taking a number out of the pool while a first text is being offered on it (PostgreSQL).

The removal checks that no offer or conversation is on the number, then takes it out; the
webhook makes its offer under the programme's lock, on a pool number free on the peer's phone.
Unserialised, the removal passed its check as the offer was being made and committed after it:
the peer held an offer on a number the line no longer owns, and her ACCEPT there was ignored.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import event, select

from hotline.cli import main
from hotline.models import PoolNumber
from hotline.programme_settings import SettingsChangeError
from tests.console.test_programme_settings import update
from tests.kit.databases import waiting_on_a_lock
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phones

ALICE, CLINICIAN = "+15550108001", "+15550109001"
OTHERS = list(POOL[1:])


def in_settings(hotline: Hotline) -> str:
    """A coordinator saves Settings with the pool less its first number: what she is told."""
    try:
        update(hotline, {"pool_numbers": ",".join(OTHERS)})
    except SettingsChangeError as error:
        return str(error)
    return "saved"


def with_the_cli(hotline: Hotline) -> str:
    """IT runs `hotline programme add --pool` with the pool less its first number."""
    env = environment_for(hotline.settings.database_url, hotline.fake)
    args = ["programme", "add", "default", "--name", "Default", "--number", HOTLINE]
    ran = CliRunner(env=env).invoke(main, [*args, "--pool", ",".join(OTHERS)])
    return ran.output if ran.exit_code else "saved"


def removed_as_the_offer_is_made(
    hotline: Hotline, phones: Phones, remove: Callable[[Hotline], str], when: str
) -> str:
    """The clinician's first text, paused ``when`` (before it takes the programme's lock, or
    under it as it records Alice's offer), while ``remove`` runs until it ends or waits on a
    lock; then both finish. What the remover was told."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: these interleavings need PostgreSQL")
    paused, go = threading.Event(), threading.Event()

    def pause(_c: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if when == "before the lock":
            there = "FOR NO KEY UPDATE" in statement and "FROM programmes" in statement
        else:
            there = statement.startswith("INSERT INTO offers")
        if threading.current_thread().name == "text" and there and not paused.is_set():
            paused.set()
            go.wait(20)

    told: list[str] = []
    text = threading.Thread(target=lambda: phones.phone(CLINICIAN).texts("rough night"))
    text.name = "text"
    remover = threading.Thread(target=lambda: told.append(remove(hotline)))
    event.listen(engine, "before_cursor_execute", pause)
    try:
        text.start()
        assert paused.wait(20), "the text never reached the programme's lock"
        remover.start()
        deadline = time.monotonic() + 20
        while remover.is_alive() and time.monotonic() < deadline:
            if waiting_on_a_lock(engine):
                break
            time.sleep(0.05)
        go.set()
        text.join(30)
        remover.join(30)
    finally:
        go.set()
        event.remove(engine, "before_cursor_execute", pause)
    assert not text.is_alive() and not remover.is_alive()
    return told[0]


@pytest.mark.parametrize("remove", [in_settings, with_the_cli])
@pytest.mark.parametrize("when", ["before the lock", "as the offer is recorded"])
def test_a_number_taken_out_as_an_offer_is_made_on_it_leaves_no_offer_off_the_line(
    hotline: Hotline, phones: Phones, remove: Callable[[Hotline], str], when: str
) -> None:
    """Whichever comes first, the other sees it: the removal is refused because the offer is
    on the number, or the offer is made on a number still in the pool. Either way Alice's
    ACCEPT, sent where her offer came from, connects her."""
    hotline.add_supporter("Alice", ALICE)
    told = removed_as_the_offer_is_made(hotline, phones, remove, when)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.expect_text("confidential")
    offer = alice.expect_text("Reply ACCEPT")
    with hotline.session() as session:
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
    assert offer.from_ in pool, (offer.from_, pool, told)
    assert told == "saved" or "carrying" in told, told
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("rough night")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()
