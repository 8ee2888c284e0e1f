"""Shift reminders and coverage-gap warnings: planned and sent by the sweeper, once each."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hotline import roster, rota, verification
from hotline.db import transaction
from hotline.models import (
    Notice,
    NoticeKind,
    NoticeState,
    PoolNumber,
    Programme,
    ScheduleSettings,
    Supporter,
)
from hotline.people import ALERT_CONTEXT, SUPPORTER_CONTEXT, is_opted_out
from hotline.privacy import Vault
from hotline.wakeups import Task
from tests.console.conftest import ACTOR, Console, add_verified, sign_in
from tests.kit.harness import HOTLINE, POOL, Hotline, RetiredMidSend, use_telephony
from tests.kit.phones import Phone, Phones
from tests.kit.signing import deliver_to

ALICE, BOB = "+15550108001", "+15550108002"
CLINICIAN = "+15550109001"
COORDINATOR = "+15550106000"


def configure(hotline: Hotline, reminder: int | None, warning: int | None) -> None:
    with transaction(hotline.services.sessions) as session:
        session.add(
            ScheduleSettings(
                programme_id=hotline.programme_id,
                reminder_minutes=reminder,
                gap_warning_hours=warning,
            )
        )
        programme = session.get_one(Programme, hotline.programme_id)
        programme.alert_phone_sealed = hotline.services.vault.seal(COORDINATOR, ALERT_CONTEXT)


def shift_in(hotline: Hotline, supporter_id: int, minutes: int, hours: int) -> None:
    start = hotline.clock.now + timedelta(minutes=minutes)
    with transaction(hotline.services.sessions) as session:
        rota.add_shift(
            session,
            hotline.programme_id,
            supporter_id,
            start,
            start + timedelta(hours=hours),
            ACTOR,
            hotline.clock.now,
        )


def texts_to(hotline: Hotline, number: str) -> list[dict[str, object]]:
    return [m for m in hotline.fake.messages if m["to"] == number]


def test_a_reminder_goes_out_once_before_the_shift(hotline: Hotline) -> None:
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=45, hours=8)
    hotline.sweep()
    assert texts_to(hotline, ALICE) == []  # 45 minutes ahead: not yet
    hotline.clock.advance(minutes=20)
    hotline.sweep()
    hotline.sweep()
    (reminder,) = texts_to(hotline, ALICE)
    assert reminder["from_"] == POOL[0]
    assert "reminder, you are on call" in str(reminder["body"])


def test_a_gap_warning_goes_to_the_alert_phone_once(hotline: Hotline) -> None:
    configure(hotline, reminder=None, warning=24)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=-60, hours=5)  # on now; nobody after four hours
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    (warning,) = texts_to(hotline, COORDINATOR)
    assert warning["from_"] == HOTLINE
    assert "nobody is on call" in str(warning["body"])
    assert texts_to(hotline, ALICE) == []


@pytest.mark.parametrize("why", ["STOP to every line number", "a landline"])
def test_a_stretch_only_a_supporter_the_line_cannot_text_covers_is_warned_of(
    hotline: Hotline, why: str
) -> None:
    """Bob is on call after Alice, but no text of the line reaches him: he texted STOP to each
    of its numbers, or his number is a landline (his shift reminder was refused, 21612). A
    clinician texting then is told nobody is free, and the coordinator was warned of nothing."""
    configure(hotline, reminder=30, warning=24)
    now = hotline.clock.now  # Monday 2 March 15:00 UTC
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    hotline.add_shift(alice, now - timedelta(hours=1), now + timedelta(minutes=20))
    hotline.add_shift(bob, now + timedelta(minutes=20), now + timedelta(hours=10, minutes=20))
    hotline.add_shift(alice, now + timedelta(hours=10, minutes=20), now + timedelta(days=60))
    if why == "a landline":
        hotline.fake.fail_for(BOB, code=21612)
    else:
        for number in POOL:
            assert hotline.sms(BOB, number, "STOP").status_code == 200
    hotline.sweep()  # Bob's reminder goes (or is refused)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    hotline.sweep()
    (warning,) = texts_to(hotline, COORDINATOR)
    assert warning["from_"] == HOTLINE
    assert "nobody the line can text is on call from Mon 2 Mar 3:20 PM to Tue 3 Mar 1:20 AM" in str(
        warning["body"]
    )


def test_a_gap_warned_of_that_a_refusal_extends_is_warned_of_again(hotline: Hotline) -> None:
    """The coordinator was warned that nobody is on call from 3:20 to 5 PM, when Bob comes on
    until 8. Then Bob texted STOP to every number of the line: nobody the line can text is on
    call until 8 PM now, and the coordinator, who may have found cover until 5 only, was told
    nothing more (the warning's key is the gap's start). The longer gap is warned of, with its
    new end; once it is back to what was told (Bob's START), nothing more is sent."""
    configure(hotline, reminder=None, warning=24)
    now = hotline.clock.now  # Monday 2 March 15:00 UTC
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    hotline.add_shift(alice, now - timedelta(hours=1), now + timedelta(minutes=20))
    hotline.add_shift(bob, now + timedelta(hours=2), now + timedelta(hours=5))
    hotline.add_shift(alice, now + timedelta(hours=5), now + timedelta(days=60))
    hotline.sweep()
    (plain,) = [str(m["body"]) for m in texts_to(hotline, COORDINATOR)]
    assert "nobody is on call from Mon 2 Mar 3:20 PM to Mon 2 Mar 5:00 PM" in plain
    for number in POOL:
        assert hotline.sms(BOB, number, "STOP").status_code == 200
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    hotline.sweep()
    warned = [str(m["body"]) for m in texts_to(hotline, COORDINATOR)]
    assert len(warned) == 2, warned
    assert "the line can text is on call from Mon 2 Mar 3:20 PM to Mon 2 Mar 8:00 PM" in warned[1]
    for number in POOL:
        assert hotline.sms(BOB, number, "START").status_code == 200
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert len(texts_to(hotline, COORDINATOR)) == 2


def test_a_gap_warning_still_to_send_when_the_gap_grows_is_not_sent_with_its_old_end(
    hotline: Hotline,
) -> None:
    """Twilio did not take the first warning (a 503): it waits for the next sweep. Meanwhile
    Bob's STOP to every line number runs the gap on to 8 PM: the coordinator gets the one
    warning with that end, not the old one (to 5 PM) and then the new."""
    configure(hotline, reminder=None, warning=24)
    now = hotline.clock.now
    alice, bob = add_verified(hotline, "Alice", ALICE), add_verified(hotline, "Bob", BOB)
    hotline.add_shift(alice, now - timedelta(hours=1), now + timedelta(minutes=20))
    hotline.add_shift(bob, now + timedelta(hours=2), now + timedelta(hours=5))
    hotline.add_shift(alice, now + timedelta(hours=5), now + timedelta(days=60))
    hotline.fake.fail_next(status=503, code=None)
    hotline.sweep()
    assert texts_to(hotline, COORDINATOR) == []
    for number in POOL:
        assert hotline.sms(BOB, number, "STOP").status_code == 200
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    hotline.sweep()
    (warning,) = [str(m["body"]) for m in texts_to(hotline, COORDINATOR)]
    assert "the line can text is on call from Mon 2 Mar 3:20 PM to Mon 2 Mar 8:00 PM" in warning


@pytest.mark.parametrize("why", ["a landline", "STOP to every line number"])
def test_no_shift_reminder_goes_to_a_supporter_the_line_cannot_text(
    hotline: Hotline, console: Console, why: str
) -> None:
    """Bob's phone refuses the line's texts: it is a landline (his first reminder was refused,
    21612), or he texted STOP to every number of the line. Each of his reminders was sent all
    the same and refused again. They are skipped now; the roster still says his texts are
    refused, for the coordinator to put it right."""
    configure(hotline, reminder=30, warning=None)
    bob = add_verified(hotline, "Bob", BOB)
    shift_in(hotline, bob, minutes=20, hours=8)
    shift_in(hotline, bob, minutes=24 * 60 + 20, hours=8)
    if why == "a landline":
        hotline.fake.fail_for(BOB, code=21612)
    else:
        for number in POOL:
            assert hotline.sms(BOB, number, "STOP").status_code == 200
    hotline.sweep()
    hotline.clock.advance(hours=24)
    hotline.sweep()
    with hotline.session() as session:
        reminders = select(Notice.state, Notice.from_number).where(
            Notice.kind == NoticeKind.REMINDER
        )
        tried = session.execute(reminders.order_by(Notice.id)).all()
    skipped = (NoticeState.SKIPPED, None)
    first = (NoticeState.FAILED, POOL[0]) if why == "a landline" else skipped
    assert tried == [first, skipped]
    assert texts_to(hotline, BOB) == []
    assert sign_in(console.client) == 302  # a day on: signed in again
    assert "Texts refused" in console.get("/console/roster")


def report(hotline: Hotline, text: dict[str, object], status: str, code: int | None) -> int:
    """Twilio's status callback on ``text``, to the URL the text named."""
    return hotline.fake.post_status(str(text["sid"]), status, code, deliver_to(hotline.client))


def reminder_states(hotline: Hotline) -> list[NoticeState]:
    with hotline.session() as session:
        reminders = select(Notice.state).where(Notice.kind == NoticeKind.REMINDER)
        return list(session.scalars(reminders.order_by(Notice.id)))


@pytest.mark.parametrize("code", [30006, 30003])
def test_a_shift_reminder_twilio_took_but_could_not_deliver_counts_as_not_reached(
    hotline: Hotline, console: Console, code: int
) -> None:
    """Twilio took Bob's shift reminder, then reported it undelivered. For a landline (30006)
    the roster never said his texts are refused, and the coverage went on counting on him. A
    phone switched off (30003) refuses nothing for good: his reminder did not reach him, and
    his next one still goes. A late "delivered" changes nothing back."""
    configure(hotline, reminder=30, warning=None)
    bob = add_verified(hotline, "Bob", BOB)
    shift_in(hotline, bob, minutes=20, hours=8)
    shift_in(hotline, bob, minutes=24 * 60 + 20, hours=8)
    hotline.sweep()
    (reminder,) = texts_to(hotline, BOB)
    assert report(hotline, reminder, "undelivered", code) == 204
    assert report(hotline, reminder, "delivered", None) == 204
    assert reminder_states(hotline) == [NoticeState.FAILED]
    roster_page = console.get("/console/roster")
    assert ("Texts refused" in roster_page) is (code == 30006)
    hotline.clock.advance(hours=24)
    hotline.sweep()
    reminders = [m["sid"] for m in hotline.fake.sent if m["to"] == BOB]
    if code == 30006:  # a landline: Twilio would refuse it again
        assert reminders == [reminder["sid"]]
        assert reminder_states(hotline) == [NoticeState.FAILED, NoticeState.SKIPPED]
    else:
        assert len(reminders) == 2
        assert reminder_states(hotline) == [NoticeState.FAILED, NoticeState.SENT]


def test_a_report_naming_no_supporter_s_notice_marks_nobody(
    hotline: Hotline, console: Console
) -> None:
    """Alice's phone is also the programme's alert phone. A gap warning to it that Twilio
    reports undelivered, or a report naming a notice there is none of, is acknowledged as
    any report is, and marks no supporter's phone as refusing the line's texts."""
    configure(hotline, reminder=None, warning=24)
    add_verified(hotline, "Alice", COORDINATOR)
    bob = add_verified(hotline, "Bob", BOB)
    shift_in(hotline, bob, minutes=-60, hours=5)  # on now; nobody after four hours
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    (warning,) = texts_to(hotline, COORDINATOR)
    assert report(hotline, warning, "undelivered", 30006) == 204
    unknown = {"MessageSid": f"SM{'d1' * 16}", "MessageStatus": "undelivered"}
    response = hotline.post("/twilio/status?notice=999999", **unknown, To=BOB, ErrorCode="30006")
    assert response.status_code == 204
    assert "Texts refused" not in console.get("/console/roster")
    with hotline.session() as session:
        gaps = select(Notice.state).where(Notice.kind == NoticeKind.GAP)
        assert session.scalars(gaps).all() == [NoticeState.SENT]


def test_reminders_and_warnings_name_the_real_end_of_the_period(hotline: Hotline) -> None:
    """Not the end of the sweeper's look-ahead: that would tell a supporter starting an eight-hour
    shift it lasts minutes, and a coordinator that a four-hour gap lasts one."""
    assert hotline.clock.now == datetime(2026, 3, 2, 15, tzinfo=UTC)  # a Monday; zone UTC
    configure(hotline, reminder=30, warning=24)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=20, hours=23)  # Mon 15:20 to Tue 14:20
    shift_in(hotline, alice, minutes=27 * 60, hours=8)  # Tue 18:00 to Wed 02:00
    hotline.sweep()
    (reminder,) = texts_to(hotline, ALICE)
    assert "on call from Mon 2 Mar 3:20 PM to Tue 3 Mar 2:20 PM." in str(reminder["body"])
    warnings = sorted(str(m["body"]) for m in texts_to(hotline, COORDINATOR))
    assert len(warnings) == 2, warnings  # both gaps start within the 24 hours
    assert "nobody is on call from Mon 2 Mar 3:00 PM to Mon 2 Mar 3:20 PM" in warnings[0]
    assert "nobody is on call from Tue 3 Mar 2:20 PM to Tue 3 Mar 6:00 PM" in warnings[1]


