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

from sqlalchemy import func, select

from hotline.models import PendingText
from tests.kit.calls import PRESS_1, Calls, Script
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE, CLINICIAN = "+15550108001", "+15550109001"
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
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    words = "if we get cut off: I'm on ward 7 until 9, please text me"
    script = Script(phones={ALICE: PRESS_1}, before_answer={ALICE: lambda: clinician.texts(words)})
    call = calls.place(CLINICIAN, HOTLINE, script)
    assert call.bridged_with == ALICE

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
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    words = "if we get cut off: I'm on ward 7 until 9, please text me"
    script = Script(phones={ALICE: PRESS_1}, before_answer={ALICE: lambda: clinician.texts(words)})
    assert calls.place(CLINICIAN, HOTLINE, script).bridged_with == ALICE
    hotline.fake.fail_next(3, status=429, code=20429)  # the held text and its two retries
    hotline.run_jobs()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    sent = _sent_to(hotline, ALICE)
    assert len(sent) == 2 and sent[0] == words
    assert "Thank you for taking that call" in sent[1]
