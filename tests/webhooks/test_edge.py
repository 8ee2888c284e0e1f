"""The Twilio edge as Twilio sees it: signed form posts in, TwiML out, on both database tiers.

Signatures (403 and nothing stored), malformed requests, duplicate and simultaneous deliveries
of one MessageSid, status callbacks, /healthz, and a database that is down.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import fakeredis
import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError
from werkzeug.test import TestResponse

from hotline.app import build_services, create_app
from hotline.db import transaction
from hotline.models import Base, Clinician, Conversation, WebhookEvent
from hotline.programmes import ensure_programme
from hotline.services import Services
from hotline.settings import load_settings
from hotline.speech import digit_by_digit
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline, make_hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.signing import FORM_CONTENT_TYPE, sign, signed_headers, signed_post

CLINICIAN = "+15550109001"
SUPPORTER = "+15550108001"
SMS = "/twilio/sms"


def inbound_sms(
    sid: str = "SM" + "a1" * 16, body: str = "I need to talk to someone"
) -> dict[str, str]:
    return {
        "MessageSid": sid,
        "SmsSid": sid,
        "SmsMessageSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": CLINICIAN,
        "To": HOTLINE,
        "Body": body,
        "NumMedia": "0",
        "NumSegments": "1",
        "SmsStatus": "received",
        "ApiVersion": "2010-04-01",
    }


def inbound_call(sid: str = "CA" + "b2" * 16) -> dict[str, str]:
    return {
        "CallSid": sid,
        "AccountSid": ACCOUNT_SID,
        "From": CLINICIAN,
        "To": HOTLINE,
        "Caller": CLINICIAN,
        "Called": HOTLINE,
        "CallStatus": "ringing",
        "Direction": "inbound",
        "ApiVersion": "2010-04-01",
    }


def count(hotline: Hotline, model: type[Base]) -> int:
    with hotline.session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def assert_nothing_stored(hotline: Hotline) -> None:
    for model in (WebhookEvent, Clinician, Conversation):
        assert count(hotline, model) == 0, f"{model.__tablename__} has rows"


def twiml(response: TestResponse) -> ET.Element:
    assert response.mimetype == "text/xml"
    root = ET.fromstring(response.get_data(as_text=True))  # noqa: S314 - our own TwiML
    assert root.tag == "Response"
    return root


def texts_to(root: ET.Element, number: str) -> list[ET.Element]:
    return [m for m in root.iter("Message") if m.get("to") == number]


def post_raw(hotline: Hotline, path: str, params: dict[str, str], **headers: str) -> TestResponse:
    """A form post with exactly the given headers (a signature or none)."""
    return hotline.client.post(
        path,
        data=params,
        headers={"Content-Type": FORM_CONTENT_TYPE, **headers},
        base_url=PUBLIC_URL,
    )


# --- signatures ------------------------------------------------------------------------------


def test_a_correctly_signed_text_is_answered_in_twiml(hotline: Hotline) -> None:
    response = signed_post(hotline.client, PUBLIC_URL, SMS, inbound_sms(), AUTH_TOKEN)
    assert response.status_code == 200
    assert twiml(response).find("Message") is not None
    assert count(hotline, WebhookEvent) == 1


def test_a_forged_signature_is_refused_and_nothing_is_stored(hotline: Hotline) -> None:
    params = inbound_sms()
    forged = sign(PUBLIC_URL + SMS, params, "not-the-auth-token")
    response = post_raw(hotline, SMS, params, **{"X-Twilio-Signature": forged})
    assert response.status_code == 403
    assert_nothing_stored(hotline)


@pytest.mark.parametrize("signature", [None, "", "   "], ids=["absent", "empty", "blank"])
def test_a_missing_signature_is_refused(hotline: Hotline, signature: str | None) -> None:
    headers = {} if signature is None else {"X-Twilio-Signature": signature}
    response = post_raw(hotline, SMS, inbound_sms(), **headers)
    assert response.status_code == 403
    assert_nothing_stored(hotline)


@pytest.mark.parametrize(
    ("name", "value"),
    [("Body", "something else"), ("From", "+15550109999"), ("Tampered", "added after signing")],
)
def test_a_parameter_changed_after_signing_is_refused(
    hotline: Hotline, name: str, value: str
) -> None:
    params = inbound_sms()
    headers = signed_headers(PUBLIC_URL + SMS, params, AUTH_TOKEN)
    response = hotline.client.post(
        SMS, data={**params, name: value}, headers=headers, base_url=PUBLIC_URL
    )
    assert response.status_code == 403
    assert_nothing_stored(hotline)


@pytest.mark.parametrize(
    "signed_for",
    [
        "https://attacker.example.com",
        "http://hotline.example.org",  # the scheme is part of what Twilio signs
        "https://hotline.example.org/prefix",
    ],
)
def test_a_signature_for_another_url_is_refused(hotline: Hotline, signed_for: str) -> None:
    params = inbound_sms()
    headers = signed_headers(signed_for + SMS, params, AUTH_TOKEN)
    response = hotline.client.post(SMS, data=params, headers=headers, base_url=signed_for)
    assert response.status_code == 403
    assert_nothing_stored(hotline)


def test_a_refused_signature_logs_the_url_it_was_checked_against(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """A HOTLINE_PUBLIC_URL that is not the URL set at Twilio refuses every webhook: the log
    must let the operator compare the two (and never carries the form: numbers, bodies)."""
    params = inbound_sms()
    at_twilio = "https://hotline.example.org:8443"  # the URL the IT team set at Twilio
    headers = signed_headers(at_twilio + SMS + "?x=1", params, AUTH_TOKEN)
    with caplog.at_level("WARNING", logger="webhooks.twilio"):
        response = hotline.client.post(
            SMS + "?x=1", data=params, headers=headers, base_url=at_twilio
        )
    assert response.status_code == 403
    assert f"{PUBLIC_URL}{SMS}?x=1" in caplog.text and "HOTLINE_PUBLIC_URL" in caplog.text
    assert CLINICIAN not in caplog.text and params["Body"] not in caplog.text


def test_a_refused_signature_never_logs_a_password_in_the_public_url(
    database_url: str,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: object,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Twilio can call webhooks with HTTP basic auth in their URL; the operator who puts it in
    HOTLINE_PUBLIC_URL sees the URL in the refusal's line, without the password."""
    public = "https://twilio:hunter2-secret@hotline.example.org"
    line = make_hotline(database_url, redis_conn, fake_twilio, tmp_path, HOTLINE_PUBLIC_URL=public)
    try:
        with caplog.at_level("WARNING", logger="webhooks.twilio"):
            response = line.client.post(SMS, data=inbound_sms(), base_url=PUBLIC_URL)
    finally:
        line.clock.stop()
        line.services.sessions.kw["bind"].dispose()
    assert response.status_code == 403
    assert "https://twilio:***@hotline.example.org/twilio/sms" in caplog.text
    assert "hunter2" not in caplog.text


