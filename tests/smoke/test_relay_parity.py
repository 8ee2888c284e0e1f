"""The one-statement relay and the full path agree: each scenario runs twice on PostgreSQL, with
the fast path and without it, and every answer, wake-up and row the two leave must match.

The scenarios are the edges where the fast path must give way or match the full path exactly:
a programme with no pool numbers, a number that is both hotline and pool number, a supporter who
is also a clinician, a supporter off the roster, a pending offer on the conversation's number,
a clinician with a call and a text open, a hidden caller's call, a forgotten clinician,
repeated deliveries, a conversation that ended, and a key rotation.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import Engine, delete, select, update

from hotline import fastrelay
from hotline.db import transaction
from hotline.models import (
    Clinician,
    Conversation,
    MessageDeletion,
    Offer,
    PendingText,
    PoolNumber,
    Supporter,
    WebhookEvent,
)
from hotline.people import get_or_create_clinician
from hotline.privacy import Vault
from tests.kit.databases import empty_tables
from tests.kit.fake_twilio import FakeTwilio
from tests.kit.harness import HOTLINE, POOL, Hotline, make_hotline
from tests.kit.phones import Phones

ALICE, BOB, CLINICIAN = "+15550108001", "+15550108002", "+15550109001"
NOT_OURS = "+15550100009"
OFFER_ID = re.compile(r"offer=[0-9]+")  # offer ids differ from one run to the next

Send = Callable[..., None]


def no_pool_numbers(hotline: Hotline, phones: Phones, send: Send) -> None:
    with transaction(hotline.services.sessions) as session:
        session.execute(delete(PoolNumber))
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    send(CLINICIAN, HOTLINE, "from the clinician")
    hotline.clock.advance(minutes=1)
    send(ALICE, HOTLINE, "from alice")


def hotline_is_also_a_pool_number(hotline: Hotline, phones: Phones, send: Send) -> None:
    with transaction(hotline.services.sessions) as session:
        session.execute(delete(PoolNumber))
        session.add(PoolNumber(programme_id=hotline.programme_id, number=HOTLINE))
        session.add(PoolNumber(programme_id=hotline.programme_id, number=POOL[0]))
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    send(CLINICIAN, HOTLINE, "c1")
    hotline.clock.advance(minutes=1)
    send(ALICE, HOTLINE, "a1")
    send(ALICE, POOL[0], "a2")


def supporter_is_also_a_clinician(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    send(ALICE, HOTLINE, "I need to talk myself")
    hotline.clock.advance(minutes=1)
    send(ALICE, HOTLINE, "still there?")
    send(ALICE, POOL[0], "to my clinician")
    send(CLINICIAN, HOTLINE, "to alice")


def supporter_talking_as_both_without_pool_numbers(
    hotline: Hotline, phones: Phones, send: Send
) -> None:
    """Alice supports a clinician on the hotline number (no pool numbers) and is supported by
    Bob herself: her text to the hotline is her supporter's side (is_supporter_text)."""
    with transaction(hotline.services.sessions) as session:
        session.execute(delete(PoolNumber))
    hotline.add_supporter("Alice", ALICE)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        vault = hotline.services.vault
        alice = get_or_create_clinician(session, vault, hotline.programme_id, ALICE).id
    _conversation(
        hotline,
        clinician_id=alice,
        channel="sms",
        state="active",
        supporter_id=bob,
        pool_number=HOTLINE,
    )
    hotline.clock.advance(minutes=1)
    send(ALICE, HOTLINE, "for my clinician")
    send(BOB, HOTLINE, "for alice")


