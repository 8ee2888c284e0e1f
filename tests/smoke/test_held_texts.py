"""Texts a clinician writes while nobody has their request reach the supporter whole, in order.

Twilio sends at most 10 <Message>s in reply to one inbound text (warning 14109) and refuses a
reply over 64 kB (error 11750): the reply to an ACCEPT joins the held texts into as few as fit
and carries a bounded number; a job relays the rest through the REST API, and the sweeper what a
lost wake-up or a Twilio outage left.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from sqlalchemy import func, select

import workers.queue
from hotline import held, ringing
from hotline.db import transaction
from hotline.models import (
    Call,
    CallState,
    Channel,
    Conversation,
    ConversationState,
    PendingText,
)
from tests.kit.calls import NO_ANSWER, PRESS_1, VOICEMAIL, Calls, Script
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE, BOB, CLINICIAN = "+15550108001", "+15550108002", "+15550109001"
TWILIO_REPLY_MESSAGES = 10
TWILIO_REPLY_BYTES = 64 * 1024
BURST = [  # how people text: short messages, one thought each
    "hi",
    "not sure this is the right number",
    "I'm a nurse on 6 West",
    "we lost a patient tonight",
    "I gave the last dose",
    "everyone says it wasn't me",
    "but I keep going over it",
    "I can't go home like this",
    "sorry",
    "is anyone there?",
    "please",
]


def _reply(hotline: Hotline, sender: str, to: str, body: str) -> tuple[bytes, list[ET.Element]]:
    response = hotline.sms(sender, to, body)
    assert response.status_code == 200
    data = response.get_data()
    return data, list(ET.fromstring(data).iter("Message"))  # noqa: S314 - our own TwiML


def _held(hotline: Hotline) -> int:
    with hotline.session() as session:
        return int(session.scalar(select(func.count()).select_from(PendingText)) or 0)


def _sent_to(hotline: Hotline, phone: str) -> list[str]:
    return [m["body"] for m in hotline.fake.sent if m["to"] == phone]


def test_a_burst_of_held_texts_arrives_as_one_text_in_a_reply_twilio_sends_whole(
    hotline: Hotline,
) -> None:
    hotline.add_supporter("Alice", ALICE)
    for text in BURST:  # Alice is offered the first; the rest are held while her offer waits
        _reply(hotline, CLINICIAN, HOTLINE, text)
    assert _held(hotline) == len(BURST)

    _, messages = _reply(hotline, ALICE, POOL[0], "ACCEPT")
    assert len(messages) <= TWILIO_REPLY_MESSAGES
    to_alice = [m.text for m in messages if m.get("to") == ALICE]
    to_clinician = [m.text or "" for m in messages if m.get("to") == CLINICIAN]
    assert "connected" in (to_alice[0] or "")
    assert to_alice[1:] == ["\n\n".join(BURST)]  # every word, in order, in one text
    assert len(to_clinician) == 1 and "joined" in to_clinician[0]
    assert _held(hotline) == 0


def test_held_texts_beyond_a_reply_follow_through_the_api_in_order_even_past_an_outage(
    hotline: Hotline,
) -> None:
    hotline.add_supporter("Alice", ALICE)
    paragraph = "I can't stop replaying it. I checked the dose twice, I'm sure I did. "
    texts = [f"{i}: {(paragraph * 30)[:1500]}" for i in range(30)]  # 30 long texts
    for text in texts:
        _reply(hotline, CLINICIAN, HOTLINE, text)

    data, messages = _reply(hotline, ALICE, POOL[0], "ACCEPT")
    assert len(messages) <= TWILIO_REPLY_MESSAGES and len(data) <= TWILIO_REPLY_BYTES
    assert any("joined" in (m.text or "") for m in messages if m.get("to") == CLINICIAN)
    in_reply = [m.text or "" for m in messages if m.get("to") == ALICE][1:]
    assert _held(hotline) > 0

    hotline.fake.fail_for(ALICE, code=20503, status=503)  # Twilio refuses for now
    hotline.run_jobs()
    assert _sent_to(hotline, ALICE) == [] and _held(hotline) > 0  # held still, not lost
    hotline.fake.clear_faults()
    hotline.clock.advance(minutes=1)
    assert hotline.sweep() is not None
    assert _held(hotline) == 0
    assert "\n\n".join(in_reply + _sent_to(hotline, ALICE)) == "\n\n".join(texts)
    hotline.sweep()  # nothing is sent twice
    assert "\n\n".join(in_reply + _sent_to(hotline, ALICE)) == "\n\n".join(texts)


def test_texts_held_as_a_call_rang_survive_a_twilio_outage_in_the_follow_up(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    words = _taken_with_a_text_as_it_rang(hotline, phones, calls)

    hotline.fake.fail_for(ALICE, code=20503, status=503)  # while the follow-up job runs
    hotline.run_jobs()
    hotline.fake.clear_faults()
    assert _sent_to(hotline, ALICE) == []

    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert _sent_to(hotline, ALICE) == [words, _sent_to(hotline, ALICE)[1]]
    assert "Thank you for taking that call" in _sent_to(hotline, ALICE)[1]
    hotline.sweep()
    hotline.run_jobs()
    assert len(_sent_to(hotline, ALICE)) == 2  # once each


def _taken_with_a_text_as_it_rang(
    hotline: Hotline, phones: Phones, calls: Calls, end_lost: bool = False
) -> str:
    """Alice takes the clinician's call; they texted as it rang: what they texted."""
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    words = "if we get cut off: I'm on ward 7 until 9, please text me"
    script = Script(
        phones={ALICE: PRESS_1},
        before_answer={ALICE: lambda: clinician.texts(words)},
        end_lost=end_lost,
    )
    assert calls.place(CLINICIAN, HOTLINE, script).bridged_with == ALICE
    return words


