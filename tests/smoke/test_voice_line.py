"""Smoke: whole phone calls through the voice webhooks, with the call simulator playing Twilio.

The simulator itself asserts, on every document of every call, that nothing is recorded and
that every ``<Dial>`` shows a masked caller ID. Texts (call-back offers, follow-ups) go out
through jobs and are read with the phone DSL; each scenario ends with no unexpected text. Once
a call is over and its deletions are due, Twilio keeps no record of any of its legs.
"""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from hotline.db import transaction
from hotline.models import (
    Call,
    CallState,
    CheckIn,
    Conversation,
    ConversationState,
    MessageDeletion,
    Offer,
    OfferState,
    PendingText,
    Programme,
    Shift,
    Supporter,
)
from hotline.people import ALERT_CONTEXT
from hotline.programmes import ensure_programme
from hotline.retention import CALL_DELETE_DELAY
from hotline.speech import digit_by_digit
from tests.kit.calls import (
    BUSY,
    NO_ANSWER,
    PRESS_1,
    PRESS_9,
    VOICEMAIL,
    Calls,
    Pickup,
    Script,
    SimulatedCall,
    check_leg_reports_its_end,
    check_no_recording,
)
from tests.kit.harness import HOTLINE, POOL, PUBLIC_URL, Hotline
from tests.kit.phones import Phones

ALICE, BOB, CAROL = "+15550108001", "+15550108002", "+15550108003"
CLINICIAN = "+15550109001"
SECOND_CALLER = "+15550109002"
COORDINATOR = "+15550107777"
OFFER = "Reply ACCEPT to take it or PASS"


def conversations(hotline: Hotline) -> list[Conversation]:
    with hotline.session() as session:
        return list(session.scalars(select(Conversation).order_by(Conversation.id)))


def offers(hotline: Hotline) -> list[Offer]:
    with hotline.session() as session:
        return list(session.scalars(select(Offer).order_by(Offer.id)))


def call_row(hotline: Hotline, sid: str) -> Call:
    with hotline.session() as session:
        return session.scalars(select(Call).where(Call.call_sid == sid)).one()


def checkins(hotline: Hotline) -> int:
    with hotline.session() as session:
        return session.scalar(select(func.count()).select_from(CheckIn)) or 0


def deletions(hotline: Hotline) -> list[MessageDeletion]:
    """Deletions queued for call records (texts sent by jobs queue theirs too; see
    tests/privacy/test_retention.py)."""
    with hotline.session() as session:
        return list(
            session.scalars(
                select(MessageDeletion)
                .where(MessageDeletion.sid.startswith("CA"))
                .order_by(MessageDeletion.id)
            )
        )


def assert_call_records_deleted(hotline: Hotline, *placed: SimulatedCall) -> None:
    """Once their deletions are due and the jobs have run, Twilio keeps no record of any leg of
    ``placed`` (the caller's and every supporter's or clinician's leg rung), nor of any other
    call it carried, and no deletion is left to do."""
    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() + 1)
    hotline.run_jobs()
    sids = [sid for call in placed for sid in call.sids]
    assert len(sids) == len(set(sids)), "each leg has its own CallSid"
    assert set(sids) <= set(hotline.fake.deleted), "call records left at Twilio"
    assert hotline.fake.carried == []
    assert not {row.sid for row in deletions(hotline)} & set(sids)


def test_the_first_supporter_presses_1_and_they_talk_then_done_by_text(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)

    def while_talking() -> None:
        (conv,) = conversations(hotline)
        assert conv.state == ConversationState.ACTIVE and conv.channel == "voice"
        assert conv.pool_number == POOL[0]

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}, on_bridge=while_talking))

    assert call.hears("confidential") and call.hears("not for emergencies")
    assert call.hears(digit_by_digit(hotline.settings.crisis_text))
    assert call.hears("press 1") and call.hears("stay on the line")
    assert call.dialled == [ALICE] and call.bridged_with == ALICE
    assert call.dials[0].caller_id == POOL[0]
    assert any("Press 1 to take this call" in line for line in call.dials[0].heard)
    assert call_row(hotline, call.sid).state == CallState.ENDED
    (offer,) = offers(hotline)
    assert offer.state == OfferState.ACCEPTED

    hotline.run_jobs()  # the follow-up text: how to reach the caller again, and DONE
    alice = phones.phone(ALICE)
    alice.expect_text("reply DONE", from_=POOL[0])
    alice.texts("DONE", to=POOL[0])
    alice.expect_text("Conversation closed")
    phones.phone(CLINICIAN).expect_text("not alone", from_=HOTLINE)
    assert conversations(hotline)[0].state == ConversationState.ENDED
    assert checkins(hotline) == 3  # HOTLINE_CHECKIN_OFFSETS: 1d, 7d, 30d
    assert len(call.sids) == 2  # the caller's leg and Alice's
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_voicemail_answers_the_first_supporter_and_the_second_takes_the_call(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: VOICEMAIL, BOB: PRESS_1}))

    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    voicemail = call.dials[0]
    assert voicemail.status == "completed" and not voicemail.bridged  # Twilio's quirk
    assert [d.caller_id for d in call.dials] == [POOL[0], POOL[0]]
    assert call.hears("still finding a peer supporter")
    assert [o.state for o in offers(hotline)] == [OfferState.EXPIRED, OfferState.ACCEPTED]
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.ACTIVE and conv.pool_number == POOL[0]
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE", from_=POOL[0])
    assert len(call.legs) == 2  # the voicemail's leg is a call record too
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_supporter_talking_with_one_caller_is_not_rung_for_another(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice, the only peer on call, is talking with a first caller when a second calls: her
    phone is not rung mid-call (call waiting beeping through a hard conversation, and the
    second caller waiting on a ring nobody can take). The second caller hears the call-back
    promise at once, and Alice is offered it by text, for after her call."""
    hotline.add_supporter("Alice", ALICE)
    second: list[SimulatedCall] = []

    def second_caller() -> None:
        second.append(calls.place(SECOND_CALLER, HOTLINE, Script(phones={ALICE: PRESS_1})))

    script = Script(phones={ALICE: PRESS_1}, on_bridge=second_caller)
    first = calls.place(CLINICIAN, HOTLINE, script)

    assert first.bridged_with == ALICE
    (call,) = second
    assert call.dialled == [] and call.hears("call you back")
    assert digit_by_digit(hotline.settings.crisis_text) in call.heard[-1]
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text("call-back request")
    alice.expect_text("Thank you for taking that call")
    phones.assert_no_unexpected()


def test_a_supporter_whose_phone_rings_for_one_caller_is_not_rung_for_another_at_once(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """A second call comes in while Alice's phone rings for the first: she is not rung a
    second time over her ringing phone; the second caller is promised the call-back."""
    hotline.add_supporter("Alice", ALICE)
    second: list[SimulatedCall] = []

    def second_caller() -> None:
        second.append(calls.place(SECOND_CALLER, HOTLINE, Script(phones={ALICE: PRESS_1})))

    script = Script(phones={ALICE: PRESS_1}, before_answer={ALICE: second_caller})
    first = calls.place(CLINICIAN, HOTLINE, script)

    (call,) = second
    assert call.dialled == [] and call.hears("call you back")
    assert first.dialled == [ALICE] and first.bridged_with == ALICE
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text("call-back request")
    alice.expect_text("Thank you for taking that call")
    phones.assert_no_unexpected()


def test_a_peer_talking_with_one_caller_is_not_rung_by_the_clinician_they_text_with(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice texts with one clinician and is on the phone with another caller when the first
    calls: her phone is not rung over the call; the call goes to whoever else is on call."""
    hotline.add_supporter("Alice", ALICE, max_conversations=3)
    texting, alice = phones.talking(SECOND_CALLER, ALICE)
    hotline.add_supporter("Bob", BOB)
    second: list[SimulatedCall] = []

    def peer_call() -> None:
        second.append(
            calls.place(SECOND_CALLER, HOTLINE, Script(phones={ALICE: PRESS_1, BOB: PRESS_1}))
        )

    script = Script(phones={BOB: NO_ANSWER, ALICE: PRESS_1}, on_bridge=peer_call)
    first = calls.place(CLINICIAN, HOTLINE, script)
    assert first.dialled == [BOB, ALICE] and first.bridged_with == ALICE

    (call,) = second
    assert not call.hears("peer supporter you've been talking with")
    assert call.dialled == [BOB] and call.bridged_with == BOB
    hotline.run_jobs()
    alice.expect_text("Thank you for taking that call")
    phones.phone(BOB).expect_text("Thank you for taking that call")
    del texting
    phones.assert_no_unexpected()


def test_busy_no_answer_and_a_declined_screen_all_move_on(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    for name, number in (("Alice", ALICE), ("Bob", BOB), ("Carol", CAROL)):
        hotline.add_supporter(name, number)
    dave = "+15550108004"
    hotline.add_supporter("Dave", dave)
    phones_do = {ALICE: BUSY, BOB: NO_ANSWER, CAROL: PRESS_9, dave: PRESS_1}

    call = calls.place(CLINICIAN, HOTLINE, Script(phones=phones_do))

    assert call.dialled == [ALICE, BOB, CAROL, dave] and call.bridged_with == dave
    states = [o.state for o in offers(hotline)]
    assert states == [OfferState.PASSED, OfferState.EXPIRED, OfferState.EXPIRED, "accepted"]
    hotline.run_jobs()
    phones.phone(dave).expect_text("reply DONE")
    assert len(call.legs) == 4  # busy, unanswered and declined legs are records too
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_peers_are_rung_one_at_a_time_for_twenty_seconds_each(
    hotline: Hotline, calls: Calls
) -> None:
    """Several <Number>s in one <Dial> ring at once (and the simulator would ring them in
    turn): each ring is a <Dial> of its own, about 20 s, the caller hearing ringing until a
    supporter has pressed 1 (answerOnBridge), never a voicemail greeting."""
    for name, number in (("Alice", ALICE), ("Bob", BOB)):
        hotline.add_supporter(name, number)
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}))
    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    dials = [d for text in call.documents for d in ET.fromstring(text).iter("Dial")]  # noqa: S314
    assert len(dials) == 2
    for dial in dials:
        assert len(dial.findall("Number")) == 1
        assert (dial.get("timeout"), dial.get("answerOnBridge")) == ("20", "true")


