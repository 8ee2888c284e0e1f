"""Bad input at the signed edge: every request gets a defined answer and nothing crashes.

Beyond tests/webhooks/test_edge.py (signatures, 413, a missing MessageSid, ten simultaneous
duplicates on both tiers) and the odd-input smoke test: awkward bodies in both directions and
while held, invalid UTF-8, senders that are not a person (hidden, SIP, withheld, our own
numbers: no loops) and destinations that are not a line. Every TwiML answer is parsed strictly,
so a reply Twilio could not parse fails here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select
from werkzeug.test import EnvironBuilder, TestResponse
from werkzeug.wrappers import Request

from hotline.models import (
    Base,
    Call,
    Clinician,
    Conversation,
    MessageDeletion,
    Offer,
    PendingText,
    WebhookEvent,
)
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline
from tests.kit.signing import FORM_CONTENT_TYPE, signed_headers
from workers.queue import QUEUE_NAME

CLINICIAN, ALICE = "+15550109001", "+15550108001"
SMS = "/twilio/sms"
TWILIO_LIMIT = 1600

BODIES = {
    "ten-thousand": ("I keep replaying the shift, minute by minute. " * 250)[:10_000],
    "empty": "",
    "whitespace": " \n\t ",
    "nul": "before\x00after",
    "controls": "bell\x07 escape\x1b vertical\x0b feed\x0c end",
    "emoji": "😔💔 🙏🏽 👩🏻‍⚕️ 🫶",  # astral plane, skin tones, a ZWJ sequence
    "right-to-left": "\u202bאני לא ישנה מאז — لا أستطيع النوم\u202c",  # with bidi embedding
    "markup": "<Say>hi</Say>]]>&amp;<!-- -->",  # must stay text, never become TwiML
}
# What XML 1.0 cannot carry at all: Twilio would refuse the whole document (error 12100).
XML_FORBIDDEN = {chr(c) for c in range(0x20) if chr(c) not in "\t\n\r"} | {"\ufffe", "\uffff"}


def parsed(response: TestResponse) -> list[tuple[str, str, str]]:
    """(to, from, body) of every <Message>, after a strict parse of the TwiML."""
    assert response.status_code == 200, response.status_code
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML; raises if invalid
    assert root.tag == "Response"
    for element in root.iter():
        assert element.tag in ("Response", "Message", "Body"), f"unexpected <{element.tag}>"
    return [
        (m.get("to", ""), m.get("from", ""), m.findtext("Body") or m.text or "")
        for m in root.iter("Message")
    ]


def to(messages: list[tuple[str, str, str]], number: str) -> list[str]:
    return [body for recipient, _, body in messages if recipient == number]


def expected_relay(body: str) -> str | None:
    """What the other side should receive: XML-safe, at most 1,600 characters; None: nothing."""
    kept = "".join(c for c in body if c not in XML_FORBIDDEN)
    if not kept.strip():
        return None
    return kept if len(kept) <= TWILIO_LIMIT else kept[: TWILIO_LIMIT - 3] + "..."


def count(hotline: Hotline, model: type[Base]) -> int:
    with hotline.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_nothing_happened(hotline: Hotline, *, record_deleted: bool = False) -> None:
    """Nothing stored, nothing sent through the API, no wake-up queued; but for a text that
    reached the webhook (``record_deleted``), the deletion of its record at Twilio."""
    for model in (WebhookEvent, Clinician, Conversation, Offer, PendingText):
        assert count(hotline, model) == 0, f"{model.__tablename__} has rows"
    assert count(hotline, MessageDeletion) == (1 if record_deleted else 0)
    assert hotline.fake.messages == []
    keys = [k.decode() if isinstance(k, bytes) else str(k) for k in hotline.redis.keys("rq:*")]
    others = [k for k in keys if "rq:worker" not in k and "delete_due_records" not in k]
    wake_up = ["rq:queues", f"rq:scheduled:{QUEUE_NAME}"]  # one scheduled job, nothing else
    assert sorted(others) == (wake_up if record_deleted else [])


@pytest.mark.parametrize("body", list(BODIES.values()), ids=list(BODIES))
def test_an_awkward_body_is_held_relayed_both_ways_and_never_breaks_the_twiml(
    hotline: Hotline, body: str
) -> None:
    hotline.add_supporter("Alice", ALICE)
    relay = expected_relay(body)

    first = parsed(hotline.sms(CLINICIAN, HOTLINE, body))
    assert len(to(first, CLINICIAN)) == 1, "the greeting"
    (offer,) = to(first, ALICE)
    assert ("ACCEPT" in offer and body not in offer) or not body.strip()
    assert count(hotline, PendingText) == (0 if relay is None else 1)

    accepted = parsed(hotline.sms(ALICE, POOL[0], "ACCEPT"))
    held = to(accepted, ALICE)[1:]  # after "You're connected"
    assert held == ([] if relay is None else [relay])
    assert count(hotline, PendingText) == 0

    onwards = parsed(hotline.sms(CLINICIAN, HOTLINE, body))
    assert to(onwards, ALICE) == ([] if relay is None else [relay])
    back = parsed(hotline.sms(ALICE, POOL[0], body))
    assert to(back, CLINICIAN) == ([] if relay is None else [relay])
    assert all(from_ in (HOTLINE, *POOL) for m in (onwards, back) for _, from_, _ in m)


def _raw_sms(hotline: Hotline, encoded_body: str, sid: str, from_: str, to_: str) -> TestResponse:
    """A signed text whose Body is sent exactly as ``encoded_body`` (already percent-encoded).

    The signature is computed over the form as the app decodes it, as Twilio's would be over
    what it sent; the point is what the app does with bytes that are not UTF-8.
    """
    params = {
        "MessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": from_,
        "To": to_,
        "NumMedia": "0",
        "ApiVersion": "2010-04-01",
    }
    data = f"{urlencode(params)}&Body={encoded_body}".encode("ascii")
    environ = EnvironBuilder(method="POST", data=data, content_type=FORM_CONTENT_TYPE)
    decoded = Request(environ.get_environ()).form.to_dict()
    headers = signed_headers(PUBLIC_URL + SMS, decoded, AUTH_TOKEN)
    return hotline.client.post(SMS, data=data, headers=headers, base_url=PUBLIC_URL)


def test_invalid_utf8_in_the_form_is_relayed_readably_not_dropped(hotline: Hotline) -> None:
    hotline.add_supporter("Alice", ALICE)
    first = parsed(
        _raw_sms(hotline, "caf%C3%A9%20%FF%FE%C3%28", "SM" + "a0" * 16, CLINICIAN, HOTLINE)
    )
    assert len(to(first, ALICE)) == 1
    accepted = parsed(hotline.sms(ALICE, POOL[0], "ACCEPT"))
    (held,) = to(accepted, ALICE)[1:]
    assert held.startswith("café ")
    later = parsed(_raw_sms(hotline, "%80%81ok", "SM" + "a1" * 16, CLINICIAN, HOTLINE))
    (relayed,) = to(later, ALICE)
    assert relayed.endswith("ok")
    assert not set(held + relayed) & XML_FORBIDDEN


@pytest.mark.parametrize(
    "sender",
    [
        "anonymous",
        "Anonymous",
        "restricted",
        "",
        "sip:clinician@pbx.example-hospital.org",
        "+266696687",  # what Twilio shows for a withheld number
        "+86282452253",  # "UNAVAILABLE"
        HOTLINE,  # our own numbers: a reply would loop
        POOL[0],
        "+1555010\x009001",
    ],
    ids=[
        "anonymous",
        "Anonymous",
        "restricted",
        "empty",
        "sip",
        "withheld",
        "unavailable",
        "hotline",
        "pool",
        "nul",
    ],
)
@pytest.mark.parametrize("line", [HOTLINE, POOL[1]], ids=["to-hotline", "to-pool"])
@pytest.mark.sqlite_only  # the edge decides before any SQL that differs between the tiers
def test_a_text_from_no_person_gets_an_empty_answer_and_nothing_happens(
    hotline: Hotline, sender: str, line: str
) -> None:
    hotline.add_supporter("Alice", ALICE)
    assert parsed(hotline.sms(sender, line, "hello?")) == []
    assert_nothing_happened(hotline, record_deleted=True)


@pytest.mark.parametrize(
    "line",
    ["+15559990000", "+442071838750", "12345", "sip:hotline@example.org", "+1555010\x000000"],
    ids=["unknown", "foreign", "short-code", "sip", "nul"],
)
@pytest.mark.sqlite_only
def test_a_text_to_a_number_that_is_not_a_line_is_ignored(hotline: Hotline, line: str) -> None:
    hotline.add_supporter("Alice", ALICE)
    assert parsed(hotline.sms(CLINICIAN, line, "hello?")) == []
    assert_nothing_happened(hotline, record_deleted=True)


def test_a_text_without_a_to_is_a_clear_400(hotline: Hotline) -> None:
    response = hotline.sms(CLINICIAN, " ", "hello?")
    assert response.status_code == 400
    assert "To" in response.get_data(as_text=True)
    assert CLINICIAN not in response.get_data(as_text=True)
    assert_nothing_happened(hotline)


@pytest.mark.parametrize(
    "sid",
    ["SM\x00" + "b" * 31, "SM" + "é" * 32, "SM" + "c" * 200, "SM-1;DROP TABLE offers"],
    ids=["nul", "accents", "long", "punctuation"],
)
@pytest.mark.parametrize("path", [SMS, "/twilio/status"])
def test_a_message_sid_that_is_not_a_twilio_sid_is_a_clear_400(
    hotline: Hotline, sid: str, path: str
) -> None:
    """Not a "database unavailable" answer on PostgreSQL only (NUL, or longer than the column)."""
    if path == SMS:
        response = hotline.sms(CLINICIAN, HOTLINE, "hello", MessageSid=sid)
    else:
        response = hotline.post(path, MessageSid=sid, MessageStatus="delivered")
    assert response.status_code == 400
    assert "SID" in response.get_data(as_text=True)
    assert_nothing_happened(hotline)


@pytest.mark.parametrize(
    "sid",
    ["CA\x00" + "b" * 31, "CA" + "é" * 32, "CA" + "c" * 200, "CA-1;DROP TABLE calls"],
    ids=["nul", "accents", "long", "punctuation"],
)
@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/twilio/voice", "CallSid"),
        ("/twilio/voice/start", "CallSid"),
        ("/twilio/voice/next?ring=1", "CallSid"),
        ("/twilio/voice/next?ring=1", "DialCallSid"),
        ("/twilio/status", "CallSid"),
    ],
)
def test_a_call_sid_that_is_not_a_twilio_sid_is_a_clear_400(
    hotline: Hotline, sid: str, path: str, field: str
) -> None:
    """As for MessageSid: a clear refusal, never "database unavailable" on PostgreSQL only."""
    hotline.add_supporter("Alice", ALICE)
    params = {"CallSid": "CA" + "d1" * 16, "From": CLINICIAN, "To": HOTLINE}
    params |= {"CallStatus": "completed", "DialCallStatus": "no-answer", field: sid}
    response = hotline.post(path, **params)
    assert response.status_code == 400
    assert f"{field} is not a Twilio SID" in response.get_data(as_text=True)
    assert count(hotline, Call) == 0 and count(hotline, Clinician) == 0
    assert_nothing_happened(hotline)


@pytest.mark.parametrize(
    "caller",
    ["anonymous", "sip:someone@example.org", "+266696687", HOTLINE, POOL[2]],
    ids=["anonymous", "sip", "withheld", "hotline", "pool"],
)
@pytest.mark.sqlite_only
def test_a_call_from_no_person_or_from_our_own_numbers_dials_nobody(
    hotline: Hotline, caller: str
) -> None:
    """A hidden caller still hears the greeting (they may need help); our own number calling in
    (a supporter's phone forwarding to the line) hears a sentence and is hung up on: no loop."""
    hotline.add_supporter("Alice", ALICE)
    params = {
        "CallSid": "CA" + "d0" * 16,
        "AccountSid": ACCOUNT_SID,
        "From": caller,
        "To": HOTLINE,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }
    response = hotline.post("/twilio/voice", **params)
    assert response.status_code == 200
    root = ET.fromstring(response.get_data())  # noqa: S314 - our own TwiML
    assert root.find(".//Dial") is None and root.find(".//Number") is None
    assert count(hotline, Clinician) == 0
    ours = caller in (HOTLINE, *POOL)
    assert count(hotline, Call) == (0 if ours else 1)
    if ours:
        assert root.find("Hangup") is not None and root.find(".//Gather") is None
    assert hotline.fake.messages == [] and hotline.fake.calls == []
