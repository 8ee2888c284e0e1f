"""RQ plumbing: the Redis connection, the queue, and the WakeUps adapter over RQ."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus, get_current_job

from hotline.wakeups import SHARED, Task, job_id

log = logging.getLogger(__name__)

QUEUE_NAME = "hotline"
JOB_TIMEOUT = 60  # seconds; jobs are one Twilio call or one sweep
RESULT_TTL = 0  # results are never needed: the database holds every outcome
FAILURE_TTL = 7 * 86400  # failed jobs hold only ids, but don't keep them a year (RQ's default)
CONNECT_TIMEOUT = 0.5  # seconds; Redis answers in a millisecond when it is well
SOCKET_TIMEOUT = 0.5
PAUSE_AFTER_FAILURE = 5.0  # seconds without trying Redis after it failed (see RQWakeUps)
REMEMBER = 60.0  # seconds a web process trusts that a shared wake-up it asked for is there


def connect(url: str) -> Redis:
    """A Redis client that gives up fast, so an outage costs a webhook about a second at most.

    Wake-ups are best effort (the sweeper recovers lost ones), so a hung Redis must not hold a
    webhook: with a 3 s timeout and a health-check PING in front of commands, a text took 6 s
    with the server stopped (SIGSTOP), and redis-py's default is ten retries. One immediate
    retry still replaces a pooled connection that a Redis restart closed, which is what the
    health check was for. A worker's own connection waits longer: RQ raises its socket timeout
    above the BLPOP it blocks in.
    """
    return Redis.from_url(
        url,
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(NoBackoff(), 1),
    )


def embedded_redis() -> Redis:
    """The development stand-in: fakeredis in this process (``hotline dev`` only)."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def make_queue(connection: Redis, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT)


class RQWakeUps:
    """WakeUps over RQ: one deterministic job per (task, row); best effort, never raises.

    After a Redis failure it stops trying for ``pause`` seconds: one text can ask for several
    wake-ups, and each would otherwise wait out its own timeout against a hung server.

    Outside a job (a web request), a shared per-minute wake-up (``wakeups.SHARED``) this process
    scheduled less than ``REMEMBER`` ago is not sent to Redis again: every relay asks for its
    minute's deletion run, and one ask per process per minute is enough. Remembering no longer
    bounds what a Redis restart can cost: a minute's run asked for before it and not again is
    done by the sweeper, as any lost wake-up is. Jobs always ask: a run woken early (clock
    skew) must be able to ask for its own minute again.
    """

    def __init__(self, queue: Queue, pause: float = PAUSE_AFTER_FAILURE) -> None:
        self.queue = queue
        self._pause = pause
        self._down_until = 0.0
        # Shared wake-ups this process scheduled: job id -> (its time, remembered until).
        self._asked: dict[str, tuple[datetime, float]] = {}
        self._asked_lock = threading.Lock()

    def _reachable(self, name: str) -> bool:
        if time.monotonic() < self._down_until:
            log.warning("wake-up %s skipped (Redis unavailable); the sweeper will retry", name)
            return False
        return True

    def _failed(self) -> None:
        self._down_until = time.monotonic() + self._pause

    def _job(self, function: str, args: tuple[object, ...], job_id: str) -> Job:
        return Job.create(
            f"workers.jobs.{function}",
            args=args,
            id=job_id,
            connection=self.queue.connection,
            timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            origin=self.queue.name,
        )

    def schedule(self, task: Task, ident: int, at: datetime | None = None) -> None:
        running = get_current_job()
        name = _free_id(task, ident, running)
        now = datetime.now(UTC)
        once = at is not None and at > now and task in SHARED and running is None
        if once and self._asked_already(name, at):
            return
        if not self._reachable(name):
            return
        job = self._job(task.value, (ident,), name)
        try:
            if at is None or at <= now:
                if not _queued(job):  # queued twice, two workers would run it side by side
                    self.queue.enqueue_job(job)
            else:
                # Reusing the id overwrites and reschedules, which is what we want here.
                self.queue.schedule_job(job, at.astimezone(UTC))
                if once:
                    self._remember(name, at, now)
        except RedisError:
            self._failed()
            log.warning(
                "wake-up %s not scheduled (Redis unavailable); the sweeper will retry", job.id
            )

    def _asked_already(self, name: str, at: datetime | None) -> bool:
        with self._asked_lock:
            asked = self._asked.get(name)
        return asked is not None and asked[0] == at and time.monotonic() < asked[1]

    def _remember(self, name: str, at: datetime, now: datetime) -> None:
        until = time.monotonic() + REMEMBER
        with self._asked_lock:
            for stale in [key for key, (when, _) in self._asked.items() if when < now]:
                del self._asked[stale]
            self._asked[name] = (at, until)

    def delete_record_later(self, sid: str, at: datetime, attempt: int = 1) -> None:
        """A job of the SID alone (it names a provider record, not a person)."""
        job = self._job("delete_record", (sid, attempt), f"delete_record-{sid}-{attempt}")
        if not self._reachable(job.id):
            return
        try:
            self.queue.schedule_job(job, at.astimezone(UTC))
        except RedisError:
            self._failed()
            log.warning("record deletion %s not scheduled (Redis unavailable)", job.id)

    def cancel(self, task: Task, ident: int) -> None:
        # delete(), not cancel(): RQ keeps a cancelled job's hash in its CanceledJobRegistry
        # forever (that registry is never cleaned), one per STOP or accepted offer.
        for name in _job_ids(task, ident):
            if not self._reachable(name):
                return
            try:
                Job.fetch(name, connection=self.queue.connection).delete()
            except NoSuchJobError:
                pass
            except RedisError:
                self._failed()
                log.warning("wake-up %s not cancelled (Redis unavailable)", name)


def _job_ids(task: Task, ident: int) -> tuple[str, str]:
    """A wake-up's deterministic job id and its twin (see ``_free_id``)."""
    primary = job_id(task, ident)
    return primary, f"{primary}-again"


def _free_id(task: Task, ident: int, running: Job | None) -> str:
    """The id for a new wake-up: the deterministic one, unless that job is running right here.

    With ``result_ttl=0`` RQ deletes a finished job's hash and registry entries after it returns,
    so a wake-up a job schedules for its own row (a retry with backoff, or woken early) under the
    same id would vanish with it; that one takes the twin id instead.
    """
    primary, twin = _job_ids(task, ident)
    if running is None or running.id not in (primary, twin):
        return primary
    return twin if running.id == primary else primary


def _queued(job: Job) -> bool:
    """Whether a job with this id is already waiting in the queue (a wake-up asked for twice
    before it ran: ten clinicians due in one minute, or a helper woken again)."""
    status = job.connection.hget(job.key, "status")
    return status == JobStatus.QUEUED.value.encode()


def redis_ok(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except RedisError:
        return False
