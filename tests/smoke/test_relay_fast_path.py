"""The relay in one statement (hotline/fastrelay.py, PostgreSQL) and where it gives way.

On PostgreSQL a text inside a live conversation is relayed by one statement; everything else
takes the full path. The tests below that run on both tiers state behaviour both paths must
share; on SQLite they check the full path, on PostgreSQL the fast one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine, event, select, update
from sqlalchemy.orm import Session

from hotline import clinicianline, fastrelay
from hotline.db import Retry, run_in_transaction, transaction
from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    MessageDeletion,
    PoolNumber,
    WebhookEvent,
)
from tests.kit.databases import sent_behind_a_lock
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE = "+15550108001"
CLINICIAN = "+15550109001"


def _postgres_only(hotline: Hotline) -> Engine:
    engine: Engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("the one-statement relay is PostgreSQL's")
    return engine


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def test_a_relay_each_way_is_one_statement_on_postgresql(hotline: Hotline, phones: Phones) -> None:
    engine = _postgres_only(hotline)
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=3)
    with _statements(engine) as seen:
        clinician.texts("I keep replaying it")
    assert len(seen) == 1, seen
    alice.expect_text("I keep replaying it", from_=POOL[0])
    hotline.clock.advance(minutes=1)
    with _statements(engine) as seen:
        alice.texts("I'm here. Tell me what happened.")
    assert len(seen) == 1, seen
    clinician.expect_text("I'm here. Tell me what happened.", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_sender_not_written_in_e164_is_relayed_by_the_full_path(
    hotline: Hotline, phones: Phones
) -> None:
    """The statement looks ``From`` up exactly as sent; written any other way it finds nobody,
    changes nothing, and the full path (which normalises the number) relays the text."""
    engine = _postgres_only(hotline)
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=3)
    with _statements(engine) as seen:
        response = hotline.sms("+1 555 010 9001", HOTLINE, "it was my patient")
    assert len(seen) > 1, seen  # gave way to the full path, its own claim rolled back
    message = ET.fromstring(response.get_data()).find("Message")  # noqa: S314 - ours
    assert message is not None and message.text == "it was my patient"
    assert message.get("to") == ALICE and message.get("from") == POOL[0]
    del clinician, alice


def test_the_fast_relay_writes_what_the_full_path_writes(hotline: Hotline, phones: Phones) -> None:
    """Last contact, last activity, the delivery's key and the record's deletion two minutes
    on: the same rows on both tiers (SQLite: the full path; PostgreSQL: one statement)."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    start = hotline.clock.advance(minutes=5)
    response = hotline.sms(CLINICIAN, HOTLINE, "still awake", MessageSid="SM" + "a" * 32)
    assert "still awake" in response.get_data(as_text=True)
    with hotline.session() as session:
        assert session.scalar(select(Clinician.last_contact_at)) == start
        assert session.scalar(select(Conversation.last_activity_at)) == start
        assert session.scalar(
            select(WebhookEvent.id).where(WebhookEvent.key == "sms:SM" + "a" * 32)
        )
        due = session.scalar(
            select(MessageDeletion.due_at).where(MessageDeletion.sid == "SM" + "a" * 32)
        )
    assert due is not None and (due - start).total_seconds() == 120
    later = hotline.clock.advance(minutes=5)
    hotline.sms(ALICE, POOL[0], "I'm here", MessageSid="SM" + "b" * 32)
    with hotline.session() as session:
        assert session.scalar(select(Clinician.last_contact_at)) == start  # a peer's text
        assert session.scalar(select(Conversation.last_activity_at)) == later
    del clinician, alice


