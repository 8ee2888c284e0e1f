"""Round-robin under concurrency: parallel first texts never double-assign or skip anyone."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select

from hotline import roster, routing
from hotline.db import transaction
from hotline.effects import Effects
from hotline.models import Conversation, Offer, OfferState, Programme, Supporter
from hotline.people import supporter_phone
from hotline.programmes import config_of
from tests.kit.fake_twilio import AUTH_TOKEN
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline
from tests.kit.phones import Phones
from tests.kit.signing import signed_post

BOB, CAROL = "+15550108002", "+15550108003"
OFFER = "Reply ACCEPT to take it or PASS"


def test_parallel_first_texts_spread_evenly(hotline: Hotline) -> None:
    for i in range(3):
        hotline.add_supporter(f"S{i}", f"+1555010800{i}", max_conversations=5)
    barrier = threading.Barrier(9)
    statuses: list[int] = []

    def first_text(i: int) -> None:
        client = hotline.app.test_client()
        barrier.wait()
        sid = f"SM{i:032x}"
        response = signed_post(
            client,
            PUBLIC_URL,
            "/twilio/sms",
            {
                "MessageSid": sid,
                "From": f"+155501090{i:02d}",
                "To": HOTLINE,
                "Body": "I need to talk",
            },
            AUTH_TOKEN,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=first_text, args=(i,)) for i in range(9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [200] * 9
    with hotline.session() as session:
        per_supporter = Counter(session.scalars(select(Offer.supporter_id)))
        conversations = Counter(session.scalars(select(Offer.conversation_id)))
        ids = set(session.scalars(select(Supporter.id)))
    assert sorted(per_supporter.values()) == [3, 3, 3]
    assert set(per_supporter) == ids
    assert set(conversations.values()) == {1}, "a conversation was offered twice at once"


def test_two_that_saw_a_request_waiting_make_one_offer_and_one_peer_joins(
    hotline: Hotline, phones: Phones
) -> None:
    """The sweeper (or a supporter's BACK) and the clinician's next text both see a request
    with no pending offer, then offer it one after the other: the second must find the first's
    offer under the programme lock, or two peers are offered it, both accept, and the clinician
    is told twice that a peer joined while one of them is cut off."""
    clinician = phones.phone("+15550109001")
    clinician.texts("hello")  # nobody on call yet: held, the fallback sent
    clinician.expect_text("No peer is free")
    hotline.add_supporter("Bob", BOB)
    hotline.add_supporter("Carol", CAROL)
    services, now = hotline.services, hotline.clock.now

    late = services.sessions()  # the sweeper: looked, saw it waiting, has not offered yet
    waiting = late.scalars(select(Conversation)).one()
    assert routing.pending_offer(late, waiting) is None
    late.commit()

    clinician.texts("is anyone there?")  # this one offers it (to Bob)
    phones.phone(BOB).expect_text(OFFER)

    effects = Effects()
    with late.begin():
        p = config_of(late.get_one(Programme, hotline.programme_id), services.settings)
        assert routing.offer_next(late, services.vault, p, waiting, now, effects) is None
    late.close()
    assert effects.texts == []
    with hotline.session() as session:
        assert session.scalars(select(Offer.supporter_id)).all() == [
            session.scalar(select(Supporter.id).where(Supporter.name == "Bob"))
        ]
    phones.assert_no_unexpected()


def test_of_two_offers_of_one_request_only_the_first_accept_takes_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Should two offers of one request ever be pending (an older release, a lost race), the
    first ACCEPT takes it and withdraws the other: the second peer is told it has gone."""
    hotline.add_supporter("Bob", BOB)
    carol_id = hotline.add_supporter("Carol", CAROL)
    clinician, bob, carol = (phones.phone(n) for n in ("+15550109001", BOB, CAROL))
    clinician.texts("hello")
    clinician.expect_text("confidential")
    bob.expect_text(OFFER)
    with transaction(hotline.services.sessions) as session:
        conv = session.scalars(select(Conversation)).one()
        now = hotline.clock.now
        session.add(
            Offer(
                conversation_id=conv.id,
                supporter_id=carol_id,
                pool_number=POOL[0],
                offered_at=now,
                expires_at=now + timedelta(minutes=3),
            )
        )

    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("hello")
    clinician.expect_text("joined")
    carol.texts("ACCEPT")
    carol.expect_text("no longer open")
    with hotline.session() as session:
        assert session.scalar(select(Conversation.supporter_id)) != carol_id
        assert sorted(session.scalars(select(Offer.state))) == [
            OfferState.ACCEPTED,
            OfferState.WITHDRAWN,
        ]
    clinician.texts("thank you")
    bob.expect_text("thank you")
    phones.assert_no_unexpected()


def test_two_that_find_nobody_free_tell_the_clinician_once(
    hotline: Hotline, phones: Phones
) -> None:
    """The call-back job and the sweeper (or an offer's expiry) can both find nobody free for
    one request: the clinician and the coordinator hear it once."""
    hotline.add_supporter("Bob", BOB)
    clinician = phones.phone("+15550109001")
    clinician.texts("hello")
    clinician.expect_text("confidential")
    phones.phone(BOB).expect_text(OFFER)
    services = hotline.services

    late = services.sessions()  # looked before the offer lapsed: nobody told yet
    waiting = late.scalars(select(Conversation)).one()
    assert waiting.fallback_at is None
    late.commit()

    hotline.clock.advance(seconds=181)
    hotline.run_jobs()  # the offer lapses; nobody else: the clinician is told
    clinician.expect_text("No peer supporter is free")

    effects = Effects()
    with late.begin():
        p = config_of(late.get_one(Programme, hotline.programme_id), services.settings)
        now = hotline.clock.now
        assert routing.offer_or_fall_back(late, services.vault, p, waiting, now, effects) is None
    late.close()
    assert effects.texts == []
    phones.assert_no_unexpected()


def test_a_late_accept_does_not_undercut_an_offer_made_meanwhile(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice's ACCEPT on a lapsed offer is checked under the programme lock: if Bob was
    offered the request in the meantime, it stays his."""
    alice_id = hotline.add_supporter("Alice", "+15550108001")
    clinician = phones.phone("+15550109001")
    clinician.texts("hello")
    clinician.expect_text("confidential")
    phones.phone("+15550108001").expect_text(OFFER)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    clinician.expect_text("No peer supporter is free")
    services = hotline.services

    late = services.sessions()  # Alice's ACCEPT: found her lapsed offer, request with nobody
    lapsed = late.scalars(select(Offer).where(Offer.supporter_id == alice_id)).one()
    late.commit()

    hotline.add_supporter("Bob", BOB)
    hotline.sweep()  # Bob is offered it
    phones.phone(BOB).expect_text(OFFER)

    effects = Effects()
    with late.begin():
        p = config_of(late.get_one(Programme, hotline.programme_id), services.settings)
        now = hotline.clock.now
        taken = routing.accept(late, services.vault, p, lapsed, now, effects, late=True)
    late.close()
    assert not taken and effects.texts == []
    with hotline.session() as session:
        assert (
            session.scalar(select(Offer.state).where(Offer.supporter_id != alice_id))
            == OfferState.PENDING
        )
    phones.assert_no_unexpected()


def test_a_number_changed_as_a_request_is_offered_to_them_keeps_the_offer_on_that_number(
    hotline: Hotline, phones: Phones
) -> None:
    """A coordinator changes Alice's number at the moment a clinician's first text is offered
    to her. The change is checked against her offers under the programme lock, as offers are
    made, so the offer waits for it and sees it whole: the new number awaits its code, so
    nobody is offered the request. Not an offer read half before the change and half after,
    texted to the unverified new number (a typo's stranger, whose ACCEPT would get the
    clinician's texts)."""
    alice_id = hotline.add_supporter("Alice", "+15550108001")
    services = hotline.services
    editing = services.sessions()
    editing.begin()
    alice = editing.get_one(Supporter, alice_id)
    roster.edit(editing, services.vault, alice, {"phone": CAROL}, "test", hotline.clock.now)
    editing.flush()  # checked: no offer of hers yet; not yet committed

    thread = threading.Thread(target=phones.phone("+15550109001").texts, args=("hello",))
    thread.start()
    thread.join(1.5)  # the offer is being made meanwhile (it waits for the edit, or not)
    editing.commit()
    editing.close()
    thread.join(30)
    assert not thread.is_alive()
    with hotline.session() as session:
        stored = supporter_phone(services.vault, session.get_one(Supporter, alice_id))
        offered = session.scalars(select(Offer.supporter_id)).all()
    assert stored == CAROL
    # Her new number awaits its code, so she is not on call: nobody is offered it, not her old
    # phone and not the new number, which may be a typo's stranger.
    assert offered == []
    phones.phone("+15550109001").expect_text("No peer")
    phones.assert_no_unexpected()


@pytest.mark.parametrize("bobs_limit", [3, 1], ids=["both-free", "bob-at-his-limit"])
def test_round_robin_keeps_its_turns_when_a_webhook_that_arrived_first_offers_second(
    hotline: Hotline, phones: Phones, bobs_limit: int
) -> None:
    """In a rush a webhook that arrived first can wait on the programme's lock behind one that
    arrived later: its offer is made second, stamped with its earlier arrival. The turn order
    must follow the offers as made: Bob, Carol, then Bob again (not Carol twice in a row).
    With Bob at his limit once asked, the webhook that arrived first finds only Carol free, and
    her turn must still come after his: once he is free again, the next request is his."""
    hotline.add_supporter("Bob", BOB, max_conversations=bobs_limit)
    hotline.add_supporter("Carol", CAROL, max_conversations=3)
    arrived_first = hotline.clock.now
    hotline.clock.advance(seconds=1)
    phones.phone("+15550109001").texts("hello")  # arrived second, offered first: Bob
    hotline.clock.now = arrived_first
    phones.phone("+15550109002").texts("hello")  # arrived first, offered second: Carol
    hotline.clock.advance(seconds=5)
    if bobs_limit == 1:
        bob = phones.phone(BOB)
        bob.expect_text(OFFER)
        bob.texts("ACCEPT")
        bob.expect_text("connected")
        bob.texts("DONE")  # free again
    phones.phone("+15550109003").texts("hello")  # the next turn: Bob's
    with hotline.session() as session:
        order = session.scalars(select(Supporter.name).join(Offer).order_by(Offer.id)).all()
    assert order == ["Bob", "Carol", "Bob"]
