"""Lock order under PostgreSQL: the programme's row, then a clinician's, then conversations',
then offers'. A path that took them in another order deadlocked with the sweeper, and a sweep
that aborted lost every later programme's pass and the notices (the sweeper runs in every
worker, beside webhooks and jobs). Each test pauses one side after its first write, while the
sweeper closes the same request, and checks that nothing deadlocked and both finished."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import event, select

from hotline import tasks
from hotline.models import Conversation, ConversationState, Offer, OfferState
from tests.kit.databases import sent_behind_a_lock
from tests.kit.harness import HOTLINE, POOL, Hotline, retiring

CLINICIAN, ALICE = "+15550109001", "+15550108001"


def offered_as_it_turns_idle(hotline: Hotline, due_in: float) -> int:
    """A request waiting 48 h with nobody on call; Alice comes on call and is offered it. The
    clock then stands where the request is idle and the offer is due in ``due_in`` seconds."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: these interleavings need PostgreSQL")
    assert hotline.sms(CLINICIAN, HOTLINE, "hello").status_code == 200
    timeout = timedelta(seconds=hotline.settings.offer_timeout)
    hotline.clock.advance(seconds=(timedelta(hours=48) - timeout).total_seconds() + 5)
    hotline.add_supporter("Alice", ALICE)
    assert hotline.sweep().conversations_offered == 1
    with hotline.session() as session:
        offer_id = session.scalar(select(Offer.id).where(Offer.state == OfferState.PENDING))
    assert offer_id is not None
    hotline.clock.advance(seconds=timeout.total_seconds() - due_in)
    return offer_id


def race_the_sweeper(
    hotline: Hotline, other: Callable[[], Any], after: str = "UPDATE offers"
) -> list[str]:
    """Run ``other`` in a thread, pausing it after its first statement starting with ``after``
    (an UPDATE of an offer), and sweep meanwhile; the database errors either side met (a
    deadlock would be one)."""
    engine = hotline.services.sessions.kw["bind"]
    failures: list[str] = []
    paused = threading.Event()

    def pause(_c: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        if threading.current_thread().name == "other" and statement.startswith(after):
            paused.set()
            time.sleep(1.0)  # the sweeper takes what it can meanwhile

    def noted(context: Any) -> None:
        failures.append(type(context.original_exception).__name__)

    event.listen(engine, "after_cursor_execute", pause)
    event.listen(engine, "handle_error", noted)
    try:
        thread = threading.Thread(target=other, name="other")
        thread.start()
        paused.wait(10)
        hotline.sweep()
        thread.join(20)
    finally:
        event.remove(engine, "after_cursor_execute", pause)
        event.remove(engine, "handle_error", noted)
    return failures


def test_an_offer_expiring_while_the_sweeper_closes_its_request(hotline: Hotline) -> None:
    offer_id = offered_as_it_turns_idle(hotline, due_in=-2)  # due 2 s ago
    assert race_the_sweeper(hotline, lambda: tasks.expire_offer(hotline.services, offer_id)) == []
    with hotline.session() as session:
        assert session.scalar(select(Conversation.state)) == ConversationState.ENDED


def test_an_accept_while_the_sweeper_closes_its_request(hotline: Hotline) -> None:
    offered_as_it_turns_idle(hotline, due_in=3)
    answers: list[int] = []
    failures = race_the_sweeper(
        hotline, lambda: answers.append(hotline.sms(ALICE, POOL[0], "ACCEPT").status_code)
    )
    assert failures == [] and answers == [200]
    with hotline.session() as session:  # whichever came first, the other saw it
        assert session.scalar(select(Conversation.state)) in (
            ConversationState.ACTIVE,
            ConversationState.ENDED,
        )


def test_back_after_a_lapsed_break_while_the_sweeper_offers_her_the_waiting_request(
    hotline: Hotline,
) -> None:
    """A request waits while Alice, the one peer on call, is on a break; the break ends and she
    texts BACK as the sweeper offers her the request. BACK clears her break (her row), then
    offers what waits (the programme's lock); the sweeper takes the programme's lock, then marks
    her offered (her row). Taken in those two orders they deadlocked, and PostgreSQL aborted
    one of them after a second."""
    engine = hotline.services.sessions.kw["bind"]
    if engine.dialect.name == "sqlite":
        pytest.skip("SQLite serialises writers: these interleavings need PostgreSQL")
    hotline.add_supporter("Alice", ALICE)
    assert hotline.sms(ALICE, HOTLINE, "BREAK 1h").status_code == 200
    assert hotline.sms(CLINICIAN, HOTLINE, "hello").status_code == 200  # nobody free: it waits
    hotline.clock.advance(seconds=3600 + 60)  # the break is over
    answers: list[int] = []
    failures = race_the_sweeper(
        hotline,
        lambda: answers.append(hotline.sms(ALICE, HOTLINE, "BACK").status_code),
        after="UPDATE supporters",  # her break cleared
    )
    assert failures == [] and answers == [200]
    with hotline.session() as session:  # offered once, by whichever came first
        assert session.scalars(select(Offer.state)).all() == [OfferState.PENDING]


def test_a_first_text_as_the_programme_retires_is_told_the_line_has_closed(
    hotline: Hotline,
) -> None:
    """`hotline programme retire` holds the programme's lock, found nothing open and has not
    committed yet, as a clinician's first text reads the programme (still running) and waits
    on that lock to open its request. Once the retirement commits, the text is answered that
    the line has closed: no request opens on a closed line, and no peer is offered one."""
    hotline.add_supporter("Alice", ALICE)
    with retiring(hotline) as engine:
        sent, answers = sent_behind_a_lock(
            engine,
            lambda: hotline.sms(CLINICIAN, HOTLINE, "hello").get_data(as_text=True),
            "the text",
        )
    sent.join(20)
    assert "This peer support line has closed" in answers[0], answers
    assert ALICE not in answers[0]  # no offer
    with hotline.session() as session:
        assert session.scalars(select(Conversation.state)).all() == []