def test_forwarded_headers_cannot_move_the_signed_url(hotline: Hotline) -> None:
    """Behind a proxy anyone can send X-Forwarded-*: the configured public URL is what counts."""
    evil = "https://attacker.example.com"
    params = inbound_sms()
    headers = {
        **signed_headers(evil + SMS, params, AUTH_TOKEN),
        "X-Forwarded-Host": "attacker.example.com",
        "X-Forwarded-Proto": "https",
        "Host": "attacker.example.com",
    }
    response = hotline.client.post(SMS, data=params, headers=headers, base_url=evil)
    assert response.status_code == 403
    assert_nothing_stored(hotline)


def test_the_console_secret_key_does_not_sign_webhooks_when_twilio_is_configured(
    hotline: Hotline,
) -> None:
    params = inbound_sms()
    response = signed_post(hotline.client, PUBLIC_URL, SMS, params, hotline.settings.secret_key)
    assert response.status_code == 403
    assert_nothing_stored(hotline)


TWILIO_PATHS = [
    "/twilio/sms",
    "/twilio/voice",
    "/twilio/status",
    # The design's own: the menu, each ring, the screen, the pick-up, the peer's call, and a
    # call through the mask (its screen on the clinician's phone, the press of 1, its result).
    "/twilio/voice/start",
    "/twilio/voice/next?ring=1",
    "/twilio/voice/screen?ring=1",
    "/twilio/voice/pickup?ring=1",
    "/twilio/voice/peer?call=1",
    "/twilio/voice/peerscreen?call=1",
    "/twilio/voice/peerpickup?call=1",
    "/twilio/voice/through",
    "/twilio/voice/throughscreen",
    "/twilio/voice/throughpickup",
]


