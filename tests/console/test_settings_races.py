"""Two changes to a programme's settings at once (PostgreSQL): the later one works from the
settings as they stand under the programme's lock, not as it read them before.

A change asks Twilio about new pool numbers first, then takes the programme's lock, to check
that none it takes out carries a conversation or an offer. It read the pool before that lock:
a number another coordinator added meanwhile was missing from what it took out and from the
numbers it checked (one added by both was added twice, and the second save refused by the
database). A change made from a page showing the settings before the other's save is refused
even when both are saved at the same moment.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from hotline import programme_settings
from hotline.db import transaction
from hotline.models import Programme
from hotline.programmes import NumberInUseError, ensure_programme
from tests.console.test_programme_settings import pool_of, update
from tests.kit.databases import waiting_on_a_lock
from tests.kit.harness import HOTLINE, POOL, SET_UP_HERE, Hotline
from tests.kit.phones import Phones

ALICE = "+15550108001"
FIRST, SECOND = "+15550109001", "+15550109002"  # two clinicians
NEW = "+15550100005"  # a number the IT team bought for the pool


def saving(hotline: Hotline, pool: list[str]) -> str:
    """A coordinator saves Settings with ``pool``: what she is told."""
    try:
        update(hotline, {"pool_numbers": ",".join(pool)})
    except (programme_settings.SettingsChangeError, IntegrityError) as error:
        return f"{type(error).__name__}: {error}"
    return "saved"


def while_it_waits_for_the_lock(
    hotline: Hotline, change: Callable[[Hotline], str], meanwhile: Callable[[], None]
) -> str:
    """``change`` runs until it asks for the programme's lock, and waits there while
    ``meanwhile`` runs to its end (another coordinator's save, a text offered); then it goes on.
    What ``change`` told its coordinator."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: these interleavings need PostgreSQL")
    paused, go = threading.Event(), threading.Event()

    def pause(_c: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        there = "FOR NO KEY UPDATE" in statement and "FROM programmes" in statement
        if threading.current_thread().name == "change" and there and not paused.is_set():
            paused.set()
            go.wait(20)

    told: list[str] = []
    thread = threading.Thread(target=lambda: told.append(change(hotline)), name="change")
    event.listen(engine, "before_cursor_execute", pause)
    try:
        thread.start()
        assert paused.wait(20), "the change never asked for the programme's lock"
        meanwhile()
        go.set()
        deadline = time.monotonic() + 20
        while thread.is_alive() and time.monotonic() < deadline:
            if waiting_on_a_lock(engine):
                break
            time.sleep(0.05)
        thread.join(30)
    finally:
        go.set()
        event.remove(engine, "before_cursor_execute", pause)
    assert not thread.is_alive()
    return told[0]


def test_a_number_two_coordinators_add_at_once_joins_once_and_neither_is_refused(
    hotline: Hotline,
) -> None:
    """B takes the third number out and adds the new one; A, meanwhile, adds the new one too.
    B's save added it a second time and the database refused it."""
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    told = while_it_waits_for_the_lock(
        hotline,
        lambda h: saving(h, [*POOL[:2], NEW]),
        lambda: update(hotline, {"pool_numbers": [*POOL, NEW]}),
    )
    assert told == "saved"
    assert pool_of(hotline) == [*POOL[:2], NEW]


@pytest.mark.parametrize("by", ["Settings", "a release"])
def test_a_number_added_meanwhile_that_carries_an_offer_is_not_taken_out_unchecked(
    hotline: Hotline, phones: Phones, by: str
) -> None:
    """Alice talks with a clinician on the first number. B takes the second out of the pool
    (in Settings; or IT, with `hotline programme add --pool`); meanwhile A puts the new number
    in its place, and a second clinician's request is offered to Alice on it. B's change,
    without the new number, would take it out: refused, since the offer is on it, and Alice's
    ACCEPT there connects her. B's change worked from the pool it had read: it took the second
    number out again (gone already) and left the new one unchecked."""
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    update(hotline, {"pool_numbers": list(POOL[:2])})
    hotline.add_supporter("Alice", ALICE)
    phones.talking(FIRST, ALICE)
    second, alice = phones.phone(SECOND), phones.phone(ALICE)

    def meanwhile() -> None:
        update(hotline, {"pool_numbers": [POOL[0], NEW]})
        second.texts("long shift")
        second.expect_text("confidential")
        assert alice.expect_text("Reply ACCEPT").from_ == NEW

    change = saving if by == "Settings" else releasing
    told = while_it_waits_for_the_lock(hotline, lambda h: change(h, [POOL[0]]), meanwhile)
    assert "carrying" in told, told
    assert pool_of(hotline) == [POOL[0], NEW]
    alice.texts("ACCEPT", to=NEW)
    alice.expect_text("connected")
    alice.expect_text("long shift")
    second.expect_text("joined")
    phones.assert_no_unexpected()


def saving_from(hotline: Hotline, shown: str, changes: dict[str, object]) -> str:
    """A coordinator saves ``changes`` from a page that showed the settings at ``shown``."""
    try:
        update(hotline, changes, shown={shown})
    except programme_settings.StaleSettingsError as error:
        return str(error)
    return "saved"


def test_of_two_saves_from_the_same_page_at_the_same_moment_the_second_is_refused(
    hotline: Hotline,
) -> None:
    """Both had the page open as it was; B's save checks it first, A's is saved while B waits
    for the lock: B's would undo A's, and is refused, checked again under the lock."""
    with hotline.session() as session:
        programme = session.get_one(Programme, hotline.programme_id)
        shown = programme_settings.version(session, hotline.services.vault, programme)

    def a_saves() -> None:
        assert saving_from(hotline, shown, {"crisis_text": "Call 988 (A)."}) == "saved"

    told = while_it_waits_for_the_lock(
        hotline,
        lambda h: saving_from(h, shown, {"greeting": "Hello from B.", "crisis_text": ""}),
        a_saves,
    )
    assert told == programme_settings.StaleSettingsError.MESSAGE
    with hotline.session() as session:
        programme = session.get_one(Programme, hotline.programme_id)
        assert (programme.greeting, programme.crisis_text) == (None, "Call 988 (A).")


def releasing(hotline: Hotline, pool: list[str], replace: bool = True) -> str:
    """A release (``hotline db upgrade``) or ``hotline programme add --pool`` brings the
    programme to ``pool``, as HOTLINE_POOL_NUMBERS or --pool lists it (``replace`` False: the
    release's add-only mode, numbers a coordinator added kept): what IT is told."""
    services = hotline.services
    try:
        with transaction(services.sessions) as session:
            slug = session.get_one(Programme, hotline.programme_id).slug
            ensure_programme(
                session,
                slug=slug,
                name=None,
                hotline_number=HOTLINE,
                pool_numbers=tuple(pool),
                replace_pools=replace,
                vault=services.vault,
            )
    except (NumberInUseError, IntegrityError, StaleDataError) as error:
        return f"{type(error).__name__}: {error}"
    return "saved"


def test_a_release_adding_a_number_a_coordinator_adds_meanwhile_adds_it_once(
    hotline: Hotline,
) -> None:
    """The release adds the new number the IT team bought; a coordinator, meanwhile, adds it
    in Settings. The release added it a second time and the database refused the release."""
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    told = while_it_waits_for_the_lock(
        hotline,
        lambda h: releasing(h, [NEW], replace=False),
        lambda: update(hotline, {"pool_numbers": [*POOL, NEW]}),
    )
    assert told == "saved"
    assert pool_of(hotline) == [*POOL, NEW]