def test_nobody_picks_up_so_a_peer_calls_back_through_the_pool_number(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER, BOB: BUSY}))

    assert call.dialled == [ALICE, BOB] and call.bridged_with is None
    assert call.hears("call you back shortly from this same number")
    said = call.heard[-1]
    assert said.endswith("Goodbye.") and digit_by_digit(hotline.settings.crisis_text) in said
    missed, call_back = conversations(hotline)
    assert (missed.state, missed.end_reason) == (ConversationState.ENDED, "missed")
    assert (call_back.state, call_back.channel) == (ConversationState.QUEUED, "voice")
    phones.assert_no_unexpected()  # nothing is texted from inside a voice webhook

    hotline.run_jobs()  # the call-back offer goes out by text, in round-robin order
    alice, clinician = phones.phone(ALICE), phones.phone(CLINICIAN)
    offer = alice.expect_text(OFFER, from_=POOL[0])
    assert "call-back" in offer.body and CLINICIAN not in offer.body
    alice.texts("ACCEPT")
    alice.expect_text("Call this number to reach your caller", from_=POOL[0])
    clinician.expect_text("will call you back shortly from this number", from_=HOTLINE)

    through = calls.place(ALICE, POOL[0], Script(phones={CLINICIAN: PRESS_1}))
    assert through.dialled == [CLINICIAN] and through.bridged_with == CLINICIAN
    assert through.dials[0].caller_id == HOTLINE
    assert through.heard == ["Connecting you to your caller."]  # then the clinician, as before

    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone", from_=HOTLINE)
    assert checkins(hotline) == 3
    assert_call_records_deleted(hotline, call, through)  # through: Alice's and the clinician's
    phones.assert_no_unexpected()


# What the clinician's phone may say when their peer calls through the mask: whoever answers
# it (a voicemail, a family member) must not learn what the call is about, nor from whom.
INDISCREET = ("peer", "support", "hospital", "clinician", "adverse", "event", "line", "alice")


@pytest.mark.parametrize("pickup", [VOICEMAIL, PRESS_9])
def test_a_voicemail_answering_a_call_through_the_mask_never_reaches_the_supporter(
    hotline: Hotline, phones: Phones, calls: Calls, pickup: Pickup
) -> None:
    """Alice calls the clinician she texts with. Their voicemail picks up (or someone presses
    another key): its greeting, which may read out the clinician's own number or name, is
    never put through to Alice; she hears that they didn't answer and can text them."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    pool = conversations(hotline)[-1].pool_number
    assert pool is not None

    through = calls.place(ALICE, pool, Script(phones={CLINICIAN: pickup}))

    assert through.dialled == [CLINICIAN] and through.dials[0].caller_id == HOTLINE
    assert through.bridged_with is None, "the clinician's voicemail was put through"
    assert through.dials[0].heard == ["You have a call. Press 1 to connect."]
    assert through.heard == [
        "Connecting you to your caller.",
        "Your caller didn't answer. You can text them on this number, or try again later.",
    ]
    assert conversations(hotline)[-1].state == ConversationState.ACTIVE
    alice.texts("Sorry I missed you, call me any time", to=pool)
    clinician.expect_text("call me any time", from_=HOTLINE)
    assert_call_records_deleted(hotline, through)  # Alice's leg and the clinician's
    phones.assert_no_unexpected()


def test_a_clinician_pressing_1_is_connected_and_their_screen_names_nothing(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    pool = conversations(hotline)[-1].pool_number
    assert pool is not None

    through = calls.place(ALICE, pool, Script(phones={CLINICIAN: PRESS_1}))

    assert through.bridged_with == CLINICIAN and through.dials[0].caller_id == HOTLINE
    assert through.heard == ["Connecting you to your caller."]
    screen = " ".join(through.dials[0].heard)
    assert screen == "You have a call. Press 1 to connect."
    with hotline.session() as session:
        programme = session.get_one(Programme, hotline.programme_id)
        named = (programme.name.lower(), programme.slug.lower())
    assert not [word for word in (*INDISCREET, *named) if word in screen.lower()]
    assert not [number for number in (ALICE, pool, *POOL) if number in screen]
    assert_call_records_deleted(hotline, through)
    phones.assert_no_unexpected()


THIRD_CALLER = "+15550109003"


def _bob_texting_the_clinician_and_alice_on_call(hotline: Hotline, phones: Phones) -> str:
    """Bob (a pharmacist: rung first for menu 3) texts with the clinician; Alice is on call too.
    The conversation's pool number."""
    hotline.add_supporter("Bob", BOB, discipline="pharmacist")
    phones.talking(CLINICIAN, BOB)
    hotline.add_supporter("Alice", ALICE)
    pool = conversations(hotline)[-1].pool_number
    assert pool is not None
    return pool