@pytest.mark.parametrize("path", TWILIO_PATHS)
def test_every_twilio_path_refuses_an_unsigned_request(hotline: Hotline, path: str) -> None:
    params = {**inbound_call(), "MessageSid": "SM" + "c3" * 16, "MessageStatus": "delivered"}
    params.update(Digits="1", DialCallStatus="completed", DialBridged="true")
    assert post_raw(hotline, path, params).status_code == 403
    assert_nothing_stored(hotline)


@pytest.mark.parametrize(
    ("method", "path", "signed_answer"),
    [("POST", "/twilio/nowhere", 404), ("GET", "/twilio/sms", 405), ("GET", "/twilio/", 404)],
)
def test_a_twilio_path_nothing_serves_refuses_an_unsigned_request(
    hotline: Hotline, method: str, path: str, signed_answer: int
) -> None:
    """Every /twilio/ path answers 403 unsigned (CONTRACT.md), whether or not a webhook is
    there; a signed request learns it is not (404) or takes another method (405)."""
    unsigned = hotline.client.open(path, method=method, base_url=PUBLIC_URL)
    assert unsigned.status_code == 403
    headers = {"X-Twilio-Signature": sign(PUBLIC_URL + path, {}, AUTH_TOKEN)}
    signed = hotline.client.open(path, method=method, base_url=PUBLIC_URL, headers=headers)
    assert signed.status_code == signed_answer
    assert_nothing_stored(hotline)


@pytest.fixture
def rotating(
    database_url: str,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    sessions: object,  # empties the tables after the test
) -> Iterator[Hotline]:
    """A hotline in the middle of an auth token rotation."""
    harness = make_hotline(
        database_url, redis_conn, fake_twilio, tmp_path, TWILIO_AUTH_TOKEN_SECONDARY="second-token"
    )
    yield harness
    harness.clock.stop()  # time-machine's travel is process-wide: left on, later tests freeze
    harness.services.sessions.kw["bind"].dispose()


def test_during_a_token_rotation_both_tokens_sign(rotating: Hotline) -> None:
    first = signed_post(rotating.client, PUBLIC_URL, SMS, inbound_sms("SM" + "01" * 16), AUTH_TOKEN)
    second = signed_post(
        rotating.client, PUBLIC_URL, SMS, inbound_sms("SM" + "02" * 16), "second-token"
    )
    assert (first.status_code, second.status_code) == (200, 200)
    assert count(rotating, WebhookEvent) == 2
    third = signed_post(rotating.client, PUBLIC_URL, SMS, inbound_sms("SM" + "03" * 16), "other")
    assert third.status_code == 403


def test_the_secondary_token_is_refused_when_it_is_not_configured(hotline: Hotline) -> None:
    response = signed_post(hotline.client, PUBLIC_URL, SMS, inbound_sms(), "second-token")
    assert response.status_code == 403
    assert_nothing_stored(hotline)


# --- what a signed request may carry ---------------------------------------------------------


def test_unknown_extra_parameters_are_accepted(hotline: Hotline) -> None:
    params = {
        **inbound_sms(),
        "FromCountry": "US",
        "FromState": "CA",
        "ToCity": "SPRINGFIELD",
        "MessagingServiceSid": "MG" + "0" * 32,
        "SomethingTwilioAddsNextYear": "whatever",
    }
    response = hotline.post(SMS, **params)
    assert response.status_code == 200
    assert twiml(response).find("Message") is not None


def test_unicode_digits_in_number_fields_are_read_as_absent_not_a_500(hotline: Hotline) -> None:
    """ "²" is a digit to str.isdigit but not to int: NumMedia and ErrorCode take ASCII only."""
    text = hotline.sms(CLINICIAN, HOTLINE, "hello", NumMedia="\u00b2")
    assert text.status_code == 200 and twiml(text).find("Message") is not None
    status = hotline.post(
        "/twilio/status",
        MessageSid="SM" + "ab" * 16,
        MessageStatus="undelivered",
        ErrorCode="\u00b3",
    )
    assert status.status_code == 204