def test_texts_held_as_a_call_rang_reach_the_peer_minutes_after_its_end_is_lost(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Nothing saying the call has ended reaches the line (it came while the database was
    down): the sweeper asks Twilio within minutes, so what the clinician texted as it rang
    reaches their peer then, with the follow-up, not hours later when the call is given up."""
    words = _taken_with_a_text_as_it_rang(hotline, phones, calls, end_lost=True)
    hotline.run_jobs()
    hotline.clock.advance(minutes=4)
    hotline.sweep()
    hotline.run_jobs()
    assert _sent_to(hotline, ALICE) == []  # the call may be going on still: not asked yet
    hotline.clock.advance(minutes=2)
    hotline.sweep()  # asks Twilio: over, so ended as its lost callbacks would have
    hotline.clock.advance(minutes=1)
    hotline.sweep()  # and followed up as a call whose follow-up wake-up was lost
    hotline.run_jobs()
    sent = _sent_to(hotline, ALICE)
    assert len(sent) == 2 and sent[0] == words
    assert "Thank you for taking that call" in sent[1]
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.ENDED


def _long_texts(n: int) -> list[str]:
    paragraph = "I keep replaying it, I checked the dose twice. "
    return [f"{i}: {(paragraph * 40)[:1500]}" for i in range(n)]  # too long to be joined


def _to_alice(hotline: Hotline, sender: str, to: str, body: str) -> list[str]:
    _, messages = _reply(hotline, sender, to, body)
    return [m.text or "" for m in messages if m.get("to") == ALICE]


def test_a_text_written_while_held_texts_wait_is_held_behind_them(hotline: Hotline) -> None:
    hotline.add_supporter("Alice", ALICE)
    texts = _long_texts(8)  # six fit the ACCEPT's reply, two are left for the job
    for text in texts:
        _reply(hotline, CLINICIAN, HOTLINE, text)
    received = _to_alice(hotline, ALICE, POOL[0], "ACCEPT")[1:]  # after "connected"
    assert _to_alice(hotline, CLINICIAN, HOTLINE, "are you there?") == []  # held behind
    hotline.run_jobs()
    received += _sent_to(hotline, ALICE)
    assert received == [*texts, "are you there?"]
    assert _to_alice(hotline, CLINICIAN, HOTLINE, "thank you") == ["thank you"]  # caught up


def test_a_text_written_during_an_outage_waits_behind_the_texts_held_again(
    hotline: Hotline,
) -> None:
    hotline.add_supporter("Alice", ALICE)
    texts = _long_texts(8)
    for text in texts:
        _reply(hotline, CLINICIAN, HOTLINE, text)
    received = _to_alice(hotline, ALICE, POOL[0], "ACCEPT")[1:]
    hotline.fake.fail_for(ALICE, code=20503, status=503)  # the REST API refuses for now
    hotline.run_jobs()
    hotline.fake.clear_faults()
    assert _to_alice(hotline, CLINICIAN, HOTLINE, "hello?") == []  # TwiML is not refused
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    received += _sent_to(hotline, ALICE)
    assert received == [*texts, "hello?"]


def test_held_texts_in_flight_as_the_conversation_ends_are_not_kept(hotline: Hotline) -> None:
    """A DONE while the job sends: what Twilio then refuses is not held for an ended one."""
    hotline.add_supporter("Alice", ALICE)
    for text in _long_texts(8):
        _reply(hotline, CLINICIAN, HOTLINE, text)
    _reply(hotline, ALICE, POOL[0], "ACCEPT")
    hotline.fake.fail_for(ALICE, code=20503, status=503)
    hotline.fake.hang_next(1.5)  # the job's first attempt hangs while Alice closes
    job = threading.Thread(target=hotline.run_jobs)
    job.start()
    time.sleep(0.5)
    hotline.fake.clear_faults()
    hotline.fake.fail_for(ALICE, code=20503, status=503)
    assert "closed" in (_to_alice(hotline, ALICE, POOL[0], "DONE")[0])
    job.join(30)
    assert _held(hotline) == 0


def test_texts_held_as_a_call_rang_precede_the_follow_up_after_a_brief_refusal(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    words = _taken_with_a_text_as_it_rang(hotline, phones, calls)
    hotline.fake.fail_next(3, status=429, code=20429)  # the held text and its two retries
    hotline.run_jobs()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    sent = _sent_to(hotline, ALICE)
    assert len(sent) == 2 and sent[0] == words
    assert "Thank you for taking that call" in sent[1]


def test_a_text_is_never_relayed_to_another_peer_because_the_first_holds_texts(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician texts Alice (sms) and has a call-back Bob took (voice, active). Alice's
    conversation holds a text (Twilio refused it): the new text waits behind it, on the fast
    path too, which must not pass over Alice's conversation to the next one, Bob's."""
    hotline.add_supporter("Alice", ALICE)
    bob_id = hotline.add_supporter("Bob", BOB)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        sms = session.scalars(
            select(Conversation).where(Conversation.state == ConversationState.ACTIVE)
        ).one()
        now = hotline.clock.now
        session.add(
            Conversation(
                programme_id=sms.programme_id,
                clinician_id=sms.clinician_id,
                channel=Channel.VOICE,
                state=ConversationState.ACTIVE,
                supporter_id=bob_id,
                pool_number=POOL[1],
                created_at=now,
                accepted_at=now,
                last_activity_at=now,
            )
        )
        held.hold_text(session, hotline.services.vault, sms, "held: Twilio refused it")
    hotline.clock.advance(minutes=1)
    _, messages = _reply(hotline, CLINICIAN, HOTLINE, "only for Alice")
    to_bob = [m for m in messages if m.get("to") == BOB]
    assert to_bob == [], "the clinician's text to Alice went to Bob"


def test_a_run_sending_for_longer_than_its_lease_still_keeps_new_texts_behind(
    hotline: Hotline, phones: Phones
) -> None:
    """The lease (held.RELAY_LEASE) is renewed with each text Twilio takes: a slow run keeps
    it. The clock is advanced to stand in for a slow Twilio."""
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        conv = session.scalars(select(Conversation)).one()
        for i in range(3):
            held.hold_text(session, hotline.services.vault, conv, f"held {i}")
        conv_id = conv.id
    hotline.fake.hang_next(1.5)  # Twilio is slow
    run = threading.Thread(target=held.send_held, args=(hotline.services, conv_id))
    run.start()
    time.sleep(0.5)
    hotline.clock.advance(minutes=2, seconds=1)  # the run has been sending for over 2 minutes
    _, messages = _reply(hotline, CLINICIAN, HOTLINE, "written after")
    run.join(30)
    in_reply = [m.text for m in messages if m.get("to") == ALICE]
    by_api = [m["body"] for m in hotline.fake.sent if m["to"] == ALICE]
    assert in_reply == [], f"relayed ahead of {by_api[1:]} still being sent"
    hotline.run_jobs()
    assert [m["body"] for m in hotline.fake.sent if m["to"] == ALICE] == [
        "held 0",
        "held 1",
        "held 2",
        "written after",
    ]


def test_the_call_follow_up_waits_while_another_run_sends_the_texts_held_as_it_rang(
    hotline: Hotline, phones: Phones, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relay run (woken by a text during the call) holds the lease as the follow-up comes:
    the follow-up is owed, and goes after the held text, once."""
    words = _taken_with_a_text_as_it_rang(hotline, phones, calls)
    real = ringing.send_held

    def another_run_holds_the_lease(services: Any, conversation_id: int) -> bool:
        with transaction(services.sessions) as session:
            conv = session.get_one(Conversation, conversation_id)
            conv.relaying_since = services.clock()
        return real(services, conversation_id)

    monkeypatch.setattr(ringing, "send_held", another_run_holds_the_lease)
    hotline.run_jobs()
    assert _sent_to(hotline, ALICE) == []  # neither ahead of the other run
    monkeypatch.setattr(ringing, "send_held", real)
    hotline.clock.advance(minutes=3)  # that run's lease lapses
    hotline.sweep()
    hotline.run_jobs()
    sent = _sent_to(hotline, ALICE)
    assert len(sent) == 2 and sent[0] == words
    assert "Thank you for taking that call" in sent[1]


def test_held_texts_of_a_job_killed_at_its_timeout_are_sent_later_in_order(
    hotline: Hotline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ kills a job at its timeout (2 s here; Twilio answers each text in 1 s): the texts it
    had not yet sent stay held, and the sweeper sends them, in order, once its lease lapses.
    The one it was sending may arrive twice; none is lost."""
    monkeypatch.setattr(workers.queue, "JOB_TIMEOUT", 2)
    hotline.add_supporter("Alice", ALICE)
    texts = _long_texts(10)  # six go in the ACCEPT's reply, four through the API
    for body in texts:
        _reply(hotline, CLINICIAN, HOTLINE, body)
    received = _to_alice(hotline, ALICE, POOL[0], "ACCEPT")[1:]
    hotline.fake.hang_next(1.0, n=4)  # a slow Twilio
    hotline.run_jobs()
    hotline.clock.advance(minutes=5)  # past the lease and the sweeper's grace
    hotline.sweep()
    hotline.run_jobs()
    received += _sent_to(hotline, ALICE)
    assert list(dict.fromkeys(received)) == texts  # every one, in order
    assert _held(hotline) == 0


def test_a_follow_up_job_killed_mid_send_is_sent_by_the_sweeper_once(
    hotline: Hotline, phones: Phones, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    """RQ kills the follow-up job at its timeout (2 s here) while Twilio hangs on the
    supporter's text and then refuses it: the follow-up was claimed, but never sent. Once the
    claim's lease lapses the sweeper sends it, once; a later sweep sends nothing again."""
    monkeypatch.setattr(workers.queue, "JOB_TIMEOUT", 2)
    words = _taken_with_a_text_as_it_rang(hotline, phones, calls)
    hotline.fake.hang_next(0.1)  # the held text goes
    hotline.fake.fail_next(1, status=503, code=20503, hang=3)  # the follow-up hangs: killed
    hotline.run_jobs()
    assert _sent_to(hotline, ALICE) == [words]
    hotline.clock.advance(seconds=30)
    hotline.sweep()  # within the lease: the run may be sending still
    assert _sent_to(hotline, ALICE) == [words]
    hotline.clock.advance(minutes=3)
    hotline.sweep()
    hotline.run_jobs()
    sent = _sent_to(hotline, ALICE)
    assert len(sent) == 2 and sent[0] == words
    assert "Thank you for taking that call" in sent[1]
    hotline.clock.advance(minutes=3)
    hotline.sweep()
    hotline.run_jobs()
    assert len(_sent_to(hotline, ALICE)) == 2  # once each


def test_texts_during_a_call_are_relayed_as_they_come_not_behind_those_held_as_it_rang(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Texts held as the phone rang wait for the call's follow-up (hours, if the call's end is
    lost); a text while the two talk is relayed at once, on either path."""
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    during: list[list[str]] = []
    script = Script(
        phones={ALICE: PRESS_1},
        before_answer={ALICE: lambda: clinician.texts("held as it rang")},
        on_bridge=lambda: during.append(_to_alice(hotline, CLINICIAN, HOTLINE, "while we talk")),
    )
    assert calls.place(CLINICIAN, HOTLINE, script).bridged_with == ALICE
    assert during == [["while we talk"]]
    hotline.run_jobs()
    sent = _sent_to(hotline, ALICE)
    assert sent[0] == "held as it rang" and "Thank you for taking that call" in sent[1]


def test_texts_held_as_the_call_rang_reach_whoever_takes_the_call_back(
    hotline: Hotline, phones: Phones
) -> None:
    """A call nobody takes becomes a call-back, and what the clinician texted as it rang
    reaches whoever accepts it, as for a text request."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician = phones.phone(CLINICIAN)
    words = "I am in the hospital car park, I can only text for a while"
    script = Script(
        phones={ALICE: VOICEMAIL, BOB: NO_ANSWER},
        before_answer={ALICE: lambda: clinician.texts(words)},
    )
    call = Calls(hotline).place(CLINICIAN, HOTLINE, script)
    assert call.bridged_with is None and call.hears("call you back shortly")
    hotline.run_jobs()
    phones.sync()
    taker = None
    for number in (ALICE, BOB):
        try:
            phones.phone(number).expect_text("Reply ACCEPT")
        except AssertionError:
            continue
        taker = phones.phone(number)
        break
    assert taker is not None, "nobody was offered the call-back"
    taker.texts("ACCEPT")
    hotline.run_jobs()
    phones.sync()
    got = [text.body for text in taker.inbox]
    assert any(words in body for body in got), got


def test_texts_held_for_a_call_back_reach_whoever_takes_the_call_that_replaces_it(
    hotline: Hotline, phones: Phones
) -> None:
    """A call-back waits; the clinician texts meanwhile, then calls again and Alice takes the
    new call: what they texted reaches her with the new call's follow-up."""
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    calls = Calls(hotline)
    first = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}))
    assert first.hears("call you back shortly")
    hotline.run_jobs()
    phones.phone(ALICE).expect_text("Reply ACCEPT")  # the call-back offer, not answered yet
    words = "Please call my work line instead of my cell, I will be there all night"
    clinician.texts(words)
    hotline.run_jobs()
    second = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert second.bridged_with == ALICE
    hotline.run_jobs()
    phones.sync()
    got = [text.body for text in phones.phone(ALICE).inbox]
    assert any(words in body for body in got), got