def _a_pharmacist_wanted(calls: Calls, caller: str) -> SimulatedCall:
    return calls.place(caller, HOTLINE, Script(menu="3", phones={ALICE: PRESS_1, BOB: PRESS_1}))


@pytest.mark.parametrize("through", [True, False], ids=["bob-through-the-mask", "clinician-back"])
def test_a_supporter_on_the_phone_with_their_caller_is_not_rung_for_another_until_it_ends(
    hotline: Hotline, phones: Phones, calls: Calls, through: bool
) -> None:
    """Bob talks on the phone with the clinician he texts with: he called them through the
    mask, or they called the hotline back and reached him. A second clinician calls for a
    pharmacist, Bob's discipline: Bob's phone does not ring mid-conversation, Alice's does.
    Once Bob's call is over, the next caller rings Bob first again."""
    pool = _bob_texting_the_clinician_and_alice_on_call(hotline, phones)
    second: list[SimulatedCall] = []

    def second_caller() -> None:
        second.append(_a_pharmacist_wanted(calls, SECOND_CALLER))

    caller, to, callee = (BOB, pool, CLINICIAN) if through else (CLINICIAN, HOTLINE, BOB)
    talk = calls.place(caller, to, Script(phones={callee: PRESS_1}, on_bridge=second_caller))
    assert talk.dialled == [callee] and talk.bridged_with == callee

    (call,) = second
    assert call.dialled == [ALICE] and call.bridged_with == ALICE
    after = _a_pharmacist_wanted(calls, THIRD_CALLER)
    assert after.dialled == [BOB] and after.bridged_with == BOB
    hotline.run_jobs()
    phones.phone(ALICE).expect_text("Thank you for taking that call")
    phones.phone(BOB).expect_text("Thank you for taking that call")
    assert_call_records_deleted(hotline, talk, call, after)
    phones.assert_no_unexpected()


def test_a_call_through_the_mask_whose_end_is_lost_keeps_the_supporter_busy_only_minutes(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Nothing saying Bob's call through the mask has ended reaches the line (it came while
    the database was down). Until the line can tell, Bob is not rung; within minutes the
    sweeper asks Twilio, which says it is over, and Bob is rung for the next caller again."""
    pool = _bob_texting_the_clinician_and_alice_on_call(hotline, phones)
    through = calls.place(BOB, pool, Script(phones={CLINICIAN: PRESS_1}, end_lost=True))
    assert through.bridged_with == CLINICIAN

    hotline.clock.advance(minutes=4)
    hotline.sweep()  # the call may be going on still: not asked yet
    meanwhile = _a_pharmacist_wanted(calls, SECOND_CALLER)
    assert meanwhile.dialled == [ALICE]
    hotline.clock.advance(minutes=2)
    hotline.sweep()  # asks Twilio: over, so ended as its lost callbacks would have
    after = _a_pharmacist_wanted(calls, THIRD_CALLER)
    assert after.dialled == [BOB] and after.bridged_with == BOB
    hotline.run_jobs()
    phones.phone(ALICE).expect_text("Thank you for taking that call")
    phones.phone(BOB).expect_text("Thank you for taking that call")
    phones.assert_no_unexpected()


@pytest.mark.parametrize("through", [True, False], ids=["bob-through-the-mask", "clinician-back"])
def test_a_call_whose_end_is_lost_leaves_no_leg_at_twilio_for_the_hourly_clean_up(
    hotline: Hotline, phones: Phones, calls: Calls, through: bool
) -> None:
    """Bob and the clinician talk on the phone (he called them through the mask, or they
    called the hotline back and reached him), and nothing saying the call has ended reaches
    the line: no dial action, no final status of either leg. Within minutes the sweeper asks
    Twilio about the caller's leg, which is over; the dialled leg (the clinician's number, or
    Bob's) is deleted with it, not left at Twilio until the hourly clean-up finds it."""
    pool = _bob_texting_the_clinician_and_alice_on_call(hotline, phones)
    caller, to, callee = (BOB, pool, CLINICIAN) if through else (CLINICIAN, HOTLINE, BOB)
    talk = calls.place(caller, to, Script(phones={callee: PRESS_1}, end_lost=True))
    assert talk.bridged_with == callee

    hotline.clock.advance(minutes=6)
    hotline.sweep()  # asks Twilio: over, so ended as its lost callbacks would have
    assert_call_records_deleted(hotline, talk)  # the caller's leg and the one dialled
    phones.assert_no_unexpected()


