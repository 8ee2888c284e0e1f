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
    services = build_services(settings, redis=redis)
    context.install(services)
    stop = threading.Event()
    if sweeper and not burst:
        threading.Thread(target=run_sweeper, args=(services, stop), daemon=True).start()
    try:
        SimpleWorker([make_queue(redis)], connection=redis).work(
            burst=burst, with_scheduler=True, logging_level="WARNING"
        )
    finally:
        stop.set()
