"""Smoke: whole text conversations through the webhooks, the real twilio client and fake Twilio.

Each scenario ends by asserting that no phone got a text the script did not expect.
"""

from __future__ import annotations

import logging
import threading
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select, update

from hotline import roster, tasks
from hotline.db import transaction
from hotline.models import (
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    PendingText,
    Programme,
    Supporter,
)
from hotline.programme_settings import TEXT_LIMITS
from tests.kit.crowd import Crowd, Post
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline
from tests.kit.phones import AFTER_HER_STOP, Phone, Phones
from tests.kit.signing import deliver_to
from tests.kit.sms import segments

ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
COORDINATOR = "+15550106000"
CLINICIANS = [f"+1555010900{i}" for i in range(1, 7)]
OFFER = "Reply ACCEPT to take it or PASS"


def test_six_clinicians_are_spread_two_each_over_three_supporters(
    hotline: Hotline, phones: Phones
) -> None:
    for name, number in (("Alice", ALICE), ("Bob", BOB), ("Carol", CAROL)):
        hotline.add_supporter(name, number)
    for number in CLINICIANS:
        phones.phone(number).texts("I need to talk to someone")
        phones.phone(number).expect_text("confidential", from_=HOTLINE)
    for supporter in (ALICE, BOB, CAROL):
        first = phones.phone(supporter).expect_text(OFFER)
        second = phones.phone(supporter).expect_text(OFFER)
        assert first.from_ != second.from_, "two requests on one phone share a pool number"
    phones.assert_no_unexpected()