def supporter_off_the_roster(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        session.execute(update(Supporter).values(active=False))
    hotline.clock.advance(minutes=1)
    send(ALICE, POOL[0], "still here")
    send(CLINICIAN, HOTLINE, "thanks")


def pending_offer_on_the_same_number(hotline: Hotline, phones: Phones, send: Send) -> None:
    alice = hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    now = hotline.clock.now
    waiting = _conversation(hotline, channel="sms")
    with transaction(hotline.services.sessions) as session:
        session.add(
            Offer(
                conversation_id=waiting,
                supporter_id=alice,
                pool_number=POOL[0],
                offered_at=now,
                expires_at=now + timedelta(minutes=5),
            )
        )
    hotline.clock.advance(minutes=1)
    send(ALICE, POOL[0], "hello again")


def a_call_and_a_text_open(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    bob = hotline.add_supporter("Bob", BOB)
    phones.talking(CLINICIAN, ALICE)
    with hotline.session() as session:
        clinician = session.scalars(select(Clinician.id)).one()
    _conversation(hotline, clinician_id=clinician, channel="voice", state="queued")
    _conversation(
        hotline,
        clinician_id=clinician,
        channel="voice",
        state="active",
        supporter_id=bob,
        pool_number=POOL[0],
    )
    hotline.clock.advance(minutes=1)
    send(CLINICIAN, HOTLINE, "which one")
    send(BOB, POOL[0], "bob here")
    with transaction(hotline.services.sessions) as session:
        session.execute(
            update(Conversation).where(Conversation.channel == "sms").values(state="ended")
        )
    send(CLINICIAN, HOTLINE, "and now")


def a_hidden_callers_call(hotline: Hotline, phones: Phones, send: Send) -> None:
    alice = hotline.add_supporter("Alice", ALICE)
    _conversation(hotline, channel="voice", state="active", supporter_id=alice, pool_number=POOL[1])
    hotline.clock.advance(minutes=1)
    send(ALICE, POOL[1], "after the call")


def a_forgotten_clinician(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        session.execute(update(Clinician).values(phone_sealed=None))
    hotline.clock.advance(minutes=1)
    send(ALICE, POOL[0], "to a forgotten one")
    send(CLINICIAN, HOTLINE, "forgotten writes")


def repeated_deliveries(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    send(CLINICIAN, HOTLINE, "once", MessageSid="SM" + "1" * 32)
    hotline.clock.advance(seconds=30)
    send(CLINICIAN, HOTLINE, "once", MessageSid="SM" + "1" * 32)
    send(CLINICIAN, NOT_OURS, "not ours", MessageSid="SM" + "2" * 32)
    send(CLINICIAN, NOT_OURS, "not ours", MessageSid="SM" + "2" * 32)
    send(ALICE, POOL[0], "odd", MessageSid="XX" + "3" * 32)


def an_ended_conversation(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    with transaction(hotline.services.sessions) as session:
        session.execute(update(Conversation).values(state="ended", end_reason="done"))
    hotline.clock.advance(minutes=1)
    send(ALICE, POOL[0], "late")
    send(CLINICIAN, HOTLINE, "hello?")


def numbers_written_otherwise(hotline: Hotline, phones: Phones, send: Send) -> None:
    """Numbers not in E.164 form (Twilio sends E.164; a relay in between might not): the
    statement looks numbers up exactly, so these take the full path, which normalises them."""
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1)
    send(_written(CLINICIAN), HOTLINE, "spaced sender")
    send(CLINICIAN, _written(HOTLINE), "spaced line")
    send(_written(ALICE), _written(POOL[0]), "both spaced")
    send(ALICE[2:], POOL[0], "national form")


def _written(number: str) -> str:
    """``+15550109001`` as a person writes it: ``+1 555-010-9001``."""
    return f"{number[:2]} {number[2:5]}-{number[5:8]}-{number[8:]}"


def a_key_rotation(hotline: Hotline, phones: Phones, send: Send) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    keys = (secrets.token_bytes(32), *hotline.settings.data_keys)  # rows still under the old
    object.__setattr__(hotline.services, "vault", Vault(keys))
    hotline.clock.advance(minutes=1)
    send(CLINICIAN, HOTLINE, "after rotation")
    send(ALICE, POOL[0], "me too")


def _conversation(hotline: Hotline, **fields: Any) -> int:
    """A conversation row begun now (what a scenario cannot reach through the phones)."""
    now = hotline.clock.now
    with transaction(hotline.services.sessions) as session:
        conv = Conversation(
            programme_id=hotline.programme_id, created_at=now, last_activity_at=now, **fields
        )
        session.add(conv)
        session.flush()
        return conv.id


SCENARIOS = [
    no_pool_numbers,
    hotline_is_also_a_pool_number,
    supporter_is_also_a_clinician,
    supporter_talking_as_both_without_pool_numbers,
    supporter_off_the_roster,
    pending_offer_on_the_same_number,
    a_call_and_a_text_open,
    a_hidden_callers_call,
    a_forgotten_clinician,
    repeated_deliveries,
    an_ended_conversation,
    numbers_written_otherwise,
    a_key_rotation,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_the_fast_relay_and_the_full_path_leave_the_same_world(
    scenario: Callable[[Hotline, Phones, Send], None],
    hotline: Hotline,
    engine: Engine,
    redis_conn: Redis,
    fake_twilio: FakeTwilio,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if engine.dialect.name == "sqlite":
        pytest.skip("the one-statement relay is PostgreSQL's")
    fast = _run(scenario, hotline, monkeypatch)
    empty_tables(engine)
    redis_conn.flushdb()
    again = make_hotline(hotline.settings.database_url, redis_conn, fake_twilio, tmp_path / "2")
    try:
        with monkeypatch.context() as patch:
            patch.setattr(fastrelay, "relay", lambda *_args: None)
            full = _run(scenario, again, patch)
    finally:
        again.clock.stop()
        again.services.sessions.kw["bind"].dispose()
    assert fast == full


def _run(
    scenario: Callable[[Hotline, Phones, Send], None],
    hotline: Hotline,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Run ``scenario``; what it left: answers, wake-ups asked for, and the rows a text writes
    (SIDs and ids aside: they differ from one run to the next)."""
    answers: list[str] = []
    woken: list[tuple[str, datetime | None]] = []
    recording = [False]
    schedule = hotline.services.wakeups.schedule

    def recorded(task: Any, ident: int, at: datetime | None = None) -> None:
        if recording[0]:
            woken.append((str(task), at))
        schedule(task, ident, at)

    monkeypatch.setattr(hotline.services.wakeups, "schedule", recorded)

    def send(from_: str, to: str, body: str, **extra: str) -> None:
        recording[0] = True
        response = hotline.sms(from_, to, body, **extra)
        answer = OFFER_ID.sub("offer=N", response.get_data(as_text=True))  # an offer's callback
        answers.append(f"{response.status_code} {answer}")

    scenario(hotline, Phones(hotline), send)
    with hotline.session() as session:
        conversations = session.scalars(select(Conversation))
        return {
            "answers": answers,
            "woken": woken,
            "last_contact": sorted(session.scalars(select(Clinician.last_contact_at))),
            "conversations": sorted(
                (c.channel, c.state, c.pool_number or "", c.last_activity_at, c.end_reason or "")
                for c in conversations
            ),
            "events": len(session.scalars(select(WebhookEvent.key)).all()),
            "deletions": sorted(session.scalars(select(MessageDeletion.due_at))),
            "offers": sorted((o.state, o.pool_number) for o in session.scalars(select(Offer))),
            "held": len(session.scalars(select(PendingText.id)).all()),
        }
