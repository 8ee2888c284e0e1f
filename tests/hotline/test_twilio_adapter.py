"""TwilioTelephony through the real twilio client against the fake Twilio on loopback."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask, request
from twilio.request_validator import RequestValidator

from hotline.telephony import (
    DeliveryUnknownError,
    OptedOutError,
    PermanentError,
    RecipientError,
    RetryableError,
    SenderError,
    TelephonyError,
    classify,
    delete_record,
    is_record_sid,
)
from hotline.telephony.twilio_adapter import TwilioTelephony
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.kit.signing import deliver_to, signed_post

CLINICIAN = "+15555550101"
POOL = "+15555550199"
CALLBACK = "https://hotline.example/twilio/status"


@contextmanager
def telephony_at(
    base_url: str, token: str = AUTH_TOKEN, timeout: tuple[float, float] = (2, 10)
) -> Iterator[TwilioTelephony]:
    """A TwilioTelephony on ``base_url`` whose requests session is closed afterwards."""
    telephony = TwilioTelephony(ACCOUNT_SID, token, base_url=base_url, timeout=timeout)
    try:
        yield telephony
    finally:
        telephony.client.http_client.session.close()


@pytest.fixture
def fake() -> Iterator[FakeTwilio]:
    with FakeTwilio() as running:
        yield running


@pytest.fixture
def telephony(fake: FakeTwilio) -> Iterator[TwilioTelephony]:
    with telephony_at(fake.base_url) as adapter:
        yield adapter


def test_send_text_returns_the_sid_and_twilio_records_the_text(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    sent = telephony.send_text(CLINICIAN, POOL, "hello")

    assert sent.sid.startswith("SM") and len(sent.sid) == 34
    assert sent.status == "queued"
    [message] = fake.messages
    assert (message["sid"], message["to"], message["from_"], message["body"]) == (
        sent.sid,
        CLINICIAN,
        POOL,
        "hello",
    )
    assert message["status_callback"] is None


def test_send_text_passes_the_status_callback(fake: FakeTwilio, telephony: TwilioTelephony) -> None:
    telephony.send_text(CLINICIAN, POOL, "hello", status_callback=CALLBACK)

    assert fake.messages[0]["status_callback"] == CALLBACK


def test_place_call_returns_the_sid_and_never_records(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    sid = telephony.place_call(
        CLINICIAN, POOL, "https://hotline.example/twilio/voice/out", status_callback=CALLBACK
    )

    [call] = fake.calls
    assert sid.startswith("CA") and call["sid"] == sid
    assert (call["to"], call["from_"]) == (CLINICIAN, POOL)
    assert call["url"] == "https://hotline.example/twilio/voice/out"
    assert call["status_callback"] == CALLBACK
    assert call["record"] == "false"


def test_delete_message_removes_the_record(fake: FakeTwilio, telephony: TwilioTelephony) -> None:
    sid = telephony.send_text(CLINICIAN, POOL, "hello").sid

    telephony.delete_message(sid)

    assert fake.deleted == [sid]
    assert fake.messages == []


def test_deleting_an_unknown_message_is_permanent(telephony: TwilioTelephony) -> None:
    with pytest.raises(PermanentError) as raised:
        telephony.delete_message("SM" + "0" * 32)

    assert (raised.value.code, raised.value.status) == (20404, 404)


def test_delete_call_removes_a_completed_call(fake: FakeTwilio, telephony: TwilioTelephony) -> None:
    sid = "CA" + "1" * 32
    fake.carry_call(sid, CLINICIAN, POOL, "inbound")
    fake.end_call(sid, "no-answer")

    telephony.delete_call(sid)

    assert fake.deleted == [sid]
    assert fake.carried == []


def test_a_call_in_progress_cannot_be_deleted_yet(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    inbound = "CA" + "2" * 32
    fake.carry_call(inbound, CLINICIAN, POOL, "inbound")
    placed = telephony.place_call(CLINICIAN, POOL, "https://hotline.example/twilio/voice")

    for sid in (inbound, placed):
        with pytest.raises(RetryableError) as raised:
            telephony.delete_call(sid)
        assert (raised.value.code, raised.value.status) == (20009, 400)
    fake.end_call(inbound)
    telephony.delete_call(inbound)

    assert fake.deleted == [inbound]


def test_a_call_twilio_is_still_completing_cannot_be_deleted_yet(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    sid = "CA" + "3" * 32
    fake.carry_call(sid, CLINICIAN, POOL, "outbound-dial", parent="CA" + "4" * 32)
    fake.end_call(sid, "completed", settle=60)

    with pytest.raises(RetryableError):
        telephony.delete_call(sid)

    assert fake.deleted == []


def test_deleting_an_unknown_call_is_permanent(telephony: TwilioTelephony) -> None:
    with pytest.raises(PermanentError) as raised:
        telephony.delete_call("CA" + "0" * 32)

    assert (raised.value.code, raised.value.status) == (20404, 404)


def test_delete_record_deletes_by_the_kind_the_sid_names(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    text = telephony.send_text(CLINICIAN, POOL, "hello").sid
    call = "CA" + "5" * 32
    fake.carry_call(call, CLINICIAN, POOL, "inbound")
    fake.end_call(call)

    delete_record(telephony, call)
    delete_record(telephony, text)
    with pytest.raises(PermanentError):
        delete_record(telephony, "RE" + "6" * 32)  # a recording: not a kind this line deletes

    assert fake.deleted == [call, text]


@pytest.mark.parametrize(
    ("sid", "deletable"),
    [
        ("CA" + "ab" * 16, True),
        ("SM" + "ab" * 16, True),
        ("MM" + "ab" * 16, True),
        ("RE" + "ab" * 16, False),
        ("", False),
        ("CA", False),
        ("CA\x00" + "ab" * 15, False),
        ("CA" + "a" * 63, False),
        ("ca" + "ab" * 16, False),
    ],
)
def test_is_record_sid(sid: str, deletable: bool) -> None:
    assert is_record_sid(sid) is deletable


def test_a_wrong_auth_token_is_retryable_so_fixing_it_loses_nothing(fake: FakeTwilio) -> None:
    with (
        telephony_at(fake.base_url, token="not-the-token") as adapter,
        pytest.raises(RetryableError) as raised,
    ):
        adapter.send_text(CLINICIAN, POOL, "hello")

    assert (raised.value.code, raised.value.status) == (20003, 401)
    assert fake.messages == []


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, 21610, OptedOutError),
        (400, 21211, RecipientError),
        (400, 30003, RetryableError),
        (503, 20503, RetryableError),
        (503, None, RetryableError),
        (500, 20500, RetryableError),
        (429, 20429, RetryableError),
    ],
)
def test_twilio_errors_map_to_the_port_exceptions(
    fake: FakeTwilio,
    telephony: TwilioTelephony,
    status: int,
    code: int | None,
    kind: type[TelephonyError],
) -> None:
    fake.fail_next(status=status, code=code)

    with pytest.raises(TelephonyError) as raised:
        telephony.send_text(CLINICIAN, POOL, "hello")

    assert type(raised.value) is kind
    assert raised.value.status == status
    assert raised.value.code == (code or status)  # twilio-python's code for a code-less body
    assert fake.messages == []


def test_rfc9457_error_bodies_are_mapped_too(fake: FakeTwilio, telephony: TwilioTelephony) -> None:
    fake.fail_next(status=400, code=21610, problem=True)

    with pytest.raises(OptedOutError):
        telephony.send_text(CLINICIAN, POOL, "hello")


def test_an_opted_out_number_fails_every_time_and_others_still_work(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    fake.fail_for(CLINICIAN, code=21610)

    for _ in range(2):
        with pytest.raises(OptedOutError):
            telephony.send_text(CLINICIAN, POOL, "hello")
    telephony.send_text("+15555550102", POOL, "hello")

    assert [m["to"] for m in fake.messages] == ["+15555550102"]


@pytest.mark.parametrize("word", ["STOP", " stop ", "Unsubscribe", "OPTOUT", "revoke"])
def test_after_an_opt_out_word_twilio_refuses_that_pair_only(
    fake: FakeTwilio, telephony: TwilioTelephony, word: str
) -> None:
    """As Twilio's STOP filtering: the clinician's word to POOL blocks POOL to them (21610,
    every time), not another of our numbers, nor POOL to anyone else, nor a call."""
    other = "+15555550198"
    fake.text_in(CLINICIAN, POOL, word)

    for _ in range(2):
        with pytest.raises(OptedOutError):
            telephony.send_text(CLINICIAN, POOL, "hello")
    telephony.send_text(CLINICIAN, other, "hello")
    telephony.send_text("+15555550102", POOL, "hello")
    telephony.place_call(CLINICIAN, POOL, "https://hotline.example/twilio/voice")

    assert [(m["to"], m["from_"]) for m in fake.messages] == [
        (CLINICIAN, other),
        ("+15555550102", POOL),
    ]
    assert [(r["to"], r["from_"], r["code"], r["via"]) for r in fake.refused] == [
        (CLINICIAN, POOL, 21610, "api")
    ] * 2
    assert [c["to"] for c in fake.calls] == [CLINICIAN]
    assert fake.reply(other, CLINICIAN, "hi") and not fake.reply(POOL, CLINICIAN, "hi")
    assert fake.refused[-1]["via"] == "twiml"


@pytest.mark.parametrize("word", ["Stop.", "STOP PLEASE", "please cancel", "stopp"])
def test_only_the_word_alone_opts_out(
    fake: FakeTwilio, telephony: TwilioTelephony, word: str
) -> None:
    fake.text_in(CLINICIAN, POOL, word)

    telephony.send_text(CLINICIAN, POOL, "hello")

    assert not fake.opted_out(POOL, CLINICIAN) and not fake.refused


@pytest.mark.parametrize("word", ["START", "yes", " Unstop"])
def test_an_opt_in_word_lifts_the_block_and_faults_leave_it(
    fake: FakeTwilio, telephony: TwilioTelephony, word: str
) -> None:
    fake.text_in(CLINICIAN, POOL, "STOP")
    fake.text_in(CLINICIAN, POOL, "Yes!")  # not Twilio's opt-in word
    fake.clear_faults()  # a phone's opt-out is no injected fault
    with pytest.raises(OptedOutError):
        telephony.send_text(CLINICIAN, POOL, "hello")

    fake.text_in(CLINICIAN, POOL, word)

    telephony.send_text(CLINICIAN, POOL, "hello")
    assert [m["to"] for m in fake.messages] == [CLINICIAN]


def test_advanced_opt_out_words_count_by_their_opt_out_type(
    fake: FakeTwilio, telephony: TwilioTelephony
) -> None:
    fake.text_in(CLINICIAN, POOL, "ARRET", opt_out_type="STOP")
    assert fake.opted_out(POOL, CLINICIAN)
    fake.text_in(CLINICIAN, POOL, "ARRET", opt_out_type="START")
    assert not fake.opted_out(POOL, CLINICIAN)


def test_an_invalid_number_is_refused_by_the_fake_itself(telephony: TwilioTelephony) -> None:
    with pytest.raises(PermanentError) as raised:
        telephony.send_text("555-0101", POOL, "hello")

    assert raised.value.code == 21211


def test_no_answer_in_time_means_delivery_unknown(fake: FakeTwilio) -> None:
    fake.hang_next(5.0)

    with (
        telephony_at(fake.base_url, timeout=(1, 0.5)) as adapter,
        pytest.raises(DeliveryUnknownError),
    ):
        adapter.send_text(CLINICIAN, POOL, "hello")

    assert len(fake.messages) == 1  # it was sent: why a read timeout must not be retried


def test_nothing_listening_is_retryable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    with (
        telephony_at(f"http://127.0.0.1:{port}", timeout=(1, 1)) as adapter,
        pytest.raises(RetryableError),
    ):
        adapter.send_text(CLINICIAN, POOL, "hello")


def test_no_body_or_number_reaches_the_logs(
    telephony: TwilioTelephony, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    telephony.send_text(CLINICIAN, POOL, "a confidential body")

    assert "confidential" not in caplog.text
    assert CLINICIAN not in caplog.text


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (21610, 400, OptedOutError),
        (21211, 400, RecipientError),  # the phone's fault: shown on a supporter's roster entry
        (30006, 400, RecipientError),
        (21212, 400, SenderError),  # our number's fault: like an outage, not the recipient's
        (21606, 400, SenderError),
        (30034, 400, SenderError),
        (20003, 401, RetryableError),
        (20404, 404, PermanentError),
        (20009, 400, RetryableError),
        (30003, 400, RetryableError),
        (20429, 429, RetryableError),
        (30007, 400, PermanentError),
        (None, 503, RetryableError),
        (None, 429, RetryableError),
        (None, 400, PermanentError),
        (None, None, RetryableError),
        (99999, 500, RetryableError),
        (99999, 403, PermanentError),
    ],
)
def test_classify(code: int | None, status: int | None, kind: type[TelephonyError]) -> None:
    error = classify("failed", code, status)

    assert type(error) is kind
    assert (error.code, error.status, str(error)) == (code, status, "failed")


def status_receiver(token: str) -> tuple[Flask, list[dict[str, str]]]:
    """A tiny app that records status callbacks whose Twilio signature is valid (else 403)."""
    app = Flask(__name__)
    received: list[dict[str, str]] = []

    @app.post("/twilio/status")
    def status() -> tuple[str, int]:
        signature = request.headers.get("X-Twilio-Signature", "")
        if not RequestValidator(token).validate(request.url, request.form, signature):
            return "", 403
        received.append(request.form.to_dict())
        return "", 204

    return app, received


def test_post_status_sends_a_signed_callback(fake: FakeTwilio, telephony: TwilioTelephony) -> None:
    app, received = status_receiver(AUTH_TOKEN)
    sid = telephony.send_text(CLINICIAN, POOL, "hello", status_callback=CALLBACK).sid

    answered = fake.post_status(
        sid, "undelivered", error_code=30003, deliver=deliver_to(app.test_client())
    )

    assert answered == 204
    assert received == [
        {
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": "undelivered",
            "SmsStatus": "undelivered",
            "AccountSid": ACCOUNT_SID,
            "To": CLINICIAN,
            "From": POOL,
            "ApiVersion": "2010-04-01",
            "ErrorCode": "30003",
        }
    ]
    assert fake.messages[0]["status"] == "undelivered"


def test_signed_post_signs_for_the_public_url() -> None:
    app, received = status_receiver(AUTH_TOKEN)
    params = {"MessageSid": "SM" + "1" * 32, "MessageStatus": "delivered"}

    good = signed_post(
        app.test_client(), "https://hotline.example", "/twilio/status", params, AUTH_TOKEN
    )
    bad = signed_post(
        app.test_client(), "https://hotline.example", "/twilio/status", params, "another-token"
    )

    assert (good.status_code, bad.status_code) == (204, 403)
    assert received == [params]


def test_finished_records_pages_through_the_lists_of_one_number() -> None:
    """The reconciliation's list: every page, to and from the number, records over only,
    nothing of another number, at most ``limit`` of each kind and direction."""
    with FakeTwilio() as fake, telephony_at(fake.base_url) as telephony:
        old = datetime.now(UTC) - timedelta(hours=2)
        received = [fake.keep_message(CLINICIAN, POOL, f"text {i}", old) for i in range(130)]
        sent = [fake.keep_message(POOL, CLINICIAN, "reply", old, "delivered") for _ in range(3)]
        fake.keep_message(POOL, CLINICIAN, "still queued", old, "queued")
        fake.keep_message(CLINICIAN, "+15555550100", "to another number", old)
        fake.keep_message(CLINICIAN, POOL, "too recent", datetime.now(UTC))
        fake.carry_call("CA" + "2" * 32, CLINICIAN, POOL, "inbound", started_at=old)
        fake.end_call("CA" + "2" * 32)
        fake.carry_call("CA" + "3" * 32, CLINICIAN, POOL, "inbound", started_at=old)  # ongoing
        before = datetime.now(UTC) - timedelta(hours=1)
        found = telephony.finished_records(POOL, before, limit=1000)
        assert sorted(found) == sorted([*received, *sent, "CA" + "2" * 32])
        # At most 50 listed each way and kind, newest first: the recent one is one of the 50.
        assert len(telephony.finished_records(POOL, before, limit=50)) == 49 + 3 + 1


def test_dialled_legs_lists_the_legs_one_call_rang() -> None:
    """What the sweeper asks of a call whose end was lost: the legs its <Dial>s rang, over or
    not, and nothing of another call."""
    with FakeTwilio() as fake, telephony_at(fake.base_url) as telephony:
        caller, other = "CA" + "4" * 32, "CA" + "5" * 32
        fake.carry_call(caller, CLINICIAN, POOL, "inbound")
        fake.carry_call(other, CLINICIAN, POOL, "inbound")
        legs = [f"CA{i:032x}" for i in range(1, 4)]
        for leg in legs:
            fake.carry_call(leg, POOL, "+15555550102", "outbound-dial", caller)
        fake.end_call(legs[0], "no-answer")
        fake.carry_call("CA" + "6" * 32, POOL, "+15555550102", "outbound-dial", other)
        assert sorted(telephony.dialled_legs(caller)) == legs
        assert telephony.dialled_legs(legs[0]) == []
        fake.fail_next_list(1, status=503, code=20503)
        with pytest.raises(RetryableError):
            telephony.dialled_legs(caller)


def test_a_refused_list_page_is_a_telephony_error() -> None:
    with FakeTwilio() as fake, telephony_at(fake.base_url) as telephony:
        fake.fail_next_list(1, status=503, code=20503)
        with pytest.raises(RetryableError):
            telephony.finished_records(POOL, datetime.now(UTC), limit=10)
        fake.fail_next_list(1, status=403, code=20003)
        with pytest.raises(PermanentError):
            telephony.finished_records(POOL, datetime.now(UTC), limit=10)
