"""Offers during a data-key rotation: rows of one person can sit under different keys' blind
indexes until ``hotline keys rotate`` reaches them, and the line must still see one person."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from redis import Redis
from sqlalchemy import select

from hotline.db import transaction
from hotline.models import Offer
from hotline.people import new_supporter
from hotline.privacy import Vault
from tests.kit.fake_twilio import FakeTwilio
from tests.kit.harness import HOTLINE, POOL, Hotline, make_hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phones

NEW = base64.urlsafe_b64encode(b"n" * 32).decode()
ALICE, CLINICIAN = "+15550108001", "+15550109001"


@pytest.fixture
def hotline(
    database_url: str, redis_conn: Redis, fake_twilio: FakeTwilio, tmp_path: Path, sessions: Any
) -> Iterator[Hotline]:
    """A line whose data key was just rotated: NEW first, the key everything so far was
    sealed under second."""
    old = environment_for(database_url, fake_twilio)["HOTLINE_DATA_KEY"]
    line = make_hotline(
        database_url, redis_conn, fake_twilio, tmp_path, HOTLINE_DATA_KEY=f"{NEW},{old}"
    )
    line.old_vault = Vault((base64.urlsafe_b64decode(old),))  # type: ignore[attr-defined]
    yield line
    line.clock.stop()
    line.services.sessions.kw["bind"].dispose()


def _alice_before_the_rotation(hotline: Hotline) -> int:
    """Alice joined the roster under the old key; the rotation has not reached her row."""
    old_vault: Vault = hotline.old_vault  # type: ignore[attr-defined]
    with transaction(hotline.services.sessions) as session:
        alice = new_supporter(old_vault, hotline.programme_id, "Alice", ALICE)
        session.add(alice)
        session.flush()
        alice_id = alice.id
    hotline.add_shift(alice_id, hotline.clock.now, hotline.clock.now + timedelta(days=7))
    return alice_id


def test_a_supporter_texting_for_support_is_not_offered_their_own_request(
    hotline: Hotline, phones: Phones
) -> None:
    _alice_before_the_rotation(hotline)
    alice = phones.phone(ALICE)
    alice.texts("I need to talk to someone about last night", to=HOTLINE)
    answer = alice.expect_text(from_=HOTLINE)
    assert "Reply ACCEPT" not in answer.body
    hotline.run_jobs()
    alice.network.sync()
    assert not any("Reply ACCEPT" in t.body for t in alice.inbox), alice.inbox


def test_a_pool_number_a_supporter_stopped_is_not_used_for_their_offers(
    hotline: Hotline, phones: Phones
) -> None:
    """Her STOP to the first pool number is recorded under the new key; her row is still
    under the old one: the offer must come from another pool number (Twilio would not deliver
    it from that one)."""
    alice_id = _alice_before_the_rotation(hotline)
    alice = phones.phone(ALICE)
    alice.texts("STOP", to=POOL[0])
    phones.phone(CLINICIAN).texts("hello")
    with hotline.session() as session:
        offer = session.scalars(select(Offer).where(Offer.supporter_id == alice_id)).one()
    assert offer.pool_number != POOL[0]
