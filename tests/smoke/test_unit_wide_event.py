"""Smoke, on PostgreSQL with real concurrency: a unit-wide event.

After a death on a ward, many clinicians text (and some call) the programme's line in the same
minute, with two or three peers on call; and one clinician fires several texts within a second,
before any answer (a phone splitting a long message, or fear). Every webhook here runs in its
own thread through the app (tests/kit/crowd.py), so the database sees them all at once.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select

from hotline.db import transaction
from hotline.models import PendingText, Programme
from hotline.people import set_alert_phone
from tests.kit.crowd import Answer, Crowd, Post
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE = "+15550108001"
COORDINATOR = "+15550106000"
CLINICIAN = "+15550109001"
OFFER = "Reply ACCEPT to take it or PASS"
STILL_FINDING = "still reaching a peer"
STILL_NOBODY = "no peer supporter is free to take it yet"


def texts_to(answers: list[Answer], phone: str) -> list[str]:
    return [body for answer in answers for to, _from, body in answer.texts if to == phone]


def test_a_burst_from_a_new_clinician_reaches_the_peer_in_the_order_written(
    hotline: Hotline, crowd: Crowd, phones: Phones
) -> None:
    """A first text and three more within a second, while the first is still being handled.
    The three waited for it on the new clinician's row and were woken together as it
    committed, then held in whatever order they happened to run: the peer read the burst
    scrambled. Here the second is slow to wake (a busy CPU), as it can be."""
    hotline.add_supporter("Alice", ALICE)
    slowed: list[bool] = []

    def slow_to_wake(_statement: str, _failed: bool) -> None:
        if crowd.released.is_set() and not slowed:
            slowed.append(True)
            time.sleep(0.3)

    crowd.hooks["post-1"] = slow_to_wake
    parts = [f"part {n} of what happened tonight" for n in range(1, 5)]
    answers = crowd.in_order(
        [Post(CLINICIAN, HOTLINE, part) for part in parts], hold_at="INSERT INTO clinicians"
    )
    assert [a.status for a in answers] == [200] * 4
    greeted = texts_to(answers, CLINICIAN)
    assert len(greeted) == 1 and "confidential" in greeted[0]
    assert len(texts_to(answers, ALICE)) == 1  # one request, offered once
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("connected")
    assert [alice.expect_text().body for _ in parts] == parts
    phones.phone(CLINICIAN).expect_text("joined")
    phones.assert_no_unexpected()
    assert crowd.errors == []  # not even a duplicate key caught: they queued for the first


def waiting_ten_minutes(hotline: Hotline, phones: Phones, *, peer_on_call: bool) -> None:
    """A clinician's request waits (offered to Alice, who has not answered, or with nobody on
    call) and ten minutes have passed since they were greeted."""
    if peer_on_call:
        hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    if peer_on_call:
        phones.phone(ALICE).expect_text(OFFER)
    hotline.clock.advance(minutes=10, seconds=30)


def test_a_burst_while_a_peer_is_being_reached_is_told_so_once(
    hotline: Hotline, crowd: Crowd, phones: Phones
) -> None:
    """Ten minutes on, the clinician sends four texts in a second. Each read the request as
    it was before the lock it then queued on, and all four answered 'we're still reaching a
    peer', crisis line and all, where the line says it at most every ten minutes."""
    waiting_ten_minutes(hotline, phones, peer_on_call=True)
    parts = [f"are you there? ({n})" for n in range(1, 5)]
    answers = crowd.in_order([Post(CLINICIAN, HOTLINE, part) for part in parts])
    assert [a.status for a in answers] == [200] * 4 and crowd.errors == []
    told = texts_to(answers, CLINICIAN)
    assert len(told) == 1 and STILL_FINDING in told[0]
    assert texts_to(answers, ALICE) == []  # her offer still stands
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    assert [alice.expect_text().body for _ in range(5)] == ["hello", *parts]
    phones.phone(CLINICIAN).expect_text("joined")
    phones.assert_no_unexpected()


def test_a_burst_while_nobody_is_free_is_told_so_once(
    hotline: Hotline, crowd: Crowd, phones: Phones
) -> None:
    """As above with nobody on call: one 'no peer is free yet' with the crisis line, not four,
    and the coordinator is not alerted again."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        set_alert_phone(hotline.services.vault, programme, COORDINATOR)
    waiting_ten_minutes(hotline, phones, peer_on_call=False)
    phones.phone(COORDINATOR).expect_text("nobody available")
    answers = crowd.in_order([Post(CLINICIAN, HOTLINE, f"anyone? ({n})") for n in range(1, 5)])
    assert [a.status for a in answers] == [200] * 4 and crowd.errors == []
    told = texts_to(answers, CLINICIAN)
    assert len(told) == 1 and STILL_NOBODY in told[0]
    assert hotline.settings.crisis_text in told[0]
    assert texts_to(answers, COORDINATOR) == []
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingText)) == 5
