"""Voice webhooks in the orders Twilio can deliver them when people act at the same moment:
a hang-up and a press of 1, two calls from one number, a text to a ringing pool number, a
dial action that comes late or never. A caller still on the line always hears a next step and
the crisis sentence; a promised call-back is kept."""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from hotline import programme_settings, retirement, ringing, roster, rota, routing, voiceline
from hotline.db import transaction
from hotline.models import (
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    Programme,
    Shift,
    Supporter,
)
from hotline.people import ALERT_CONTEXT
from hotline.speech import digit_by_digit
from tests.kit.databases import sent_behind_a_lock
from tests.kit.fake_twilio import AUTH_TOKEN
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline, retiring
from tests.kit.phones import AFTER_HER_STOP, Phone, Phones
from tests.kit.signing import signed_post

ALICE, BOB = "+15550108001", "+15550108002"
CLINICIAN, FIRST = "+15550109001", "+15550109002"
COORDINATOR = "+15550107777"
OFFER = "Reply ACCEPT to take it or PASS"


def sid(n: int) -> str:
    return f"CA{n:032x}"


def caller(call_sid: str, status: str = "in-progress") -> dict[str, str]:
    return {"CallSid": call_sid, "From": CLINICIAN, "To": HOTLINE, "CallStatus": status}


def leg(leg_sid: str, parent: str, to: str, pool: str) -> dict[str, str]:
    return {
        "CallSid": leg_sid,
        "ParentCallSid": parent,
        "From": pool,
        "To": to,
        "CallStatus": "in-progress",
        "Direction": "outbound-dial",
    }


def doc(hotline: Hotline, path: str, **params: str) -> ET.Element:
    response = hotline.post(path, **params)
    assert response.status_code == 200, (path, response.status_code)
    return ET.fromstring(response.get_data(as_text=True))  # noqa: S314 - our own TwiML


def said(root: ET.Element) -> str:
    return " ".join((s.text or "").strip() for s in root.iter("Say"))


def start_call(hotline: Hotline, call_sid: str) -> tuple[str, int]:
    """Greeting, then the menu times out to /start: the number rung first and its ring id."""
    doc(hotline, "/twilio/voice", **caller(call_sid))
    dial = doc(hotline, "/twilio/voice/start", **caller(call_sid)).find("Dial")
    assert dial is not None
    ring = int(parse_qs(urlparse(dial.get("action", "")).query)["ring"][0])
    return (dial.findtext("Number") or "").strip(), ring


def dial_action(
    hotline: Hotline, call_sid: str, ring: int, dial_status: str, status: str = "in-progress"
) -> ET.Element:
    return doc(
        hotline,
        f"/twilio/voice/next?ring={ring}",
        **caller(call_sid, status),
        DialCallStatus=dial_status,
        DialBridged="false",
    )


def conversations(hotline: Hotline) -> list[Conversation]:
    with hotline.session() as session:
        return list(session.scalars(select(Conversation).order_by(Conversation.id)))


def with_coordinator(hotline: Hotline) -> None:
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.alert_phone_sealed = hotline.services.vault.seal(COORDINATOR, ALERT_CONTEXT)


def test_a_second_call_from_the_same_number_leaves_the_first_caller_ringing(
    hotline: Hotline, phones: Phones
) -> None:
    """A switchboard shows one number for many clinicians: a second call from it must not end
    the first caller's request while Alice's phone rings for them."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    first, second = sid(0x201), sid(0x202)
    assert start_call(hotline, first)[0] == ALICE
    number, _ = start_call(hotline, second)
    assert number == BOB
    _, ring = start_call(hotline, first)  # a repeated /start replays the same dial
    screen = doc(
        hotline, f"/twilio/voice/screen?ring={ring}", **leg(sid(0x203), first, ALICE, POOL[0])
    )
    assert screen.find("Gather") is not None  # Alice can still take her caller
    assert [c.state for c in conversations(hotline)] == [ConversationState.QUEUED] * 2
    phones.assert_no_unexpected()


def test_a_text_to_a_ringing_pool_number_does_not_answer_the_call(
    hotline: Hotline, phones: Phones
) -> None:
    """The ring is an offer, but a live caller waits for a voice: ACCEPT or PASS by text
    changes nothing, and the supporter is told to answer the phone."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call = sid(0x301)
    number, ring = start_call(hotline, call)
    assert number == ALICE
    alice = phones.phone(ALICE)
    for word in ("ACCEPT", "PASS", "STOP"):
        alice.texts(word, to=POOL[0])
        if word != "STOP":
            alice.expect_text("answer it and press 1", from_=POOL[0])
    with hotline.session() as session:
        assert session.scalars(select(Offer.state)).all() == [OfferState.PENDING]
    screen = doc(
        hotline, f"/twilio/voice/screen?ring={ring}", **leg(sid(0x302), call, ALICE, POOL[0])
    )
    assert screen.find("Gather") is not None  # her phone still reaches her caller
    phones.assert_no_unexpected()  # nothing to the clinician on the line, no offer to Bob


def replaced_by_a_call(
    hotline: Hotline, phones: Phones, call: str, *, alice_added: bool = False
) -> None:
    """The clinician texts and Alice is offered it; before she answers, they call, and Bob's
    phone rings (the call's request replaces the text request, and withdraws her offer).
    ``alice_added``: the test added her already (with fields of its own)."""
    if not alice_added:
        hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician = phones.phone(CLINICIAN)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    phones.phone(ALICE).expect_text(OFFER, from_=POOL[0])
    assert start_call(hotline, call)[0] == BOB


def at_the_menu(hotline: Hotline, phones: Phones, call: str) -> Callable[[], str]:
    """The clinician texts and Alice is offered it; they then call, and hear the greeting and
    menu (Bob is on call too). What ends the menu: the call's next step, which replaces the
    text request with the call's and withdraws her offer (its TwiML)."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician = phones.phone(CLINICIAN)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    phones.phone(ALICE).expect_text(OFFER, from_=POOL[0])
    doc(hotline, "/twilio/voice", **caller(call))  # the greeting and menu

    def menu_over() -> str:
        client = hotline.app.test_client()
        path = "/twilio/voice/start"
        return signed_post(client, PUBLIC_URL, path, caller(call), AUTH_TOKEN).get_data(
            as_text=True
        )

    return menu_over


def bob_takes_it(phones: Phones) -> None:
    """The text request is offered to Bob, who takes it: the clinician's text reaches him and
    they are told a peer has joined."""
    bob = phones.phone(BOB)
    bob.expect_text(OFFER)
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("I had a bad night")
    phones.phone(CLINICIAN).expect_text("joined", from_=HOTLINE)


def talking_and_offered_another(hotline: Hotline, phones: Phones, call: str) -> int:
    """Alice (room for two conversations) talks with one clinician and is offered a second's
    text request on the second pool number; that clinician calls, and Bob's phone rings (the
    call replaces the request and withdraws her offer). Alice's id."""
    alice_id = hotline.add_supporter("Alice", ALICE, max_conversations=2)
    first, clinician, alice = phones.phone(FIRST), phones.phone(CLINICIAN), phones.phone(ALICE)
    first.texts("hi")
    first.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("ACCEPT")
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("hi", from_=POOL[0])
    first.expect_text("joined", from_=HOTLINE)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[1])
    hotline.add_supporter("Bob", BOB)
    assert start_call(hotline, call)[0] == BOB
    return alice_id


def her_limit_lowered_to_one(hotline: Hotline, alice_id: int) -> None:
    """Her coordinator lowers Alice's limit to one conversation (the one she is in)."""
    with transaction(hotline.services.sessions) as session:
        supporter = session.get_one(Supporter, alice_id)
        changes = {"max_conversations": 1}
        vault, now = hotline.services.vault, hotline.clock.now
        roster.edit(session, vault, supporter, changes, "coordinator", now)