def test_nobody_on_call_the_caller_is_told_a_peer_will_call_and_texted_the_same(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    call = calls.place(CLINICIAN, HOTLINE, Script(menu="2"))

    assert call.dialled == [] and call.hears("call you back from this same number")
    assert not call.hears("shortly")  # nobody on call: that would be a promise not kept
    (conv,) = conversations(hotline)  # nobody was rung: the call's conversation is the call-back
    assert (conv.state, conv.discipline_wanted) == (ConversationState.QUEUED, "physician")
    hotline.run_jobs()
    fallback = phones.phone(CLINICIAN).expect_text("No peer supporter is free", from_=HOTLINE)
    assert "will call you from this number" in fallback.body
    phones.assert_no_unexpected()


def test_a_caller_hears_the_crisis_line_number_digit_by_digit(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Twilio's <Say> reads a run of digits as an amount: the caller heard "call or text nine
    hundred eighty-eight", "or nine hundred eleven", numbers nobody dials, each time the crisis
    sentence was said. Said aloud, it is "9 8 8" and "9 1 1"; the texts keep "988"."""
    call = calls.place(CLINICIAN, HOTLINE)  # nobody on call: the greeting, then the call-back

    assert call.dialled == []
    crisis = [line for line in call.heard if "Suicide" in line]
    assert len(crisis) == 2  # the greeting's and the call-back promise's
    for line in crisis:
        assert "call or text 9 8 8 (Suicide" in line and "or 9 1 1 in an emergency" in line
        assert not any(c.isdigit() and d.isdigit() for c, d in itertools.pairwise(line))
    hotline.run_jobs()
    told = phones.phone(CLINICIAN).expect_text("No peer supporter is free", from_=HOTLINE)
    assert hotline.settings.crisis_text in told.body  # "call or text 988", as written
    phones.assert_no_unexpected()


def test_a_3am_caller_nobody_can_take_is_not_promised_a_call_back_shortly(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice comes on call at 7 a.m.; Bob is on call but has no room for another conversation."""
    now = hotline.clock.now = hotline.clock.now.replace(hour=8)  # 3 a.m. in New York
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(alice, now + timedelta(hours=4), now + timedelta(hours=12))
    hotline.add_supporter("Bob", BOB, max_conversations=0)
    call = calls.place(CLINICIAN, HOTLINE)

    assert call.dialled == [] and not call.hears("shortly")
    assert call.hears("a peer will call you back from this same number as soon as one is free")
    assert call.hears("9 8 8")
    hotline.run_jobs()
    told = phones.phone(CLINICIAN).expect_text("No peer supporter is free", from_=HOTLINE)
    assert "The next peer comes on call at" in told.body
    hotline.clock.advance(hours=4, minutes=1)
    hotline.sweep()
    phones.phone(ALICE).expect_text("call-back request")
    phones.assert_no_unexpected()


def test_a_caller_is_not_promised_a_call_back_shortly_by_a_peer_the_line_cannot_text(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice is on call, but her phone is a landline (Twilio refused the line's texts to it,
    30006, kept on the roster): her phone rings for the caller, but the call-back is offered
    by text, which can never reach her. Bob comes on call at noon. The caller hears that a
    peer will call back as soon as one is free, not "shortly", and is texted when Bob comes
    on call."""
    now = hotline.clock.now = hotline.clock.now.replace(hour=8, minute=0)  # 3 a.m. in New York
    hotline.add_supporter("Alice", ALICE, texts_refused_code=30006, texts_refused_at=now)
    bob = hotline.add_supporter("Bob", BOB, on_call=False)
    hotline.add_shift(bob, now + timedelta(hours=4), now + timedelta(hours=12))
    hotline.fake.fail_for(ALICE, code=30006)  # her phone takes calls, never a text

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}))

    assert call.dialled == [ALICE]
    assert not call.hears("shortly"), call.heard
    assert call.hears("a peer will call you back from this same number as soon as one is free")
    hotline.run_jobs()
    told = phones.phone(CLINICIAN).expect_text("No peer supporter is free", from_=HOTLINE)
    assert "The next peer comes on call at" in told.body and "12:00" in told.body, told.body
    phones.assert_no_unexpected()


def test_the_caller_hangs_up_mid_ring_and_nobody_else_is_rung(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}, hang_up_during_dial=1))

    assert call.caller_hung_up and call.dialled == [ALICE]
    assert all(doc.find("Dial") is None for doc in call.ignored)
    assert [o.state for o in offers(hotline)] == [OfferState.WITHDRAWN]
    (conv,) = conversations(hotline)
    assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "hangup")
    assert call_row(hotline, call.sid).state == CallState.ENDED
    hotline.run_jobs()
    assert_call_records_deleted(hotline, call)  # Alice's cancelled leg too
    phones.assert_no_unexpected()  # no call-back: the caller chose to hang up


def test_a_hang_up_status_that_overtakes_the_dial_action_stops_the_ringing_too(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    script = Script(
        phones={ALICE: NO_ANSWER, BOB: PRESS_1}, hang_up_during_dial=2, status_before_action=True
    )

    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.dialled == [ALICE, BOB]
    assert all(doc.find("Dial") is None for doc in call.ignored)
    assert [o.state for o in offers(hotline)] == [OfferState.EXPIRED, OfferState.WITHDRAWN]
    assert conversations(hotline)[0].end_reason == "hangup"
    hotline.run_jobs()
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_every_webhook_delivered_twice_changes_nothing(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    script = Script(menu="1", phones={ALICE: VOICEMAIL, BOB: PRESS_1}, repeat_every_webhook=True)

    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    assert len(conversations(hotline)) == 1 and len(offers(hotline)) == 2
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 1
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    assert len(deletions(hotline)) == 3  # one per leg, however often each was reported
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_every_webhook_of_a_call_nobody_takes_delivered_twice_still_promises_the_call_back(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The last ring's action moves the call to a call-back conversation; its repeat must
    hear the same call-back promise and crisis line, not a bare hang-up."""
    hotline.add_supporter("Alice", ALICE)
    script = Script(phones={ALICE: NO_ANSWER}, repeat_every_webhook=True)

    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.dialled == [ALICE] and call.hears("call you back shortly from this same number")
    assert digit_by_digit(hotline.settings.crisis_text) in call.heard[-1]
    missed, call_back = conversations(hotline)
    assert (missed.end_reason, call_back.state) == ("missed", ConversationState.QUEUED)
    hotline.run_jobs()
    phones.phone(ALICE).expect_text(OFFER)
    phones.assert_no_unexpected()


def test_a_repeated_first_webhook_hears_the_greeting_again_and_stores_nothing_more(
    hotline: Hotline, calls: Calls
) -> None:
    params = {"CallSid": "CA" + "ab" * 16, "From": CLINICIAN, "To": HOTLINE}
    first = hotline.post("/twilio/voice", **params).get_data(as_text=True)
    again = hotline.post("/twilio/voice", **params).get_data(as_text=True)
    assert first == again and "confidential" in first
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(Call)) == 1
    assert conversations(hotline) == []


def test_a_clinician_calling_again_reaches_the_supporter_they_spoke_to_last(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    first = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER, BOB: PRESS_1}))
    assert first.bridged_with == BOB
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    phones.phone(BOB).texts("DONE")
    phones.phone(BOB).expect_text("Conversation closed")
    phones.phone(CLINICIAN).expect_text("not alone")

    hotline.clock.advance(days=2)
    again = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}))

    assert again.dialled == [BOB] and again.bridged_with == BOB  # Alice was rung less recently
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    phones.assert_no_unexpected()


def test_the_discipline_menu_rings_a_peer_of_that_discipline_first(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE, discipline="nurse")
    hotline.add_supporter("Bob", BOB, discipline="pharmacist")

    call = calls.place(CLINICIAN, HOTLINE, Script(menu="3", phones={BOB: PRESS_1}))

    assert call.dialled == [BOB]
    assert conversations(hotline)[0].discipline_wanted == "pharmacist"
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    phones.assert_no_unexpected()