def test_a_repeated_delivery_of_a_relay_is_relayed_once(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    sid = "SM" + "c" * 32
    first = hotline.sms(CLINICIAN, HOTLINE, "are you there", MessageSid=sid)
    again = hotline.sms(CLINICIAN, HOTLINE, "are you there", MessageSid=sid)
    assert "are you there" in first.get_data(as_text=True)
    assert "<Message" not in again.get_data(as_text=True)


def test_a_text_from_a_number_that_became_ours_is_not_relayed(
    hotline: Hotline, phones: Phones
) -> None:
    """The loop guard: a text whose sender is one of our own numbers is ignored, even from a
    number with a live conversation (the statement never sees the sender's number)."""
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        session.add(PoolNumber(programme_id=hotline.programme_id, number=CLINICIAN))
    response = hotline.sms(CLINICIAN, HOTLINE, "echo")
    assert response.status_code == 200
    assert "<Message" not in response.get_data(as_text=True)


@pytest.mark.parametrize("path", ["fast", "full"])
@pytest.mark.parametrize("sender", ["supporter", "clinician"])
def test_a_text_to_a_conversation_ending_meanwhile_is_not_relayed(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch, path: str, sender: str
) -> None:
    """A DONE commits while a text's webhook waits on the conversation's row: the text is not
    passed on. Alice's is answered as one after the end; the clinician's opens a new request.
    On either path (the full one when the fast one gives way, or on SQLite, whose writers
    cannot interleave like this)."""
    engine = _postgres_only(hotline)
    if path == "full":
        monkeypatch.setattr(fastrelay, "relay", lambda *_args: None)
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    by, to = (ALICE, POOL[0]) if sender == "supporter" else (CLINICIAN, HOTLINE)
    with engine.connect() as other:  # the webhook ending it, holding the row until it commits
        other.execute(update(Conversation).values(state=ConversationState.ENDED, end_reason="done"))
        sent, answers = sent_behind_a_lock(
            engine,
            lambda: hotline.sms(by, to, "one more thing").get_data(as_text=True),
            "the relay",
        )
        other.commit()
    sent.join(20)
    assert "one more thing" not in answers[0]
    if sender == "supporter":
        assert "Nothing is open on this number now" in answers[0]
        clinician.expect_nothing()
    else:
        assert "confidential" in answers[0]  # greeted as a new request, the text held
        with hotline.session() as session:
            states = sorted(session.scalars(select(Conversation.state)))
        assert states == sorted([ConversationState.ENDED, ConversationState.QUEUED])
    del alice


def test_a_connection_lost_in_the_relays_commit_answers_with_the_crisis_line(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The COMMIT reaches the server, then the connection drops before its answer: the relay
    may have committed, so the full path must not run it again (it would meet its own delivery
    key and answer nothing); the clinician hears that the line is down, as on the full path."""
    engine = _postgres_only(hotline)
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    original = engine.dialect.do_commit
    armed = [True]

    def commit_then_drop(dbapi_connection: Any) -> None:
        original(dbapi_connection)
        if armed[0]:
            armed[0] = False
            dbapi_connection.driver_connection.close()  # the socket goes
            raise psycopg.OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(engine.dialect, "do_commit", commit_then_drop)
    sid = "SM" + "d" * 32
    answer = hotline.sms(CLINICIAN, HOTLINE, "are you still there", MessageSid=sid)
    xml = answer.get_data(as_text=True)
    with hotline.session() as session:  # the statement did commit
        assert session.scalar(select(WebhookEvent.id).where(WebhookEvent.key == f"sms:{sid}"))
    assert "try again" in xml, xml
    assert "call or text 988" in xml  # the crisis line


def test_a_relay_picked_as_a_deadlock_victim_is_still_relayed(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL aborts the statement to break a deadlock: nothing was written, so the full
    path handles the text instead and it reaches the peer."""
    engine = _postgres_only(hotline)
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    original = engine.dialect.do_execute
    aborted: list[str] = []

    def deadlock_once(cursor: Any, statement: str, parameters: Any, context: Any = None) -> None:
        if statement == fastrelay.RELAY and not aborted:
            aborted.append(statement)
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        original(cursor, statement, parameters, context)

    monkeypatch.setattr(engine.dialect, "do_execute", deadlock_once)
    clinician.texts("sorry, my phone died")
    assert aborted
    alice.expect_text("sorry, my phone died", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_conversation_that_keeps_changing_under_a_text_gets_the_crisis_line(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each attempt of the full path finds the conversation changed under it (db.Retry); after
    the last one the clinician still gets an answer, with the crisis line, not an HTTP 500."""
    attempts: list[int] = []

    def always_changed(_session: Any, conv: Conversation, _now: Any) -> None:
        attempts.append(conv.id)
        raise Retry("changed again")

    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    monkeypatch.setattr(fastrelay, "relay", lambda *_args: None)
    monkeypatch.setattr(clinicianline, "touch_live", always_changed)
    response = hotline.sms(CLINICIAN, HOTLINE, "are you there")
    assert response.status_code == 200
    (answer,) = [m.text or "" for m in ET.fromstring(response.get_data())]  # noqa: S314 - ours
    assert hotline.settings.crisis_text in answer and "are you there" not in answer
    assert len(attempts) == 3


def test_run_in_transaction_runs_the_work_again_after_a_retry(hotline: Hotline) -> None:
    """Nothing of an attempt that raised Retry is kept; the next attempt starts afresh."""
    calls: list[int] = []

    def work(session: Session) -> int:
        calls.append(len(calls))
        session.add(WebhookEvent(key=f"try:{len(calls)}"))
        session.flush()
        if len(calls) < 3:
            raise Retry("changed")
        return len(calls)

    assert run_in_transaction(hotline.services.sessions, work) == 3
    with hotline.session() as session:
        assert list(session.scalars(select(WebhookEvent.key))) == ["try:3"]
    with pytest.raises(Retry):
        run_in_transaction(hotline.services.sessions, lambda _session: _raise(Retry("again")))


def _raise(error: Exception) -> None:
    raise error
