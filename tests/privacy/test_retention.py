"""Retention: FORGET, the purge after silence, and deleting message and call records at Twilio."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from hotline import textline
from hotline.models import (
    Call,
    CallState,
    CheckIn,
    CheckInState,
    Clinician,
    MessageDeletion,
    OptOut,
)
from hotline.privacy import Vault
from hotline.retention import CALL_DELETE_DELAY
from hotline.texting import InboundText
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones
from tests.kit.signing import deliver_to

CLINICIAN, ALICE = "+15550109001", "+15550108001"
OFFER = "Reply ACCEPT"


def _connect(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)


def test_forget_erases_the_clinician_at_once_and_confirms(hotline: Hotline, phones: Phones) -> None:
    _connect(hotline, phones)
    phones.phone(ALICE).texts("DONE")
    phones.phone(ALICE).expect_text("closed")
    phones.phone(CLINICIAN).expect_text("not alone")
    phones.phone(CLINICIAN).texts("forget")
    phones.phone(CLINICIAN).expect_text("erased", from_=HOTLINE)
    with hotline.session() as session:
        clinician = session.scalar(select(Clinician))
        assert clinician.phone_sealed is None and clinician.phone_hash is None
        states = set(session.scalars(select(CheckIn.state)))
        assert states == {CheckInState.CANCELLED}
    # Texting again starts fresh, as a new person.
    phones.phone(CLINICIAN).texts("hi again")
    phones.phone(CLINICIAN).expect_text("confidential")
    phones.phone(ALICE).expect_text(OFFER)
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(Clinician)) == 2
    phones.assert_no_unexpected()


def test_forget_mid_conversation_tells_the_supporter(hotline: Hotline, phones: Phones) -> None:
    _connect(hotline, phones)
    phones.phone(CLINICIAN).texts("FORGET")
    phones.phone(CLINICIAN).expect_text("erased")
    phones.phone(ALICE).expect_text("ended the conversation")
    phones.assert_no_unexpected()


def test_silent_clinicians_are_purged_after_the_retention_period(
    hotline: Hotline, phones: Phones
) -> None:
    _connect(hotline, phones)
    phones.phone(CLINICIAN).texts("STOP")
    phones.phone(ALICE).expect_text("ended")
    hotline.clock.advance(days=29)
    assert hotline.sweep().clinicians_purged == 0
    hotline.clock.advance(days=2)
    assert hotline.sweep().clinicians_purged == 1
    with hotline.session() as session:
        assert session.scalar(select(Clinician.phone_hash)) is None
        assert session.scalar(select(func.count()).select_from(OptOut)) == 0


def test_a_pending_checkin_keeps_the_number_until_it_is_done(
    hotline: Hotline, phones: Phones
) -> None:
    _connect(hotline, phones)
    phones.phone(ALICE).texts("DONE")  # check-ins at 1, 7 and 30 days
    hotline.clock.advance(days=31)
    assert hotline.sweep().clinicians_purged == 0  # the 30-day check-in just went out
    hotline.clock.advance(days=6)
    assert hotline.sweep().clinicians_purged == 0  # a reply to it would still find Alice
    hotline.clock.advance(days=2)
    assert hotline.sweep().clinicians_purged == 1


def test_message_records_are_deleted_at_twilio_after_delivery(
    hotline: Hotline, phones: Phones
) -> None:
    _connect(hotline, phones)
    # A message Twilio holds (sent through its API; relays in TwiML look the same to it).
    relayed = hotline.services.telephony.send_text(ALICE, POOL[0], "a relayed text").sid
    phones.phone(ALICE).expect_text("a relayed text")
    response = hotline.post(
        "/twilio/status", MessageSid=relayed, MessageStatus="delivered", To=ALICE, From=POOL[0]
    )
    assert response.status_code == 204
    hotline.post("/twilio/status", MessageSid=relayed, MessageStatus="delivered")  # twice
    with hotline.session() as session:
        queued = set(session.scalars(select(MessageDeletion.sid)))
    assert relayed in queued and len(queued) == 3  # two inbound texts and the relay
    hotline.clock.advance(minutes=3)
    hotline.run_jobs()
    assert relayed in hotline.fake.deleted
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(MessageDeletion)) == 0


def test_a_failed_deletion_is_retried_with_backoff(hotline: Hotline) -> None:
    sid = hotline.services.telephony.send_text(ALICE, POOL[0], "a relayed text").sid
    hotline.post("/twilio/status", MessageSid=sid, MessageStatus="delivered")
    hotline.clock.advance(minutes=2)
    hotline.fake.fail_next(status=503, code=None)
    hotline.run_jobs()
    with hotline.session() as session:
        row = session.scalar(select(MessageDeletion))
        assert row is not None and row.attempts == 1
    hotline.clock.advance(minutes=3)
    hotline.run_jobs()
    assert sid in hotline.fake.deleted
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(MessageDeletion)) == 0


def test_twiml_relays_ask_for_status_callbacks(hotline: Hotline) -> None:
    hotline.add_supporter("Alice", ALICE)
    body = hotline.sms(CLINICIAN, HOTLINE, "hello").get_data(as_text=True)
    assert body.count('action="https://hotline.example.org/twilio/status') == 2  # ?offer= too


def _deletions(hotline: Hotline) -> list[tuple[str, int]]:
    with hotline.session() as session:
        rows = session.scalars(select(MessageDeletion).order_by(MessageDeletion.id))
        return [(row.sid, row.attempts) for row in rows]


def test_a_call_record_is_deleted_after_the_call_once_twilio_lets_it(hotline: Hotline) -> None:
    """A final call status queues the deletion a few minutes on; a refusal because Twilio still
    has the call in progress (20009) is retried until the call is over there too."""
    sid = "CA" + "5e" * 16
    hotline.fake.carry_call(sid, CLINICIAN, HOTLINE, "inbound")
    call = {"CallSid": sid, "From": CLINICIAN, "To": HOTLINE, "Direction": "inbound"}
    assert hotline.post("/twilio/status", **call, CallStatus="in-progress").status_code == 204
    assert _deletions(hotline) == []  # not over yet: nothing to delete
    # The final status overtakes the call's end at Twilio, which still has it in progress.
    assert hotline.post("/twilio/status", **call, CallStatus="completed").status_code == 204
    hotline.post("/twilio/status", **call, CallStatus="completed")  # twice
    assert _deletions(hotline) == [(sid, 0)]
    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() - 30)
    hotline.run_jobs()
    assert _deletions(hotline) == [(sid, 0)]  # not due yet

    hotline.clock.advance(seconds=31)
    hotline.run_jobs()
    assert _deletions(hotline) == [(sid, 1)] and sid not in hotline.fake.deleted  # refused
    hotline.fake.end_call(sid)
    hotline.clock.advance(minutes=3)
    hotline.run_jobs()
    assert hotline.fake.deleted == [sid]
    assert _deletions(hotline) == []


def test_a_lost_call_record_deletion_is_redone_by_the_sweeper(hotline: Hotline) -> None:
    sid = "CA" + "6f" * 16
    hotline.fake.carry_call(sid, CLINICIAN, POOL[0], "inbound")
    hotline.fake.end_call(sid, "busy")
    hotline.post("/twilio/status", CallSid=sid, CallStatus="busy")
    hotline.redis.flushdb()  # the wake-up is lost
    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() + 20)
    assert hotline.sweep().provider_records_deleted == 1
    assert hotline.fake.deleted == [sid]


def test_texts_the_line_ignores_are_deleted_at_twilio_too(hotline: Hotline) -> None:
    """A reply to a pool number since removed, a sender the line cannot read: the text is
    ignored, but its record at Twilio holds the words all the same."""
    gone, unreadable = "SM" + "a1" * 16, "SM" + "b2" * 16
    hotline.sms(ALICE, "+15550100009", "my private words", MessageSid=gone)
    hotline.sms("whatsapp:" + CLINICIAN, HOTLINE, "private", MessageSid=unreadable)
    with hotline.session() as session:
        assert set(session.scalars(select(MessageDeletion.sid))) == {gone, unreadable}


def test_a_text_sent_by_a_job_is_deleted_even_when_its_status_callback_is_lost(
    hotline: Hotline, phones: Phones
) -> None:
    """Twilio does not retry a status callback (one sent while the database was down is
    gone): the record is queued for deletion when the text is sent."""
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", "+15550108002")
    phones.phone(CLINICIAN).texts("hello")
    phones.phone(ALICE).expect_text(OFFER)
    hotline.clock.advance(seconds=181)  # Alice lets it lapse: Bob's offer goes by a job
    hotline.run_jobs()
    phones.phone("+15550108002").expect_text(OFFER)
    rest = [m["sid"] for m in hotline.fake.messages]
    assert rest  # sent through the REST API; no callback is ever posted here
    hotline.clock.advance(hours=1, seconds=30)
    hotline.sweep()
    assert set(rest) <= set(hotline.fake.deleted)


def test_a_status_callback_brings_the_backstop_deletion_forward(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", "+15550108002")
    phones.phone(CLINICIAN).texts("hello")
    hotline.clock.advance(seconds=181)
    hotline.run_jobs()
    (sent,) = hotline.fake.messages
    assert (
        hotline.fake.post_status(sent["sid"], "delivered", deliver=deliver_to(hotline.client))
        == 204
    )
    hotline.clock.advance(minutes=2)
    hotline.run_jobs()
    assert sent["sid"] in hotline.fake.deleted


def _optouts(hotline: Hotline) -> int:
    with hotline.session() as session:
        return session.scalar(select(func.count()).select_from(OptOut)) or 0


def test_forget_erases_an_opt_out_with_no_clinician_row_and_the_purge_the_rest(
    hotline: Hotline, phones: Phones
) -> None:
    """STOP from a number the line has no row for (it never wrote, or was purged), then
    FORGET: the line's answer says erased, so the opt-out row goes too (Twilio keeps its own
    block of the pair after STOP, and refuses that answer: 21610)."""
    phones.phone(CLINICIAN).texts("STOP")
    assert _optouts(hotline) == 1
    phones.phone(CLINICIAN).texts("FORGET")
    assert _optouts(hotline) == 0
    phones.phone(CLINICIAN).expect_nothing()  # Twilio's STOP stands
    phones.expect_refused("erased", to=CLINICIAN)

    phones.phone("+15550109002").texts("STOP")  # and one who never writes again
    hotline.clock.advance(days=hotline.settings.retention_days - 1)
    hotline.sweep()
    assert _optouts(hotline) == 1
    hotline.clock.advance(days=2)
    hotline.sweep()
    assert _optouts(hotline) == 0
    phones.assert_no_unexpected()


def test_forget_during_a_key_rotation_erases_the_opt_out_under_either_key(
    hotline: Hotline, phones: Phones
) -> None:
    """The clinician's row is under the old key; STOP, recorded under the new one, comes
    before FORGET (step 2 of the rotation runbook: both keys configured)."""
    phones.phone(CLINICIAN).texts("hello")
    rotated = Vault((b"n" * 32, *hotline.settings.data_keys))  # the new key first
    services = dataclasses.replace(hotline.services, vault=rotated)
    for n, word in enumerate(("STOP", "FORGET")):
        textline.handle_text(services, InboundText(f"SM{n:032x}", CLINICIAN, HOTLINE, word, 0))
    assert _optouts(hotline) == 0


def test_a_call_whose_final_status_never_comes_is_asked_about_ended_and_deleted(
    hotline: Hotline,
) -> None:
    """The caller hangs up in the greeting and the status callback is lost: within minutes
    the sweeper asks Twilio, which says the call is over, so it ends here too and its record
    (both numbers, the times) is deleted at Twilio, not kept there for hours."""
    sid = "CA" + "c3" * 16
    hotline.fake.carry_call(sid, CLINICIAN, HOTLINE, "inbound")
    hotline.post("/twilio/voice", CallSid=sid, From=CLINICIAN, To=HOTLINE, CallStatus="ringing")
    hotline.fake.end_call(sid, "completed")  # the caller hangs up; Twilio's callback is lost
    hotline.clock.advance(minutes=4)
    hotline.sweep()
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.GREETING  # not asked yet
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.ENDED
    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() + 60)
    hotline.run_jobs()
    assert sid in hotline.fake.deleted


def test_a_call_over_whose_legs_twilio_will_not_list_still_ends_and_is_deleted(
    hotline: Hotline,
) -> None:
    """The sweeper finds the call over at Twilio, but Twilio refuses the list of the legs it
    rang: the call ends here all the same and its own record is deleted (its legs, if any,
    are left to the hourly clean-up)."""
    sid = "CA" + "c3" * 16
    hotline.fake.carry_call(sid, CLINICIAN, HOTLINE, "inbound")
    hotline.post("/twilio/voice", CallSid=sid, From=CLINICIAN, To=HOTLINE, CallStatus="ringing")
    hotline.fake.end_call(sid, "completed")  # the caller hangs up; Twilio's callback is lost
    hotline.clock.advance(minutes=6)
    hotline.fake.fail_next_list(1, status=503, code=20503)
    hotline.sweep()
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.ENDED
    hotline.clock.advance(seconds=CALL_DELETE_DELAY.total_seconds() + 60)
    hotline.run_jobs()
    assert sid in hotline.fake.deleted


def test_a_call_twilio_cannot_be_asked_about_is_given_up_after_six_hours(
    hotline: Hotline,
) -> None:
    """Neither the final status nor an answer from Twilio (down as the sweeper asks):
    after six hours the sweeper ends the call and queues its record for deletion anyway."""
    sid = "CA" + "c3" * 16
    hotline.post("/twilio/voice", CallSid=sid, From=CLINICIAN, To=HOTLINE, CallStatus="ringing")
    hotline.clock.advance(hours=5, minutes=59)
    hotline.fake.fail_next(1, status=503, code=20503)  # the sweep's question goes unanswered
    hotline.sweep()
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.GREETING
    hotline.clock.advance(minutes=2)
    hotline.sweep()
    with hotline.session() as session:
        assert session.scalar(select(Call.state)) == CallState.ENDED
        assert set(session.scalars(select(MessageDeletion.sid))) == {sid}


def test_a_sweep_stops_asking_twilio_about_calls_once_it_fails_and_a_later_one_asks_again(
    hotline: Hotline,
) -> None:
    """Twilio down (or hanging: 13 s a question) as the sweeper asks about two calls whose end
    was lost: it stops at the first failure rather than hold the sweep, and asks again later."""
    sids = ["CA" + "d4" * 16, "CA" + "e5" * 16]
    for sid in sids:
        hotline.fake.carry_call(sid, CLINICIAN, HOTLINE, "inbound")
        hotline.post("/twilio/voice", CallSid=sid, From=CLINICIAN, To=HOTLINE, CallStatus="ringing")
        hotline.fake.end_call(sid, "completed")  # over at Twilio; the callbacks lost
    hotline.clock.advance(minutes=6)
    hotline.fake.fail_next(1, status=503, code=20503)
    hotline.sweep()
    with hotline.session() as session:
        assert set(session.scalars(select(Call.state))) == {CallState.GREETING}  # both
    hotline.clock.advance(minutes=5)
    hotline.sweep()
    with hotline.session() as session:
        assert set(session.scalars(select(Call.state))) == {CallState.ENDED}


def test_records_of_texts_that_came_while_the_database_was_down_are_deleted_later(
    hotline: Hotline,
) -> None:
    """The database is down: the clinician hears the crisis line, and neither the inbound
    text nor the status callback of a sent one can be noted in it. Their records at Twilio
    are deleted from Redis alone once the database is back, or straight away."""
    inbound = hotline.services.telephony.send_text(HOTLINE, CLINICIAN, "something private").sid
    relayed = hotline.services.telephony.send_text(ALICE, POOL[0], "a relayed text").sid
    engine = hotline.services.sessions.kw["bind"]

    def database_down(*_args: Any) -> None:
        raise OperationalError("SELECT", None, Exception("connection refused"))

    event.listen(engine, "before_cursor_execute", database_down)
    try:
        reply = hotline.sms(CLINICIAN, HOTLINE, "something private", MessageSid=inbound)
        status = hotline.post("/twilio/status", MessageSid=relayed, MessageStatus="delivered")
    finally:
        event.remove(engine, "before_cursor_execute", database_down)
    reply.close(), status.close()  # as a server does once the answer is sent: the SIDs go then
    (message,) = ET.fromstring(reply.get_data(as_text=True)).iter("Message")  # noqa: S314
    assert hotline.settings.crisis_text in (message.text or "")
    assert (message.get("action") or "").endswith("/twilio/status")  # its record goes too
    assert status.status_code == 204
    hotline.clock.advance(minutes=6)
    hotline.run_jobs()
    assert {inbound, relayed} <= set(hotline.fake.deleted)


def test_a_supporter_texting_forget_keeps_off_the_pool_number_they_stopped(
    hotline: Hotline, phones: Phones
) -> None:
    """FORGET erases a clinician's opt-outs; a supporter's STOP on a pool number is Twilio's
    block of that number to them, which routing must go on avoiding."""
    hotline.add_supporter("Alice", ALICE)
    alice = phones.phone(ALICE)
    alice.texts("STOP", to=POOL[0])
    alice.texts("FORGET", to=HOTLINE)
    alice.expect_text("erased")
    phones.phone(CLINICIAN).texts("hello")
    phones.phone(CLINICIAN).expect_text("confidential")
    assert alice.expect_text(OFFER).from_ != POOL[0]
    phones.assert_no_unexpected()