def test_a_period_going_on_for_weeks_is_told_as_such(hotline: Hotline) -> None:
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=20, hours=60 * 24)  # sixty days
    hotline.sweep()
    (reminder,) = texts_to(hotline, ALICE)
    assert "on call from Mon 2 Mar 3:20 PM for more than two weeks." in str(reminder["body"])


def test_nothing_is_texted_without_schedule_settings(hotline: Hotline) -> None:
    add_verified(hotline, "Alice", ALICE)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert texts_to(hotline, COORDINATOR) == []
    with hotline.session() as session:
        kinds = session.scalars(select(Notice.kind)).all()
    assert kinds == [NoticeKind.VERIFICATION]


def test_a_reminder_for_a_shift_deleted_before_it_is_sent_is_skipped(hotline: Hotline) -> None:
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=10, hours=1)
    with transaction(hotline.services.sessions) as session:
        from hotline.notices import create, options_of, plan

        for planned in plan(session, options_of(session, hotline.programme_id), hotline.clock.now):
            create(session, hotline.programme_id, planned, hotline.clock.now)
        for shift in rota.shifts(
            session, hotline.programme_id, hotline.clock.now, hotline.clock.now + timedelta(days=1)
        ):
            rota.delete_shift(session, shift, ACTOR, hotline.clock.now)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert texts_to(hotline, ALICE) == []
    with hotline.session() as session:
        reminder = session.scalar(select(Notice).where(Notice.kind == NoticeKind.REMINDER))
    assert reminder is not None and reminder.state == NoticeState.SKIPPED


