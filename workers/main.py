"""The worker process: an RQ worker with the scheduler, plus the sweeper thread."""

from __future__ import annotations

import logging
import threading
import time
from types import FrameType

from redis import Redis
from redis.exceptions import RedisError
from rq import SimpleWorker
from rq.exceptions import StopRequested

from hotline import tasks
from hotline.app import build_redis, build_services, check_schema
from hotline.services import Services
from hotline.settings import Settings
from workers import context
from workers.queue import make_queue

log = logging.getLogger(__name__)

# RQ's scheduler runs in a child process that dies when Redis goes away; the worker restarts it
# only in its maintenance step, by default every 10 minutes and only between blocking waits of
# worker_ttl - 15 s (405 s). Until then wake-ups run late, by way of the sweeper: keep it short.
MAINTENANCE_INTERVAL = 60
WORKER_TTL = 75
RESTART_PAUSE = 1.0  # seconds before starting RQ's worker again after it quit on its own
# Restarts in a row are logged once, then at most once a RESTART_LOG_EVERY, with their count:
# a day without Redis was 86,400 identical warnings. A worker that ran this long since its
# last restart had recovered, and its next failure is logged at once.
RESTART_LOG_EVERY = 60.0
SWEEP_STOP_WAIT = 25.0  # seconds a stopping worker waits for a sweep in hand


def run_sweeper(services: Services, stop: threading.Event) -> None:
    """Sweep every SWEEP_INTERVAL until ``stop`` is set; a failed sweep is retried next time."""
    while not stop.wait(tasks.SWEEP_INTERVAL.total_seconds()):
        try:
            tasks.sweep(services)
        except Exception as error:  # the database or Redis may be down a while
            log.warning("sweep failed (%s); will retry", type(error).__name__)


def run_worker(settings: Settings, *, burst: bool = False, sweeper: bool = True) -> None:
    """Process jobs until stopped. ``SimpleWorker`` runs jobs in this process (no fork per job):
    jobs are short database-and-one-API-call functions, and a fork per job would cost more than
    the job (and a fresh connection pool each time); see docs/PERFORMANCE.md."""
    redis = build_redis(settings)
    # The jobs' wake-ups get a connection of their own (with an embedded Redis there is only
    # one): RQ raises the socket timeout of the worker's connection above the BLPOP it blocks
    # in, which would let a hung Redis stall a job's wake-up for minutes.
    wakeups = build_redis(settings) if settings.redis_url else redis
    services = build_services(settings, redis=wakeups)
    check_schema(services)
    context.install(services)
    _log_start(redis, sweeper and not burst)
    stop = threading.Event()
    sweeping = threading.Thread(target=run_sweeper, args=(services, stop), daemon=True)
    if sweeper and not burst:
        sweeping.start()
    try:
        _work(redis, burst)
    finally:
        stop.set()
        # A sweep in hand may be sending check-ins: let it finish (its drain is bounded by
        # drains.BUDGET) rather than die between marking a row 'sending' and recording it. A
        # deletion cut short after the wait costs nothing: its row is tried again after its lease.
        if sweeping.is_alive():
            sweeping.join(SWEEP_STOP_WAIT)


def _log_start(redis: Redis, sweeping: bool) -> None:
    """One line saying the worker is up and where it takes jobs from (never the password):
    RQ's own lines are turned down to warnings, and an operator could not tell it had started."""
    kwargs = redis.connection_pool.connection_kwargs
    place = kwargs.get("path") or f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}"
    where = f"{place} db {kwargs.get('db', 0)}"
    sweeper = (
        f", the sweeper every {tasks.SWEEP_INTERVAL.total_seconds():.0f} s" if sweeping else ""
    )
    log.info("hotline worker started: jobs from Redis at %s%s", where, sweeper)


class _Worker(SimpleWorker):
    """RQ's SimpleWorker, remembering whether a stop was asked for (SIGTERM or SIGINT), and
    without RQ's pub/sub listener for remote commands (``rq``'s send_shutdown_command and
    the like; stop the process with SIGTERM instead).

    The listener made stopping slow: on the way out RQ unsubscribes, then redis-py joins the
    listener thread, which, if it saw the unsubscribe first, waits up to 60 s (RQ's
    sleep_time) to be subscribed again. ``hotline worker`` then took up to a minute to exit
    on SIGTERM, past the 30 s a platform such as Heroku waits before SIGKILL."""

    stop_requested = False

    def subscribe(self) -> None:
        pass  # see the class docstring; RQ's unsubscribe does nothing without a listener

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]


def _work(redis: Redis, burst: bool) -> None:
    """Run RQ's worker; start it again whenever it quits on its own.

    When Redis goes away at the wrong moment RQ's worker either returns as if asked to stop (a
    ConnectionError between jobs, a TimeoutError) or raises out of ``work``: ``hotline worker``
    exited after a Redis restart, leaving every wake-up and the sweeper to nobody unless a
    process manager started it again.
    """
    worker: _Worker | None = None
    restarts = _Restarts()
    while True:
        started = time.monotonic()
        try:
            worker = _Worker(
                [make_queue(redis)],
                connection=redis,
                worker_ttl=WORKER_TTL,
                maintenance_interval=MAINTENANCE_INTERVAL,
            )
            worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
        except RedisError as error:  # raised out of RQ's loop, or when registering with Redis
            if burst:
                raise
            # Which Redis and why (redis-py names the host and port, never the password): a
            # REDIS_URL with the wrong host looks like this from the first second.
            restarts.note(
                started,
                f"RQ worker stopped: Redis at REDIS_URL failed ({type(error).__name__}: {error})",
            )
        else:
            if burst or worker.stop_requested:
                return
            restarts.note(started, "RQ worker quit on its own (Redis unavailable?)")
        if _asked_to_stop(worker):
            return
        try:
            time.sleep(RESTART_PAUSE)
        except StopRequested:  # SIGTERM while waiting (RQ's handler is still installed)
            return
        if _asked_to_stop(worker):  # a signal RQ's handler only noted (it was busy)
            return


class _Restarts:
    """Logs the RQ worker's restarts: the first of a run at once, then once a minute."""

    def __init__(self) -> None:
        self.unlogged = 0
        self.logged_at: float | None = None

    def note(self, started: float, why: str) -> None:
        now = time.monotonic()
        more = ""
        if now - started >= RESTART_LOG_EVERY:  # it had been working: this is a new failure
            if self.unlogged:  # the last outage's restarts after its last line
                more = f" ({self.unlogged} restarts in the previous outage after its last line)"
            self.unlogged, self.logged_at = 0, None
        self.unlogged += 1
        if self.logged_at is not None and now - self.logged_at < RESTART_LOG_EVERY:
            return
        if self.logged_at is not None:
            more = f" ({self.unlogged} restarts since the last such line)"
        log.warning("%s; starting it again%s", why, more)
        self.unlogged, self.logged_at = 0, now


def _asked_to_stop(worker: _Worker | None) -> bool:
    return worker is not None and worker.stop_requested
