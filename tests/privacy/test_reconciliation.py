"""The hourly reconciliation: records of our numbers that Twilio still keeps an hour on, whose
SID never reached a deletion row (a relay in a webhook's TwiML whose status callback was lost,
a supporter's leg whose callbacks never came, an inbound text whose deletion row was rolled
back), are found by listing and deleted. Nothing of another application on the same account is
touched, nothing still in flight, nothing younger than an hour.
"""

from __future__ import annotations

from datetime import timedelta

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
    recent = fake.keep_message(POOL[0], ALICE, "ten minutes old", now - timedelta(minutes=10))
    sending = fake.keep_message(POOL[0], ALICE, "in flight", two_hours_ago, status="sending")
    foreign = fake.keep_message(STRANGER, OTHER_APP, "not ours", two_hours_ago)

    assert hotline.sweep().provider_records_found == 3
    hotline.clock.advance(seconds=20)  # past the sweeper's grace: it deletes what is overdue
    hotline.sweep()
    assert {inbound, relay, "CA" + "1" * 32} <= set(fake.deleted)
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
    fake = hotline.fake
    lost = fake.keep_message(CLINICIAN, HOTLINE, "hello", hotline.clock.now - timedelta(hours=2))
    fake.fail_next_list(1)
    report = hotline.sweep()
    assert report.provider_records_found == 0  # the sweep itself goes on
    assert report == SweepReport()
    hotline.clock.advance(hours=1)
    assert hotline.sweep().provider_records_found == 1
    hotline.clock.advance(seconds=20)
    hotline.sweep()
    assert lost in fake.deleted