def test_a_shift_reminder_avoids_a_pool_number_the_supporter_stopped(
    hotline: Hotline,
) -> None:
    """Alice once left a conversation with STOP on the first pool number (Twilio then blocks
    that number to her; routing keeps off it): her reminders come from another pool number."""
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    assert hotline.sms(ALICE, POOL[0], "STOP").status_code == 200
    with transaction(hotline.services.sessions) as session:
        assert is_opted_out(session, hotline.services.vault, hotline.programme_id, ALICE, POOL[0])
    shift_in(hotline, alice, minutes=20, hours=8)
    hotline.sweep()
    reminders = [m for m in texts_to(hotline, ALICE) if "reminder" in str(m["body"])]
    assert reminders, "no reminder attempted"
    assert all(m["from_"] != POOL[0] for m in reminders), (
        "reminder sent from the pool number Alice opted out of (Twilio answers 21610)"
    )


def test_a_reminder_refused_for_a_stop_the_line_missed_comes_from_another_number_next(
    hotline: Hotline,
) -> None:
    """Alice texted STOP to the first pool number while the line could not hear it (the
    database down): Twilio blocks the pair and the line did not know. Her shift reminder from
    that number is refused (21610); the block is kept as her STOP would have kept it, so her
    next reminder comes from another of the line's numbers, not from one that cannot reach
    her (as her offers do)."""
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=20, hours=8)
    shift_in(hotline, alice, minutes=24 * 60 + 20, hours=8)
    hotline.fake.fail_next(status=400, code=21610)
    hotline.sweep()
    with hotline.session() as session:
        first = session.scalar(select(Notice).where(Notice.kind == NoticeKind.REMINDER))
        assert first is not None and first.state == NoticeState.FAILED
        assert first.from_number == POOL[0]
    hotline.clock.advance(hours=24)
    hotline.sweep()
    (reminder,) = [m for m in texts_to(hotline, ALICE) if "reminder" in str(m["body"])]
    assert reminder["from_"] != POOL[0]
    with transaction(hotline.services.sessions) as session:
        assert is_opted_out(session, hotline.services.vault, hotline.programme_id, ALICE, POOL[0])


