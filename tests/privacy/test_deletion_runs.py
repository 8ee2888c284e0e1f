"""Provider records are deleted by per-minute runs: every record due in a minute shares one
wake-up, a burst is worked through in batches (and lanes), a web process asks Redis once a
minute, and what Redis loses the sweeper does."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import OperationalError

from hotline import drains, retention
from hotline.models import MessageDeletion
from hotline.wakeups import Task
from tests.kit.harness import Hotline
from tests.kit.phones import Phones
from workers import queue as queue_module
from workers.queue import make_queue

CLINICIAN, ALICE = "+15550109001", "+15550108001"
NOT_A_LINE = "+15550100009"  # texts to it are ignored, but their records are deleted
BURST = 2 * retention.DELETE_BATCH + 7  # three batches, the last one short


def kept_texts(hotline: Hotline, count: int) -> list[str]:
    """``count`` texts that reached the webhook in this minute, each a record Twilio keeps."""
    sids = []
    for i in range(count):
        sid = hotline.fake.keep_message(CLINICIAN, NOT_A_LINE, f"words {i}", hotline.clock.now)
        assert hotline.sms(CLINICIAN, NOT_A_LINE, f"words {i}", MessageSid=sid).status_code == 200
        sids.append(sid)
    return sids


def waiting(hotline: Hotline) -> list[tuple[str, datetime]]:
    """The wake-ups waiting in Redis's schedule: (job id, when)."""
    registry = make_queue(hotline.redis).scheduled_job_registry
    return [(name, registry.get_scheduled_time(name)) for name in registry.get_job_ids()]


def queued(hotline: Hotline) -> list[tuple[str, int]]:
    with hotline.session() as session:
        rows = session.execute(select(MessageDeletion.sid, MessageDeletion.attempts))
        return sorted((row.sid, row.attempts) for row in rows)