def test_an_unknown_caller_to_a_pool_number_is_pointed_to_the_hotline(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    call = calls.place(CLINICIAN, POOL[1])

    assert call.dialled == [] and call.hears("doesn't take calls")
    assert call.hears("5 5 5, 0 1 0, 0 0 0 0")  # the hotline number, read digit by digit
    assert conversations(hotline) == []
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_supporter_calling_a_pool_number_with_no_live_conversation_hears_so(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)

    call = calls.place(ALICE, POOL[0])

    assert call.dialled == [] and call.hears("no open conversation on this number")
    assert conversations(hotline) == []
    phones.assert_no_unexpected()


def test_a_supporter_calling_the_number_of_a_call_back_offered_them_is_told_to_accept_it(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice missed the call and is offered the call-back by text; she calls that number
    straight back instead of replying ACCEPT. She hears how to take it (not that nothing is
    open there), nobody is rung, and once she has accepted, her call reaches the caller."""
    hotline.add_supporter("Alice", ALICE)
    calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}))
    hotline.run_jobs()
    alice, clinician = phones.phone(ALICE), phones.phone(CLINICIAN)
    offered = alice.expect_text(OFFER)

    early = calls.place(ALICE, offered.from_)

    assert early.dialled == [] and not early.hears("no open conversation")
    assert early.hears("reply ACCEPT") and early.hears("by text")
    assert conversations(hotline)[-1].state == ConversationState.QUEUED
    alice.texts("ACCEPT", to=offered.from_)
    alice.expect_text("Call this number to reach your caller", from_=offered.from_)
    clinician.expect_text("will call you back shortly", from_=HOTLINE)
    through = calls.place(ALICE, offered.from_, Script(phones={CLINICIAN: PRESS_1}))
    assert through.dialled == [CLINICIAN] and through.bridged_with == CLINICIAN
    phones.assert_no_unexpected()


def test_a_hidden_number_is_rung_through_but_cannot_be_called_back(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)

    call = calls.place("anonymous", HOTLINE, Script(phones={ALICE: NO_ANSWER}))

    assert call.dialled == [ALICE] and call.hears("your number is hidden")
    (conv,) = conversations(hotline)
    assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "missed")
    hotline.run_jobs()
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_hidden_caller_taken_closes_and_the_supporter_is_not_told_to_call_back(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    call = calls.place("anonymous", HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert call.bridged_with == ALICE
    hotline.run_jobs()
    told = phones.phone(ALICE).expect_text("number was hidden", from_=POOL[0])
    assert "Call this number" not in told.body
    (conv,) = conversations(hotline)
    assert (conv.state, conv.end_reason) == (ConversationState.ENDED, "hidden")
    assert checkins(hotline) == 0
    phones.assert_no_unexpected()


def test_a_follow_up_redis_lost_is_sent_by_the_sweeper_once(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert call.bridged_with == ALICE
    hotline.redis.flushdb()  # restarted without persistence before a worker took the job
    hotline.sweep()  # within the grace: the wake-up may yet come
    phones.phone(ALICE).expect_nothing()
    for _ in range(2):
        hotline.clock.advance(seconds=31)
        hotline.sweep()
        hotline.run_jobs()
    phones.phone(ALICE).expect_text("reply DONE", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_call_back_taken_by_text_gets_no_thanks_for_a_call_not_yet_made(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The sweeper follows up calls a supporter took; a call-back accepted by text after the
    caller hung up is not one (the supporter has yet to call)."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER, BOB: BUSY}))
    assert call.hears("call you back shortly")
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text(OFFER, from_=POOL[0])
    alice.texts("ACCEPT")
    alice.expect_text("Call this number to reach your caller", from_=POOL[0])
    phones.phone(CLINICIAN).expect_text("will call you back shortly", from_=HOTLINE)
    hotline.clock.advance(seconds=31)
    hotline.sweep()
    hotline.run_jobs()
    phones.assert_no_unexpected()


def test_a_call_back_redis_lost_still_tells_the_caller_and_the_coordinator_once(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice, the only peer on call, misses the ring and goes off call; the call-back job is
    lost with Redis. The sweeper must still send the 'no peer is free' text and the alert."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.alert_phone_sealed = hotline.services.vault.seal(COORDINATOR, ALERT_CONTEXT)
    alice = hotline.add_supporter("Alice", ALICE, on_call=False)
    hotline.add_shift(alice, hotline.clock.now, hotline.clock.now + timedelta(minutes=2))
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}))
    assert call.hears("call you back shortly")
    hotline.redis.flushdb()
    for _ in range(3):
        hotline.clock.advance(minutes=5)
        hotline.sweep()
        hotline.run_jobs()
    told = phones.phone(CLINICIAN).expect_text("No peer supporter is free", from_=HOTLINE)
    assert "will call you from this number" in told.body
    phones.phone(COORDINATOR).expect_text("a call-back request is waiting with nobody available")
    phones.assert_no_unexpected()


def test_a_call_while_a_text_request_waits_replaces_it_and_its_texts_go_with_the_call(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The clinician texts, and calls before anyone accepts: one request, not two. Bob takes
    the call and gets what they texted; Alice's offer of the text request is withdrawn, and
    nobody is offered it afterwards (a second peer for someone who has just talked to one)."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[0])

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}))

    assert call.dialled == [BOB] and call.bridged_with == BOB
    texted, called = conversations(hotline)
    assert (texted.state, texted.end_reason) == (ConversationState.ENDED, "replaced")
    assert called.state == ConversationState.ACTIVE and called.supporter_id is not None
    assert [o.state for o in offers(hotline)] == [OfferState.WITHDRAWN, OfferState.ACCEPTED]
    hotline.run_jobs()
    bob.expect_text("I had a bad night", from_=POOL[0])
    bob.expect_text("Thank you for taking that call", from_=POOL[0])
    hotline.clock.advance(minutes=31)  # past the offer's timeout and the ask-again delay
    hotline.sweep()
    hotline.run_jobs()
    clinician.texts("thank you")
    bob.expect_text("thank you", from_=POOL[0])
    phones.assert_no_unexpected()


@pytest.mark.parametrize("first", ["I had a bad night", "NURSE"], ids=["held", "nothing-held"])
def test_a_hang_up_after_a_text_request_was_replaced_leaves_that_request_waiting(
    hotline: Hotline, phones: Phones, calls: Calls, first: str
) -> None:
    """The clinician texts, calls before anyone accepts, and hangs up while Bob's phone rings:
    the call is withdrawn, but what they texted was not. It goes on waiting for a peer, as the
    text request it was: Alice's offer of it, withdrawn by the call, stands again (she was
    texted it a second time), and she gets the text when she accepts. So too when the request
    held nothing (its first text was their field's word, as the greeting invites, or only a
    photo): it was gone, nobody was offered it, and they had been told a peer would text
    back."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.texts(first)
    clinician.expect_text("confidential", from_=HOTLINE)
    offer = alice.expect_text(OFFER, from_=POOL[0])
    assert "call-back" not in offer.body  # they asked by text: a peer texts them back

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}, hang_up_during_dial=1))

    assert call.caller_hung_up and call.dialled == [BOB]
    hotline.run_jobs()
    phones.assert_no_unexpected()
    alice.texts("ACCEPT")
    alice.expect_text("connected", from_=POOL[0])
    if first != "NURSE":
        alice.expect_text(first, from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    assert [c.state for c in conversations(hotline)] == [
        ConversationState.ACTIVE,  # the text request, waiting again after the hang-up
        ConversationState.ENDED,  # the call, withdrawn by the hang-up
    ]
    phones.assert_no_unexpected()


def test_an_offer_whose_time_ran_out_while_the_call_rang_lapses_as_it_would_have(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Alice's offer of the text request ran out while the clinician's call rang (its wake-up
    not yet run): once they hang up, the request goes on to the next peer, as it would have
    without the call, and she can still take it with a late ACCEPT, as a lapsed offer."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER, from_=POOL[0])
    hotline.clock.advance(seconds=181)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}, hang_up_during_dial=1))

    assert call.caller_hung_up and call.dialled == [BOB]
    hotline.run_jobs()
    bob.expect_text(OFFER)
    bob.texts("PASS")
    bob.expect_text("Passed on")
    clinician.expect_text("No peer supporter is free", from_=HOTLINE)
    alice.texts("ACCEPT")
    alice.expect_text("connected", from_=POOL[0])
    alice.expect_text("I had a bad night", from_=POOL[0])
    clinician.expect_text("joined", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_hang_up_after_a_text_request_was_replaced_goes_on_with_it_rather_than_anew(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The clinician texts; Alice and Bob both pass it, and the clinician is told no peer is
    free. They call, and hang up while a phone rings. What they texted waits on as the request
    it was, not a new one: Alice and Bob, who passed it a moment ago, were asked again at once,
    and passing again, the clinician was told a second time that nobody is free. Now it is
    offered again as any waiting request is, half an hour after they passed, and reaches
    whoever accepts it; it counts as the one text request it is."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)
    clinician.texts("I had a bad night")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER)
    alice.texts("PASS")
    alice.expect_text("Passed on")
    bob.expect_text(OFFER)
    bob.texts("PASS")
    bob.expect_text("Passed on")
    clinician.expect_text("No peer supporter is free", from_=HOTLINE)

    rings = Script(phones={ALICE: NO_ANSWER, BOB: NO_ANSWER}, hang_up_during_dial=1)
    call = calls.place(CLINICIAN, HOTLINE, rings)

    assert call.caller_hung_up and call.dialled == [ALICE]
    hotline.run_jobs()
    phones.assert_no_unexpected()  # was: the peer first in turn offered it again at once
    hotline.clock.advance(minutes=29)
    hotline.sweep()
    hotline.run_jobs()
    phones.assert_no_unexpected()
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    hotline.run_jobs()
    bob.expect_text(OFFER)  # next in turn: Alice's phone rang for the call since
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("I had a bad night")
    clinician.expect_text("joined", from_=HOTLINE)
    assert [(c.channel, c.state) for c in conversations(hotline)] == [
        ("sms", ConversationState.ACTIVE),  # what they texted, taken by Bob at last
        ("voice", ConversationState.ENDED),  # the call, withdrawn by the hang-up
    ]
    phones.assert_no_unexpected()


def test_a_hang_up_after_a_call_back_was_replaced_leaves_that_call_back_waiting(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Nobody picked up the clinician's first call: they were told a peer will call back, and
    Alice is offered the call-back. They call again, and hang up while Bob's phone rings. The
    promise stands, as it does for a text request the call replaced: the call-back waits again
    with Alice's offer, and her ACCEPT takes it (it was withdrawn for good, and she was told it
    was no longer open, though nobody would call them back)."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    missed = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER, BOB: NO_ANSWER}))
    assert missed.hears("call you back shortly")
    hotline.run_jobs()
    offer = alice.expect_text(OFFER)
    assert "call-back" in offer.body

    again = calls.place(CLINICIAN, HOTLINE, Script(phones={BOB: PRESS_1}, hang_up_during_dial=1))

    assert again.caller_hung_up and again.dialled == [BOB]
    hotline.run_jobs()
    phones.assert_no_unexpected()
    alice.texts("ACCEPT", to=offer.from_)
    alice.expect_text("Call this number to reach your caller", from_=offer.from_)
    clinician.expect_text("will call you back shortly", from_=HOTLINE)
    assert [(c.channel, c.state, c.end_reason) for c in conversations(hotline)] == [
        ("voice", ConversationState.ENDED, "missed"),  # the first call
        ("voice", ConversationState.ACTIVE, None),  # its call-back, taken by Alice at last
        ("voice", ConversationState.ENDED, "hangup"),  # the second call
    ]
    phones.assert_no_unexpected()


def test_a_call_while_texting_with_a_peer_leaves_the_texts_with_that_peer(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The clinician calls mid-conversation and nobody picks up: a call-back waits, but their
    texts still reach the peer they are texting; STOP ends both."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)

    call = calls.place(CLINICIAN, HOTLINE, Script())  # Alice does not pick up
    assert call.hears("call you back shortly")
    hotline.run_jobs()
    assert "call-back" in alice.expect_text(OFFER, from_=POOL[1]).body
    clinician.texts("sorry, I tried calling - can you still text?")
    assert alice.expect_text("can you still text?").from_ == POOL[0]

    hotline.add_supporter("Bob", BOB)
    alice.texts("PASS", to=POOL[1])
    alice.expect_text("Passed on")
    bob = phones.phone(BOB)
    bob.expect_text(OFFER)
    bob.texts("ACCEPT")  # Bob takes the call-back...
    bob.expect_text("Call this number to reach your caller")
    clinician.expect_text("will call you back shortly")
    clinician.texts("still there?")  # ...and the texts still go to Alice
    assert alice.expect_text("still there?").from_ == POOL[0]

    clinician.texts("STOP")
    alice.expect_text("ended the conversation", from_=POOL[0])
    bob.expect_text("ended the conversation")
    assert {c.state for c in conversations(hotline)} == {ConversationState.ENDED}
    phones.assert_no_unexpected()


def test_a_call_while_texting_rings_that_peer_first_and_stays_in_that_conversation(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The clinician texting with Alice calls the line: Alice's phone rings from the number she
    knows them by, she presses 1, and the call is part of the conversation they have: no new
    conversation, no offer, no follow-up text; DONE by text still closes it."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    (texting,) = conversations(hotline)
    hotline.clock.advance(minutes=5)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1, BOB: PRESS_1}))

    assert call.hears("peer supporter you've been talking with")
    assert not call.hears("press 1")  # no greeting menu: they are already talking
    assert call.dialled == [ALICE] and call.bridged_with == ALICE
    assert call.dials[0].caller_id == texting.pool_number
    assert any("Your caller on this number" in line for line in call.dials[0].heard)
    row = call_row(hotline, call.sid)
    assert (row.state, row.conversation_id) == (CallState.ENDED, texting.id)
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.ACTIVE and conv.last_activity_at == hotline.clock.now
    assert len(offers(hotline)) == 1  # the text request's, nothing for the call
    hotline.clock.advance(minutes=1)
    hotline.run_jobs()
    hotline.sweep()  # no follow-up text for a call inside a conversation, even a lost one
    clinician.texts("thanks for picking up")
    alice.expect_text("thanks for picking up", from_=texting.pool_number)
    alice.texts("DONE", to=texting.pool_number)
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_peer_who_cannot_pick_up_is_not_rung_twice_and_the_line_rings_others(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    alice_id = hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    bob_id = hotline.add_supporter("Bob", BOB)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: VOICEMAIL, BOB: PRESS_1}))

    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert call.hears("can't pick up just now") and call.hears(crisis)
    texting, by_voice = conversations(hotline)
    assert texting.state == by_voice.state == ConversationState.ACTIVE
    assert (by_voice.channel, by_voice.supporter_id) == ("voice", bob_id)
    assert [(o.supporter_id, o.state) for o in offers(hotline)][1:] == [
        (alice_id, OfferState.EXPIRED),  # Alice's ring counts as the call's first, unanswered
        (bob_id, OfferState.ACCEPTED),
    ]
    clinician.texts("sorry I missed you")  # the texts still go to Alice
    alice.expect_text("sorry I missed you", from_=texting.pool_number)
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