def test_a_shift_reminder_does_not_land_in_a_live_conversation_s_thread(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice's shift ended with a conversation still going on the first pool number (they run
    on past shifts). Her next shift's reminder came in that thread, from the clinician's
    number on her phone, and her "Thanks!" to it was relayed to the clinician. It comes from a
    pool number she is not using now."""
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=-30, hours=1)
    clinician, peer = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(hours=2)  # her shift is over; the conversation goes on
    shift_in(hotline, alice, minutes=20, hours=8)
    hotline.sweep()
    reminder = peer.expect_text("reminder, you are on call")
    assert reminder.from_ != POOL[0], "the reminder came in the live conversation's thread"
    peer.texts("Thanks!")
    clinician.expect_nothing()
    peer.texts("still here for you", to=POOL[0])
    assert clinician.expect_text(from_=HOTLINE).body == "still here for you"
    peer.expect_text("not passed on", from_=reminder.from_)  # the "Thanks!"
    phones.assert_no_unexpected()


def test_a_reminder_to_a_number_no_key_opens_does_not_stop_the_others(
    hotline: Hotline, caplog: pytest.LogCaptureFixture
) -> None:
    """Alice's number was sealed under a data key removed too soon: composing her reminder
    fails on every sweep until it is an hour stale. Bob's reminder, listed after hers, did
    not go out in that hour, and the rest of the sweep (the hourly clean-up at Twilio) stopped
    with it. Each notice fails on its own, logged, as the sweep's other items do."""
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    bob = add_verified(hotline, "Bob", BOB)
    shift_in(hotline, alice, minutes=20, hours=8)
    shift_in(hotline, bob, minutes=20, hours=8)
    with transaction(hotline.services.sessions) as session:
        lost_key = Vault((b"r" * 32,))
        session.get_one(Supporter, alice).phone_sealed = lost_key.seal(ALICE, SUPPORTER_CONTEXT)
    with caplog.at_level(logging.ERROR, logger="hotline"):
        hotline.sweep()
    assert "reminder, you are on call" in str(texts_to(hotline, BOB)[0]["body"])
    assert "failed; the rest of the sweep goes on" in caplog.text
    with hotline.session() as session:
        reminders = select(Notice.supporter_id, Notice.state).where(
            Notice.kind == NoticeKind.REMINDER
        )
        states = {supporter: state for supporter, state in session.execute(reminders)}
    assert states == {alice: NoticeState.PENDING, bob: NoticeState.SENT}


