"""The hourly reconciliation: records of our numbers that Twilio still keeps an hour on, whose
SID never reached a deletion row (a relay in a webhook's TwiML whose status callback was lost,
a supporter's leg whose callbacks never came, an inbound text whose deletion row was rolled
back), are found by listing and deleted. Nothing of another application on the same account is
touched, nothing still in flight, nothing younger than an hour.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from hotline import retention
from hotline.models import MessageDeletion
from hotline.tasks import SweepReport
from tests.kit.harness import HOTLINE, POOL, Hotline
from tests.kit.phones import Phones

ALICE, CLINICIAN = "+15550108001", "+15550109001"
STRANGER, OTHER_APP = "+15550177777", "+15550188888"  # another application's numbers


def test_records_left_at_twilio_are_found_and_deleted(hotline: Hotline, phones: Phones) -> None:
    hotline.add_supporter("Alice", ALICE)
    phones.talking(CLINICIAN, ALICE)
    fake, now = hotline.fake, hotline.clock.now
    two_hours_ago = now - timedelta(hours=2)
    inbound = fake.keep_message(CLINICIAN, HOTLINE, "the inbound text", two_hours_ago)
    relay = fake.keep_message(POOL[0], ALICE, "a relay", two_hours_ago, status="delivered")
    fake.carry_call("CA" + "1" * 32, POOL[0], ALICE, "outbound-dial", started_at=two_hours_ago)
    fake.end_call("CA" + "1" * 32)
    # A relay Twilio never sent (the peer had opted out): no date sent, its body kept all the same.
    refused = fake.keep_message(POOL[0], ALICE, "refused", two_hours_ago, "failed", sent=False)
    recent = fake.keep_message(POOL[0], ALICE, "ten minutes old", now - timedelta(minutes=10))
    sending = fake.keep_message(POOL[0], ALICE, "in flight", two_hours_ago, status="sending")
    foreign = fake.keep_message(STRANGER, OTHER_APP, "not ours", two_hours_ago)

    assert hotline.sweep().provider_records_found == 4
    with hotline.session() as session:  # spaced out, not a burst on the job queue
        found = [inbound, relay, refused, "CA" + "1" * 32]
        due = sorted(
            session.scalars(select(MessageDeletion.due_at).where(MessageDeletion.sid.in_(found)))
        )
    assert due == [now + timedelta(seconds=2 * i) for i in range(4)]
    hotline.clock.advance(seconds=25)  # past the sweeper's grace: it deletes what is overdue
    hotline.sweep()
    assert {inbound, relay, refused, "CA" + "1" * 32} <= set(fake.deleted)
    assert not {recent, sending, foreign} & set(fake.deleted)

    hotline.clock.advance(minutes=30)  # the same hour: listed once an hour, not every sweep
    later = fake.keep_message(CLINICIAN, HOTLINE, "found later", now - timedelta(hours=3))
    assert hotline.sweep().provider_records_found == 0
    hotline.clock.advance(minutes=30)
    assert hotline.sweep().provider_records_found == 2  # that one, and the recent one, now old
    hotline.clock.advance(seconds=20)
    hotline.sweep()
    assert {recent, later} <= set(fake.deleted)
    assert not {sending, foreign} & set(fake.deleted)


def test_a_list_twilio_refuses_is_tried_again_the_next_hour(hotline: Hotline) -> None:
    """The hotline number's list is refused (it is listed first): the pool number's records are
    still found, the sweep goes on, and the next hour finds the hotline number's."""
    fake, old = hotline.fake, hotline.clock.now - timedelta(hours=2)
    lost = fake.keep_message(CLINICIAN, HOTLINE, "hello", old)
    other = fake.keep_message(ALICE, POOL[0], "a peer's text", old)
    fake.fail_next_list(1)
    report = hotline.sweep()
    assert report == SweepReport(provider_records_found=1)
    hotline.clock.advance(hours=1)
    assert hotline.sweep().provider_records_found == 1
    hotline.clock.advance(seconds=20)
    hotline.sweep()
    assert {lost, other} <= set(fake.deleted)


def test_a_run_queues_at_most_its_share_and_leaves_the_rest_to_the_next_hour(
    hotline: Hotline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retention, "RECONCILE_QUEUE", 2)
    old = hotline.clock.now - timedelta(hours=2)
    kept = [hotline.fake.keep_message(CLINICIAN, HOTLINE, f"text {i}", old) for i in range(3)]
    assert hotline.sweep().provider_records_found == 2
    hotline.clock.advance(seconds=20)
    hotline.sweep()
    assert len(set(kept) & set(hotline.fake.deleted)) == 2
    hotline.clock.advance(hours=1)
    assert hotline.sweep().provider_records_found == 1
    hotline.clock.advance(seconds=20)
    hotline.sweep()
    assert set(kept) <= set(hotline.fake.deleted)