@pytest.mark.parametrize("woken_by", ["its job", "the sweeper", "their next text"])
def test_an_accept_while_the_call_that_replaced_the_request_rings_takes_it_at_the_hang_up(
    hotline: Hotline, phones: Phones, woken_by: str
) -> None:
    """Alice answers ACCEPT to the text request while the clinician's call, which replaced it,
    rings Bob. She was told it was no longer open, and once the caller hung up, it waited again
    with her offer standing, as if she had never answered. Now she is told it is theirs who
    answers the call, and hers if they hang up first: they do, and she is connected (by the
    sweeper, if Redis lost the wake-up, or by the clinician's next text, if it comes first)
    without being asked again."""
    call = sid(0x701)
    replaced_by_a_call(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)

    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")

    if woken_by == "the sweeper":
        hotline.redis.flushdb()
        hotline.clock.advance(minutes=1)
        hotline.sweep()
    elif woken_by == "their next text":  # ten minutes on: not told a peer is still sought
        hotline.clock.advance(minutes=11)
        clinician.texts("are you there?")
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    if woken_by == "their next text":
        alice.expect_text("are you there?", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),  # hers
        ("voice", ConversationState.ENDED),  # the call, withdrawn by the hang-up
    ]
    clinician.texts("thank you")
    alice.expect_text("thank you", from_=POOL[0])
    phones.assert_no_unexpected()


def test_an_accept_while_the_call_that_replaced_the_request_rings_gives_way_to_a_pick_up(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, but Bob takes the call: it is his, with what the clinician texted, and
    Alice's ACCEPT takes nothing: she is told a peer took their call, once."""
    call, ring_leg = sid(0x711), sid(0x712)
    replaced_by_a_call(hotline, phones, call)
    alice, bob = phones.phone(ALICE), phones.phone(BOB)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    _, ring = start_call(hotline, call)  # a repeated /start replays the same dial
    bob_leg = leg(ring_leg, call, BOB, POOL[0])
    doc(hotline, f"/twilio/voice/screen?ring={ring}", **bob_leg)
    assert list(doc(hotline, f"/twilio/voice/pickup?ring={ring}", **bob_leg, Digits="1")) == []
    doc(
        hotline,
        f"/twilio/voice/next?ring={ring}",
        **caller(call, "completed"),
        DialCallStatus="completed",
        DialBridged="true",
        DialCallSid=ring_leg,
        DialCallDuration="300",
    )
    hotline.run_jobs()
    alice.expect_text("A peer took their call", from_=POOL[0])
    bob.expect_text("I had a bad night")
    bob.expect_text("Thank you for taking that call")
    hotline.clock.advance(minutes=31)  # Alice's offer's time, and half an hour, are up
    hotline.sweep()
    hotline.run_jobs()
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ENDED),
        ("voice", ConversationState.ACTIVE),  # Bob's
    ]
    phones.assert_no_unexpected()


def test_a_pass_while_the_call_that_replaced_the_request_rings_still_passes_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice answers PASS while the clinician's call, which replaced the request, rings: she
    was told nothing was open, and after the hang-up the request waited on her offer again.
    Now her PASS stands: it goes on to Bob once the caller has hung up."""
    call = sid(0x721)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("PASS")
    alice.expect_text("Passed on", from_=POOL[0])
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    bob_takes_it(phones)
    phones.assert_no_unexpected()


def test_a_peer_who_claimed_the_request_as_the_call_rings_can_still_answer_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice answers ACCEPT while the clinician's call, which replaced the request, rings
    Bob (it is hers if they hang up), then, the phones still ringing, ACCEPT again and then
    PASS. Both were told the request was no longer open, and her PASS was not heard: at the
    hang-up she was connected all the same. Now a second ACCEPT hears the same answer as the
    first, and her PASS stands: the request goes on to Bob once the caller has hung up."""
    call = sid(0x731)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    alice.texts("PASS")
    alice.expect_text("Passed on", from_=POOL[0])
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    bob_takes_it(phones)
    phones.assert_no_unexpected()


def claimed_and_hung_up(
    hotline: Hotline, phones: Phones, call: str, *, job_first: bool
) -> tuple[Phone, Phone]:
    """Alice claims the request as the call that replaced it rings, and the caller hangs up
    before a peer answers; with ``job_first``, the job woken then gives her the request. The
    clinician's phone and hers."""
    replaced_by_a_call(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    if job_first:
        hotline.run_jobs()
        alice.expect_text("You're connected", from_=POOL[0])
        alice.expect_text("I had a bad night", from_=POOL[0])
        clinician.expect_text("joined", from_=HOTLINE)
    return clinician, alice


@pytest.mark.parametrize(
    ("first", "to"),
    [
        pytest.param("her ACCEPT", POOL[0], id="her ACCEPT"),
        pytest.param("her ACCEPT", HOTLINE, id="her ACCEPT to the hotline number"),
        pytest.param("the job", POOL[0], id="the job"),
    ],
)
def test_an_accept_again_after_the_hang_up_is_answered_as_the_claim_is_taken(
    hotline: Hotline, phones: Phones, first: str, to: str
) -> None:
    """Alice claims the request (ACCEPT) as the clinician's call rings Bob; the caller hangs
    up, and before the job that gives her the request runs, she answers ACCEPT again on its
    number (or the hotline's). She was told the request was no longer open, and "You're
    connected" followed a moment later. Now her ACCEPT takes it at once, and the job then
    finds nothing to do; or, the job first, she is told she is connected already. Either way
    the clinician is told once that a peer joined, and what they texted reaches her once."""
    call = sid(0x742)
    clinician, alice = claimed_and_hung_up(hotline, phones, call, job_first=first == "the job")
    alice.texts("ACCEPT", to=to)
    if first == "the job":
        alice.expect_text("already connected", from_=POOL[0])
    else:
        alice.expect_text("You're connected", from_=POOL[0])  # was: no longer open
        clinician.expect_text("joined", from_=HOTLINE)
    hotline.run_jobs()
    if first == "her ACCEPT":
        alice.expect_text("I had a bad night", from_=POOL[0])  # through the API, as by the job
    phones.assert_no_unexpected()
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),
        ("voice", ConversationState.ENDED),
    ]
    clinician.texts("thank you")
    alice.expect_text("thank you", from_=POOL[0])
    phones.assert_no_unexpected()


@pytest.mark.parametrize("first", ["her PASS", "the job"])
def test_a_pass_after_the_hang_up_is_heard_before_the_claim_is_taken(
    hotline: Hotline, phones: Phones, first: str
) -> None:
    """As above, but on second thoughts Alice answers PASS. She was told "Passed on", and
    then connected all the same. Now her PASS stands, as one while the call rang does: the
    request goes on to Bob. The job first, she is told she is connected already."""
    call = sid(0x744)
    _, alice = claimed_and_hung_up(hotline, phones, call, job_first=first == "the job")
    alice.texts("PASS", to=POOL[0])
    if first == "the job":
        alice.expect_text("already connected", from_=POOL[0])
    else:
        alice.expect_text("Passed on", from_=POOL[0])
        hotline.run_jobs()
        bob_takes_it(phones)  # was: Alice connected after all
    hotline.run_jobs()
    phones.assert_no_unexpected()