def pool_of(hotline: Hotline, *numbers: str) -> None:
    """The programme's pool is ``numbers``, in that order."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.pool_numbers.clear()
        session.flush()
        programme.pool_numbers.extend(PoolNumber(number=number) for number in numbers)


def pool_of_the_hotline_number_alone(hotline: Hotline) -> None:
    """As HOTLINE_POOL_NUMBERS unset leaves it: notices come from the number clinicians text."""
    pool_of(hotline, HOTLINE)


def reminded(hotline: Hotline, phones: Phones, from_: str, with_bob: bool = False) -> Phone:
    """Alice (and Bob on call, ``with_bob``) on the roster; her shift starts in 20 minutes and
    its reminder comes, from ``from_``. Her phone."""
    configure(hotline, reminder=30, warning=None)
    alice_id = add_verified(hotline, "Alice", ALICE)
    if with_bob:
        shift_in(hotline, add_verified(hotline, "Bob", BOB), minutes=-60, hours=8)
    shift_in(hotline, alice_id, minutes=20, hours=8)
    hotline.sweep()
    alice = phones.phone(ALICE)
    alice.expect_text("reminder, you are on call", from_=from_)
    return alice


def test_a_thanks_to_a_reminder_from_the_hotline_number_opens_no_request(
    hotline: Hotline, phones: Phones
) -> None:
    """With the pool the hotline number alone (HOTLINE_POOL_NUMBERS unset), reminders come
    from the number clinicians text. Alice's "Thanks!" to hers opened a support request: the
    greeting came back and Bob, on call, was offered it. It is answered as a notice's reply,
    with how to ask for support; SUPPORT still asks for it."""
    pool_of_the_hotline_number_alone(hotline)
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    bob_phone = phones.phone(BOB)
    add_verified(hotline, "Bob", BOB)
    with transaction(hotline.services.sessions) as session:
        bob = session.scalars(select(Supporter).where(Supporter.name == "Bob")).one()
    shift_in(hotline, bob.id, minutes=-60, hours=8)  # Bob is on call now
    shift_in(hotline, alice, minutes=20, hours=8)
    hotline.sweep()
    peer = phones.phone(ALICE)
    reminder = peer.expect_text("reminder, you are on call")
    assert reminder.from_ == HOTLINE
    peer.texts("Thanks!")
    answer = peer.expect_text("no reply is needed", from_=HOTLINE)
    assert hotline.settings.crisis_text in answer.body  # she may be writing for herself
    bob_phone.expect_nothing()
    peer.texts("SUPPORT")  # support for herself is one word away
    peer.expect_text("confidential", from_=HOTLINE)
    bob_phone.expect_text("Reply ACCEPT")
    phones.assert_no_unexpected()


def test_a_supporter_writing_for_herself_after_a_reminder_reaches_a_peer(
    hotline: Hotline, phones: Phones
) -> None:
    """In the hour after her reminder came from the hotline number, Alice writes "I'm not OK
    tonight": words of her own, not a "Thanks!". She is greeted as anyone is, Bob is offered
    it, and her words reach him when he accepts."""
    pool_of_the_hotline_number_alone(hotline)
    alice, bob = reminded(hotline, phones, HOTLINE, with_bob=True), phones.phone(BOB)
    alice.texts("I'm not OK tonight")
    alice.expect_text("confidential", from_=HOTLINE)
    bob.expect_text("Reply ACCEPT")
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text("I'm not OK tonight")
    alice.expect_text("joined")
    phones.assert_no_unexpected()


@pytest.mark.parametrize("reply", ["Still a rough week, honestly", "No"])
def test_a_supporter_s_reply_to_her_check_in_after_a_reminder_reaches_her_peer(
    hotline: Hotline, phones: Phones, reply: str
) -> None:
    """Alice, a supporter, was supported by Bob on the line. With the pool the hotline number
    alone, her shift reminder and, minutes later, her check-in both come from the number she
    texts. Her answer to the check-in was taken for a "Thanks!" to the reminder: "no reply is
    needed", and Bob, whom the check-in promises it reaches, never heard. The text she was
    sent last is the one she answers: Bob is offered it; a "No" too, as her "Yes" would be
    (not told how to get cover for her shift)."""
    pool_of_the_hotline_number_alone(hotline)
    configure(hotline, reminder=30, warning=None)
    alice_id = add_verified(hotline, "Alice", ALICE)
    bob_id = add_verified(hotline, "Bob", BOB)
    shift_in(hotline, bob_id, minutes=-60, hours=48)  # Bob is on call throughout
    alice, bob = phones.talking(ALICE, BOB, "I had a bad night")
    bob.texts("DONE")
    bob.expect_text("Conversation closed")
    alice.expect_text("not alone")
    shift_in(hotline, alice_id, minutes=24 * 60 + 20, hours=8)
    hotline.clock.advance(hours=23, minutes=55)
    hotline.sweep()
    alice.expect_text("reminder, you are on call", from_=HOTLINE)
    hotline.clock.advance(minutes=6)
    hotline.sweep()  # the 1-day check-in
    alice.expect_text("NOCHECKIN", from_=HOTLINE)
    alice.texts(reply)
    alice.expect_text("Glad you wrote", from_=HOTLINE)  # a reply to a check-in
    bob.expect_text("a reply to a check-in. Reply ACCEPT", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_an_ok_to_the_hotline_number_after_a_reminder_from_a_pool_number_reaches_a_peer(
    hotline: Hotline, phones: Phones
) -> None:
    """The pool is a pool number and the hotline number; Alice's reminder comes from the pool
    number. Her "ok" to the hotline number in the hour after it was taken for a reply to that
    reminder ("no reply is needed") and reached nobody, though she never wrote in its thread.
    Only a text to the number a notice came from answers it: hers is anyone's, and Bob is
    offered it."""
    pool_of(hotline, POOL[0], HOTLINE)
    alice, bob = reminded(hotline, phones, POOL[0], with_bob=True), phones.phone(BOB)
    alice.texts("ok", to=HOTLINE)
    alice.expect_text("confidential", from_=HOTLINE)
    bob.expect_text("Reply ACCEPT")
    phones.assert_no_unexpected()


def test_a_yes_to_a_reminder_from_a_pool_number_is_answered_as_an_ok(
    hotline: Hotline, phones: Phones
) -> None:
    """YES is a synonym of ACCEPT. Alice's "Yes" to her shift reminder was answered "That
    request is no longer open: another peer took it", about a request she never had. With no
    offer waiting for her answer, it is the "ok" it means, answered as one is there."""
    alice = reminded(hotline, phones, POOL[0])
    alice.texts("Yes")
    alice.expect_text("not passed on", from_=POOL[0])
    phones.assert_no_unexpected()


def test_a_yes_to_a_reminder_from_the_hotline_number_is_answered_as_an_ok(
    hotline: Hotline, phones: Phones
) -> None:
    """With the pool the hotline number alone, Alice's "Yes" to her reminder was answered "That
    request is no longer open". It is answered as her "Thanks!" is: no reply is needed."""
    pool_of_the_hotline_number_alone(hotline)
    alice = reminded(hotline, phones, HOTLINE)
    alice.texts("Yes")
    alice.expect_text("no reply is needed", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_yes_to_a_reminder_does_not_take_a_request_whose_offer_lapsed_before_it(
    hotline: Hotline, phones: Phones
) -> None:
    """Alice, on call, slept through an offer; the request still waits with nobody. Her next
    shift's reminder then comes from the offer's number. Her "Yes" to the reminder connected
    her to that clinician, who was told a peer had joined. She is told a request waits and
    that ACCEPT takes it; her ACCEPT does."""
    configure(hotline, reminder=30, warning=None)
    alice_id = add_verified(hotline, "Alice", ALICE)
    now = hotline.clock.now
    hotline.add_shift(alice_id, now - timedelta(hours=1), now + timedelta(minutes=10))
    shift_in(hotline, alice_id, minutes=20, hours=8)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.texts("I need to talk")
    clinician.expect_text("confidential", from_=HOTLINE)
    offer = alice.expect_text("Reply ACCEPT")
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    clinician.expect_text("No peer supporter is free")
    phones.phone(COORDINATOR).expect_text("waiting with nobody")
    hotline.sweep()
    assert alice.expect_text("reminder, you are on call").from_ == offer.from_
    alice.texts("Yes")
    alice.expect_text("Reply ACCEPT to take this peer support request", from_=offer.from_)
    clinician.expect_nothing()
    alice.texts("ACCEPT")
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def reminded_then_offered(hotline: Hotline, phones: Phones) -> tuple[Phone, Phone]:
    """With the pool the hotline number alone, Alice, on call for ten more minutes, gets her
    next shift's reminder; then a clinician's request is offered to her, from the same number.
    The clinician's phone and hers."""
    pool_of_the_hotline_number_alone(hotline)
    configure(hotline, reminder=30, warning=None)
    alice_id = add_verified(hotline, "Alice", ALICE)
    now = hotline.clock.now
    hotline.add_shift(alice_id, now - timedelta(hours=1), now + timedelta(minutes=10))
    shift_in(hotline, alice_id, minutes=20, hours=8)
    hotline.sweep()
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    alice.expect_text("reminder, you are on call", from_=HOTLINE)
    clinician.texts("I need to talk")
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text("Reply ACCEPT", from_=HOTLINE)
    return clinician, alice


def test_a_yes_to_an_offer_that_came_after_a_reminder_takes_it(
    hotline: Hotline, phones: Phones
) -> None:
    """The offer is the text she got last, and waits for her answer: her "Yes" takes it."""
    clinician, alice = reminded_then_offered(hotline, phones)
    alice.texts("Yes")
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_yes_after_a_reminder_and_a_lapsed_offer_takes_the_waiting_request(
    hotline: Hotline, phones: Phones
) -> None:
    """The offer came after the reminder and lapsed; its request still waits with nobody. Her
    "Yes" answers the offer, the text she got last, as a late ACCEPT does."""
    clinician, alice = reminded_then_offered(hotline, phones)
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    clinician.expect_text("No peer supporter is free")
    phones.phone(COORDINATOR).expect_text("waiting with nobody")
    alice.texts("Yes")
    alice.expect_text("You're connected")
    alice.expect_text("I need to talk")
    clinician.expect_text("joined")
    phones.assert_no_unexpected()


def test_a_yes_to_a_reminder_lifts_a_stop_as_twilio_does(hotline: Hotline, phones: Phones) -> None:
    """Twilio takes YES as an opt-in word: after Alice's STOP to the hotline number, her "Yes"
    to the reminder it sent has Twilio deliver there again, and the line keeps off the number
    no longer (answered as a reminder's "ok", it was still recorded as stopped)."""
    pool_of_the_hotline_number_alone(hotline)
    alice = reminded(hotline, phones, HOTLINE)
    alice.texts("STOP")
    alice.texts("Yes")
    alice.expect_text("no reply is needed", from_=HOTLINE)
    with transaction(hotline.services.sessions) as session:
        vault = hotline.services.vault
        assert not is_opted_out(session, vault, hotline.programme_id, ALICE, HOTLINE)
    phones.assert_no_unexpected()


@pytest.mark.parametrize("from_", [POOL[0], HOTLINE])
def test_a_no_to_a_reminder_says_how_to_get_cover(
    hotline: Hotline, phones: Phones, from_: str
) -> None:
    """NO is a synonym of PASS. Alice's "No" to her shift reminder (she cannot make it) was
    taken for a PASS of a request she never had: "Nothing is open on this number now, so your
    text was not passed on", and nothing about the shift. With no offer waiting for her answer,
    it answers the reminder: she is told to tell her coordinator, and how BREAK pauses requests
    meanwhile. From the hotline number it opens no request (Bob, on call, is offered nothing)."""
    if from_ == HOTLINE:
        pool_of_the_hotline_number_alone(hotline)
    alice = reminded(hotline, phones, from_, with_bob=True)
    alice.texts("No")
    told = alice.expect_text("tell your coordinator", from_=from_)
    assert "BREAK" in told.body
    phones.phone(BOB).expect_nothing()
    phones.assert_no_unexpected()


def test_a_no_to_an_offer_that_came_after_a_reminder_passes_it_on(
    hotline: Hotline, phones: Phones
) -> None:
    """The offer is the text she got last, and waits for her answer: her "No" passes it on."""
    clinician, alice = reminded_then_offered(hotline, phones)
    alice.texts("No")
    alice.expect_text("Passed on", from_=HOTLINE)
    clinician.expect_text("No peer supporter is free")
    phones.phone(COORDINATOR).expect_text("waiting with nobody")
    phones.assert_no_unexpected()


def test_a_no_to_a_code_is_answered_as_an_ok(hotline: Hotline, phones: Phones) -> None:
    """With the pool the hotline number alone, Alice's code comes from the number clinicians
    text. Her "No" to it (not expecting it, or just not now) was answered "Nothing is open on
    this number now", as a PASS of a request: it is answered as her "Thanks!" is."""
    pool_of_the_hotline_number_alone(hotline)
    with transaction(hotline.services.sessions) as session:
        change = roster.add(
            session,
            hotline.services.vault,
            hotline.programme_id,
            roster.SupporterInput("Alice", ALICE),
            ACTOR,
            hotline.clock.now,
        )
        (notice,) = change.notices
    hotline.services.wakeups.schedule(Task.SEND_NOTICE, notice.id)
    hotline.run_jobs()
    alice = phones.phone(ALICE)
    alice.expect_text("verification code", from_=HOTLINE)
    alice.texts("No")
    alice.expect_text("no reply is needed", from_=HOTLINE)
    phones.assert_no_unexpected()


def test_a_reminder_in_flight_as_its_programme_retires_is_not_retried_from_the_closed_line(
    hotline: Hotline,
) -> None:
    """`hotline programme retire` skips the reminders not yet sent. One being sent at that
    very moment, which Twilio does not take (a 503), was sent by the next sweep from a line
    that now answers every text that it has closed: it is not sent again."""
    configure(hotline, reminder=30, warning=None)
    alice = add_verified(hotline, "Alice", ALICE)
    shift_in(hotline, alice, minutes=25, hours=8)
    real = hotline.services.telephony
    use_telephony(hotline, RetiredMidSend(hotline, real))
    hotline.sweep()
    use_telephony(hotline, real)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert texts_to(hotline, ALICE) == []
    with hotline.session() as session:
        reminders = select(Notice.state).where(Notice.kind == NoticeKind.REMINDER)
        assert session.scalars(reminders).all() == [NoticeState.SKIPPED]


def test_a_code_in_flight_as_its_programme_retires_is_not_retried_from_the_closed_line(
    hotline: Hotline,
) -> None:
    """A code asked for just before `hotline programme retire`, being sent at that very moment
    and not taken by Twilio (a 503), was sent by the next sweep from the closed line (which
    answers the supporter's reply that it has closed): it is not sent again, and the console
    says it was not texted because the programme is retired."""
    real = hotline.services.telephony
    with transaction(hotline.services.sessions) as session:
        supporter = roster.add(
            session,
            hotline.services.vault,
            hotline.programme_id,
            roster.SupporterInput(name="Alice", phone=ALICE),
            ACTOR,
            hotline.clock.now,
        ).supporter
        supporter_id = supporter.id
    use_telephony(hotline, RetiredMidSend(hotline, real))
    hotline.clock.advance(seconds=20)
    hotline.sweep()  # past its own wake-up's grace: the sweeper sends it
    use_telephony(hotline, real)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert texts_to(hotline, ALICE) == []
    with hotline.session() as session:
        pending = verification.pending(session, supporter_id)
        assert pending is not None
        state = verification.code_state(session, pending, hotline.clock.now)
        assert state == verification.CodeState.RETIRED
