"""Smoke, on PostgreSQL with real concurrency: a unit-wide event.

After a death on a ward, many clinicians text (and some call) the programme's line in the same
minute, with two or three peers on call; and one clinician fires several texts within a second,
before any answer (a phone splitting a long message, or fear). Every webhook here runs in its
own thread through the app (tests/kit/crowd.py), so the database sees them all at once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from functools import partial

from sqlalchemy import func, select

from hotline.db import transaction
from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
    Programme,
)
from hotline.people import clinician_phone, set_alert_phone
from hotline.routing import pools_in_use
from hotline.speech import digit_by_digit
from tests.kit.calls import NO_ANSWER, PRESS_1, VOICEMAIL, Calls, Script, SimulatedCall
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


BOB, CAROL = "+15550108002", "+15550108003"
PEERS = (ALICE, BOB, CAROL)
WARD = [f"+155501091{n:02d}" for n in range(12)]  # twelve clinicians of one unit


def unit_wide_event(hotline: Hotline, crowd: Crowd) -> tuple[list[Answer], dict[int, str]]:
    """Three peers on call (two conversations each at most) and the coordinator's alert
    phone; twelve clinicians text three times each at once, two of those texts delivered twice
    by Twilio. The answers, and the peers' numbers by supporter id."""
    peers = {
        hotline.add_supporter(name, number): number
        for name, number in zip(("Alice", "Bob", "Carol"), PEERS, strict=True)
    }
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        set_alert_phone(hotline.services.vault, programme, COORDINATOR)
    posts = [
        Post(clinician, HOTLINE, f"{clinician[-2:]}: text {n}", sid=f"SM{clinician[1:]}{n:021d}")
        for clinician in WARD
        for n in range(1, 4)
    ]
    return crowd.together([*posts, posts[0], posts[4]]), peers  # two deliveries repeated


def test_a_unit_wide_event_greets_each_clinician_once_and_offers_each_request_once(
    hotline: Hotline, crowd: Crowd
) -> None:
    answers, _ = unit_wide_event(hotline, crowd)
    assert {a.status for a in answers} == {200} and crowd.errors == []
    crisis = hotline.settings.crisis_text
    nobody_free = 0
    for clinician in WARD:  # one answer each, never silence, never two greetings
        told = texts_to(answers, clinician)
        assert len(told) == 1 and "confidential" in told[0] and crisis in told[0], told
        nobody_free += "No peer is free" in told[0]
    offers = [(to, from_) for a in answers for to, from_, body in a.texts if OFFER in body]
    # Round-robin: two each (their most at once), each on a pool number of its own.
    assert sorted(to for to, _ in offers) == sorted(PEERS * 2)
    assert len(set(offers)) == len(offers)
    assert nobody_free == len(WARD) - len(offers)  # the rest were told, with the crisis line
    # The coordinator hears once per request nobody could take, not once per text.
    assert len(texts_to(answers, COORDINATOR)) == nobody_free
    with hotline.session() as session:
        requests = session.scalars(select(Conversation)).all()
        pending = session.scalars(select(Offer).where(Offer.state == OfferState.PENDING)).all()
        held = Counter(session.scalars(select(PendingText.conversation_id)))
    assert len(requests) == len(WARD)  # one request per clinician, however many texts
    assert {r.state for r in requests} == {ConversationState.QUEUED}
    assert len(pending) == len(offers)
    assert len({o.conversation_id for o in pending}) == len(pending)  # none offered twice
    assert sorted(held.values()) == [3] * len(WARD)  # a repeated delivery is held once


def test_peers_accept_at_once_while_their_clinicians_keep_writing(
    hotline: Hotline, crowd: Crowd
) -> None:
    """The three peers accept both their offers at once while every clinician writes again:
    every text reaches its peer once, whichever came first, and every clinician taken hears
    a peer joined, once."""
    answers, peers = unit_wide_event(hotline, crowd)
    offers = [(to, from_) for a in answers for to, from_, body in a.texts if OFFER in body]
    accepts = [Post(peer, pool, "ACCEPT") for peer, pool in offers]
    again = [Post(clinician, HOTLINE, f"{clinician[-2:]}: text 4") for clinician in WARD]
    later = crowd.together([*accepts, *again])
    assert {a.status for a in later} == {200} and crowd.errors == []
    hotline.run_jobs()  # held texts past what an ACCEPT's reply carries, if any
    received = Counter(
        [(to, body) for a in later for to, _from, body in a.texts]
        + [(m["to"], m["body"]) for m in hotline.fake.sent]
    )
    with hotline.session() as session:
        taken = {
            clinician_phone(hotline.services.vault, session.get_one(Clinician, c.clinician_id)): c
            for c in session.scalars(select(Conversation))
            if c.state == ConversationState.ACTIVE and c.clinician_id is not None
        }
    assert len(taken) == len(offers)
    for clinician in WARD:
        conv = taken.get(clinician)
        told = [body for (to, body), n in received.items() if to == clinician for _ in range(n)]
        if conv is None:  # still waiting: held, and nothing to say within ten minutes
            assert told == []
            continue
        assert len(told) == 1 and "joined" in told[0]
        assert conv.supporter_id is not None
        peer = peers[conv.supporter_id]
        for n in range(1, 5):
            assert received[(peer, f"{clinician[-2:]}: text {n}")] == 1, (clinician, n)


def test_callers_and_texters_at_once_each_reach_one_peer_or_hear_what_comes_next(
    hotline: Hotline, crowd: Crowd, calls: Calls
) -> None:
    """Four clinicians call while three text, at the same moment. Alice takes a call (press 1),
    Bob's voicemail answers, Carol does not pick up. Nobody's phone rings for two callers at
    once, every caller hears the greeting and then either a peer or what happens next."""
    ids = [
        hotline.add_supporter(n, p) for n, p in zip(("Alice", "Bob", "Carol"), PEERS, strict=True)
    ]
    rung_twice: list[str] = []

    def one_ring_only(peer: str) -> Callable[[], None]:
        def check() -> None:
            legs = [
                leg
                for leg in hotline.fake.carried
                if leg["to"] == peer
                and leg["direction"] == "outbound-dial"
                and leg["status"] == "in-progress"
            ]
            if len(legs) > 1:
                rung_twice.append(peer)

        return check

    script = Script(
        phones={ALICE: PRESS_1, BOB: VOICEMAIL, CAROL: NO_ANSWER},
        before_answer={peer: one_ring_only(peer) for peer in PEERS},
        on_bridge=one_ring_only(ALICE),
    )
    callers, texters = WARD[:4], WARD[4:7]
    placed = crowd.at_once(
        [partial(calls.place, caller, HOTLINE, script) for caller in callers]
        + [partial(crowd.post, Post(texter, HOTLINE, "it happened again")) for texter in texters]
    )
    assert crowd.errors == [] and rung_twice == []
    crisis = hotline.settings.crisis_text
    for call in placed[: len(callers)]:
        assert isinstance(call, SimulatedCall)
        assert call.hears(digit_by_digit(crisis))  # as said aloud
        assert call.bridged_with == ALICE or call.hears("call you back"), call.heard
    for answer in placed[len(callers) :]:
        assert isinstance(answer, Answer) and answer.status == 200
        told = texts_to([answer], answer.post.from_)
        assert len(told) == 1 and crisis in told[0]
    with hotline.session() as session:
        pending = session.scalars(select(Offer).where(Offer.state == OfferState.PENDING)).all()
        load = pools_in_use(session, ids)
    assert len({o.conversation_id for o in pending}) == len(pending)
    assert all(len(numbers) <= 2 for numbers in load.values()), load  # their most at once