def minute_after(when: datetime) -> datetime:
    """The end of the minute ``when`` falls in: when a record due then is woken."""
    return datetime.fromtimestamp(-(-when.timestamp() // 60) * 60, UTC)


def test_a_burst_of_records_shares_one_wake_up_and_every_record_goes(hotline: Hotline) -> None:
    sids = kept_texts(hotline, BURST)
    due = hotline.clock.now + retention.INBOUND_DELETE_DELAY
    ident, wake = drains.wake_up_for(due)
    assert waiting(hotline) == [(f"{Task.DELETE_DUE_RECORDS.value}-{ident}", wake)]
    assert wake == minute_after(due)

    hotline.clock.now = wake - timedelta(seconds=1)
    hotline.run_jobs()
    assert hotline.fake.deleted == []  # not due yet: no run before its minute is over
    hotline.clock.now = wake
    hotline.run_jobs()
    assert sorted(hotline.fake.deleted) == sorted(sids)
    assert hotline.fake.messages == []
    assert queued(hotline) == []


def test_a_run_out_of_time_hands_the_rest_back_and_calls_in_help(hotline: Hotline) -> None:
    """A full first batch calls the minute's other lanes in; a run past its budget gives back
    what it did not try (the attempt not counted) and queues a run to carry on."""
    sids = kept_texts(hotline, BURST)
    ident, wake = drains.wake_up_for(hotline.clock.now + retention.INBOUND_DELETE_DELAY)
    hotline.redis.flushdb()
    hotline.clock.now = wake
    assert retention.delete_due(hotline.services, ident, budget=0.0) == 0
    assert hotline.fake.deleted == []
    assert queued(hotline) == sorted((sid, 0) for sid in sids)
    names = sorted(make_queue(hotline.redis).get_job_ids())
    lanes = [ident + lane for lane in range(1, drains.LANES)]
    assert names == [f"delete_due_records-{i}" for i in [*lanes, ident + drains.CONTINUED]]

    hotline.run_jobs()
    assert sorted(hotline.fake.deleted) == sorted(sids)
    assert queued(hotline) == []


def test_a_web_process_asks_once_a_minute_and_the_sweeper_does_what_redis_lost(
    hotline: Hotline, phones: Phones
) -> None:
    hotline.add_supporter("Alice", ALICE)
    clinician, _ = phones.talking(CLINICIAN, ALICE)
    hotline.clock.advance(minutes=1, seconds=10)
    hotline.redis.flushdb()
    clinician.texts("first")
    phones.phone(ALICE).expect_text("first")
    (name, when), *more = waiting(hotline)
    assert not more and name.startswith("delete_due_records-")
    hotline.redis.flushdb()  # Redis loses it
    hotline.clock.advance(seconds=1)
    clinician.texts("second")  # same minute: this process asked already, Redis is not asked
    phones.phone(ALICE).expect_text("second")
    assert waiting(hotline) == []
    assert len(queued(hotline)) == 4  # hello, ACCEPT, first, second

    hotline.clock.now = when + timedelta(seconds=16)  # past the sweeper's grace
    assert hotline.sweep().provider_records_deleted == 4
    assert queued(hotline) == []
    clinician.texts("third")  # a later minute: asked again
    phones.phone(ALICE).expect_text("third")
    ident, wake = drains.wake_up_for(hotline.clock.now + retention.INBOUND_DELETE_DELAY)
    assert wake > when
    assert waiting(hotline) == [(f"delete_due_records-{ident}", wake)]


def test_a_deletion_twilio_keeps_refusing_is_given_up_after_its_last_attempt(
    hotline: Hotline,
) -> None:
    (sid,) = kept_texts(hotline, 1)
    hotline.fake.fail_next(n=retention.MAX_DELETE_ATTEMPTS, status=503, code=None)
    for attempt in range(1, retention.MAX_DELETE_ATTEMPTS):
        hotline.clock.advance(minutes=2**attempt + 1)
        hotline.run_jobs()
        assert queued(hotline) == [(sid, attempt)], "refused: tried again later"
    hotline.clock.advance(minutes=2**retention.MAX_DELETE_ATTEMPTS)
    hotline.run_jobs()
    assert queued(hotline) == []  # given up, with a warning
    assert hotline.fake.deleted == []


def test_a_per_record_wake_up_queued_by_an_older_release_still_deletes_its_record(
    hotline: Hotline,
) -> None:
    (sid,) = kept_texts(hotline, 1)
    hotline.redis.flushdb()
    with hotline.session() as session:
        row_id = session.scalar(select(MessageDeletion.id))
    hotline.clock.advance(minutes=3)
    make_queue(hotline.redis).enqueue("workers.jobs.delete_message", row_id)
    hotline.run_jobs()
    assert hotline.fake.deleted == [sid]
    with hotline.session() as session:
        assert session.scalar(select(func.count()).select_from(MessageDeletion)) == 0


def test_a_run_that_fails_midway_keeps_what_it_did_and_gives_the_rest_back(
    hotline: Hotline,
) -> None:
    """Twilio refuses the second record and the database fails as the run notes the retry:
    the run ends, but the first record's deletion is recorded, the second keeps its attempt,
    and the three it never tried are due again with no attempt counted."""
    sids = kept_texts(hotline, 5)
    hotline.redis.flushdb()
    hotline.clock.advance(minutes=3)
    engine = hotline.services.sessions.kw["bind"]
    failed = [False]

    def fail_noting_the_retry(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        retry = "message_deletions SET due_at" in statement and "attempts" not in statement
        if retry and not failed[0]:
            failed[0] = True
            raise OperationalError(statement, None, Exception("the database went away"))

    hotline.fake.fail_next(n=1, status=503, code=None)
    event.listen(engine, "before_cursor_execute", fail_noting_the_retry)
    try:
        with pytest.raises(OperationalError):
            retention.delete_due(hotline.services)
    finally:
        event.remove(engine, "before_cursor_execute", fail_noting_the_retry)
    assert failed == [True]
    assert hotline.fake.deleted == []  # the first call was the refused one
    assert queued(hotline) == sorted([(sids[0], 1), *((sid, 0) for sid in sids[1:])])

    hotline.clock.advance(minutes=retention.drains.LEASE.total_seconds() / 60 + 1)
    assert retention.delete_due(hotline.services) == 5
    assert sorted(hotline.fake.deleted) == sorted(sids)


def test_a_web_process_asks_again_once_its_memory_of_a_minute_lapses(
    hotline: Hotline, phones: Phones, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a process remembers asking for is trusted for ``REMEMBER`` seconds only: a minute's
    wake-up Redis lost is asked for again by the next text after that."""
    monkeypatch.setattr(queue_module, "REMEMBER", 0.0)
    hotline.add_supporter("Alice", ALICE)
    clinician, _ = phones.talking(CLINICIAN, ALICE)
    hotline.redis.flushdb()  # Redis loses the wake-ups asked for so far
    clinician.texts("same minute")
    phones.phone(ALICE).expect_text("same minute")
    ident, wake = drains.wake_up_for(hotline.clock.now + retention.INBOUND_DELETE_DELAY)
    assert waiting(hotline) == [(f"delete_due_records-{ident}", wake)]


def test_runs_racing_over_one_minute_of_records_delete_each_once(hotline: Hotline) -> None:
    """The lanes of one minute and the sweeper work through the same rows side by side (on
    PostgreSQL each claim skips rows another holds; SQLite takes one writer at a time)."""
    sids = kept_texts(hotline, BURST)
    ident, wake = drains.wake_up_for(hotline.clock.now + retention.INBOUND_DELETE_DELAY)
    hotline.redis.flushdb()
    hotline.clock.now = wake
    idents = [ident + lane for lane in range(drains.LANES)] + [0]  # 0: the sweeper
    barrier = threading.Barrier(len(idents), timeout=30)

    def race(run: int) -> int:
        barrier.wait()
        return retention.delete_due(hotline.services, run)

    with ThreadPoolExecutor(len(idents)) as pool:
        gone = list(pool.map(race, idents))
    assert sum(gone) == BURST
    assert sorted(hotline.fake.deleted) == sorted(sids)  # each once: a second is a 20404
    assert queued(hotline) == []