def test_text_and_voice_answers_are_twiml(hotline: Hotline) -> None:
    text = hotline.sms(CLINICIAN, HOTLINE, "hello")
    call = hotline.post("/twilio/voice", **inbound_call())
    for response in (text, call):
        assert response.status_code == 200
        assert response.mimetype == "text/xml"
        twiml(response)
    assert twiml(call).find("Say") is not None


@pytest.mark.parametrize("blank", [False, True], ids=["absent", "blank"])
def test_a_signed_text_without_a_message_sid_is_a_clear_400(hotline: Hotline, blank: bool) -> None:
    params = inbound_sms()
    for name in ("MessageSid", "SmsSid", "SmsMessageSid"):
        if blank:
            params[name] = " "
        else:
            del params[name]
    response = hotline.post(SMS, **params)
    assert response.status_code == 400
    assert "MessageSid" in response.get_data(as_text=True)
    assert CLINICIAN not in response.get_data(as_text=True)
    assert_nothing_stored(hotline)


def test_a_signed_call_without_a_call_sid_is_a_clear_400(hotline: Hotline) -> None:
    params = inbound_call()
    del params["CallSid"]
    response = hotline.post("/twilio/voice", **params)
    assert response.status_code == 400
    assert "CallSid" in response.get_data(as_text=True)


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
def test_a_one_megabyte_body_is_refused(hotline: Hotline, signed: bool) -> None:
    params = inbound_sms(body="x" * 1024 * 1024)
    headers = signed_headers(PUBLIC_URL + SMS, params, AUTH_TOKEN) if signed else {}
    response = hotline.client.post(
        SMS,
        data=params,
        headers={"Content-Type": FORM_CONTENT_TYPE, **headers},
        base_url=PUBLIC_URL,
    )
    # Unsigned, 403 would do as well: the body has to be read before a signature can be checked.
    assert response.status_code == 413 if signed else response.status_code in (403, 413)
    assert_nothing_stored(hotline)


# --- duplicate deliveries --------------------------------------------------------------------


def test_a_repeated_message_sid_gets_an_empty_answer_and_changes_nothing(hotline: Hotline) -> None:
    hotline.add_supporter("Alice", SUPPORTER)
    sid = "SM" + "d4" * 16
    first = hotline.sms(CLINICIAN, HOTLINE, "please, someone", MessageSid=sid)
    second = hotline.sms(CLINICIAN, HOTLINE, "please, someone", MessageSid=sid)
    assert first.status_code == second.status_code == 200
    assert len(twiml(first)) > 0
    assert len(twiml(second)) == 0, second.get_data(as_text=True)
    assert count(hotline, Conversation) == 1
    assert count(hotline, WebhookEvent) == 1
    assert len(texts_to(twiml(first), SUPPORTER)) == 1


