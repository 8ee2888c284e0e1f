"""Smoke, on PostgreSQL with real concurrency: a unit-wide event.

After a death on a ward, many clinicians text (and some call) the programme's line in the same
minute, with two or three peers on call; and one clinician fires several texts within a second,
before any answer (a phone splitting a long message, or fear). Every webhook here runs in its
own thread through the app (tests/kit/crowd.py), so the database sees them all at once.
"""

from __future__ import annotations

import time

from tests.kit.crowd import Answer, Crowd, Post
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE = "+15550108001"
CLINICIAN = "+15550109001"


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
