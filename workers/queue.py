"""RQ plumbing: the Redis connection, the queue, and the WakeUps adapter over RQ."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, get_current_job

from hotline.wakeups import Task, job_id

log = logging.getLogger(__name__)

QUEUE_NAME = "hotline"
JOB_TIMEOUT = 60  # seconds; jobs are one Twilio call or one sweep
RESULT_TTL = 0  # results are never needed: the database holds every outcome
FAILURE_TTL = 7 * 86400  # failed jobs hold only ids, but don't keep them a year (RQ's default)


def connect(url: str) -> Redis:
    """A Redis client with short timeouts, so an outage costs a webhook milliseconds, not 15 s."""
    return Redis.from_url(url, socket_connect_timeout=1, socket_timeout=3, health_check_interval=30)


def embedded_redis() -> Redis:
    """The development stand-in: fakeredis in this process (``hotline dev`` only)."""
    import fakeredis

    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


def make_queue(connection: Redis, name: str = QUEUE_NAME) -> Queue:
    return Queue(name, connection=connection, default_timeout=JOB_TIMEOUT)


class RQWakeUps:
    """WakeUps over RQ: one deterministic job per (task, row); best effort, never raises."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def schedule(self, task: Task, ident: int, at: datetime | None = None) -> None:
        job = Job.create(
            f"workers.jobs.{task.value}",
            args=(ident,),
            id=_free_id(task, ident),
            connection=self.queue.connection,
            timeout=JOB_TIMEOUT,
            result_ttl=RESULT_TTL,
            failure_ttl=FAILURE_TTL,
            origin=self.queue.name,
        )
        try:
            if at is None or at <= datetime.now(UTC):
                self.queue.enqueue_job(job)
            else:
                # Reusing the id overwrites and reschedules, which is what we want here.
                self.queue.schedule_job(job, at.astimezone(UTC))
        except RedisError:
            log.warning(
                "wake-up %s not scheduled (Redis unavailable); the sweeper will retry", job.id
            )

    def cancel(self, task: Task, ident: int) -> None:
        # delete(), not cancel(): RQ keeps a cancelled job's hash in its CanceledJobRegistry
        # forever (that registry is never cleaned), one per STOP or accepted offer.
        for name in _job_ids(task, ident):
            try:
                Job.fetch(name, connection=self.queue.connection).delete()
            except NoSuchJobError:
                pass
            except RedisError:
                log.warning("wake-up %s not cancelled (Redis unavailable)", name)


def _job_ids(task: Task, ident: int) -> tuple[str, str]:
    """A wake-up's deterministic job id and its twin (see ``_free_id``)."""
    primary = job_id(task, ident)
    return primary, f"{primary}-again"


def _free_id(task: Task, ident: int) -> str:
    """The id for a new wake-up: the deterministic one, unless that job is running right here.

    With ``result_ttl=0`` RQ deletes a finished job's hash and registry entries after it returns,
    so a wake-up a job schedules for its own row (a retry with backoff, or woken early) under the
    same id would vanish with it; that one takes the twin id instead.
    """
    primary, twin = _job_ids(task, ident)
    running = get_current_job()
    if running is None or running.id not in (primary, twin):
        return primary
    return twin if running.id == primary else primary


def redis_ok(connection: Redis) -> bool:
    try:
        return bool(connection.ping())
    except RedisError:
        return False