def test_the_same_message_sid_delivered_ten_times_at_once_is_handled_once(
    hotline: Hotline,
) -> None:
    hotline.add_supporter("Alice", SUPPORTER)
    rest_before = len(hotline.fake.messages)
    sid = "SM" + "e5" * 16
    params = inbound_sms(sid, "I made a mistake tonight and I can't stop thinking about it")
    deliveries = 10
    barrier = threading.Barrier(deliveries)
    responses: list[TestResponse] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        client = hotline.app.test_client()
        try:
            barrier.wait(timeout=10)
            responses.append(signed_post(client, PUBLIC_URL, SMS, params, AUTH_TOKEN))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=deliver) for _ in range(deliveries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert [r.status_code for r in responses] == [200] * deliveries

    with hotline.session() as session:
        keys = session.scalars(select(WebhookEvent.key).where(WebhookEvent.key.contains(sid)))
        assert len(keys.all()) == 1
    assert count(hotline, Conversation) == 1
    assert count(hotline, Clinician) == 1
    offers_in_twiml = sum(len(texts_to(twiml(r), SUPPORTER)) for r in responses)
    offers_by_rest = [m for m in hotline.fake.messages[rest_before:] if m["to"] == SUPPORTER]
    assert offers_in_twiml + len(offers_by_rest) == 1
    assert all(m.get("from") in POOL for r in responses for m in texts_to(twiml(r), SUPPORTER))
    answered = [r for r in responses if len(twiml(r)) > 0]
    assert len(answered) == 1, "only one delivery may answer; the others are duplicates"


# --- status callbacks and health -------------------------------------------------------------


@pytest.mark.parametrize(
    "callback",
    [
        {"MessageSid": "SM" + "f6" * 16, "MessageStatus": "delivered"},
        {"MessageSid": "SM" + "f7" * 16, "MessageStatus": "undelivered", "ErrorCode": "30003"},
        {"CallSid": "CA" + "f8" * 16, "CallStatus": "completed", "CallDuration": "42"},
    ],
    ids=["delivered", "undelivered", "call-completed"],
)
def test_a_signed_status_callback_is_acknowledged(
    hotline: Hotline, callback: dict[str, str]
) -> None:
    params = {"AccountSid": ACCOUNT_SID, "From": POOL[0], "To": SUPPORTER, **callback}
    response = hotline.post("/twilio/status", **params)
    assert response.status_code == 204
    assert post_raw(hotline, "/twilio/status", params).status_code == 403


def test_health_names_the_database_and_redis(hotline: Hotline) -> None:
    response = hotline.client.get("/healthz")
    assert response.status_code == 200
    assert response.is_json
    health = response.get_json()
    assert health["database"] == "ok"
    assert "redis" in health
    assert str(health["redis"]).startswith("ok")


@pytest.mark.sqlite_only
@pytest.mark.parametrize("revision", [None, "0009"], ids=["never", "behind"])
def test_health_and_the_start_log_say_when_the_database_needs_an_upgrade(
    tmp_path: Path, fake_twilio: FakeTwilio, revision: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A deploy whose `hotline db upgrade` did not run (a platform that ignores the Procfile's
    release line): every text gets the crisis-line fallback, and health must not say ok."""
    from hotline.migrate import upgrade

    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    if revision:
        upgrade(url, revision)
    settings = load_settings(environment_for(url, fake_twilio), instance_path=tmp_path)
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    services = build_services(settings, redis=redis)
    try:
        with caplog.at_level("ERROR", logger="hotline.app"):
            app = create_app(services=services, redis=redis)
        assert "run `hotline db upgrade`" in caplog.text
        health = app.test_client().get("/healthz")
        assert health.status_code == 200
        assert health.get_json()["status"] == "degraded"
        assert health.get_json()["database"] == "needs `hotline db upgrade`"
    finally:
        services.sessions.kw["bind"].dispose()


# --- the database is down --------------------------------------------------------------------

NOWHERE = "postgresql+psycopg://postgres@127.0.0.1:1/nothing"  # nothing listens on port 1


@pytest.fixture
def database_down(tmp_path: Path, fake_twilio: FakeTwilio) -> Iterator[tuple[Flask, Services]]:
    """The app as it runs while PostgreSQL is unreachable (built by hand: nothing migrates)."""
    settings = load_settings(environment_for(NOWHERE, fake_twilio), instance_path=tmp_path)
    redis = fakeredis.FakeRedis(server=fakeredis.FakeServer())
    services = build_services(settings, redis=redis)
    yield create_app(services=services, redis=redis), services
    services.sessions.kw["bind"].dispose()
    redis.close()


def timed_post(app: Flask, path: str, params: dict[str, str]) -> tuple[TestResponse, float]:
    started = time.monotonic()
    response = signed_post(app.test_client(), PUBLIC_URL, path, params, AUTH_TOKEN)
    return response, time.monotonic() - started


def assert_no_internals(response: TestResponse) -> None:
    body = response.get_data(as_text=True)
    for leak in ("Traceback", "OperationalError", "psycopg", "sqlalchemy", "127.0.0.1", CLINICIAN):
        assert leak not in body, f"the answer shows {leak!r}"


def test_with_the_database_down_a_text_still_gets_the_crisis_line(
    database_down: tuple[Flask, Services], caplog: pytest.LogCaptureFixture
) -> None:
    app, services = database_down
    response, seconds = timed_post(app, SMS, inbound_sms())
    assert response.status_code == 200
    assert seconds < 5
    replies = [m.findtext("Body") or m.text or "" for m in twiml(response).iter("Message")]
    assert len(replies) == 1
    assert services.settings.crisis_text in replies[0]
    assert_no_internals(response)
    assert CLINICIAN not in caplog.text
    assert "I need to talk" not in caplog.text


def test_with_the_database_down_a_caller_hears_the_crisis_line(
    database_down: tuple[Flask, Services],
) -> None:
    app, services = database_down
    response, seconds = timed_post(app, "/twilio/voice", inbound_call())
    assert response.status_code == 200
    assert seconds < 5
    said = [say.text or "" for say in twiml(response).iter("Say")]
    assert digit_by_digit(services.settings.crisis_text) in said
    assert twiml(response).find("Hangup") is not None
    assert_no_internals(response)


@pytest.mark.parametrize(
    "callback",
    [
        {"MessageSid": "SM" + "d4" * 16, "MessageStatus": "delivered"},
        {"CallSid": "CA" + "b2" * 16, "CallStatus": "completed"},
    ],
    ids=["message", "call"],
)
def test_with_the_database_down_a_status_callback_is_still_acknowledged(
    database_down: tuple[Flask, Services], callback: dict[str, str]
) -> None:
    """Twilio does not retry a status callback: a 5xx would only leave an 11200 alert in its
    debugger holding the request, the clinician's number included, out of every deletion."""
    app, _ = database_down
    params = {**callback, "AccountSid": ACCOUNT_SID, "From": HOTLINE, "To": CLINICIAN}
    response, seconds = timed_post(app, "/twilio/status", params)
    assert response.status_code == 204
    assert seconds < 5


def test_with_the_database_down_health_says_so(database_down: tuple[Flask, Services]) -> None:
    app, _ = database_down
    response = app.test_client().get("/healthz")
    assert response.is_json
    assert response.get_json()["database"] != "ok"


def test_with_the_database_down_a_forged_text_is_still_refused(
    database_down: tuple[Flask, Services],
) -> None:
    app, _ = database_down
    response = signed_post(app.test_client(), PUBLIC_URL, SMS, inbound_sms(), "forged")
    assert response.status_code == 403


def test_with_the_database_down_a_programme_keeps_its_own_crisis_sentence(
    hotline: Hotline,
) -> None:
    """Another hospital's crisis line may not be 988: once this process has served a number,
    an outage answers with that number's programme's sentence, by text and by voice."""
    north, samaritans = "+15550200000", "In crisis? Call Samaritans on 116 123, free, any time."
    with transaction(hotline.services.sessions) as session:
        programme = ensure_programme(
            session, slug="north", name="North", hotline_number=north, pool_numbers=()
        )
        programme.crisis_text = samaritans
    hotline.add_supporter("Alice", "+15550108001")
    assert samaritans in hotline.sms(CLINICIAN, north, "hello").get_data(as_text=True)
    engine = hotline.services.sessions.kw["bind"]

    def database_down(*_args: object) -> None:
        raise OperationalError("SELECT", None, Exception("connection refused"))

    event.listen(engine, "before_cursor_execute", database_down)
    try:
        texted = hotline.sms("+15550109002", north, "is anyone there").get_data(as_text=True)
        called = hotline.post("/twilio/voice", CallSid="CA" + "7" * 32, From=CLINICIAN, To=north)
        default = hotline.sms("+15550109002", HOTLINE, "is anyone there").get_data(as_text=True)
    finally:
        event.remove(engine, "before_cursor_execute", database_down)
    words = {
        name: "".join(ET.fromstring(body).itertext())  # noqa: S314 - our own TwiML
        for name, body in (
            ("texted", texted),
            ("called", called.get_data(as_text=True)),
            ("default", default),
        )
    }
    assert samaritans in words["texted"] and digit_by_digit(samaritans) in words["called"]
    assert "988" not in words["texted"] + words["called"]
    assert hotline.settings.crisis_text in words["default"]  # not served yet: the environment's


def texted_while_the_database_is_down(app: Flask, services: Services, to: str) -> list[str]:
    """What a first text to ``to`` is answered with by ``app`` while its database fails."""
    engine = services.sessions.kw["bind"]

    def database_down(*_args: object) -> None:
        raise OperationalError("SELECT", None, Exception("connection refused"))

    event.listen(engine, "before_cursor_execute", database_down)
    try:
        params = {**inbound_sms(), "To": to}
        response = signed_post(app.test_client(), PUBLIC_URL, SMS, params, AUTH_TOKEN)
    finally:
        event.remove(engine, "before_cursor_execute", database_down)
        engine.dispose()
    return [m.text or "" for m in twiml(response).iter("Message")]


def test_with_the_database_down_a_peer_writing_on_a_pool_number_is_told_to_send_it_again(
    hotline: Hotline,
) -> None:
    """A pool number is texted by peers (clinicians write to the hotline number): a peer's text
    to the clinician that could not be passed on gets "send it again", not the answer for a
    clinician ("we can't connect you to a peer", the crisis line), which left peers unsure
    whether the clinician had read them. The hotline number still answers with the crisis line
    (also where it doubles as the pool number)."""
    alice = "+15550108001"
    hotline.add_supporter("Alice", alice)
    hotline.sms(CLINICIAN, HOTLINE, "I need to talk")
    hotline.sms(alice, POOL[0], "ACCEPT")
    engine = hotline.services.sessions.kw["bind"]

    def database_down(*_args: object) -> None:
        raise OperationalError("SELECT", None, Exception("connection refused"))

    event.listen(engine, "before_cursor_execute", database_down)
    try:
        from_peer = twiml(hotline.sms(alice, POOL[0], "I'm here, take your time"))
        from_clinician = twiml(hotline.sms(CLINICIAN, HOTLINE, "thank you"))
    finally:
        event.remove(engine, "before_cursor_execute", database_down)
    peer_words = "".join(from_peer.itertext())
    assert "send it again" in peer_words
    assert "connect you to a peer" not in peer_words
    assert hotline.settings.crisis_text not in peer_words
    clinician_words = "".join(from_clinician.itertext())
    assert hotline.settings.crisis_text in clinician_words


def test_a_web_process_knows_each_numbers_crisis_sentence_from_its_start(
    hotline: Hotline,
) -> None:
    """Relays on PostgreSQL's fast path never read their programme: a process that has only
    relayed for a number still answers an outage there with that programme's sentence."""
    north, samaritans = "+15550200000", "In crisis? Call Samaritans on 116 123, free, any time."
    with transaction(hotline.services.sessions) as session:
        programme = ensure_programme(
            session, slug="north", name="North", hotline_number=north, pool_numbers=()
        )
        programme.crisis_text = samaritans
    services = build_services(hotline.settings, redis=hotline.redis)
    app = create_app(services=services, redis=hotline.redis)  # a web process starting now
    replies = texted_while_the_database_is_down(app, services, north)
    assert len(replies) == 1 and samaritans in replies[0]


def test_a_crisis_sentence_edited_elsewhere_reaches_a_running_web_process_within_minutes(
    hotline: Hotline,
) -> None:
    """A coordinator changes the crisis line in the console, served by another web process:
    this one, which has only taken status callbacks since, answers a later outage with the
    new sentence, not the one it read at its start."""
    north, old = "+15550200000", "In crisis? Call Samaritans on 116 123, free, any time."
    new = "In crisis? Call the North staff line on 0800 111 222, any time."
    with transaction(hotline.services.sessions) as session:
        programme = ensure_programme(
            session, slug="north", name="North", hotline_number=north, pool_numbers=()
        )
        programme.crisis_text = old
    services = build_services(hotline.settings, redis=hotline.redis, clock=hotline.clock)
    app = create_app(services=services, redis=hotline.redis)  # a web process started earlier
    with transaction(hotline.services.sessions) as session:
        session.get_one(type(programme), programme.id).crisis_text = new  # edited elsewhere
    hotline.clock.advance(minutes=6)
    status = {"MessageSid": "SM" + "5" * 32, "MessageStatus": "delivered", "To": north}
    with signed_post(app.test_client(), PUBLIC_URL, "/twilio/status", status, AUTH_TOKEN) as done:
        assert done.status_code == 204
    replies = texted_while_the_database_is_down(app, services, north)
    assert len(replies) == 1 and new in replies[0] and old not in replies[0]
