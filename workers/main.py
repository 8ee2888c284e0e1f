"""The worker process: an RQ worker with the scheduler, plus the sweeper thread."""

from __future__ import annotations

import logging
import threading

from rq import SimpleWorker

from hotline import tasks
from hotline.app import build_redis, build_services
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


def run_sweeper(services: Services, stop: threading.Event) -> None:
    """Sweep every SWEEP_INTERVAL until ``stop`` is set; a failed sweep is retried next time."""
    while not stop.wait(tasks.SWEEP_INTERVAL.total_seconds()):
        try:
            tasks.sweep(services)
        except Exception as error:  # the database or Redis may be down a while
            log.warning("sweep failed (%s); will retry", type(error).__name__)


def run_worker(settings: Settings, *, burst: bool = False, sweeper: bool = True) -> None:
    """Process jobs until stopped. ``SimpleWorker`` runs jobs in this process (no fork per job):
    jobs are short database-and-one-API-call functions, and reusing the connection pool is what
    lets two workers dispatch hundreds of check-ins a second."""
    redis = build_redis(settings)
    # The jobs' wake-ups get a connection of their own (with an embedded Redis there is only
    # one): RQ raises the socket timeout of the worker's connection above the BLPOP it blocks
    # in, which would let a hung Redis stall a job's wake-up for minutes.
    wakeups = build_redis(settings) if settings.redis_url else redis
    services = build_services(settings, redis=wakeups)
    context.install(services)
    stop = threading.Event()
    if sweeper and not burst:
        threading.Thread(target=run_sweeper, args=(services, stop), daemon=True).start()
    try:
        SimpleWorker(
            [make_queue(redis)],
            connection=redis,
            worker_ttl=WORKER_TTL,
            maintenance_interval=MAINTENANCE_INTERVAL,
        ).work(burst=burst, with_scheduler=True, logging_level="WARNING")
    finally:
        stop.set()