@pytest.mark.parametrize("alice", [PRESS_1, NO_ANSWER], ids=["taken", "not-taken"])
def test_every_webhook_of_a_call_to_a_peer_delivered_twice_changes_nothing(
    hotline: Hotline, phones: Phones, calls: Calls, alice: Pickup
) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.add_supporter("Bob", BOB)
    script = Script(phones={ALICE: alice, BOB: PRESS_1}, repeat_every_webhook=True)

    call = calls.place(CLINICIAN, HOTLINE, script)

    taken = alice == PRESS_1
    assert call.dialled == ([ALICE] if taken else [ALICE, BOB])
    assert call.bridged_with == (ALICE if taken else BOB)
    assert len(conversations(hotline)) == (1 if taken else 2)
    assert len(offers(hotline)) == (1 if taken else 3)
    assert call_row(hotline, call.sid).state == CallState.ENDED


def test_a_peer_taking_a_later_call_withdraws_the_call_back_still_waiting(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    missed = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: VOICEMAIL}))
    assert missed.hears("call you back shortly")
    assert ConversationState.QUEUED in {c.state for c in conversations(hotline)}

    again = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}))

    assert again.dialled == [ALICE] and again.bridged_with == ALICE
    states = sorted((c.state, c.end_reason or "") for c in conversations(hotline))
    assert states == sorted(
        [
            (ConversationState.ACTIVE, ""),  # the texts, and now the call
            (ConversationState.ENDED, "missed"),  # the first call's
            (ConversationState.ENDED, "replaced"),  # its call-back
        ]
    )
    hotline.run_jobs()  # no call-back offer goes out
    phones.assert_no_unexpected()