def test_pass_and_timeout_escalate_to_the_next_supporter(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    hotline.add_supporter("Carol", CAROL)
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("rough night")
    clinician.expect_text("confidential")
    alice, bob, carol = phones.phone(ALICE), phones.phone(BOB), phones.phone(CAROL)
    alice.expect_text(OFFER)

    alice.texts("PASS")
    alice.expect_text("Passed on")
    bob.expect_text(OFFER)

    hotline.clock.advance(seconds=181)  # HOTLINE_OFFER_TIMEOUT: Bob never answers
    hotline.run_jobs()  # the expire_offer wake-up, on a real RQ worker with the scheduler
    carol.expect_text(OFFER)
    bob.texts("ACCEPT")  # too late
    bob.expect_text("no longer open")
    carol.texts("accept")
    carol.expect_text("You're connected")
    carol.expect_text("rough night")
    clinician.expect_text("peer supporter has joined")
    phones.assert_no_unexpected()


@pytest.mark.parametrize(
    ("meanwhile", "told"),
    [
        ("the offer lapses", "Passed on"),  # and Bob is offered it, once
        ("the clinician stops", "no longer open"),
        ("her own ACCEPT", "already connected"),  # a double reply: both sent at once
    ],
)
def test_a_pass_that_finds_its_offer_answered_a_moment_before_is_still_answered(
    hotline: Hotline, phones: Phones, meanwhile: str, told: str
) -> None:
    """Alice's PASS has found her offer pending when something answers it first (its time-out,
    the clinician's STOP, her own ACCEPT sent just before): her PASS passed nothing, and she
    got no answer at all, left to wonder whether it reached the line. She is told what it
    came to, from the offer's number."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("rough night")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    with hotline.session() as session:
        offer_id = session.scalars(select(Offer.id)).one()
    raced: list[threading.Thread] = []

    def first() -> None:
        if meanwhile == "the offer lapses":
            hotline.clock.advance(seconds=181)
            tasks.expire_offer(hotline.services, offer_id)
        elif meanwhile == "the clinician stops":
            clinician.texts("STOP")
        else:
            phones.deliver_twiml(
                ALICE, POOL[0], hotline.sms(ALICE, POOL[0], "ACCEPT").get_data(as_text=True)
            )

    def answered_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        ringing = "FROM calls" in statement  # her PASS has read the offer as pending
        if ringing and not raced and threading.current_thread() is threading.main_thread():
            raced.append(threading.Thread(target=first))
            raced[0].start()
            raced[0].join(20)

    event.listen(engine, "after_cursor_execute", answered_meanwhile)
    try:
        alice.texts("PASS", to=POOL[0])
    finally:
        event.remove(engine, "after_cursor_execute", answered_meanwhile)
    assert len(raced) == 1
    if meanwhile == "the offer lapses":
        bob.expect_text(OFFER)
    elif meanwhile == "her own ACCEPT":
        alice.expect_text("You're connected", from_=POOL[0])
        alice.expect_text("rough night", from_=POOL[0])
        clinician.expect_text("joined")
    alice.expect_text(told, from_=POOL[0])  # was nothing
    phones.assert_no_unexpected()


@pytest.mark.parametrize(
    ("then", "told"),
    [
        ("Bob is asked", "Passed on"),
        ("Bob takes it", "no longer open"),
        ("the clinician stops", "no longer open"),
    ],
)
@pytest.mark.parametrize("answer", ["PASS", "No"])
def test_a_pass_after_the_offer_went_on_says_nothing_needs_the_peer(
    hotline: Hotline, phones: Phones, then: str, told: str, answer: str
) -> None:
    """Alice, with a patient, let her offer lapse; it went on to Bob (who may have taken it,
    or the clinician stopped) before her PASS came. She was told "Nothing is open on this
    number now, so your text was not passed on", as if her PASS had failed and the request
    still waited for her. She is told what a PASS a moment sooner is told: it went on, or it
    is no longer open; nothing needs her."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("rough night")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    bob.expect_text(OFFER)
    if then == "Bob takes it":
        bob.texts("ACCEPT")
        bob.expect_text("You're connected")
        bob.expect_text("rough night")
        clinician.expect_text("joined")
    elif then == "the clinician stops":
        clinician.texts("STOP")
    alice.texts(answer, to=POOL[0])
    alice.expect_text(told, from_=POOL[0])  # was "... your text was not passed on"
    phones.assert_no_unexpected()


def test_a_pass_on_a_number_with_no_request_of_hers_says_nothing_waits_for_her(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice closed her conversation with DONE, then PASS came on its number (a slow network,
    a slip): "your text was not passed on" read as her PASS having failed. She is told nothing
    there waits for her answer. A "No" there may be for the clinician she was talking with:
    it is still told that nothing was passed on."""
    clinician, alice = _connected(hotline, phones)
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    alice.texts("PASS")
    alice.expect_text("Nothing on this number is waiting for your answer", from_=POOL[0])
    alice.texts("No")
    alice.expect_text("not passed on", from_=POOL[0])
    phones.assert_no_unexpected()


@pytest.mark.parametrize("sent", ["now", "before asks were named"])
def test_an_offer_the_carrier_could_not_deliver_goes_to_the_next_peer_at_once(
    hotline: Hotline, sent: str
) -> None:
    """Twilio took the offer, in the reply or from a job, and its status callback then says it
    never reached the phone (Alice's is off: 30003; Bob's is a landline now: 30006): nobody
    was asked, so the next peer is, at once, not after the offer timeout. So too for an offer
    sent before its callback named which ask it was (its URL names the offer alone)."""
    for name, number in (("Alice", ALICE), ("Bob", BOB), ("Carol", CAROL)):
        hotline.add_supporter(name, number)
    reply = ET.fromstring(hotline.sms(CLINICIANS[0], HOTLINE, "rough night").get_data())  # noqa: S314
    (to_alice,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
    callback = to_alice.get("action", "").removeprefix(PUBLIC_URL)
    assert callback.endswith("&ask=1")
    if sent == "before asks were named":
        callback = callback.removesuffix("&ask=1")
    undelivered = {"MessageSid": f"SM{'a1' * 16}", "MessageStatus": "undelivered"}
    assert hotline.post(callback, **undelivered, ErrorCode="30003").status_code == 204
    hotline.run_jobs()  # no time passes
    (to_bob,) = [m for m in hotline.fake.sent if m["to"] == BOB]
    assert OFFER in to_bob["body"]
    failed = hotline.fake.post_status(to_bob["sid"], "failed", 30006, deliver_to(hotline.client))
    assert failed == 204
    hotline.run_jobs()
    assert [OFFER in m["body"] for m in hotline.fake.sent if m["to"] == CAROL] == [True]
    assert [m for m in hotline.fake.sent if m["to"] == CLINICIANS[0]] == []  # Carol is asked
    with hotline.session() as session:  # what the roster shows: Bob's phone takes no texts
        refused = {s.name: s.texts_refused_code for s in session.scalars(select(Supporter))}
    assert refused == {"Alice": None, "Bob": 30006, "Carol": None}  # Alice's is only off


def test_an_offer_refused_for_a_stop_the_line_missed_is_never_sent_on_that_number_again(
    hotline: Hotline,
) -> None:
    """Alice texted STOP to a pool number while the line could not hear it (the database
    down): Twilio blocks the pair and the line did not know. Her offer from that number fails
    (21610, in its status callback or when a job sends it) and goes on at once; the block is
    kept as her STOP would have kept it, so her next offers come from another of the line's
    numbers, not from the one that can never reach her."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    reply = ET.fromstring(hotline.sms(CLINICIANS[0], HOTLINE, "rough night").get_data())  # noqa: S314
    (to_alice,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
    stopped = to_alice.get("from")
    callback = to_alice.get("action", "").removeprefix(PUBLIC_URL)
    failed = {"MessageSid": f"SM{'a3' * 16}", "MessageStatus": "failed"}
    assert hotline.post(callback, **failed, ErrorCode="21610").status_code == 204
    hotline.run_jobs()
    offers_from = []
    for clinician in CLINICIANS[1:3]:
        reply = ET.fromstring(hotline.sms(clinician, HOTLINE, "hello").get_data())  # noqa: S314
        offers_from += [m.get("from") for m in reply.iter("Message") if m.get("to") == ALICE]
    assert len(offers_from) == 2 and stopped not in offers_from


def test_a_late_report_on_a_first_offer_leaves_the_second_one_to_the_same_peer_standing(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice's phone was off for the first offer, which lapsed; Bob passed; half an hour on she
    is asked again. Twilio's report that the first offer never reached her phone comes only
    now (it can come 30 minutes late): it passed on her second offer at once, though that one
    may well have reached her, and Bob was asked again a minute after he passed. Her second
    offer now waits for her answer, as any."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    answer = hotline.sms(CLINICIANS[0], HOTLINE, "rough night").get_data(as_text=True)
    (to_alice,) = [m for m in ET.fromstring(answer).iter("Message") if m.get("to") == ALICE]  # noqa: S314
    first_offer = to_alice.get("action", "").removeprefix(PUBLIC_URL)
    phones.deliver_twiml(CLINICIANS[0], HOTLINE, answer)
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    bob.expect_text(OFFER)
    bob.texts("PASS")
    bob.expect_text("Passed on")
    clinician.expect_text("No peer supporter is free")
    hotline.clock.advance(minutes=31)
    hotline.sweep()
    alice.expect_text(OFFER)
    undelivered = {"MessageSid": f"SM{'a4' * 16}", "MessageStatus": "undelivered"}
    assert hotline.post(first_offer, **undelivered, ErrorCode="30003").status_code == 204
    hotline.run_jobs()  # no time passes
    phones.assert_no_unexpected()  # Bob was offered it again here
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text("rough night")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_an_offer_undelivered_for_our_pool_number_s_fault_waits_for_its_timeout(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """The offer's status callback says the pool number is not registered to send (US A2P
    10DLC: 30034), the same for every peer: it was passed on at once, and the request ran
    through every peer on call in seconds. It times out as in an outage, and the error log
    names the code and which of the line's numbers it is."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    reply = ET.fromstring(hotline.sms(CLINICIANS[0], HOTLINE, "rough night").get_data())  # noqa: S314
    (to_alice,) = [m for m in reply.iter("Message") if m.get("to") == ALICE]
    callback = to_alice.get("action", "").removeprefix(PUBLIC_URL)
    undelivered = {"MessageSid": f"SM{'a2' * 16}", "MessageStatus": "undelivered"}
    with caplog.at_level(logging.ERROR, logger="hotline"):
        assert hotline.post(callback, **undelivered, ErrorCode="30034").status_code == 204
        hotline.run_jobs()  # no time passes
    assert [m for m in hotline.fake.sent if m["to"] in (BOB, CLINICIANS[0])] == []
    (error,) = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert "30034" in error and "pool number" in error
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    assert [OFFER in m["body"] for m in hotline.fake.sent if m["to"] == BOB] == [True]


def test_the_sweeper_expires_offers_whose_wake_up_redis_lost(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    phones.phone(CLINICIANS[0]).texts("hello")
    phones.phone(CLINICIANS[0]).expect_text("confidential")
    phones.phone(ALICE).expect_text(OFFER)
    hotline.redis.flushall()
    hotline.clock.advance(seconds=200)
    hotline.run_jobs()  # nothing left in Redis
    phones.phone(BOB).expect_nothing()
    assert hotline.sweep().offers_expired == 1
    phones.phone(BOB).expect_text(OFFER)
    phones.assert_no_unexpected()


def test_the_next_peer_promised_at_3am_is_one_the_line_can_text(
    hotline: Hotline, phones: Phones
) -> None:
    """Nobody is on call at 8 a.m. (the programme's time zone, UTC); Bob, whose phone refuses
    the line's texts (a landline: 30006, kept on the roster), comes on call at 10, Alice at
    noon. The clinician was told the next peer comes on call at 10, when nobody the line can
    text does: Alice's noon is the time."""
    now = hotline.clock.now = hotline.clock.now.replace(hour=8, minute=0)
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)
    hotline.add_shift(bob, now + timedelta(hours=2), now + timedelta(hours=12))
    hotline.add_shift(alice, now + timedelta(hours=4), now + timedelta(hours=12))
    with hotline.session() as session:
        session.execute(
            update(Supporter)
            .where(Supporter.id == bob)
            .values(texts_refused_code=30006, texts_refused_at=now)
        )
        session.commit()
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("I can't sleep after what happened")
    fallback = clinician.expect_text("No peer is free right now", from_=HOTLINE)
    assert "The next peer comes on call at Mon 12:00 PM" in fallback.body, fallback.body


def test_nobody_on_call_at_3am_gets_the_fallback_and_a_later_shift_picks_it_up(
    hotline: Hotline, phones: Phones
) -> None:
    now = hotline.clock.now = hotline.clock.now.replace(hour=8)  # 3 a.m. in New York
    _set_alert_phone(hotline, COORDINATOR)
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(alice, now + timedelta(hours=4), now + timedelta(hours=12))
    clinician = phones.phone(CLINICIANS[0])

    clinician.texts("I can't sleep after what happened")
    # One text: what the line is, that the message waits and until when, the crisis line once.
    fallback = clinician.expect_text("confidential", from_=HOTLINE)
    assert "No peer is free right now" in fallback.body
    assert "next peer comes on call" in fallback.body
    assert fallback.body.count("988") == 1 and segments(fallback.body) <= 3
    alert = phones.phone(COORDINATOR).expect_text(
        "a text request is waiting with nobody available", from_=HOTLINE
    )
    assert "can't sleep" not in alert.body and CLINICIANS[0] not in alert.body
    assert "No need to reply" in alert.body  # a reply here would be a request for support
    clinician.texts("still here")  # held, no second fallback
    phones.assert_no_unexpected()

    hotline.clock.advance(hours=4, minutes=1)
    hotline.sweep()
    phones.phone(ALICE).expect_text(OFFER)
    phones.phone(ALICE).texts("ACCEPT")
    phones.phone(ALICE).expect_text("You're connected")
    phones.phone(ALICE).expect_text("I can't sleep after what happened")
    phones.phone(ALICE).expect_text("still here")
    clinician.expect_text("peer supporter has joined")
    phones.assert_no_unexpected()


def test_a_programme_s_longest_texts_still_reach_a_clinician_nobody_can_take_whole(
    hotline: Hotline, phones: Phones
) -> None:
    """The console allows a 1,000-character greeting and a 500-character crisis sentence. In
    one text with the fallback they would pass Twilio's 1,600 characters and lose the end of
    the crisis sentence, so then the greeting and the fallback go as two texts."""
    greeting = ("You are not alone, and this line is here for you. " * 20)[
        : TEXT_LIMITS["greeting"]
    ]
    crisis = ("In a crisis call or text 988 now, or 911 in an emergency. " * 9)[
        : TEXT_LIMITS["crisis_text"]
    ]
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.greeting, programme.crisis_text = greeting.strip(), crisis.strip()
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("hello")
    first = clinician.expect_text(greeting.strip()[:60], from_=HOTLINE)
    second = clinician.expect_text("No peer supporter is free", from_=HOTLINE)
    for text in (first, second):
        assert len(text.body) <= 1600 and text.body.endswith(crisis.strip())
    phones.assert_no_unexpected()


def test_done_with_a_programme_s_longest_resources_still_closes_whole(
    hotline: Hotline, phones: Phones
) -> None:
    """The console allows 1,500 characters of resources; with the closing's own words that
    passed Twilio's 1,600 and the next step ("Text this number any time") was cut off."""
    resources = ("Counseling: call the EAP at 555-0100, any hour. " * 40)[
        : TEXT_LIMITS["resources_text"]
    ].strip()
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).resources_text = resources
    clinician, alice = _connected(hotline, phones)
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    closing = clinician.expect_text("Your peer has closed this conversation", from_=HOTLINE)
    assert closing.body.endswith("Text this number any time to talk again.")
    assert clinician.expect_text(from_=HOTLINE).body == resources
    phones.assert_no_unexpected()


def test_one_supporter_holds_two_conversations_on_two_pool_numbers(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE, max_conversations=2)
    one, two, alice = phones.phone(CLINICIANS[0]), phones.phone(CLINICIANS[1]), phones.phone(ALICE)
    one.texts("from one")
    one.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("from one", from_=POOL[0])
    one.expect_text("joined")

    two.texts("from two")
    two.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[1])
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("connected", from_=POOL[1])
    alice.expect_text("from two", from_=POOL[1])
    two.expect_text("joined")

    alice.texts("hello one", to=POOL[0])
    alice.texts("hello two", to=POOL[1])
    assert one.expect_text(from_=HOTLINE).body == "hello one"
    assert two.expect_text(from_=HOTLINE).body == "hello two"
    one.texts("reply one")
    alice.expect_text("reply one", from_=POOL[0])
    phones.assert_no_unexpected()


def test_an_accept_in_a_live_conversation_s_thread_takes_the_offer_on_the_other_number(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE, max_conversations=2)
    one, two = phones.talking(CLINICIANS[0], ALICE, "from one")[0], phones.phone(CLINICIANS[1])
    alice = phones.phone(ALICE)
    two.texts("from two")
    two.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[1])
    alice.texts("ACCEPT", to=POOL[0])  # in the thread she was typing in, not the offer's
    alice.expect_text("connected", from_=POOL[1])  # was "already connected on this number"
    alice.expect_text("from two", from_=POOL[1])
    two.expect_text("joined")
    alice.texts("yes", to=POOL[0])  # an everyday word in a conversation stays an answer
    assert one.expect_text(from_=HOTLINE).body == "yes"
    alice.texts("ACCEPT", to=POOL[0])  # no offer anywhere: she is told where she is, and why
    alice.expect_text("no other request is waiting for your answer", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_pass_or_break_typed_in_a_live_conversation_s_thread_is_answered_on_the_offer_s(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice talks with one on the first pool number; a request comes on the second. Her PASS
    (or BREAK) typed in the thread she was writing in passes the request on; "Passed on" in
    that thread read as if her conversation with one had been handed to someone else. PASS is
    answered on the offer's number; BREAK's one text says it was the request waiting for her."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    hotline.add_supporter("Bob", BOB, on_call=False)
    one, alice = phones.talking(CLINICIANS[0], ALICE, "from one")
    for i, answer in enumerate(("PASS", "BREAK 30m")):
        clinician = phones.phone(CLINICIANS[1 + i])
        clinician.texts("hi")
        clinician.expect_text("confidential")
        alice.expect_text(OFFER, from_=POOL[1])
        alice.texts(answer, to=POOL[0])
        if answer == "PASS":
            alice.expect_text("Passed on", from_=POOL[1])  # was from POOL[0], one's thread
        else:
            went = "Passed on the request waiting for you. On a break until"
            alice.expect_text(went, from_=POOL[0])
        clinician.expect_text("No peer supporter is free")  # nobody else on call
    alice.texts("still with you", to=POOL[0])
    assert one.expect_text(from_=HOTLINE).body == "still with you"
    phones.assert_no_unexpected()


def test_an_accept_in_a_live_conversation_s_thread_takes_a_lapsed_request_still_waiting(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice, with a patient, let the offer on the second number lapse; the request still waits
    with nobody else on call. Back at her phone she types ACCEPT in the thread she was writing
    in: she was told she was "already connected on this number", and the request went on
    waiting though she meant to take it."""
    hotline.add_supporter("Alice", ALICE, max_conversations=2)
    _, alice, two = _second_offer_lapsed(hotline, phones)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("connected", from_=POOL[1])  # was "already connected on this number"
    alice.expect_text("from two", from_=POOL[1])
    two.expect_text("joined")
    alice.texts("ACCEPT", to=POOL[0])  # nothing left to take: she is told where she is, and why
    alice.expect_text("no other request is waiting for your answer", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_late_accept_in_a_live_thread_that_cannot_take_the_request_is_answered_on_its_number(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice let the offer on the second number lapse, then was taken off the roster while
    still talking on the first. Her ACCEPT typed in that conversation's thread cannot take the
    request: "That request is no longer open ... or it ended" came back in the thread of the
    clinician she is talking with, as if that conversation had ended. It comes from the
    offer's number, as every answer about an offer does; her conversation goes on."""
    alice_id = hotline.add_supporter("Alice", ALICE, max_conversations=2)
    one, alice, _ = _second_offer_lapsed(hotline, phones)
    with transaction(hotline.services.sessions) as session:
        supporter = session.get_one(Supporter, alice_id)
        roster.deactivate(
            session, hotline.services.vault, supporter, "coordinator", hotline.clock.now
        )
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("no longer open", from_=POOL[1])  # was from POOL[0], one's thread
    alice.texts("still with you", to=POOL[0])
    assert one.expect_text(from_=HOTLINE).body == "still with you"
    phones.assert_no_unexpected()


def test_a_late_accept_at_the_supporter_s_limit_leaves_the_request_for_the_next_peer(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice talks with one; the second request's offer lapsed, and her coordinator has since
    set her limit to one conversation. Her late ACCEPT (on that offer's number, or typed in
    one's thread) took the request all the same: two conversations at a limit of one, which
    routing never offers her. She is told she is at her limit and how to make room; the request
    stays waiting, and once she closes one with DONE her ACCEPT takes it."""
    alice_id = hotline.add_supporter("Alice", ALICE, max_conversations=2)
    one, alice, two = _second_offer_lapsed(hotline, phones)
    with hotline.session() as session:
        session.execute(
            update(Supporter).where(Supporter.id == alice_id).values(max_conversations=1)
        )
        session.commit()
    for where in (POOL[1], POOL[0]):  # the lapsed offer's number, one's thread
        alice.texts("ACCEPT", to=where)
        told = alice.expect_text("limit of 1 conversation", from_=POOL[1])
        assert "DONE" in told.body
    with hotline.session() as session:
        waiting = session.scalars(select(Conversation).where(Conversation.pool_number.is_(None)))
        assert [c.state for c in waiting] == [ConversationState.QUEUED]
    alice.texts("DONE", to=POOL[0])
    alice.expect_text("Conversation closed", from_=POOL[0])
    one.expect_text("not alone")
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("You're connected", from_=POOL[1])
    alice.expect_text("from two", from_=POOL[1])
    two.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_late_accept_at_the_limit_with_an_offer_waiting_says_to_pass_that_one(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice let one request's offer lapse while another's waits for her answer, and her
    coordinator has set her limit to one conversation. Her late ACCEPT of the first is refused
    for her limit, which the waiting offer fills: told to close one with DONE, she had none to
    close. She is told to PASS the waiting one, and once she has, her ACCEPT takes the first."""
    alice_id = hotline.add_supporter("Alice", ALICE, max_conversations=2)
    one, two, alice = phones.phone(CLINICIANS[0]), phones.phone(CLINICIANS[1]), phones.phone(ALICE)
    one.texts("from one")
    one.expect_text("confidential")
    first = alice.expect_text(OFFER).from_
    hotline.clock.advance(seconds=100)
    two.texts("from two")
    two.expect_text("confidential")
    second = alice.expect_text(OFFER).from_
    hotline.clock.advance(seconds=81)
    hotline.run_jobs()
    one.expect_text("No peer supporter is free")  # the first offer lapsed; the second waits
    with hotline.session() as session:
        session.execute(
            update(Supporter).where(Supporter.id == alice_id).values(max_conversations=1)
        )
        session.commit()
    alice.texts("ACCEPT", to=first)
    told = alice.expect_text("limit of 1 conversation, counting a request waiting", from_=first)
    assert "PASS that one" in told.body and "DONE" not in told.body
    alice.texts("PASS", to=second)
    alice.expect_text("Passed on", from_=second)
    two.expect_text("No peer supporter is free")
    alice.texts("ACCEPT", to=first)
    alice.expect_text("You're connected", from_=first)
    alice.expect_text("from one", from_=first)
    one.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_late_accept_on_a_break_takes_the_request_and_says_the_break_goes_on(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice let the offer lapse, then took a break; the request still waits with nobody, its
    clinician told a peer will text. Her ACCEPT, sent since, is the surest word that she can
    take it now (her BREAK said only that the line should not ask): it is hers, as her limit
    allows. The break goes on for new requests, and she is told so, with the accept: it said
    only "You're connected", and a new request found nobody free, unexplained."""
    clinician, alice = _nobody_took_it(hotline, phones)
    alice.texts("BREAK 2h")
    alice.expect_text("On a break until")
    alice.texts("ACCEPT")
    told = alice.expect_text("You're connected", from_=POOL[0])
    assert "Your break goes on: no new requests until" in told.body
    alice.expect_text("I need to talk", from_=POOL[0])
    clinician.expect_text("joined")
    second = phones.phone(CLINICIANS[1])
    second.texts("hello")
    second.expect_text("No peer is free")  # she is on a break: not offered it
    phones.assert_no_unexpected()


def test_a_late_accept_after_the_peer_s_shift_ended_takes_the_request(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice's shift ended as her offer lapsed; the request waits with nobody on call. Her
    ACCEPT half an hour later takes it, as an ACCEPT of a pending offer after her shift does:
    the schedule says when the line may ask her, not that she may not take what nobody else
    can."""
    alice_id = hotline.add_supporter("Alice", ALICE, on_call=False)
    now = hotline.clock.now
    hotline.add_shift(alice_id, now - timedelta(hours=1), now + timedelta(minutes=2))
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("I need to talk")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    clinician.expect_text("No peer supporter is free")
    hotline.clock.advance(minutes=30)
    hotline.sweep()
    alice.texts("ACCEPT")
    told = alice.expect_text("You're connected", from_=POOL[0])
    assert "break" not in told.body
    alice.expect_text("I need to talk", from_=POOL[0])
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_full_supporter_is_skipped_pool_of_one(hotline: Hotline, phones: Phones) -> None:
    _set_pool(hotline, (HOTLINE,))
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    hotline.add_supporter("Bob", BOB, max_conversations=3)
    alice, bob = phones.phone(ALICE), phones.phone(BOB)
    phones.phone(CLINICIANS[0]).texts("first")
    phones.phone(CLINICIANS[0]).expect_text("confidential")
    alice.expect_text(OFFER, from_=HOTLINE)
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("first")
    phones.phone(CLINICIANS[0]).expect_text("joined")
    # Alice has used the only pool number: the next request goes to Bob though she has room.
    phones.phone(CLINICIANS[1]).texts("second")
    phones.phone(CLINICIANS[1]).expect_text("confidential")
    bob.expect_text(OFFER, from_=HOTLINE)
    # and with Bob's number in use too, the third clinician hears the fallback.
    phones.phone(CLINICIANS[2]).texts("third")
    assert "confidential" in phones.phone(CLINICIANS[2]).expect_text("No peer is free").body
    # Alice's texts on the shared number still reach her clinician.
    alice.texts("still with you")
    assert phones.phone(CLINICIANS[0]).expect_text(from_=HOTLINE).body == "still with you"
    phones.assert_no_unexpected()


def test_pool_of_three_lets_one_supporter_hold_three(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE, max_conversations=5)
    alice = phones.phone(ALICE)
    for i, number in enumerate(CLINICIANS[:4]):
        phones.phone(number).texts(f"hi {i}")
        reply = phones.phone(number).expect_text("confidential")
        if i < 3:
            assert alice.expect_text(OFFER).from_ == POOL[i]
    assert "No peer is free" in reply.body  # the fourth: nobody has a free number
    phones.assert_no_unexpected()


def test_a_closed_thread_does_not_carry_the_next_request_at_once(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice closes a conversation with DONE on the first pool number; the next request comes
    from a number she has not used: a late "take care" typed in the old thread is not
    relayed to the new clinician once she accepts."""
    clinician, alice = _connected(hotline, phones)
    assert alice.last_from == POOL[0]
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    hotline.clock.advance(minutes=5)
    second = phones.phone(CLINICIANS[1])
    second.texts("hello")
    second.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ == POOL[1]
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("hello")
    second.expect_text("joined")
    alice.texts("Take care of yourself", to=POOL[0])  # meant for the first clinician
    alice.expect_text("not passed on")
    second.expect_nothing()
    clinician.expect_nothing()
    phones.assert_no_unexpected()


def test_a_returning_clinician_s_thread_closed_since_for_another_is_not_theirs_at_once(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice talked with the first clinician on the first pool number, then with two others
    (a pool of two): the third's thread, on that same number, has just closed when the first
    comes back. Their request came to her on it, so a late "take care" typed there for the
    third reached the first once she accepted. It comes from the number she used longest ago;
    their own thread is theirs again once nobody else's has closed there since."""
    _set_pool(hotline, POOL[:2])
    first, alice = _connected(hotline, phones)
    assert alice.last_from == POOL[0]
    for n, at in ((1, POOL[1]), (2, POOL[0])):  # the second on the other number, the third on it
        alice.texts("DONE", to=alice.last_from)
        alice.expect_text("Conversation closed")
        hotline.clock.advance(minutes=5)
        phones.phone(CLINICIANS[n - 1]).expect_text("not alone")
        other = phones.phone(CLINICIANS[n])
        other.texts("hello")
        other.expect_text("confidential")
        assert alice.expect_text(OFFER).from_ == at
        alice.texts("ACCEPT", to=at)
        alice.expect_text("connected", from_=at)
        alice.expect_text("hello", from_=at)
        other.expect_text("joined")
    alice.texts("DONE", to=POOL[0])
    alice.expect_text("Conversation closed")
    third = phones.phone(CLINICIANS[2])
    third.expect_text("not alone")
    hotline.clock.advance(minutes=5)
    first.texts("I'm back")
    first.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ == POOL[1]  # not the thread just closed
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("connected", from_=POOL[1])
    alice.expect_text("I'm back", from_=POOL[1])
    first.expect_text("joined")
    alice.texts("Take care of yourself", to=POOL[0])  # meant for the third
    alice.expect_text("not passed on")
    first.expect_nothing()
    third.expect_nothing()
    phones.assert_no_unexpected()


def test_stop_mid_conversation_ends_it(hotline: Hotline, phones: Phones) -> None:
    clinician, alice = _connected(hotline, phones)
    clinician.texts("STOP")  # Twilio itself answers the opt-out word
    alice.expect_text("ended the conversation")
    alice.texts("are you there?")
    alice.expect_text("Nothing is open on this number now")
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.ENDED
    clinician.texts("START")
    phones.assert_no_unexpected()


def test_stop_while_the_request_waits_ends_it_and_no_peer_can_take_it(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hi")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    clinician.texts("STOP")  # Twilio itself answers the opt-out word
    hotline.clock.advance(seconds=181)  # past the offer's time-out: nobody else is offered it
    hotline.run_jobs()
    hotline.sweep()
    phones.assert_no_unexpected()
    alice.texts("ACCEPT")
    alice.expect_text("no longer open")
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.ENDED
    phones.assert_no_unexpected()


def test_a_peer_taking_a_request_from_someone_who_stopped_texts_is_told_to_call(
    hotline: Hotline, phones: Phones
) -> None:
    """STOP, then a text all the same (not START): Twilio forwards it but delivers nothing back
    from the line, so the peer must know to call rather than text into silence."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("STOP")
    clinician.texts("I need to talk to someone")
    # The line greets them, but Twilio drops it (21610): the fake once delivered it anyway.
    # The hotline number is the only one that texts them, so nothing else could reach them.
    # (Sent all the same: the line's record of a STOP is not always Twilio's, see expect_refused.)
    clinician.expect_nothing()
    phones.expect_refused("confidential", to=CLINICIANS[0])
    alice.expect_text(OFFER)
    alice.texts("ACCEPT")
    told = alice.expect_text("stopped texts from this line")
    assert "call this number" in told.body
    alice.expect_text("I need to talk to someone")
    phones.assert_no_unexpected()  # and no "a peer has joined" into Twilio's block


def test_stop_with_punctuation_ends_it_too_and_the_line_confirms_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio blocks and answers the opt-out words alone; "Stop." may reach the line as an
    ordinary text, with no answer from Twilio: the line ends everything and says so itself."""
    clinician, alice = _connected(hotline, phones)
    clinician.texts("Stop.")
    clinician.expect_text("no more texts from this number", from_=HOTLINE)
    alice.expect_text("ended the conversation")
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.ENDED
    phones.assert_no_unexpected()


def test_an_opt_out_in_a_word_only_twilio_knows_ends_it_and_is_not_relayed(
    hotline: Hotline, phones: Phones
) -> None:
    """With Advanced Opt-Out a Messaging Service blocks the pair on its own words too ("ARRET",
    "PARAR") and says so in OptOutType: the line must read it as STOP, not relay it to the peer
    and go on relaying the peer's texts into Twilio's block."""
    clinician, alice = _connected(hotline, phones)
    clinician.texts("ARRET", OptOutType="STOP")  # Twilio itself answers it
    alice.expect_text("ended the conversation")
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.ENDED
    clinician.texts("I need to talk to someone")  # no START: Twilio still blocks the line
    clinician.expect_nothing()  # the greeting, which Twilio drops (the fake delivered it)
    phones.expect_refused("confidential", to=CLINICIANS[0])
    alice.expect_text(OFFER)
    alice.texts("ACCEPT")
    alice.expect_text("stopped texts from this line")
    alice.expect_text("I need to talk to someone")
    phones.assert_no_unexpected()


def test_an_opt_in_in_a_word_only_twilio_knows_lifts_the_opt_out(
    hotline: Hotline, phones: Phones
) -> None:
    """And the Messaging Service's own opt-in word (OptOutType START) lifts it: the peer who
    takes the next request is not told to call someone who gets texts again."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("STOP")
    clinician.texts("REPRENDRE", OptOutType="START")  # Twilio itself answers it
    phones.assert_no_unexpected()
    clinician.texts("I need to talk to someone")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("I need to talk to someone")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_supporters_yes_and_no_inside_a_conversation_reach_the_clinician(
    hotline: Hotline, phones: Phones
) -> None:
    """YES/Y/NO/N answer an offer; inside a conversation they are answers to the clinician."""
    clinician, alice = _connected(hotline, phones)
    clinician.texts("Do you think I could have prevented it?")
    alice.expect_text("prevented it?")
    for answer in ("No.", "yes", "N", "Y!"):
        alice.texts(answer)
        assert clinician.expect_text(from_=HOTLINE).body == answer
    alice.texts("ACCEPT")  # the command words themselves are still commands
    alice.expect_text("already connected")
    phones.assert_no_unexpected()


def test_a_supporter_stopping_the_number_mid_conversation_ends_it_and_tells_the_clinician(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio blocks the pool number to the supporter after STOP: nothing relayed there would
    reach them, so the clinician must not go on talking to nobody."""
    clinician, alice = _connected(hotline, phones)
    alice.texts("STOP")  # Twilio itself answers the opt-out word
    told = clinician.expect_text("can't continue", from_=HOTLINE)
    assert hotline.services.settings.crisis_text in told.body
    with hotline.session() as session:
        conv = session.scalars(select(Conversation)).one()
        assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "peer_stop")
    clinician.texts("are you still there?")  # a new request: never on the number Alice stopped
    clinician.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ != POOL[0]
    phones.assert_no_unexpected()


def _nobody_took_it(hotline: Hotline, phones: Phones) -> tuple:  # type: ignore[type-arg]
    """Alice, the only peer on call, lets a first text's offer lapse (asleep, in surgery)."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("I need to talk")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    clinician.expect_text("No peer supporter is free")
    return clinician, alice


def test_the_only_peer_on_call_is_asked_once_more_half_an_hour_after_the_first_lapsed(
    hotline: Hotline, phones: Phones
) -> None:
    """3 a.m., one peer on call who slept through the offer: half an hour later the waiting
    request is offered to them again (not left until someone new comes on call), and once
    only: a second lapse leaves it to the next peer on call and the coordinator."""
    clinician, alice = _nobody_took_it(hotline, phones)
    hotline.clock.advance(minutes=29)
    hotline.sweep()
    phones.assert_no_unexpected()  # not yet: they may be with a patient
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    alice.expect_text(OFFER)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    hotline.clock.advance(hours=2)
    hotline.sweep()
    phones.assert_no_unexpected()  # asked twice: not a third time
    alice.texts("ACCEPT")  # awake at last: a lapsed offer can still be taken
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_clinician_writing_again_while_nobody_can_take_it_is_answered_not_ignored(
    hotline: Hotline, phones: Phones
) -> None:
    clinician, alice = _nobody_took_it(hotline, phones)
    first_told = hotline.clock.now
    clinician.texts("is anyone there?")  # just told: no second notice yet
    hotline.clock.advance(minutes=10)
    clinician.texts("please")
    told = clinician.expect_text("no peer supporter is free to take it yet", from_=HOTLINE)
    assert hotline.services.settings.crisis_text in told.body
    with hotline.session() as session:  # the reports count the fallback when it happened
        assert session.scalar(select(Conversation.fallback_at)) == first_told
    hotline.clock.advance(minutes=1)
    clinician.texts("hello?")  # within ten minutes of that: no third notice
    hotline.sweep()
    alice.expect_nothing()  # her offer lapsed: not offered again, unasked
    phones.assert_no_unexpected()


def _offered_to_the_first_of_two_slow_peers(hotline: Hotline, phones: Phones) -> tuple:  # type: ignore[type-arg]
    """A programme giving each peer 15 minutes to answer: the clinician's first text is greeted
    and offered to Alice; Bob is next. The clinician's phone and Bob's."""
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).offer_timeout = 15 * 60
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("hi")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER)
    return clinician, bob


def test_a_clinician_writing_again_while_the_offer_goes_from_peer_to_peer_is_answered(
    hotline: Hotline, phones: Phones
) -> None:
    """A programme gives each peer 15 minutes to answer: nobody is "not free", yet nobody has
    taken it, and the clinician writing again is not met with silence."""
    clinician, bob = _offered_to_the_first_of_two_slow_peers(hotline, phones)
    hotline.clock.advance(minutes=5)
    clinician.texts("are you there?")  # greeted five minutes ago: no notice yet
    hotline.clock.advance(minutes=6)
    clinician.texts("is anyone there?")
    told = clinician.expect_text("still reaching a peer supporter for you", from_=HOTLINE)
    assert hotline.services.settings.crisis_text in told.body and segments(told.body) <= 2
    hotline.clock.advance(minutes=5)
    hotline.run_jobs()  # Alice's 15 minutes are up: Bob is asked
    bob.expect_text(OFFER)
    clinician.texts("hello?")  # five minutes after that notice: no second one yet
    hotline.clock.advance(minutes=6)
    clinician.texts("please")
    clinician.expect_text("still reaching a peer supporter for you", from_=HOTLINE)
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    clinician.expect_text("joined")
    for held in ("hi", "are you there?", "is anyone there?", "hello?", "please"):
        assert bob.expect_text().body == held
    phones.assert_no_unexpected()


def test_a_clinician_just_told_nobody_is_free_is_not_told_again_a_minute_later(
    hotline: Hotline, phones: Phones
) -> None:
    """Told a peer is still being reached, then (both peers letting it lapse) that nobody is
    free: writing a minute after that is not answered with it all over again. At most every
    10 minutes counts from the last thing they were told, whichever it was."""
    clinician, bob = _offered_to_the_first_of_two_slow_peers(hotline, phones)
    hotline.clock.advance(minutes=11)
    clinician.texts("is anyone there?")
    clinician.expect_text("still reaching a peer supporter for you", from_=HOTLINE)
    hotline.clock.advance(minutes=4)
    hotline.run_jobs()  # Alice's 15 minutes are up: Bob is asked
    bob.expect_text(OFFER)
    hotline.clock.advance(minutes=15)
    hotline.run_jobs()  # and Bob's: nobody is left
    clinician.expect_text("No peer supporter is free", from_=HOTLINE)
    hotline.clock.advance(minutes=1)
    clinician.texts("hello?")  # told a minute ago: nothing again yet
    phones.assert_no_unexpected()
    hotline.clock.advance(minutes=10)
    clinician.texts("please")
    clinician.expect_text("no peer supporter is free to take it yet", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_peer_accepting_late_takes_a_request_still_waiting_for_anyone(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician was told a peer will text; Alice, back from surgery, replies ACCEPT to the
    offer that lapsed: nobody else has it, so it is hers, with everything held."""
    clinician, alice = _nobody_took_it(hotline, phones)
    clinician.texts("still here")
    hotline.clock.advance(minutes=30)
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    alice.expect_text("still here")
    clinician.expect_text("joined")
    alice.texts("I'm here now. What happened?")
    clinician.expect_text("What happened?", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_late_accept_sent_to_the_hotline_number_takes_the_request_waiting_for_anyone(
    hotline: Hotline, phones: Phones
) -> None:
    clinician, alice = _nobody_took_it(hotline, phones)
    hotline.clock.advance(minutes=5)
    alice.texts("ACCEPT", to=HOTLINE)  # the line's saved contact, not the offer's number
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("I need to talk", from_=POOL[0])
    clinician.expect_text("joined")
    alice.texts("I'm here", to=POOL[0])
    clinician.expect_text("I'm here", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_late_accept_to_the_hotline_number_never_opens_a_second_conversation_on_a_number(
    hotline: Hotline, phones: Phones
) -> None:
    """The lapsed offer's pool number now carries another conversation of hers: taking the old
    request there would mix two clinicians' texts on one number."""
    _first, alice = _nobody_took_it(hotline, phones)
    with hotline.session() as session:
        session.execute(update(Supporter).values(max_conversations=3))
        session.commit()
    second = phones.phone(CLINICIANS[1])
    second.texts("hi")
    second.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("hi", from_=POOL[0])
    second.expect_text("joined")
    alice.texts("ACCEPT", to=HOTLINE)
    alice.expect_text("no longer open", from_=HOTLINE)
    with hotline.session() as session:
        live = session.scalars(
            select(Conversation.pool_number).where(Conversation.state == ConversationState.ACTIVE)
        ).all()
    assert live == [POOL[0]]
    phones.assert_no_unexpected()


def test_a_peer_writing_on_a_lapsed_offers_number_is_told_how_to_take_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Not "this conversation has ended": the request still waits, and ACCEPT takes it."""
    clinician, alice = _nobody_took_it(hotline, phones)
    alice.texts("sorry, was in surgery - I can take it now")
    alice.expect_text("Reply ACCEPT to take this peer support request", from_=POOL[0])
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_late_accept_does_not_take_a_request_now_offered_to_someone_else(
    hotline: Hotline, phones: Phones
) -> None:
    clinician, alice = _nobody_took_it(hotline, phones)
    hotline.add_supporter("Bob", BOB)
    hotline.sweep()  # Bob is on call now: the waiting request goes to him
    phones.phone(BOB).expect_text(OFFER)
    alice.texts("ACCEPT")
    alice.expect_text("no longer open")
    phones.phone(BOB).texts("ACCEPT")
    phones.phone(BOB).expect_text("You're connected")
    phones.phone(BOB).expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_supporters_stop_with_punctuation_is_confirmed_on_that_number(
    hotline: Hotline, phones: Phones
) -> None:
    clinician, alice = _connected(hotline, phones)
    alice.texts("Stop.")  # Twilio may take it for an ordinary text and answer nothing
    alice.expect_text("no more texts from this number", from_=POOL[0])
    clinician.expect_text("can't continue", from_=HOTLINE)
    phones.assert_no_unexpected()


def _offered_then_stopped(hotline: Hotline, phones: Phones) -> tuple[Phone, Phone]:
    """Alice, alone on call, is offered a clinician's request on the first pool number and
    texts STOP to it: the offer goes on, to nobody, and the clinician hears nobody is free."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("STOP", to=POOL[0])  # passes the offer on: nobody else, so the fallback
    clinician.expect_text("No peer supporter is free")
    return clinician, alice


def test_a_text_on_a_number_she_stopped_is_not_told_to_accept_what_waits_there(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice texts STOP to the offer's number (meaning PASS), then "sorry, meant pass" there,
    the request still waiting with nobody. She was reminded, from another pool number, to
    "Reply ACCEPT to take this peer support request"; her ACCEPT there was told the request
    "is no longer open", and one on the stopped number that it cannot come to her. Now she is
    told that it cannot come to her on that number after her STOP, and that START brings its
    texts back (her ACCEPT there then takes it)."""
    clinician, alice = _offered_then_stopped(hotline, phones)
    alice.texts("sorry, meant pass", to=POOL[0])
    told = alice.expect_text(from_=POOL[1])
    assert "ACCEPT" not in told.body, told.body
    assert POOL[0] in told.body and "STOP" in told.body and "START" in told.body, told.body
    alice.texts("START", to=POOL[0])
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("hello", from_=POOL[0])
    clinician.expect_text("joined")
    phones.assert_no_unexpected()  # nothing refused by Twilio either


@AFTER_HER_STOP
def test_a_late_accept_on_a_number_the_supporter_stopped_does_not_take_the_request(
    hotline: Hotline, phones: Phones, stopped: str, to: str
) -> None:
    """After STOP on a pool number Twilio delivers nothing there: the request must not become
    a conversation that number would carry (the clinician would be talking to nobody). She is
    told why, where she can read it: she was told "no longer open" from the number she had
    stopped, which Twilio refuses (21610), so she heard nothing. Now it comes from the number
    she texted, or, that being the stopped one, from another pool number; from none once she
    has stopped them all."""
    _, alice = _offered_then_stopped(hotline, phones)
    if stopped == "every number":
        for number in POOL[1:]:
            alice.texts("STOP", to=number)  # Twilio answers it; the line says nothing
    alice.texts("ACCEPT", to=to)
    if stopped == "its number":
        told = alice.expect_text("you texted STOP to", from_=POOL[1] if to == POOL[0] else to)
        assert POOL[0] in told.body and "START" in told.body
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.QUEUED
    phones.assert_no_unexpected()


def test_a_request_nobody_takes_in_two_days_closes_and_its_held_texts_are_deleted(
    hotline: Hotline, phones: Phones
) -> None:
    clinician, alice = _nobody_took_it(hotline, phones)
    hotline.clock.advance(hours=47)
    hotline.sweep()
    alice.expect_text(OFFER)  # asked once more; she lets it lapse again
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingText)) == 1
    hotline.clock.advance(hours=1, seconds=1)
    hotline.sweep()
    told = clinician.expect_text("closed", from_=HOTLINE)
    assert hotline.services.settings.crisis_text in told.body
    with hotline.session() as session:
        conv = session.scalars(select(Conversation)).one()
        assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "unanswered")
        assert session.scalar(select(func.count()).select_from(PendingText)) == 0
    clinician.texts("trying again")  # a fresh request
    clinician.expect_text("confidential")
    phones.phone(ALICE).expect_text(OFFER)
    phones.assert_no_unexpected()


def test_a_text_arriving_while_the_sweeper_closes_the_request_keeps_it_open(
    hotline: Hotline, phones: Phones
) -> None:
    """The sweeper has read the request as idle for two days; the clinician's text commits
    before it closes it. The request must stay open, the text held, nothing said of closing."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    _nobody_took_it(hotline, phones)
    hotline.clock.advance(hours=48, seconds=1)
    texted = [False]

    def a_text_commits_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        idle_query = (
            statement.startswith("SELECT conversations.id") and "last_activity_at <=" in statement
        )
        if idle_query and not texted[0]:
            texted[0] = True
            with engine.begin() as other:  # another connection: the clinician's webhook
                other.execute(update(Conversation).values(last_activity_at=hotline.clock.now))

    event.listen(engine, "after_cursor_execute", a_text_commits_meanwhile)
    try:
        hotline.sweep()
    finally:
        event.remove(engine, "after_cursor_execute", a_text_commits_meanwhile)
    assert texted == [True]
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.QUEUED
        assert session.scalar(select(func.count()).select_from(PendingText)) == 1
    phones.phone(ALICE).expect_text(OFFER)  # still waiting: Alice is asked once more
    phones.assert_no_unexpected()


def test_a_text_racing_the_peers_accept_reaches_the_peer(hotline: Hotline, phones: Phones) -> None:
    """The clinician's webhook has read the request as waiting when Alice's ACCEPT starts. The
    new text must reach her (relayed, or held and relayed by the accept), without a deadlock
    between the two (the clinician's row and the conversation's, taken in one order)."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[0])
    hotline.clock.advance(seconds=30)  # so the text updates the clinician's last contact
    accepted: list[str] = []
    answer: list[threading.Thread] = []
    failures: list[str] = []

    def alice_accepts_meanwhile(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        reading = "FROM conversations" in statement and "conversations.clinician_id =" in statement
        if reading and not answer and threading.current_thread() is threading.main_thread():
            answer.append(
                threading.Thread(
                    target=lambda: accepted.append(
                        hotline.sms(ALICE, POOL[0], "ACCEPT").get_data(as_text=True)
                    )
                )
            )
            answer[0].start()
            time.sleep(1.0)  # her ACCEPT takes what locks it can meanwhile

    def noted(context: Any) -> None:
        failures.append(type(context.original_exception).__name__)

    event.listen(engine, "after_cursor_execute", alice_accepts_meanwhile)
    event.listen(engine, "handle_error", noted)
    try:
        clinician.texts("are you there?")
        answer[0].join(20)
    finally:
        event.remove(engine, "after_cursor_execute", alice_accepts_meanwhile)
        event.remove(engine, "handle_error", noted)
    assert failures == []  # no deadlock detected and retried
    assert "You're connected" in accepted[0] and "hello" in accepted[0]
    relayed_by_the_text = [m.body for m in alice.inbox]
    assert "are you there?" in accepted[0] or "are you there?" in relayed_by_the_text
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingText)) == 0


def test_two_texts_at_once_from_a_returning_clinician_open_one_request(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio posts two quick texts at once; both look for an open request before either has
    written anything. One request opens, offered once, and holds both texts."""
    crowd = Crowd(hotline)
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.talking(CLINICIANS[0], ALICE)
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    barrier, looked = threading.Barrier(2), set()

    def after_the_first_look(statement: str, _failed: bool) -> None:
        post = threading.current_thread().name
        if (
            post not in looked
            and statement.startswith("SELECT conversations.")
            and ("conversations.clinician_id" in statement)
        ):  # each post's look for the clinician's open request, side by side
            looked.add(post)
            barrier.wait(timeout=10)

    crowd.hooks.update({"post-0": after_the_first_look, "post-1": after_the_first_look})
    answers = crowd.together(
        [
            Post(CLINICIANS[0], HOTLINE, "hi, me again", sid="SM" + "7" * 32),
            Post(CLINICIANS[0], HOTLINE, "it happened again tonight", sid="SM" + "8" * 32),
        ]
    )
    assert [a.status for a in answers] == [200, 200]
    assert looked == {"post-0", "post-1"} and not barrier.broken  # both looked, then wrote
    greetings = [body for a in answers for _to, _from, body in a.texts if "confidential" in body]
    assert len(greetings) == 1  # greeted once
    with hotline.session() as session:
        waiting = session.scalars(
            select(Conversation.id).where(Conversation.state == ConversationState.QUEUED)
        ).all()
        offers = session.scalars(select(Offer.id).where(Offer.state == OfferState.PENDING)).all()
        held = session.scalar(select(func.count()).select_from(PendingText))
    assert len(waiting) == 1 and len(offers) == 1 and held == 2


def test_a_text_while_the_sweeper_closes_its_request_and_offers_others_does_not_deadlock(
    hotline: Hotline, phones: Phones
) -> None:
    """The sweeper closes one idle request and offers the programme's others (the programme
    lock); a text to the closing request comes meanwhile. Both must finish, neither retried."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    first, second = phones.phone(CLINICIANS[0]), phones.phone(CLINICIANS[1])
    first.texts("hello")  # nobody on call: waiting
    first.expect_text("No peer is free")
    hotline.clock.advance(hours=47)
    second.texts("hello")  # waiting too, not idle yet
    second.expect_text("No peer is free")
    hotline.clock.advance(hours=1, seconds=1)
    texting: list[threading.Thread] = []
    failures: list[str] = []

    def the_clinician_writes_meanwhile(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        closing = statement.startswith("UPDATE conversations SET last_activity_at=")
        if closing and not texting and threading.current_thread() is threading.main_thread():
            texting.append(threading.Thread(target=lambda: first.texts("still there?")))
            texting[0].start()
            time.sleep(1.0)

    def noted(context: Any) -> None:
        failures.append(type(context.original_exception).__name__)

    event.listen(engine, "after_cursor_execute", the_clinician_writes_meanwhile)
    event.listen(engine, "handle_error", noted)
    try:
        hotline.sweep()
        texting[0].join(20)
    finally:
        event.remove(engine, "after_cursor_execute", the_clinician_writes_meanwhile)
        event.remove(engine, "handle_error", noted)
    assert failures == []
    told = {first.expect_text().body[:40] for _ in range(2)}  # in either order:
    assert any("closed" in t or "Sorry" in t for t in told)  # the sweep closed it first...
    assert any("You've reached" in t for t in told)  # ...so the text started a new request
    phones.assert_no_unexpected()


def test_a_supporter_being_supported_answers_their_own_peer_on_the_hotline(
    hotline: Hotline, phones: Phones
) -> None:
    """Supporters are clinicians too. Alice, supported by Bob, texts the hotline: her YES, NO,
    DONE and HELP are for Bob or the line, not supporter commands."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    alice, bob = phones.phone(ALICE), phones.phone(BOB)
    alice.texts("I'm struggling myself after today", to=HOTLINE)
    alice.expect_text("confidential", from_=HOTLINE)
    bob.expect_text(OFFER)
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("struggling")
    alice.expect_text("joined", from_=HOTLINE)
    bob.texts("Would it help to talk about the patient?")
    alice.expect_text("patient", from_=HOTLINE)
    for answer in ("No", "Yes", "Done"):
        alice.texts(answer, to=HOTLINE)
        assert bob.expect_text().body == answer
    alice.texts("HELP", to=HOTLINE)
    assert hotline.services.settings.crisis_text in alice.expect_text(from_=HOTLINE).body
    assert bob.expect_text().body == "HELP"  # her peer reads it too
    alice.texts("BREAK 2h", to=HOTLINE)  # no clinician means that: still her command
    alice.expect_text("break")
    phones.assert_no_unexpected()


def test_an_answer_to_an_offer_sent_to_the_hotline_number_reaches_the_offer(
    hotline: Hotline, phones: Phones
) -> None:
    """A supporter replies to the line's saved contact instead of the pool number."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    first, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    first.texts("hello")
    first.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ == POOL[0]
    alice.texts("ACCEPT", to=HOTLINE)
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("hello", from_=POOL[0])
    first.expect_text("joined")

    second, third = phones.phone(CLINICIANS[1]), phones.phone(CLINICIANS[2])
    for clinician in (second, third):
        clinician.texts("hi")
        clinician.expect_text("confidential")
        alice.expect_text(OFFER)
    alice.texts("accept", to=HOTLINE)  # two waiting: which one is not guessed
    alice.expect_text("reply on the number each one came from", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_done_or_resources_sent_to_the_hotline_number_reach_the_peers_one_conversation(
    hotline: Hotline, phones: Phones
) -> None:
    """Not "this conversation has ended" while it goes on: with one conversation open the
    command is for it; with two, the peer is asked to answer on the conversation's number."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    first, alice = phones.talking(CLINICIANS[0], ALICE)
    alice.texts("RESOURCES", to=HOTLINE)
    alice.expect_text("Resources sent", from_=HOTLINE)
    first.expect_text("Employee Assistance Program", from_=HOTLINE)
    second = phones.phone(CLINICIANS[1])
    second.texts("hi")
    second.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[1])
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("You're connected", from_=POOL[1])
    alice.expect_text("hi", from_=POOL[1])
    second.expect_text("joined")
    alice.texts("DONE", to=HOTLINE)  # two open: which one is not guessed
    alice.expect_text("reply on the number of the one you mean", from_=HOTLINE)
    alice.texts("DONE", to=POOL[1])
    alice.expect_text("Conversation closed", from_=POOL[1])
    second.expect_text("Thank you for reaching out")
    alice.texts("DONE", to=HOTLINE)  # one left
    alice.expect_text("Conversation closed", from_=HOTLINE)
    first.expect_text("Thank you for reaching out")
    with hotline.session() as session:
        states = session.scalars(select(Conversation.state)).all()
    assert set(states) == {ConversationState.ENDED}
    phones.assert_no_unexpected()


def test_a_supporter_taken_off_the_roster_cannot_accept_an_offer_already_sent(
    hotline: Hotline, phones: Phones
) -> None:
    alice_id = hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hello")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    with transaction(hotline.services.sessions) as session:
        session.get_one(Supporter, alice_id).active = False  # she has left the programme
    hotline.add_supporter("Bob", BOB)
    alice.texts("ACCEPT")
    alice.expect_text("no longer open")
    phones.phone(BOB).expect_text(OFFER)  # passed on at once
    phones.assert_no_unexpected()


def test_a_supporter_deactivated_mid_conversation_is_not_promised_requests(
    hotline: Hotline, phones: Phones
) -> None:
    """The coordinator takes Alice off the roster while she talks with a clinician: she
    finishes that conversation, but BACK told her requests would come on her next shift."""
    alice_id = hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIANS[0], ALICE)
    with transaction(hotline.services.sessions) as session:
        supporter = session.get_one(Supporter, alice_id)
        roster.deactivate(
            session, hotline.services.vault, supporter, "coordinator", hotline.clock.now
        )
    for word in ("BACK", "BREAK 1h"):
        alice.texts(word)
        told = alice.expect_text("off the roster", from_=POOL[0])
        assert "next shift" not in told.body and "Reply BACK" not in told.body
    alice.texts("take care")
    assert clinician.expect_text(from_=HOTLINE).body == "take care"
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    phones.assert_no_unexpected()


def test_a_supporter_opting_back_in_with_yes_gets_that_number_again(
    hotline: Hotline, phones: Phones
) -> None:
    """YES is one of Twilio's opt-in words: after STOP then YES on a pool number, Twilio
    delivers there again, so routing must not keep avoiding it."""
    hotline.add_supporter("Alice", ALICE)
    alice = phones.phone(ALICE)
    alice.texts("STOP", to=POOL[0])
    alice.texts("YES", to=POOL[0])
    alice.expect_text("no longer open")  # YES read as ACCEPT, with nothing offered there
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("hello")
    clinician.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ == POOL[0]
    phones.assert_no_unexpected()


@pytest.mark.parametrize("on_the_roster", [True, False], ids=["a supporter", "joins later"])
def test_a_start_to_the_old_hotline_number_lifts_the_stop_kept_for_it(
    hotline: Hotline, phones: Phones, on_the_roster: bool
) -> None:
    """Her STOP to the hotline number was kept; the programme was then renumbered, the old
    number kept in its pool, where it now carries offers. Her START to it (the number she
    saved) lifts Twilio's block, and so the line's: offers come from it again. Texted before
    she was on the roster, it was answered with the new number but left the line's block
    standing, and no offer reached her from the old number though Twilio would deliver it."""
    renumbered = "+15550100009"
    if on_the_roster:
        hotline.add_supporter("Cleo", CLINICIANS[0])
    cleo = phones.phone(CLINICIANS[0])
    cleo.texts("STOP")  # Twilio itself answers the opt-out word
    _set_pool(hotline, (HOTLINE,), number=renumbered)
    cleo.texts("START", to=HOTLINE)  # Twilio itself answers the opt-in word
    if not on_the_roster:  # anyone else texting the old number: told the new one, as ever
        cleo.expect_text(f"For peer support, text {renumbered}.", from_=HOTLINE)
        hotline.add_supporter("Cleo", CLINICIANS[0])
    phones.assert_no_unexpected()
    clinician = phones.phone(CLINICIANS[1])
    clinician.texts("hello", to=renumbered)
    clinician.expect_text("confidential", from_=renumbered)
    cleo.expect_text(OFFER, from_=HOTLINE)  # was: nothing, the request waiting for nobody
    phones.assert_no_unexpected()


def test_a_supporter_s_yes_with_punctuation_after_stop_leaves_that_number_avoided(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio lifts its block on YES alone: "Yes!" after STOP on a pool number is an ordinary
    text to it, and it goes on refusing texts there, so routing must keep offering on another
    number (it offered on the blocked one, which Twilio refused, and the clinician waited)."""
    hotline.add_supporter("Alice", ALICE)
    alice = phones.phone(ALICE)
    alice.texts("STOP", to=POOL[0])
    alice.texts("Yes!", to=POOL[0])
    # Read as ACCEPT, with nothing offered there: she is told her STOP still stands, from
    # another number (it came from that one, which Twilio refuses: she heard nothing).
    assert POOL[0] in alice.expect_text("you texted STOP to", from_=POOL[1]).body
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("hello")
    clinician.expect_text("confidential")
    assert alice.expect_text(OFFER).from_ != POOL[0]
    phones.assert_no_unexpected()


def test_a_clinician_s_start_with_punctuation_after_stop_leaves_the_opt_out_standing(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio takes no "Start!" for an opt-in and still blocks the line's texts to the
    clinician: it is an ordinary text, and the peer who takes it is told to call (it was read
    as START, the line's record of the STOP was lifted, and a peer texted into the block)."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("STOP")
    clinician.texts("Start!")
    clinician.expect_nothing()  # the greeting, which Twilio drops (the fake delivered it)
    phones.expect_refused("confidential", to=CLINICIANS[0])
    alice.expect_text(OFFER)
    alice.texts("ACCEPT")
    alice.expect_text("stopped texts from this line")
    alice.expect_text("Start!")
    phones.assert_no_unexpected()


def test_discipline_is_preferred_and_falls_back_to_anyone(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE, discipline="physician")
    hotline.add_supporter("Bob", BOB, discipline="nurse")
    nurse = phones.phone(CLINICIANS[0])
    nurse.texts("NURSE")
    nurse.expect_text("confidential")
    assert "nurse" in phones.phone(BOB).expect_text(OFFER).body
    pharmacist = phones.phone(CLINICIANS[1])
    pharmacist.texts("pharmacist")
    pharmacist.expect_text("confidential")
    phones.phone(ALICE).expect_text(OFFER)  # nobody of that field: anyone on call
    phones.assert_no_unexpected()


def test_a_field_asked_for_after_the_greeting_reaches_a_peer_of_that_field(
    hotline: Hotline, phones: Phones
) -> None:
    """The greeting invites NURSE, DOCTOR or PHARMACIST, but the first offer goes out with it:
    a reply asking for a nurse moves the request to a nurse free now."""
    hotline.add_supporter("Alice", ALICE, discipline="physician")
    hotline.add_supporter("Bob", BOB, discipline="nurse")
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("hi")
    assert "Reply NURSE" in clinician.expect_text("confidential").body
    alice.expect_text(OFFER)
    clinician.texts("nurse")
    clinician.expect_text("look for a nurse peer first")
    alice.expect_text("no longer open")
    assert "asked for a nurse peer" in bob.expect_text(OFFER).body
    alice.texts("ACCEPT")  # too late: it is the nurse's
    alice.expect_text("no longer open")
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("hi")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_resources_break_back_and_help(hotline: Hotline, phones: Phones) -> None:
    clinician, alice = _connected(hotline, phones)
    alice.texts("RESOURCES")
    alice.expect_text("Resources sent")
    clinician.expect_text("Employee Assistance Program", from_=HOTLINE)
    alice.texts("help")
    assert "BREAK" in alice.expect_text("ACCEPT").body
    clinician.texts("HELP")
    assert "988" in clinician.expect_text("confidential", from_=HOTLINE).body
    assert alice.expect_text("HELP").from_ == POOL[0]  # maybe meant for her: she reads it too
    # Alice is on the only pool number... on a break, Bob gets the next request.
    hotline.add_supporter("Bob", BOB)
    alice.texts("BREAK 2h")
    alice.expect_text("On a break until")
    phones.phone(CLINICIANS[1]).texts("hello")
    phones.phone(CLINICIANS[1]).expect_text("confidential")
    phones.phone(BOB).expect_text(OFFER)
    alice.texts("BACK")
    alice.expect_text("Welcome back")
    phones.assert_no_unexpected()


@pytest.mark.parametrize(
    ("typed", "until"),
    [("Break 1h 30m", "Mon 4:30 PM"), ("break 1h30", "Mon 4:30 PM"), ("BREAK 45 minutes", "3:45")],
)
def test_a_break_typed_with_hours_and_minutes_is_a_break_not_a_text_to_the_clinician(
    hotline: Hotline, phones: Phones, typed: str, until: str
) -> None:
    """Alice, talking with a clinician, types a break as people write one: "1h 30m", "45
    minutes". The line did not read it, so it went to the clinician as a text from their peer,
    and Alice had no break. It is her break, and the clinician gets nothing."""
    clinician, alice = _connected(hotline, phones)
    alice.texts(typed)
    assert until in alice.expect_text("On a break until", from_=POOL[0]).body
    phones.phone(CLINICIANS[1]).texts("hello")  # a new request: Alice is on her break
    phones.phone(CLINICIANS[1]).expect_text("No peer is free right now")
    clinician.expect_nothing()
    phones.assert_no_unexpected()


def test_a_break_over_the_night_clocks_go_back_says_which_reading_it_ends_at(
    hotline: Hotline, phones: Phones
) -> None:
    """New York, 1 November 2026: at 1:10 AM (the first time), Alice takes an hour's break. It
    ends at 1:10 AM the second time; "until Sun 1:10 AM" read as a break already over."""
    from hotline.db import transaction
    from hotline.models import Programme

    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).timezone = "America/New_York"
    hotline.clock.now = datetime(2026, 11, 1, 5, 10, tzinfo=UTC)  # 01:10 EDT
    hotline.add_supporter("Alice", ALICE)
    alice = phones.phone(ALICE)
    alice.texts("BREAK 1h")
    assert "On a break until Sun 1:10 AM EST:" in alice.expect_text("On a break until").body
    phones.assert_no_unexpected()


def test_a_break_taken_with_a_request_waiting_passes_it_on_at_once(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("hi")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    alice.texts("BREAK 1h")  # between patients: her answer to the offer as much as a PASS
    alice.expect_text("Passed on the request waiting for you. On a break until")
    bob.expect_text(OFFER)  # now, not after the offer's time-out
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("hi")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_break_with_many_requests_waiting_passes_each_on_within_one_reply(
    hotline: Hotline, phones: Phones
) -> None:
    """Five requests wait for Alice, the only peer on call, when she types BREAK. Each passed on
    added its own "Passed on" and its clinician's "nobody is free" and the coordinator's alert
    to the webhook's reply: 16 messages, where Twilio sends at most 10 of one reply (warning
    14109), so some clinicians were never told. Alice gets one text saying how many went on;
    every request is passed on, and every clinician and alert is told: in the reply, or what
    does not fit a moment later through the API."""
    _set_pool(hotline, (*POOL, "+15550100004", "+15550100005"))
    _set_alert_phone(hotline, COORDINATOR)
    hotline.add_supporter("Alice", ALICE, max_conversations=5)
    alice, coordinator = phones.phone(ALICE), phones.phone(COORDINATOR)
    clinicians = [phones.phone(number) for number in CLINICIANS[:5]]
    for clinician in clinicians:
        clinician.texts("hi")
        clinician.expect_text("confidential")
        alice.expect_text(OFFER)
    reply = hotline.sms(ALICE, POOL[0], "BREAK 1h").get_data(as_text=True)
    assert len(ET.fromstring(reply).findall("Message")) <= 10  # noqa: S314
    phones.deliver_twiml(ALICE, POOL[0], reply)
    hotline.run_jobs()
    told = alice.expect_text("Passed on the 5 requests waiting for you", from_=POOL[0])
    assert "On a break until" in told.body
    for clinician in clinicians:
        clinician.expect_text("No peer supporter is free", from_=HOTLINE)
    for _ in clinicians:
        coordinator.expect_text("waiting with nobody available", from_=HOTLINE)
    with hotline.session() as session:
        assert set(session.scalars(select(Offer.state))) == {OfferState.PASSED}
    phones.assert_no_unexpected()


def test_back_with_many_requests_waiting_offers_each_within_one_reply(
    hotline: Hotline, phones: Phones
) -> None:
    """Eleven requests came in while Alice, the only peer on call, was on a break; each
    clinician was told nobody is free. Her BACK offered them all in the webhook's reply: 12
    messages, where Twilio sends at most 10 of one reply (warning 14109), so offers were never
    sent. The reply keeps within 10; what does not fit is offered a moment later by a job."""
    clinicians = [f"+155501091{i:02d}" for i in range(11)]
    _set_pool(hotline, tuple(f"+155501000{i:02d}" for i in range(1, 12)))
    hotline.add_supporter("Alice", ALICE, max_conversations=11)
    alice = phones.phone(ALICE)
    alice.texts("BREAK 1h", to=HOTLINE)
    alice.expect_text("On a break until")
    for number in clinicians:
        phones.phone(number).texts("hi")
        phones.phone(number).expect_text("No peer is free right now")
    reply = hotline.sms(ALICE, HOTLINE, "BACK").get_data(as_text=True)
    assert len(ET.fromstring(reply).findall("Message")) <= 10  # noqa: S314
    phones.deliver_twiml(ALICE, HOTLINE, reply)
    hotline.run_jobs()
    alice.expect_text("Welcome back")
    offered_on = {alice.expect_text(OFFER).from_ for _ in clinicians}
    assert len(offered_on) == len(clinicians)  # each request on a number of its own
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(Offer)) == len(clinicians)
    phones.assert_no_unexpected()


def test_back_off_call_is_not_promised_requests_until_the_next_shift(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)  # his shift ended an hour ago
    hotline.add_shift(bob, hotline.clock.now - timedelta(hours=9), hotline.clock.now)
    phones.phone(BOB).texts("BACK", to=HOTLINE)
    told = phones.phone(BOB).expect_text("Welcome back", from_=HOTLINE)
    assert "You're not on call now" in told.body
    phones.phone(ALICE).texts("back", to=HOTLINE)  # on call: requests do come to her
    phones.phone(ALICE).expect_text("New peer support requests will come to you")
    phones.assert_no_unexpected()


def test_yes_is_understood_as_accept(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hi")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    alice.texts("Yes")
    alice.expect_text("connected")
    alice.expect_text("hi")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_no_is_understood_as_pass(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIANS[0]), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("hi")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    alice.texts("No")
    alice.expect_text("Passed on")
    bob.expect_text(OFFER)
    phones.assert_no_unexpected()


def test_a_supporter_s_command_with_an_emoji_or_comma_after_it_is_still_a_command(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIANS[0]), phones.phone(ALICE)
    clinician.texts("hi")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    alice.texts("Accept 🙏")  # a phone's keyboard adds the emoji as readily as a full stop
    alice.expect_text("connected")
    alice.expect_text("hi")
    clinician.expect_text("joined")
    alice.texts("Done?")  # a question to the clinician, not the command
    assert clinician.expect_text(from_=HOTLINE).body == "Done?"
    alice.texts("Done, 👍🏽")  # was relayed: the conversation stayed open, with no closing text
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    phones.assert_no_unexpected()


def test_returning_clinician_is_offered_first_to_their_previous_supporter(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = _connected(hotline, phones, add_alice=False)
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    hotline.add_supporter("Bob", BOB)  # Bob was never offered anything: first in rotation
    clinician.texts("can we talk again?")
    clinician.expect_text("confidential")
    alice.expect_text(OFFER)
    phones.assert_no_unexpected()


def test_odd_inputs_each_get_a_defined_answer(hotline: Hotline, phones: Phones) -> None:
    clinician, alice = _connected(hotline, phones)
    long = "é" * 2000 + " end"
    clinician.texts(long)
    relayed = alice.expect_text()
    assert len(relayed.body) == 1600 and relayed.body.endswith("...")
    clinician.texts("שלום 🙏 مرحبا")
    assert alice.expect_text().body == "שלום 🙏 مرحبا"
    clinician.texts("", num_media=1)
    clinician.expect_text("media aren't passed on")
    clinician.texts("")  # an empty text relays nothing
    stranger = phones.phone("+15550107777")
    stranger.texts("who is this?", to=POOL[2])
    stranger.expect_text(f"text {HOTLINE}")
    phones.assert_no_unexpected()


def test_a_first_text_that_is_only_a_photo_with_nobody_free_promises_nothing_untrue(
    hotline: Hotline, phones: Phones
) -> None:
    """Nothing of a photo is kept for the peer: the clinician is asked for words, and told
    their request (not a message) waits."""
    clinician = phones.phone(CLINICIANS[0])
    clinician.texts("", num_media=1)
    first = clinician.expect_text("No peer is free", from_=HOTLINE)
    assert "your request is waiting" in first.body and "message is waiting" not in first.body
    clinician.expect_text("media aren't passed on")
    phones.assert_no_unexpected()


def test_supporter_who_needs_support_texts_the_hotline_like_anyone(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    alice = phones.phone(ALICE)
    alice.texts("I'm struggling myself after today", to=HOTLINE)
    alice.expect_text("confidential", from_=HOTLINE)
    phones.phone(BOB).expect_text(OFFER)  # never offered her own request
    alice.texts("BREAK 1h", to=HOTLINE)  # a supporter command still works on the hotline
    alice.expect_text("On a break")
    phones.assert_no_unexpected()


def test_held_texts_are_sealed_and_deleted_once_relayed(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.phone(CLINICIANS[0]).texts("canary-words-7731")
    with hotline.session() as session:
        (sealed,) = session.scalars(select(PendingText.sealed)).all()
        assert b"canary-words-7731" not in sealed
    phones.phone(ALICE).texts("ACCEPT", to=POOL[0])
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingText)) == 0
        assert session.scalar(select(func.count()).select_from(Offer)) == 1


def test_a_conversation_on_the_hotline_number_goes_on_when_db_upgrade_sets_the_pool(
    hotline: Hotline, phones: Phones
) -> None:
    """A first deploy on HOTLINE_NUMBER alone; HOTLINE_POOL_NUMBERS set at the next deploy
    replaces that pool (see programmes.ensure_programme), with a conversation live on it."""
    from dataclasses import replace

    from hotline.programmes import ensure_default_programme

    _set_pool(hotline, (HOTLINE,))
    unset = replace(hotline.services.settings, pool_numbers=(HOTLINE,))  # as the setting's default
    with transaction(hotline.services.sessions) as session:
        ensure_default_programme(session, unset)  # the first deploy's `hotline db upgrade`
    clinician, alice = _connected(hotline, phones)
    with transaction(hotline.services.sessions) as session:
        ensure_default_programme(session, hotline.services.settings)  # `hotline db upgrade`
    alice.texts("I'm still here", to=HOTLINE)
    assert clinician.expect_text("still here").from_ == HOTLINE
    clinician.texts("thank you")
    assert alice.expect_text("thank you").from_ == HOTLINE
    phones.phone(CLINICIANS[1]).texts("hello")
    phones.phone(CLINICIANS[1]).expect_text("confidential")
    assert alice.expect_text(OFFER).from_ == POOL[0]  # new offers: the pool the env gives
    phones.assert_no_unexpected()


def _second_offer_lapsed(hotline: Hotline, phones: Phones) -> tuple[Phone, Phone, Phone]:
    """Alice talks with the first clinician on the first pool number; the second's request is
    offered to her on the second and lapses, with nobody else on call: the three phones."""
    one, alice = phones.talking(CLINICIANS[0], ALICE, "from one")
    two = phones.phone(CLINICIANS[1])
    two.texts("from two")
    two.expect_text("confidential")
    alice.expect_text(OFFER, from_=POOL[1])
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    two.expect_text("No peer supporter is free")
    return one, alice, two


def _connected(hotline: Hotline, phones: Phones, add_alice: bool = True) -> tuple:  # type: ignore[type-arg]
    if add_alice:
        hotline.add_supporter("Alice", ALICE)
    return phones.talking(CLINICIANS[0], ALICE)


def _set_pool(hotline: Hotline, pool: tuple[str, ...], number: str | None = None) -> None:
    """`hotline programme add SLUG --pool POOL` (with ``number``, `--number NUMBER` too: a
    renumbered programme, whose old number must stay in the pool)."""
    from hotline.db import transaction
    from hotline.models import Programme
    from hotline.programmes import ensure_programme

    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        ensure_programme(
            session,
            slug=programme.slug,
            name=programme.name,
            hotline_number=number or programme.hotline_number,
            pool_numbers=pool,
        )


def _set_alert_phone(hotline: Hotline, phone: str) -> None:
    from hotline.db import transaction
    from hotline.models import Programme
    from hotline.people import set_alert_phone

    with transaction(hotline.services.sessions) as session:
        set_alert_phone(
            hotline.services.vault, session.get_one(Programme, hotline.programme_id), phone
        )


def test_the_alert_phone_answering_an_alert_is_not_a_request_and_support_makes_one(
    hotline: Hotline, phones: Phones
) -> None:
    """Alerts come from the hotline number, so a coordinator's "ok" lands there: it is answered,
    and no peer is offered it (nor, with nobody free, is the coordinator alerted about it)."""
    _set_alert_phone(hotline, COORDINATOR)
    hotline.add_supporter("Alice", ALICE)
    coordinator = phones.phone(COORDINATOR)
    coordinator.texts("ok thanks, on it")
    answer = coordinator.expect_text("no reply is needed", from_=HOTLINE)
    assert "SUPPORT" in answer.body
    phones.phone(ALICE).expect_nothing()
    coordinator.texts("help")  # keywords work as for anyone
    coordinator.expect_text("confidential")
    coordinator.texts("Support")  # their own request for support
    coordinator.expect_text("confidential", from_=HOTLINE)
    phones.phone(ALICE).expect_text(OFFER)
    phones.phone(ALICE).texts("ACCEPT")
    phones.phone(ALICE).expect_text("connected")
    phones.phone(ALICE).expect_text("Support")
    coordinator.expect_text("joined")
    coordinator.texts("thanks for picking up")  # in their conversation now: relayed
    phones.phone(ALICE).expect_text("thanks for picking up")
    phones.assert_no_unexpected()


@pytest.mark.parametrize("reply", ["Done 👍", "Yes 👍", "Yes", "No, 🙏", "Back", "OK 👍"])
def test_the_alert_phone_answering_an_alert_with_a_peer_s_word_is_not_a_request(
    hotline: Hotline, phones: Phones, reply: str
) -> None:
    """A coordinator answers the alert 'Done 👍' or 'Yes': a peer's word, not a clinician's,
    so it is an answer to the alert like "ok", not a request for support offered to a peer."""
    _set_alert_phone(hotline, COORDINATOR)
    hotline.add_supporter("Alice", ALICE)
    coordinator = phones.phone(COORDINATOR)
    coordinator.texts(reply)
    coordinator.expect_text("no reply is needed", from_=HOTLINE)
    phones.assert_no_unexpected()  # Alice is offered nothing


@pytest.mark.parametrize("stopped", ["that number", "every number"])
def test_a_supporter_s_break_help_or_back_to_a_number_she_stopped_is_answered_where_she_hears_it(
    hotline: Hotline, phones: Phones, stopped: str
) -> None:
    """Alice texted STOP to the first pool number, then writes BREAK, HELP or BACK there (the
    thread she had open). The answers came from that number, which Twilio refuses (21610): she
    never learnt whether her break began or ended. Now they come from another pool number she
    can hear; from none once she has stopped them all (Twilio would refuse each)."""
    hotline.add_supporter("Alice", ALICE)
    alice = phones.phone(ALICE)
    for number in POOL if stopped == "every number" else POOL[:1]:
        alice.texts("STOP", to=number)  # Twilio answers it; the line says nothing
    for word, answer in (("BREAK 30m", "On a break until"), ("HELP", "ACCEPT"), ("BACK", "")):
        alice.texts(word, to=POOL[0])
        if stopped == "that number":
            assert alice.expect_text(answer).from_ != POOL[0]
    phones.assert_no_unexpected()  # nothing refused by Twilio either