@pytest.mark.parametrize("first", ["her ACCEPT", "the job"])
def test_an_accept_again_and_the_job_at_once_connect_her_once(
    hotline: Hotline, phones: Phones, first: str
) -> None:
    """As above, but her ACCEPT and the job queue on the programme's lock together: whichever
    goes first gives her the request, and the other finds it hers. She is told once that she
    is connected, and the clinician once that a peer joined."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    call = sid(0x743)
    replaced_by_a_call(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    request = conversations(hotline)[0].id

    def accept() -> str:
        return hotline.sms(ALICE, POOL[0], "ACCEPT").get_data(as_text=True)

    def job() -> str:
        return str(ringing.offer_call_back(hotline.services, request))

    sends = {"her ACCEPT": (accept, "the ACCEPT"), "the job": (job, "the job")}
    then = "the job" if first == "her ACCEPT" else "her ACCEPT"
    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it, in turn
        ahead, said = sent_behind_a_lock(engine, *sends[first])
        behind, said_then = sent_behind_a_lock(engine, *sends[then], behind=1)
    ahead.join(20)
    behind.join(20)
    answered = said if first == "her ACCEPT" else said_then
    phones.sync()  # the job's texts, through the API, first
    phones.deliver_twiml(ALICE, POOL[0], answered[0])
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[0])
    if first == "the job":
        alice.expect_text("already connected", from_=POOL[0])  # was: no longer open
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),
        ("voice", ConversationState.ENDED),
    ]
    phones.assert_no_unexpected()


def test_an_accept_as_the_caller_hangs_up_takes_the_request_waiting_again(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice answers ACCEPT to the text request just as the clinician, whose call replaced
    it, hangs up while Bob's phone rings. Her text read her offer as withdrawn and queued on
    the programme's lock behind the hang-up, which reopened the request with her offer
    pending again; going on, it found no call ringing and no lapsed offer, and she was told
    the request was no longer open, while it waited for her answer. Now she is connected."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    call = sid(0x741)
    replaced_by_a_call(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)

    def hang_up() -> str:
        params = {**caller(call, "completed"), "CallDuration": "30"}
        client = hotline.app.test_client()
        return str(
            signed_post(client, PUBLIC_URL, "/twilio/status", params, AUTH_TOKEN).status_code
        )

    def accept() -> str:
        return hotline.sms(ALICE, POOL[0], "ACCEPT").get_data(as_text=True)

    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it, in turn
        status, hung_up = sent_behind_a_lock(engine, hang_up, "the hang-up")
        texted, answers = sent_behind_a_lock(engine, accept, "the ACCEPT", behind=1)
    status.join(20)
    texted.join(20)
    assert hung_up == ["204"]
    phones.deliver_twiml(ALICE, POOL[0], answers[0])
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[0])  # was: no longer open
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),
        ("voice", ConversationState.ENDED),
    ]
    phones.assert_no_unexpected()


@pytest.mark.parametrize("word", ["ACCEPT", "PASS"])
def test_an_answer_as_the_call_replaces_the_request_is_heard_for_the_hang_up(
    hotline: Hotline, phones: Phones, word: str
) -> None:
    """As above, the other way round: Alice's answer reads her offer as pending and queues
    behind the call's menu step, which replaces the request and withdraws it. She was told
    the request was no longer open, and when the caller hung up it waited on her offer again
    as if she had never answered. Now her answer is heard as one sent while the call rings:
    an ACCEPT takes the request at the hang-up, a PASS sends it on to Bob."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    call = sid(0x751)
    menu_over = at_the_menu(hotline, phones, call)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)

    def answer() -> str:
        return hotline.sms(ALICE, POOL[0], word).get_data(as_text=True)

    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it, in turn
        started, rung = sent_behind_a_lock(engine, menu_over, "the menu's step")
        texted, answers = sent_behind_a_lock(engine, answer, "the answer", behind=1)
    started.join(20)
    texted.join(20)
    assert BOB in rung[0]
    phones.deliver_twiml(ALICE, POOL[0], answers[0])
    told = "If they hang up before a peer answers" if word == "ACCEPT" else "Passed on"
    alice.expect_text(told, from_=POOL[0])  # was: no longer open
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    taker = alice if word == "ACCEPT" else bob
    if word == "PASS":
        bob.expect_text(OFFER)
        bob.texts("ACCEPT")
    taker.expect_text("connected", from_=POOL[0])
    taker.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def alice(session: Session) -> Supporter:
    return session.scalars(select(Supporter).where(Supporter.name == "Alice")).one()


def on_a_break(hotline: Hotline, phones: Phones) -> None:
    phones.phone(ALICE).texts("BREAK 2h", to=POOL[0])
    phones.phone(ALICE).expect_text("On a break until", from_=POOL[0])


def off_the_roster(hotline: Hotline, phones: Phones) -> None:
    with transaction(hotline.services.sessions) as session:
        vault, now = hotline.services.vault, hotline.clock.now
        roster.deactivate(session, vault, alice(session), "coordinator", now)


def stopped_that_number(hotline: Hotline, phones: Phones) -> None:
    phones.phone(ALICE).texts("STOP", to=POOL[0])  # Twilio answers it; the line says nothing


def off_call(hotline: Hotline, phones: Phones) -> None:
    with transaction(hotline.services.sessions) as session:
        shift = session.scalars(select(Shift).where(Shift.supporter_id == alice(session).id))
        rota.delete_shift(session, shift.one(), "coordinator", hotline.clock.now)


CANNOT_TAKE_IT = {
    "on a break": on_a_break,
    "off the roster": off_the_roster,
    "STOP to that number": stopped_that_number,
    "off call": off_call,
}


@pytest.mark.parametrize("meanwhile", CANNOT_TAKE_IT)
def test_a_hang_up_sends_the_request_on_when_its_peer_can_no_longer_be_offered_it(
    hotline: Hotline, phones: Phones, meanwhile: str
) -> None:
    """Alice is offered the text request; the clinician calls (her offer is withdrawn), and
    while Bob's phone rings she goes on a break, is taken off the roster, texts STOP to the
    offer's number or goes off call. When the caller hung up, her offer stood again all the
    same, and the request waited on someone who could not take it until the offer timed out.
    Now it goes on to Bob at once."""
    call = sid(0x761)
    replaced_by_a_call(hotline, phones, call)
    CANNOT_TAKE_IT[meanwhile](hotline, phones)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    bob_takes_it(phones)  # was: nothing until Alice's offer timed out
    phones.assert_no_unexpected()