def test_a_call_back_is_withdrawn_at_the_press_of_1_whatever_order_the_callbacks_come_in(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The caller's "completed" may reach the line before the peer's dial action (NOTES): the
    call-back the peer's call replaces is withdrawn when they press 1, not at the dial action."""
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    missed = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: VOICEMAIL}))
    assert missed.hears("call you back shortly")

    def caller_leg_over_first() -> None:
        with hotline.session() as session:
            sid = session.scalars(select(Call.call_sid).where(Call.state == CallState.BRIDGED))
            bridged = sid.one()
        response = hotline.post("/twilio/status", CallSid=bridged, CallStatus="completed")
        assert response.status_code == 204

    again = calls.place(
        CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}, on_bridge=caller_leg_over_first)
    )

    assert again.bridged_with == ALICE
    states = sorted((c.state, c.end_reason or "") for c in conversations(hotline))
    assert (ConversationState.QUEUED, "") not in states, states
    assert (ConversationState.ENDED, "replaced") in states
    hotline.run_jobs()
    phones.assert_no_unexpected()


def test_nobody_can_take_the_call_back_while_the_clinician_talks_with_their_peer(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    hotline.add_supporter("Bob", BOB)
    missed = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: VOICEMAIL}))
    assert missed.hears("call you back shortly")
    hotline.run_jobs()
    alice.expect_text(OFFER, from_=POOL[1])  # the call-back goes to Alice first; she passes
    alice.texts("PASS", to=POOL[1])
    alice.expect_text("Passed on")
    bob = phones.phone(BOB)
    bob.expect_text(OFFER)

    again = calls.place(
        CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}, on_bridge=lambda: bob.texts("ACCEPT"))
    )

    assert again.bridged_with == ALICE
    assert "Call this number" not in bob.expect_text().body  # the offer was gone
    hotline.run_jobs()
    assert not any("call you back" in t.body for t in clinician.inbox)
    phones.assert_no_unexpected()


def test_a_long_call_with_the_peer_is_not_closed_as_idle_while_they_talk(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The last text was 47 h 45 min ago; the idle sweep (48 h) runs half an hour into the
    call: the call is the conversation's activity from the ring on."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(hours=47, minutes=45)

    def talk_half_an_hour() -> None:
        hotline.clock.advance(minutes=30)
        hotline.sweep()

    call = calls.place(
        CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}, on_bridge=talk_half_an_hour)
    )

    assert call.bridged_with == ALICE
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.ACTIVE, conv.end_reason
    clinician.texts("thank you for picking up")
    alice.expect_text("thank you for picking up", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_text_sent_while_the_call_rings_reaches_whoever_takes_the_call(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician = phones.phone(CLINICIAN)
    words = "signal is bad in the car park, please text if we get cut off"
    script = Script(phones={ALICE: PRESS_1}, before_answer={ALICE: lambda: clinician.texts(words)})

    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.bridged_with == ALICE
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text(words, from_=POOL[0])  # with the follow-up, before it
    alice.expect_text("Thank you for taking that call")
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(PendingText)) == 0
    hotline.run_jobs()
    phones.assert_no_unexpected()


def test_a_peer_off_call_is_not_rung_and_the_call_goes_to_whoever_is_on_call(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    alice_id = hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    with hotline.session() as session:
        session.execute(
            update(Shift).where(Shift.supporter_id == alice_id).values(ends_at=hotline.clock.now)
        )
        session.commit()
    hotline.add_supporter("Bob", BOB)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1, BOB: PRESS_1}))

    assert call.hears("confidential") and call.dialled == [BOB]
    assert call.bridged_with == BOB
    del clinician, alice


def test_a_call_rings_a_peer_on_a_landline_but_not_one_who_stopped_every_line_number(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """No text of the line reaches Alice (she texted STOP to each of its numbers) nor Bob (a
    landline: 30006, on the roster), so coverage counts neither as on call. A call still
    rings Bob, whose phone takes calls; never Alice: routing keeps off every number she
    stopped, for a ring as for a text, as the console's coverage gaps say."""
    hotline.add_supporter("Alice", ALICE)
    bob = hotline.add_supporter("Bob", BOB)
    for number in POOL:
        assert hotline.sms(ALICE, number, "STOP").status_code == 200
    with hotline.session() as session:
        session.execute(
            update(Supporter)
            .where(Supporter.id == bob)
            .values(texts_refused_code=30006, texts_refused_at=hotline.clock.now)
        )
        session.commit()

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1, BOB: PRESS_1}))

    assert call.dialled == [BOB] and call.bridged_with == BOB
    phones.assert_no_unexpected()


def test_the_caller_hanging_up_while_their_peer_rings_ends_the_call_and_nothing_else(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    phones.talking(CLINICIAN, ALICE)

    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}, hang_up_during_dial=1))

    assert call.dialled == [ALICE]
    assert call_row(hotline, call.sid).state == CallState.ENDED
    (conv,) = conversations(hotline)
    assert conv.state == ConversationState.ACTIVE
    hotline.clock.advance(minutes=1)
    hotline.sweep()  # Alice is not thanked for a call she never took
    hotline.run_jobs()
    assert_call_records_deleted(hotline, call)
    phones.assert_no_unexpected()


def test_a_hang_up_status_overtaking_the_peers_action_still_counts_their_talk(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The caller's "completed" reaches the line before the dial action that says they talked:
    the conversation still counts the call as activity (the action may come later, or never)."""
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(hours=47)

    def caller_leg_over_first() -> None:
        with hotline.session() as session:
            sid = session.scalars(select(Call.call_sid)).one()
        assert hotline.post("/twilio/status", CallSid=sid, CallStatus="completed").status_code
        assert call_row(hotline, sid).state == CallState.ENDED

    script = Script(phones={ALICE: PRESS_1}, on_bridge=caller_leg_over_first)
    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.bridged_with == ALICE
    assert conversations(hotline)[0].last_activity_at == hotline.clock.now
    hotline.clock.advance(hours=2)
    hotline.sweep()  # 49 hours after the texts, 2 after the call: not idle
    assert conversations(hotline)[0].state == ConversationState.ACTIVE


def test_a_peer_who_texts_done_while_their_phone_rings_cannot_take_the_call(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE)
    bob_id = hotline.add_supporter("Bob", BOB)

    def done_first() -> None:  # as her phone rings: she texts DONE, then answers and presses 1
        alice.texts("DONE", to=POOL[0])

    script = Script(phones={ALICE: PRESS_1, BOB: PRESS_1}, before_answer={ALICE: done_first})
    call = calls.place(CLINICIAN, HOTLINE, script)

    assert call.dialled == [ALICE, BOB] and call.bridged_with == BOB
    assert any("already ended" in line for line in call.dials[0].heard)
    assert call.hears("can't pick up just now")
    texting, by_voice = conversations(hotline)
    assert texting.state == ConversationState.ENDED and by_voice.supporter_id == bob_id
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    hotline.run_jobs()
    phones.phone(BOB).expect_text("reply DONE")
    phones.assert_no_unexpected()


def test_with_a_pool_of_one_the_supporter_calls_back_on_the_hotline_number(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    set_pool(hotline, (HOTLINE,))
    hotline.add_supporter("Alice", ALICE)
    calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: NO_ANSWER}))
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text(OFFER, from_=HOTLINE)
    alice.texts("ACCEPT")
    alice.expect_text("Call this number", from_=HOTLINE)
    phones.phone(CLINICIAN).expect_text("will call you back")

    missed = calls.place(ALICE, HOTLINE, Script(phones={CLINICIAN: NO_ANSWER}))
    assert missed.dialled == [CLINICIAN] and missed.dials[0].caller_id == HOTLINE
    assert missed.hears("Your caller didn't answer")
    through = calls.place(ALICE, HOTLINE, Script(phones={CLINICIAN: PRESS_1}))
    assert through.bridged_with == CLINICIAN and through.dials[0].caller_id == HOTLINE
    assert_call_records_deleted(hotline, *calls.placed)
    phones.assert_no_unexpected()


def test_a_ring_whose_result_never_comes_back_is_recovered_by_the_sweeper(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    sid = "CA" + "cd" * 16
    caller = {"CallSid": sid, "From": CLINICIAN, "To": HOTLINE, "CallStatus": "in-progress"}
    hotline.post("/twilio/voice", **caller)
    dial = parse(hotline.post("/twilio/voice/start", **caller)).find("Dial")
    assert dial is not None  # Alice rings; Twilio then never reports back
    action = dial.get("action", "").removeprefix(PUBLIC_URL)

    hotline.clock.advance(minutes=2)
    assert hotline.sweep().offers_expired == 1
    phones.phone(BOB).expect_text(OFFER)  # the conversation is offered onwards, by text
    leg = "CA" + "ce" * 16
    late = parse(hotline.post(action, **caller, DialCallStatus="no-answer", DialCallSid=leg))
    assert late.find("Dial") is None and "call you back" in (late.findtext("Say") or "")
    assert call_row(hotline, sid).state == CallState.CALLBACK
    assert [row.sid for row in deletions(hotline)] == [leg]  # Alice's leg, from the action
    phones.assert_no_unexpected()


def test_a_call_record_twilio_has_not_finished_is_deleted_on_a_later_try(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """Twilio refuses to delete a call it has not completed (20009); the deletion is retried."""
    hotline.add_supporter("Alice", ALICE)
    script = Script(phones={ALICE: PRESS_1}, record_settles_after=7 * 60)
    call = calls.place(CLINICIAN, HOTLINE, script)
    hotline.run_jobs()
    phones.phone(ALICE).expect_text("reply DONE")

    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() + 1)
    hotline.run_jobs()  # due, but both records are still being completed at Twilio
    assert not set(call.sids) & set(hotline.fake.deleted)
    assert [(row.sid, row.attempts) for row in deletions(hotline)] == [
        (sid, 1)
        for sid in (call.legs[0], call.sid)  # the leg ended first
    ]
    hotline.clock.advance(minutes=3)  # the retry comes 2 minutes later; Twilio is done by then
    hotline.run_jobs()
    assert set(call.sids) <= set(hotline.fake.deleted)
    assert deletions(hotline) == [] and hotline.fake.carried == []
    phones.assert_no_unexpected()


def test_the_simulator_refuses_recordings_and_unmasked_caller_ids(
    hotline: Hotline, calls: Calls
) -> None:
    """The simulator's own checks, so a broken check cannot pass every scenario vacuously."""
    hotline.add_supporter("Alice", ALICE)
    for document in (
        "<Response><Record/></Response>",
        '<Response><Dial record="true"/></Response>',
    ):
        with pytest.raises(AssertionError, match="record"):
            check_no_recording(ET.fromstring(document))  # noqa: S314
    for number in (
        f"<Number>{ALICE}</Number>",
        f'<Number statusCallback="{PUBLIC_URL}/twilio/status">{ALICE}</Number>',
    ):
        with pytest.raises(AssertionError, match="<Number>"):
            check_leg_reports_its_end(ET.fromstring(number))  # noqa: S314
    call = SimulatedCall("CA" + "ef" * 16, CLINICIAN, HOTLINE)
    for to, caller_id in ((ALICE, ""), (ALICE, CLINICIAN), (ALICE, HOTLINE), (CLINICIAN, POOL[0])):
        with pytest.raises(AssertionError):
            calls.check_masked(call, to, caller_id)
    calls.check_masked(call, ALICE, POOL[2])
    calls.check_masked(call, "+15550109002", HOTLINE)


def parse(response: TestResponse) -> ET.Element:
    assert response.status_code == 200 and response.mimetype == "text/xml"
    return ET.fromstring(response.get_data(as_text=True))  # noqa: S314 - our own TwiML


def set_pool(hotline: Hotline, pool: tuple[str, ...]) -> None:
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        ensure_programme(
            session,
            slug=programme.slug,
            name=programme.name,
            hotline_number=programme.hotline_number,
            pool_numbers=pool,
        )


STEPS = ["start", "next?ring=1", "screen?ring=1", "pickup?ring=1", "peer?call=1"]


@pytest.mark.parametrize(
    "step", [*STEPS, "peerscreen?call=1", "peerpickup?call=1", "throughscreen", "throughpickup"]
)
def test_every_voice_step_refuses_an_unsigned_request(hotline: Hotline, step: str) -> None:
    params = {"CallSid": "CA" + "12" * 16, "From": CLINICIAN, "To": HOTLINE, "Digits": "1"}
    response = hotline.client.post(f"/twilio/voice/{step}", data=params, base_url=PUBLIC_URL)
    assert response.status_code == 403
    assert conversations(hotline) == [] and offers(hotline) == []


def test_a_call_answering_a_checkin_counts_as_its_reply(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """The check-in says "Reply any time to talk"; a clinician who calls the line instead of
    texting back has answered it too: the reports count it, as they count a text."""
    hotline.add_supporter("Alice", ALICE)
    _, alice, _ = phones.checked_in(CLINICIAN, ALICE)

    hotline.clock.advance(hours=3)
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert call.bridged_with == ALICE

    with hotline.session() as session:
        replied = session.scalars(select(CheckIn.replied_at).order_by(CheckIn.id)).all()
    assert replied[0] == hotline.clock.now, "a call after a check-in was not counted as a reply"
    hotline.run_jobs()
    alice.expect_text("reply DONE")
    phones.assert_no_unexpected()