def test_a_hang_up_sends_the_request_on_when_its_peer_is_at_her_limit_now(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice, talking with one clinician, is offered a second's text request on another
    number; that clinician calls, and while Bob's phone rings her coordinator lowers her limit
    to one conversation. Her offer stood again at the hang-up, one past her limit, which
    routing never offers her; now the request goes on to Bob at once."""
    call = sid(0x771)
    alice_id = talking_and_offered_another(hotline, phones, call)
    her_limit_lowered_to_one(hotline, alice_id)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    bob_takes_it(phones)  # was: nothing until Alice's offer timed out
    phones.assert_no_unexpected()


CLAIM_LAPSES = {
    "off the roster": off_the_roster,
    "STOP to that number": stopped_that_number,
}
LAPSED_CLAIM = "their request can't come to you now"


@pytest.mark.parametrize("meanwhile", CLAIM_LAPSES)
def test_a_claim_that_cannot_be_honoured_at_the_hang_up_tells_its_peer(
    hotline: Hotline, phones: Phones, meanwhile: str
) -> None:
    """Alice answers ACCEPT while the clinician's call, which replaced the request, rings Bob,
    and is told it is hers if they hang up first. Then she is taken off the roster. At the
    hang-up her claim lapsed without a word, and she waited to be connected; now she is told,
    from that number, that it goes on to the next peer. Not after her STOP to that number:
    Twilio would refuse the text (21610)."""
    call = sid(0x781)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    CLAIM_LAPSES[meanwhile](hotline, phones)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    if meanwhile != "STOP to that number":
        alice.expect_text(LAPSED_CLAIM, from_=POOL[0])  # was: nothing
    bob_takes_it(phones)
    phones.assert_no_unexpected()


def test_an_accept_again_after_the_hang_up_that_cannot_take_the_claim_tells_her_once(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice claims the request as the clinician's call rings Bob, and is taken off the
    roster; the caller hangs up, and she answers ACCEPT again before the job runs. She was
    told it was no longer open, and then, by the job, that it could not come to her. Now she
    is told that once, at her ACCEPT, and the request goes on to Bob."""
    call = sid(0x782)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    off_the_roster(hotline, phones)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text(LAPSED_CLAIM, from_=POOL[0])  # was: no longer open, then this
    hotline.run_jobs()
    bob_takes_it(phones)
    phones.assert_no_unexpected()


@pytest.mark.parametrize("stopped", ["its number", "every number"])
def test_an_accept_again_after_her_stop_to_the_claims_number_is_answered_where_she_hears_it(
    hotline: Hotline, phones: Phones, stopped: str
) -> None:
    """Alice claims the request as the clinician's call rings Bob, then texts STOP to its
    number; the caller hangs up, and she answers ACCEPT again there before the job runs. The
    request can no longer be hers, and she was told so from that number, which Twilio refuses
    after her STOP (21610): she heard nothing. Now she is told, and why, from another of the
    line's numbers; from none, once she has stopped them all (the roster shows that no offer
    can reach her). The request goes on to Bob either way."""
    call = sid(0x783)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    for number in POOL if stopped == "every number" else POOL[:1]:
        alice.texts("STOP", to=number)  # Twilio answers it; the line says nothing
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    alice.texts("ACCEPT", to=POOL[0])
    if stopped == "its number":
        told = alice.expect_text("you texted STOP to", from_=POOL[1])  # was: from POOL[0]
        assert POOL[0] in told.body and "next peer" in told.body
    hotline.run_jobs()
    bob_takes_it(phones)
    phones.assert_no_unexpected()


@AFTER_HER_STOP
def test_a_pass_after_her_stop_to_the_claims_number_is_answered_where_she_hears_it(
    hotline: Hotline, phones: Phones, stopped: str, to: str
) -> None:
    """Alice claims the request as the clinician's call rings Bob, then texts STOP to its
    number; the caller hangs up, and she answers PASS before the job runs. Her PASS stands,
    and she was told "Passed on" from the claim's number, which Twilio refuses after her STOP
    (21610): she heard nothing. Now she hears it, naming the number, from the one she texted,
    or, that being the stopped one, from another of the line's numbers; from none once she
    has stopped them all. The request goes on to Bob either way."""
    call = sid(0x785)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    for number in POOL if stopped == "every number" else POOL[:1]:
        alice.texts("STOP", to=number)  # Twilio answers it; the line says nothing
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    alice.texts("PASS", to=to)
    if stopped == "its number":
        told = alice.expect_text("Passed on", from_=POOL[1] if to == POOL[0] else to)
        assert POOL[0] in told.body  # was: from POOL[0], refused
    hotline.run_jobs()
    bob_takes_it(phones)
    phones.assert_no_unexpected()


def test_a_claim_keeps_its_number_for_the_hang_up(hotline: Hotline, phones: Phones) -> None:
    """Alice, with room for two conversations, claims the request as the clinician's call
    rings Bob; then another clinician texts. Their request was offered to her on the claim's
    number, and at the hang-up her claim lapsed, that number taken. Now it comes on another
    number, and at the hang-up the claimed request is hers on its own."""
    call = sid(0x7E3)
    hotline.add_supporter("Alice", ALICE, max_conversations=2)  # room for the other request
    replaced_by_a_call(hotline, phones, call, alice_added=True)
    clinician, alice, first = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(FIRST)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    first.texts("hi")
    first.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[1])  # was: on POOL[0], her claim's
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[0])  # was: it can't come to you now
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_claims_number_stays_in_the_pool_until_the_call_ends(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice, talking with one clinician, claims a second's request (ACCEPT) on the second
    pool number as their call rings Bob; her coordinator then takes that number out of the
    pool in Settings. That went through, and at the hang-up the request was hers on a number
    the line no longer owns: her texts there were ignored, and the clinician never heard from
    her. Now the change is refused, as for a pending offer, until the claim settles."""
    call = sid(0x7E8)
    talking_and_offered_another(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[1])
    with (
        pytest.raises(programme_settings.SettingsChangeError, match="carrying"),
        transaction(hotline.services.sessions) as session,
    ):
        programme = session.get_one(Programme, hotline.programme_id)
        changes = {"pool_numbers": f"{POOL[0]},{POOL[2]}"}  # was: taken out
        vault, now = hotline.services.vault, hotline.clock.now
        programme_settings.update_settings(
            session, vault, programme, changes, "c@example.org", now, "UTC", gate=None
        )
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[1])
    alice.expect_text("I had a bad night", from_=POOL[1])
    clinician = phones.phone(CLINICIAN)
    clinician.expect_text("joined", from_=HOTLINE)
    alice.texts("I'm here, take your time", to=POOL[1])
    clinician.expect_text("I'm here, take your time", from_=HOTLINE)
    phones.assert_no_unexpected()


def the_coordinator_takes_out(hotline: Hotline, number: str) -> None:
    """Her coordinator takes ``number`` out of the pool in Settings (SettingsChangeError if
    it is refused)."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        changes = {"pool_numbers": ",".join(n for n in POOL if n != number)}
        vault, now = hotline.services.vault, hotline.clock.now
        programme_settings.update_settings(
            session, vault, programme, changes, "c@example.org", now, "UTC", gate=None
        )


@pytest.mark.parametrize("she_accepts", ["as the call rings", "after the hang-up"])
def test_a_withdrawn_offers_number_stays_in_the_pool_while_the_call_rings(
    hotline: Hotline, phones: Phones, she_accepts: str
) -> None:
    """Alice, talking with one clinician, is offered a second's request on the second pool
    number; their call withdraws it as it rings Bob, and her coordinator takes that number
    out of the pool. That went through: her ACCEPT there as the call rang, or once the caller
    hung up and her offer stood again, was ignored (the line no longer owned the number),
    and the clinician never heard from her. Now the change is refused, as for the offer
    pending or claimed, until the call ends."""
    call = sid(0x7E9)
    talking_and_offered_another(hotline, phones, call)
    with pytest.raises(programme_settings.SettingsChangeError, match="carrying"):
        the_coordinator_takes_out(hotline, POOL[1])  # was: taken out
    alice = phones.phone(ALICE)
    if she_accepts == "as the call rings":
        alice.texts("ACCEPT", to=POOL[1])
        alice.expect_text("If they hang up before a peer answers", from_=POOL[1])
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    if she_accepts == "after the hang-up":
        alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("You're connected", from_=POOL[1])
    alice.expect_text("I had a bad night", from_=POOL[1])
    phones.phone(CLINICIAN).expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_withdrawn_offers_number_leaves_the_pool_once_a_peer_takes_the_call(
    hotline: Hotline, phones: Phones
) -> None:
    """The offer the call withdrew does not come back once Bob takes the call: its number
    can leave the pool then."""
    call = sid(0x7EA)
    talking_and_offered_another(hotline, phones, call)
    a_peer_takes_the_call(hotline, phones, call)
    the_coordinator_takes_out(hotline, POOL[1])
    with hotline.session() as session:
        numbers = session.get_one(Programme, hotline.programme_id).pool_numbers
        assert [n.number for n in numbers] == [POOL[0], POOL[2]]
    phones.assert_no_unexpected()


def test_a_claim_past_its_peers_limit_at_the_hang_up_tells_her(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, but while the phones ring Alice's coordinator lowers her limit to the one
    conversation she has: she is told, from the claimed request's number, that it goes on."""
    call = sid(0x791)
    alice_id = talking_and_offered_another(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[1])
    her_limit_lowered_to_one(hotline, alice_id)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.expect_text(LAPSED_CLAIM, from_=POOL[1])  # was: nothing
    bob_takes_it(phones)
    phones.assert_no_unexpected()


def a_peer_takes_the_call(hotline: Hotline, phones: Phones, call: str) -> None:
    _, ring = start_call(hotline, call)  # a repeated /start replays the same dial
    bob_leg = leg(sid(0x7A9), call, BOB, POOL[0])
    doc(hotline, f"/twilio/voice/screen?ring={ring}", **bob_leg)
    assert list(doc(hotline, f"/twilio/voice/pickup?ring={ring}", **bob_leg, Digits="1")) == []


def the_clinician_stops(hotline: Hotline, phones: Phones, call: str) -> None:
    phones.phone(CLINICIAN).texts("STOP", to=HOTLINE, OptOutType="STOP")


def the_clinician_forgets(hotline: Hotline, phones: Phones, call: str) -> None:
    phones.phone(CLINICIAN).texts("FORGET", to=HOTLINE)
    phones.phone(CLINICIAN).expect_text(from_=HOTLINE)


def nobody_takes_the_call(hotline: Hotline, phones: Phones, call: str) -> None:
    """Bob's phone rings out, then Alice's: the call becomes a call-back, offered by text."""
    _, ring = start_call(hotline, call)
    dial = dial_action(hotline, call, ring, "no-answer").find("Dial")
    assert dial is not None and (dial.findtext("Number") or "").strip() == ALICE
    ring = int(parse_qs(urlparse(dial.get("action", "")).query)["ring"][0])
    assert "call you back" in said(dial_action(hotline, call, ring, "no-answer"))


CLAIM_ENDS = {
    "a peer takes the call": (a_peer_takes_the_call, "A peer took their call"),
    "the clinician texts STOP": (the_clinician_stops, "Their request has closed"),
    "the clinician texts FORGET": (the_clinician_forgets, "Their request has closed"),
    "nobody takes the call": (nobody_takes_the_call, "now a call-back request"),
}


@pytest.mark.parametrize("then", CLAIM_ENDS)
@pytest.mark.parametrize("woken_by", ["its job", "the sweeper"])
def test_a_claim_whose_request_ends_as_the_call_rings_tells_its_peer(
    hotline: Hotline, phones: Phones, then: str, woken_by: str
) -> None:
    """Alice answers ACCEPT while the clinician's call, which replaced the request, rings Bob,
    and is told it is hers if they hang up first. Then Bob takes the call, the clinician
    texts STOP or FORGET, or nobody takes it and it becomes a call-back: her claim stayed
    CLAIMED for ever, and she waited for a request that would never come. Now she is told,
    from the offer's number (by the sweeper if Redis lost the wake-up), and her claim is
    over."""
    call = sid(0x7A1)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    happen, told = CLAIM_ENDS[then]
    happen(hotline, phones, call)
    if woken_by == "the sweeper":
        hotline.redis.flushdb()
        hotline.clock.advance(minutes=1)
        hotline.sweep()
    hotline.run_jobs()
    alice.expect_text(told, from_=POOL[0])  # was: nothing
    with hotline.session() as session:
        assert OfferState.CLAIMED not in session.scalars(select(Offer.state)).all()
    hotline.sweep()  # told once
    hotline.run_jobs()
    alice.expect_nothing()


def test_a_claim_whose_ring_is_lost_is_told_before_the_call_back_is_offered(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice claims the request as the clinician's call rings Bob; Bob's ring is lost (its
    dial action never comes), and the sweeper makes the call a call-back. Alice, the one peer
    left to ask, was offered it, and then told that nothing more was needed on the earlier
    request, which read as the offer's end. Now she is told that first, then offered it, and
    takes it."""
    call = sid(0x7E4)
    replaced_by_a_call(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    hotline.run_jobs()
    alice.expect_text("now a call-back request", from_=POOL[0])  # was: after the offer
    alice.expect_text("call-back request: a clinician called", from_=POOL[0])
    alice.texts("ACCEPT")
    alice.expect_text("It's yours. Call this number", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("will call you back shortly", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_claim_whose_request_ends_is_not_told_after_her_stop_to_that_number(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, Bob takes the call; Alice had texted STOP to the offer's number meanwhile:
    nothing goes to her there (Twilio would refuse it), and her claim is over all the same."""
    call = sid(0x7B1)
    replaced_by_a_call(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    stopped_that_number(hotline, phones)
    a_peer_takes_the_call(hotline, phones, call)
    hotline.run_jobs()
    hotline.sweep()
    with hotline.session() as session:
        assert OfferState.CLAIMED not in session.scalars(select(Offer.state)).all()
    alice.expect_nothing()


def test_a_claim_is_not_told_a_peer_took_the_call_when_she_took_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Bob lets the call ring out; Alice, whose claim stands, is rung next and takes it: she
    is not told that a peer took their call, and her claim is over. She has room for one
    conversation, and her claim counts as one, but not against this caller's own call: taking
    either settles the other."""
    call = sid(0x7C1)
    hotline.add_supporter("Alice", ALICE, max_conversations=1)
    replaced_by_a_call(hotline, phones, call, alice_added=True)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT")
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    _, ring = start_call(hotline, call)
    dial = dial_action(hotline, call, ring, "no-answer").find("Dial")
    assert dial is not None and (dial.findtext("Number") or "").strip() == ALICE
    ring = int(parse_qs(urlparse(dial.get("action", "")).query)["ring"][0])
    alice_leg = leg(sid(0x7C2), call, ALICE, dial.get("callerId", POOL[0]))
    doc(hotline, f"/twilio/voice/screen?ring={ring}", **alice_leg)
    assert list(doc(hotline, f"/twilio/voice/pickup?ring={ring}", **alice_leg, Digits="1")) == []
    hotline.run_jobs()
    hotline.sweep()
    with hotline.session() as session:
        assert OfferState.CLAIMED not in session.scalars(select(Offer.state)).all()
    alice.expect_nothing()


def a_peer_takes_the_call_and_closes_it(hotline: Hotline, phones: Phones, call: str) -> None:
    """Bob takes the call, they talk, the caller hangs up, and Bob texts DONE."""
    a_peer_takes_the_call(hotline, phones, call)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="300")
    bob = phones.phone(BOB)
    bob.texts("DONE", to=POOL[0])
    bob.expect_text(from_=POOL[0])
    phones.phone(CLINICIAN).expect_text("Your peer has closed this conversation", from_=HOTLINE)


def the_clinician_stops_and_hangs_up(hotline: Hotline, phones: Phones, call: str) -> None:
    the_clinician_stops(hotline, phones, call)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")


def set_retired(hotline: Hotline, retired: bool) -> None:
    """`hotline programme retire` (or `restore`), as the command does it."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        if retired:
            assert retirement.retire(session, programme, hotline.clock.now) is not None
        else:
            assert retirement.restore(session, programme)


CLAIMS_AT_RETIREMENT = {
    "a peer took the call": (a_peer_takes_the_call_and_closes_it, "A peer took their call"),
    "the clinician texted STOP": (the_clinician_stops_and_hangs_up, "Their request has closed"),
}


@pytest.mark.parametrize("then", CLAIMS_AT_RETIREMENT)
@pytest.mark.parametrize("woken_by", ["its job", "the sweeper", "the sweeper, two days on"])
def test_a_claim_open_as_the_programme_retires_is_told_once_and_ends(
    hotline: Hotline, phones: Phones, then: str, woken_by: str
) -> None:
    """Alice claims the request as the call that replaced it rings; the call ends (Bob took
    it and it is over, or the clinician texted STOP) and the programme is retired before her
    claim is settled. With its wake-up lost, the retired line's sweeps never settled it: she
    waited for a request that would never come, and only a restore, maybe months later, told
    her (its first sweep). Now the next sweep tells her once, from the offer's number, and her
    claim is over, however long after the retirement it runs; a restore brings nothing back.
    A wake-up still queued tells her the same, once; nothing else goes out from the closed
    line (Bob's follow-up, after his DONE)."""
    call = sid(0x7E1)
    replaced_by_a_call(hotline, phones, call)
    her = phones.phone(ALICE)
    her.texts("ACCEPT")
    her.expect_text("If they hang up before a peer answers", from_=POOL[0])
    happen, told = CLAIMS_AT_RETIREMENT[then]
    happen(hotline, phones, call)
    if woken_by != "its job":
        hotline.redis.flushdb()
    set_retired(hotline, True)
    if woken_by == "the sweeper, two days on":  # the sweeper down since: was told at restore
        hotline.clock.advance(days=2)
    else:
        hotline.clock.advance(minutes=1)
    hotline.sweep()
    hotline.run_jobs()
    her.expect_text(told, from_=POOL[0])  # was: nothing (by the sweeper)
    phones.assert_no_unexpected()
    with hotline.session() as session:
        assert OfferState.CLAIMED not in session.scalars(select(Offer.state)).all()
    set_retired(hotline, False)
    hotline.sweep()
    hotline.run_jobs()
    phones.assert_no_unexpected()  # was: told only now, by the restored line's sweep
    with hotline.session() as session:
        assert OfferState.CLAIMED not in session.scalars(select(Offer.state)).all()


THIRD = "+15550109003"


def a_third_clinician_texts(phones: Phones) -> None:
    phones.phone(THIRD).texts("hello")
    phones.phone(THIRD).expect_text("confidential", from_=HOTLINE)


def test_a_claim_counts_toward_her_limit_while_the_call_rings(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice, with room for two conversations, talks with one clinician and claims a second's
    request (ACCEPT) as their call rings Bob. A third clinician texted then, and Alice was
    offered that request too, one past what she can take: had she taken it, her claim lapsed
    at the hang-up and the second clinician waited on. Now her claim counts as a conversation
    she has taken on: the third request goes to Bob, and at the hang-up she is connected."""
    call = sid(0x7E1)
    talking_and_offered_another(hotline, phones, call)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[1])
    a_third_clinician_texts(phones)
    bob.expect_text(OFFER)  # was: offered to Alice
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[1])
    alice.expect_text("I had a bad night", from_=POOL[1])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_claim_that_settles_without_her_frees_her_for_a_waiting_request(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, but Bob has room for one conversation: as his phone rings, the third request
    waits with nobody free. Bob takes the call, and Alice's claim is over: she is told so,
    counts as free again, and the sweeper offers her the request that waits."""
    call = sid(0x7E2)
    talking_and_offered_another(hotline, phones, call)
    alice = phones.phone(ALICE)
    with transaction(hotline.services.sessions) as session:
        bob = session.scalars(select(Supporter).where(Supporter.name == "Bob")).one()
        bob.max_conversations = 1
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[1])
    third = phones.phone(THIRD)
    third.texts("hello")
    third.expect_text("No peer is free right now", from_=HOTLINE)  # was: offered to Alice
    phones.assert_no_unexpected()
    a_peer_takes_the_call(hotline, phones, call)
    hotline.run_jobs()
    alice.expect_text("A peer took their call", from_=POOL[1])
    hotline.clock.advance(seconds=30)
    hotline.sweep()
    hotline.run_jobs()
    alice.expect_text(OFFER)
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text("hello")
    third.expect_text("joined", from_=HOTLINE)


def test_a_late_accept_her_claim_alone_holds_back_tells_her_what_she_holds(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice claims the request as the clinician's call rings Bob; another clinician's
    request, offered to her on her other number, she passes, and so does Bob. Her coordinator
    lowers her limit to one, and she answers ACCEPT to that request after all: her claim
    fills her limit, so it stays open for the next peer. She was told to close a conversation
    with DONE first, and she has none; now she is told the request she holds comes to her if
    its clinician hangs up, and at the hang-up it does."""
    call = sid(0x7E5)
    alice_id = hotline.add_supporter("Alice", ALICE, max_conversations=2)
    replaced_by_a_call(hotline, phones, call, alice_added=True)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)
    first = phones.phone(FIRST)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[0])
    first.texts("hi")
    first.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[1])
    alice.texts("PASS", to=POOL[1])
    alice.expect_text("Passed on", from_=POOL[1])
    bob.expect_text(OFFER)
    bob.texts("PASS")
    bob.expect_text("Passed on")
    first.expect_text("No peer supporter is free right now", from_=HOTLINE)
    her_limit_lowered_to_one(hotline, alice_id)
    alice.texts("ACCEPT", to=POOL[1])
    told = alice.expect_text("stays open for the next peer", from_=POOL[1])
    assert "DONE" not in told.body  # was: "close one with DONE first"
    assert "calling the line" in told.body and "hang up" in told.body
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.expect_text("You're connected", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def claimed_beside_a_passed_request(hotline: Hotline, phones: Phones, call: str) -> None:
    """Alice, with room for three conversations, talks with one clinician on the first pool
    number and passes a second's request, offered on the second; nobody else is on call, and
    it waits. A third clinician's request is offered to her on the second number too, and she
    claims it (ACCEPT) as their call rings Bob."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    clinician, alice, first = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(FIRST)
    third = phones.phone(THIRD)
    first.texts("hi")
    first.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("hi", from_=POOL[0])
    first.expect_text("joined", from_=HOTLINE)
    third.texts("hello")
    third.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[1])
    alice.texts("PASS", to=POOL[1])
    alice.expect_text("Passed on", from_=POOL[1])
    third.expect_text("No peer supporter is free right now", from_=HOTLINE)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[1])
    hotline.add_supporter("Bob", BOB)
    assert start_call(hotline, call)[0] == BOB
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("If they hang up before a peer answers", from_=POOL[1])


def the_claim_is_hers_at_the_hang_up(hotline: Hotline, phones: Phones) -> None:
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text("You're connected", from_=POOL[1])  # was: it can't come to you now
    alice.expect_text("I had a bad night", from_=POOL[1])
    phones.phone(CLINICIAN).expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_late_accept_in_a_thread_leaves_her_claims_number_for_the_hang_up(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice claims a request on the number where another she passed still waits (see
    claimed_beside_a_passed_request), then types ACCEPT in her live conversation's thread:
    the passed request was hers on her claim's number, and at the hang-up her claim lapsed,
    that number taken. Now her claim keeps its number: the ACCEPT takes nothing, and at the
    hang-up the claimed request is hers."""
    call = sid(0x7E6)
    claimed_beside_a_passed_request(hotline, phones, call)
    alice = phones.phone(ALICE)
    alice.texts("ACCEPT", to=POOL[0])
    alice.expect_text("already connected", from_=POOL[0])  # was: the passed one, on POOL[1]
    phones.assert_no_unexpected()
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    the_claim_is_hers_at_the_hang_up(hotline, phones)


def test_a_late_accept_as_the_caller_hangs_up_leaves_her_claim_its_number(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, but Alice answers ACCEPT on her claim's number as the caller hangs up, before
    the job that gives her the request has run: the passed request, lapsed on that number, was
    hers, and her claim lapsed. Now it is not taken: her ACCEPT takes the claimed request
    (what its clinician texted follows), and the passed one waits for the next peer."""
    call = sid(0x7E7)
    claimed_beside_a_passed_request(hotline, phones, call)
    alice = phones.phone(ALICE)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    alice.texts("ACCEPT", to=POOL[1])
    alice.expect_text("You're connected", from_=POOL[1])  # was: the passed request's
    phones.phone(CLINICIAN).expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()
    hotline.run_jobs()
    alice.expect_text("I had a bad night", from_=POOL[1])  # the claimed clinician's, not "hello"
    phones.assert_no_unexpected()


@pytest.mark.parametrize("answered", [None, "ACCEPT"])
def test_a_peers_number_stays_while_the_call_that_withdrew_her_offer_rings(
    hotline: Hotline, phones: Phones, answered: str | None
) -> None:
    """Alice's offer was withdrawn by the clinician's call, which rings Bob; she has not
    answered it, or claimed it with ACCEPT. Her coordinator changed her number meanwhile, as
    nothing of hers was open: at the hang-up her offer stood again, or her claim took the
    request, on the new number, which never saw the offer (the clinician's texts would reach
    a stranger if it was mistyped). Now the change waits, as for an offer still pending, and
    the request is hers on her phone."""
    call = sid(0x7D1)
    replaced_by_a_call(hotline, phones, call)
    her = phones.phone(ALICE)
    if answered:
        her.texts(answered)
        her.expect_text("If they hang up before a peer answers", from_=POOL[0])
    with transaction(hotline.services.sessions) as session, pytest.raises(roster.RosterConflict):
        vault, now = hotline.services.vault, hotline.clock.now
        roster.edit(session, vault, alice(session), {"phone": "+15550108009"}, "coordinator", now)
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    if not answered:
        her.texts("ACCEPT", to=POOL[0])
    her.expect_text("You're connected", from_=POOL[0])
    her.expect_text("I had a bad night", from_=POOL[0])
    phones.phone(CLINICIAN).expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_dial_action_that_comes_late_keeps_the_one_call_back_promised(
    hotline: Hotline, phones: Phones
) -> None:
    """The dial action is late: the sweeper has expired the ring and told the clinician a peer
    will call. The late action replays that promise; it opens no second request, and nobody
    is told twice."""
    with_coordinator(hotline)
    hotline.add_supporter("Alice", ALICE)
    call = sid(0x401)
    _, ring = start_call(hotline, call)
    hotline.clock.advance(minutes=2)
    assert hotline.sweep().offers_expired == 1
    phones.phone(CLINICIAN).expect_text("a peer will call you from this number", from_=HOTLINE)
    phones.phone(COORDINATOR).expect_text("waiting with nobody available")
    late = dial_action(hotline, call, ring, "no-answer")
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert "call you back" in said(late) and crisis in said(late)
    hotline.clock.advance(minutes=30)
    hotline.run_jobs()
    hotline.sweep()
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.QUEUED
    # Half an hour on, the one peer on call is asked once more, by text: the call-back waits.
    phones.phone(ALICE).expect_text("call-back request")
    phones.assert_no_unexpected()


def test_a_hang_up_after_the_sweeper_promised_a_call_back_keeps_the_promise(
    hotline: Hotline, phones: Phones
) -> None:
    """The ring's action is lost; the sweeper tells the clinician a peer will call; then the
    caller hangs up. The call-back stays waiting, and a peer who comes on call is offered it."""
    hotline.add_supporter("Alice", ALICE)
    call = sid(0x411)
    start_call(hotline, call)
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    phones.phone(CLINICIAN).expect_text("a peer will call you from this number")
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="120")
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.QUEUED
    hotline.add_supporter("Bob", BOB)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert "call-back" in phones.phone(BOB).expect_text(OFFER).body
    phones.assert_no_unexpected()


def test_a_text_as_the_hang_up_reopens_the_text_request_goes_on_with_that_request(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician texts, calls before Alice answers (one request, the call's), and as they
    hang up with Bob's phone ringing, texts again. The text read the call's request as waiting
    and queued on the programme's lock behind the hang-up, which reopened the text request and
    ended the call's. Going on, the text found the call's request ended and opened a third, as
    a first text: the clinician was greeted again and a peer offered it, while the reopened one
    waited for Alice. Now it goes on with the request open once the hang-up has committed."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[0])
    call = sid(0xD01)
    assert start_call(hotline, call)[0] == BOB

    def hang_up() -> str:
        params = {**caller(call, "completed"), "CallDuration": "30"}
        client = hotline.app.test_client()
        return str(
            signed_post(client, PUBLIC_URL, "/twilio/status", params, AUTH_TOKEN).status_code
        )

    def text() -> str:
        return hotline.sms(CLINICIAN, HOTLINE, "are you there?").get_data(as_text=True)

    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it, in turn
        status, hung_up = sent_behind_a_lock(engine, hang_up, "the hang-up")
        texted, answers = sent_behind_a_lock(engine, text, "the text", behind=1)
    status.join(20)
    texted.join(20)
    assert hung_up == ["204"]
    phones.deliver_twiml(CLINICIAN, HOTLINE, answers[0])
    hotline.run_jobs()
    phones.assert_no_unexpected()  # was: the greeting again, and the offer to Bob
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.QUEUED),  # reopened, and still offered to Alice
        ("voice", ConversationState.ENDED),  # the call, withdrawn by the hang-up
    ]
    alice.texts("ACCEPT")
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    alice.expect_text("are you there?", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_text_as_the_call_replaces_the_text_request_goes_with_the_call(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, the other way round: the clinician's text reads their text request as waiting
    and queues behind the call's menu step, which replaces it. It goes with the call (held for
    whoever takes it, or waiting on with the text request if they hang up), not into a new
    request greeted and offered to a peer while the phones ring for the call."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    call = sid(0xD11)
    menu_over = at_the_menu(hotline, phones, call)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)

    def text() -> str:
        return hotline.sms(CLINICIAN, HOTLINE, "are you there?").get_data(as_text=True)

    with transaction(hotline.services.sessions) as session:
        routing.lock_programme(session, hotline.programme_id)  # the two queue behind it, in turn
        started, rung = sent_behind_a_lock(engine, menu_over, "the menu's step")
        texted, answers = sent_behind_a_lock(engine, text, "the text", behind=1)
    started.join(20)
    texted.join(20)
    assert BOB in rung[0]
    phones.deliver_twiml(CLINICIAN, HOTLINE, answers[0])
    hotline.run_jobs()
    phones.assert_no_unexpected()  # was: the greeting again, and an offer to Alice
    hotline.post("/twilio/status", **caller(call, "completed"), CallDuration="30")
    hotline.run_jobs()
    alice.texts("ACCEPT")
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    alice.expect_text("are you there?", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),
        ("voice", ConversationState.ENDED),
    ]
    phones.assert_no_unexpected()


def test_a_hang_up_and_a_press_of_1_at_once_end_one_way_or_the_other(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller's final status is inside its transaction when Alice presses 1. The two are
    serialised (the programme's lock): the hang-up, first, ends the request, and her press
    then finds the call gone. Never the mix of both (a taken call recorded as hung up, with
    no follow-up for her), which the press committing in between used to leave."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    call, ring_leg = sid(0x101), sid(0x102)
    number, ring = start_call(hotline, call)
    assert number == ALICE
    doc(hotline, f"/twilio/voice/screen?ring={ring}", **leg(ring_leg, call, ALICE, POOL[0]))

    real = routing.still_queued
    inside, go = threading.Event(), threading.Event()

    def held_there(*args: Any) -> bool:  # the status callback is mid-way through ending
        inside.set()
        assert go.wait(10)
        return real(*args)

    monkeypatch.setattr(routing, "still_queued", held_there)
    answers: dict[str, Any] = {}

    def hang_up() -> None:
        params = {**caller(call, "completed"), "CallDuration": "30"}
        client = hotline.app.test_client()
        answers["status"] = signed_post(
            client, PUBLIC_URL, "/twilio/status", params, AUTH_TOKEN
        ).status_code

    def press_1() -> None:
        params = {**leg(ring_leg, call, ALICE, POOL[0]), "Digits": "1"}
        client = hotline.app.test_client()
        path = f"/twilio/voice/pickup?ring={ring}"
        answers["press"] = signed_post(client, PUBLIC_URL, path, params, AUTH_TOKEN).get_data(
            as_text=True
        )

    status, press = threading.Thread(target=hang_up), threading.Thread(target=press_1)
    status.start()
    assert inside.wait(10)
    press.start()
    time.sleep(0.5)  # the press waits for the lock the hang-up holds
    go.set()
    status.join(15)
    press.join(15)
    monkeypatch.undo()
    assert answers["status"] == 204
    assert "already ended or been taken" in answers["press"]
    (conv,) = conversations(hotline)
    assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "hangup")
    with hotline.session() as session:
        assert session.scalars(select(Offer.state)).all() == [OfferState.WITHDRAWN]
    hotline.run_jobs()
    phones.assert_no_unexpected()  # no follow-up for a call nobody took


def test_a_caller_whose_request_ended_meanwhile_still_hears_the_crisis_line(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician texts STOP while their call rings (it ends every open request): the
    caller, still on the line, hears goodbye with the crisis sentence, not a bare thanks."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call = sid(0x501)
    _, ring = start_call(hotline, call)
    phones.phone(CLINICIAN).texts("STOP")
    after = dial_action(hotline, call, ring, "no-answer")
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert after.find("Dial") is None and crisis in said(after)
    phones.assert_no_unexpected()


def test_a_hidden_callers_lapsed_ring_is_not_offered_as_a_call_back(
    hotline: Hotline, phones: Phones
) -> None:
    """The ring's dial action never came and the caller's number is hidden: nobody can call
    them back, so no peer is offered to (and told to call someone the line cannot reach)."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call = sid(0x601)
    hidden = {"CallSid": call, "From": "anonymous", "To": HOTLINE, "CallStatus": "in-progress"}
    doc(hotline, "/twilio/voice", **hidden)
    dial = doc(hotline, "/twilio/voice/start", **hidden).find("Dial")
    assert dial is not None
    ring = int(parse_qs(urlparse(dial.get("action", "")).query)["ring"][0])
    hotline.clock.advance(minutes=2)
    assert hotline.sweep().offers_expired == 1
    late = doc(
        hotline,
        f"/twilio/voice/next?ring={ring}",
        **hidden,
        DialCallStatus="no-answer",
        DialBridged="false",
    )
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert "number is hidden" in said(late) and crisis in said(late)
    hotline.run_jobs()
    (conv,) = conversations(hotline)
    assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "missed")
    phones.assert_no_unexpected()


def test_a_press_of_1_never_joined_tells_the_caller_still_there_what_next_and_the_crisis_line(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice presses 1 but the call is never joined (her leg drops right after the key): Twilio
    says DialCallStatus=completed, DialBridged=false, the caller still on the line. They have
    talked to nobody: they hear that the peer will call back, and the crisis sentence."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call, ring_leg = sid(0xA01), sid(0xA02)
    number, ring = start_call(hotline, call)
    assert number == ALICE
    alice_leg = leg(ring_leg, call, ALICE, POOL[0])
    screen = doc(hotline, f"/twilio/voice/screen?ring={ring}", **alice_leg)
    assert screen.find("Gather") is not None
    pressed = doc(
        hotline,
        f"/twilio/voice/pickup?ring={ring}",
        **leg(ring_leg, call, ALICE, POOL[0]),
        Digits="1",
    )
    assert list(pressed) == []  # bridge: recorded as taken
    after = doc(
        hotline,
        f"/twilio/voice/next?ring={ring}",
        **caller(call, "in-progress"),  # the caller is still on the line
        DialCallStatus="completed",
        DialBridged="false",
        DialCallSid=ring_leg,
        DialCallDuration="0",
    )
    words = said(after)
    assert digit_by_digit(hotline.settings.crisis_text) in words, words
    assert "call you back" in words, words


def test_a_press_of_1_never_joined_for_a_hidden_caller_promises_no_call_back(
    hotline: Hotline, phones: Phones
) -> None:
    """As above, but the caller's number is hidden: nobody can call them back (Alice is told
    so by text), so the caller, still on the line, is not promised a call-back: they hear
    to call again or text, and the crisis sentence."""
    hotline.add_supporter("Alice", ALICE)
    call, ring_leg = sid(0xB01), sid(0xB02)
    hidden = {"CallSid": call, "From": "anonymous", "To": HOTLINE, "CallStatus": "in-progress"}
    doc(hotline, "/twilio/voice", **hidden)
    dial = doc(hotline, "/twilio/voice/start", **hidden).find("Dial")
    assert dial is not None
    ring = int(parse_qs(urlparse(dial.get("action", "")).query)["ring"][0])
    alice_leg = leg(ring_leg, call, ALICE, POOL[0])
    doc(hotline, f"/twilio/voice/screen?ring={ring}", **alice_leg)
    doc(hotline, f"/twilio/voice/pickup?ring={ring}", **alice_leg, Digits="1")
    after = doc(
        hotline,
        f"/twilio/voice/next?ring={ring}",
        **hidden,
        DialCallStatus="completed",
        DialBridged="false",
        DialCallSid=ring_leg,
        DialCallDuration="0",
    )
    words = said(after)
    assert "will call you back" not in words, words
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert "number is hidden" in words and crisis in words, words
    hotline.run_jobs()
    phones.phone(ALICE).expect_text("number was hidden", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_hang_up_as_the_menu_ends_withdraws_the_request(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The caller hangs up as the menu times out: Twilio requests /start and posts the final
    status at once. The status, having read the call before /start committed its ring, reads
    it again under the programme's lock: the request is withdrawn, nobody is called back."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: this interleaving needs PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call = sid(0xC01)
    doc(hotline, "/twilio/voice", **caller(call))  # the greeting and menu

    real = voiceline._find_call
    read, go = threading.Event(), threading.Event()

    def find_then_wait(session, call_sid):  # type: ignore[no-untyped-def]
        found = real(session, call_sid)
        if threading.current_thread().name == "status":
            read.set()
            assert go.wait(10)
        return found

    monkeypatch.setattr(voiceline, "_find_call", find_then_wait)
    answers: dict[str, int] = {}

    def hang_up() -> None:
        params = {**caller(call, "completed"), "CallDuration": "12"}
        client = hotline.app.test_client()
        answers["status"] = signed_post(
            client, PUBLIC_URL, "/twilio/status", params, AUTH_TOKEN
        ).status_code

    status = threading.Thread(target=hang_up, name="status")
    status.start()
    assert read.wait(10)
    doc(hotline, "/twilio/voice/start", **caller(call))  # commits while the status waits
    go.set()
    status.join(15)
    monkeypatch.undo()
    assert answers["status"] == 204

    with hotline.session() as session:
        convs = [(c.id, c.state, c.end_reason) for c in session.scalars(select(Conversation))]
    hotline.clock.advance(minutes=3)  # the ring's offer is never dialled: the sweeper's
    hotline.sweep()
    hotline.run_jobs()
    phones.sync()
    texted = {n: [t.body for t in phones.phone(n).inbox] for n in (ALICE, BOB, CLINICIAN)}
    assert all(state == ConversationState.ENDED for _, state, _ in convs), (convs, texted)
    assert not any(texted.values()), texted


def test_a_call_greeted_as_the_programme_retires_is_told_the_line_has_closed(
    hotline: Hotline, phones: Phones
) -> None:
    """`hotline programme retire` found no call open and has not committed yet as a call is
    greeted (its row commits after the count: greeting takes no programme lock). After the
    menu, once the retirement has committed, the caller hears that the line has closed, with
    the crisis sentence, and no peer is rung or offered a call-back on a closed line."""
    hotline.add_supporter("Alice", ALICE)
    with retiring(hotline):
        assert "press 1" in said(doc(hotline, "/twilio/voice", **caller(sid(1))))
    after_menu = doc(hotline, "/twilio/voice/start", **caller(sid(1)))
    assert after_menu.find("Dial") is None
    assert "This peer support line has closed" in said(after_menu)
    assert "9 8 8" in said(after_menu)
    hotline.run_jobs()
    assert conversations(hotline) == []
    phones.assert_no_unexpected()
