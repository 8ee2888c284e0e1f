"""``hotline dev``: the web app, a worker, the sweeper and the phone simulator in one process.

Nothing outside the process is needed: settings come from the environment with development
defaults for the numbers, the database is the SQLite file under ``instance/`` (migrated on
start), Redis is the embedded fakeredis stand-in, and texts go to an in-process PhoneNetwork
shown at ``/dev/phones``. With Twilio credentials set, Twilio is used instead of the simulator.

This is a composition root (like ``hotline.app``): it may import flask, rq and redis.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from redis import Redis
from rq import SimpleWorker
from rq.timeouts import TimerDeathPenalty
from werkzeug.serving import run_simple

from hotline.app import build_redis, build_services, build_telephony, create_app
from hotline.db import transaction
from hotline.demo import seed_demo_roster
from hotline.migrate import upgrade
from hotline.programmes import ensure_default_programme
from hotline.services import Services
from hotline.settings import Settings, SettingsError, load_settings, process_environ
from hotline.telephony.simulator import PhoneNetwork, SimulatedTelephony
from workers import context
from workers.main import run_sweeper
from workers.queue import make_queue

log = logging.getLogger(__name__)

# Fictional numbers (555-01xx): the simulator's hotline and its masking pool.
DEV_HOTLINE_NUMBER = "+15550100000"
DEV_POOL_NUMBERS = "+15550100001,+15550100002,+15550100003"
WORKER_POLL_SECONDS = 1.0  # how late a due wake-up may run in development
STOP_TIMEOUT_SECONDS = 10.0


class ThreadWorker(SimpleWorker):
    """An RQ SimpleWorker that runs outside the main thread.

    ``signal.signal`` raises ValueError off the main thread, so no signal handlers are installed
    (the main thread owns Ctrl+C and stops the worker through ``Background.stop``), and job
    time-outs use RQ's timer thread instead of SIGALRM.
    """

    death_penalty_class = TimerDeathPenalty

    def _install_signal_handlers(self) -> None:
        pass


class Background:
    """The dev worker and sweeper threads: ``start`` once, ``stop`` joins both.

    The worker runs RQ in burst mode every WORKER_POLL_SECONDS with the scheduler on. A
    non-burst RQ worker forks its scheduler into a child process, whose writes to the embedded
    fakeredis would stay in the child: scheduled wake-ups would never reach the queue. A burst
    moves due scheduled jobs to the queue in this process and runs everything queued.
    """

    def __init__(
        self, services: Services, redis: Redis, poll_seconds: float = WORKER_POLL_SECONDS
    ) -> None:
        self._worker = ThreadWorker([make_queue(redis)], connection=redis)
        self._poll = poll_seconds
        self._stop = threading.Event()
        self._threads = (
            threading.Thread(target=self._work, name="hotline-dev-worker", daemon=True),
            threading.Thread(
                target=run_sweeper,
                args=(services, self._stop),
                name="hotline-dev-sweeper",
                daemon=True,
            ),
        )

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Ask both threads to stop and wait for them (a running job is allowed to finish)."""
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout)

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _work(self) -> None:
        while not self._stop.is_set():
            try:
                self._worker.work(burst=True, with_scheduler=True, logging_level="WARNING")
            except Exception as error:  # keep the dev server usable; the next burst retries
                log.warning("dev worker burst failed (%s); retrying", type(error).__name__)
            self._stop.wait(self._poll)


@dataclass(frozen=True)
class DevHotline:
    """Everything ``hotline dev`` runs; nothing is started until ``background.start()``."""

    app: Flask
    services: Services
    network: PhoneNetwork | None  # None when Twilio is configured
    background: Background
    seeded: int  # demo supporters added on this start

    def banner(self, host: str, port: int) -> str:
        """The one line printed at start: where to go and which transport is on."""
        base = f"http://{_display_host(host)}:{port}"
        if self.network is None:
            return (
                f"Hotline dev on {base}: using Twilio (credentials are set), "
                "the phone simulator is off. Ctrl+C to stop."
            )
        return (
            f"Hotline dev on {base}: open {base}/dev/phones to text the line as a clinician "
            "and as each supporter (simulated phones). Ctrl+C to stop."
        )


def run_dev(host: str = "127.0.0.1", port: int = 5000) -> None:
    """Run the hotline on embedded defaults until Ctrl+C (``hotline dev``)."""
    _configure_logging()
    dev = build_dev()
    print(dev.banner(host, port), flush=True)
    dev.background.start()
    try:
        # app.run() without Flask's own start-up banner: the line above says it all.
        run_simple(host, port, dev.app, threaded=True, use_reloader=False)
    finally:
        dev.background.stop()


def build_dev(
    environ: Mapping[str, str] | None = None, instance_path: Path | None = None
) -> DevHotline:
    """Migrate, seed and wire the dev hotline from ``environ`` (the process environment and
    ``.env`` by default). Raises SettingsError for a bad setting or HOTLINE_ENV=production."""
    settings = dev_settings(environ, instance_path)
    upgrade(settings.database_url)
    redis = build_redis(settings)
    telephony = build_telephony(settings, PhoneNetwork())
    network = telephony.network if isinstance(telephony, SimulatedTelephony) else None
    services = build_services(settings, redis=redis, telephony=telephony)
    seeded = prepare_programme(services, demo=network is not None)
    context.install(services)
    app = create_app(services=services, redis=redis)
    return DevHotline(app, services, network, Background(services, redis), seeded)


def dev_settings(environ: Mapping[str, str] | None, instance_path: Path | None) -> Settings:
    """The settings with the development numbers filled in where unset; never production."""
    env = with_dev_defaults(process_environ() if environ is None else environ)
    # Before loading: production's first missing setting is not what is wrong here.
    if env.get("HOTLINE_ENV", "").strip() == "production":
        raise SettingsError("hotline dev is for development only; unset HOTLINE_ENV=production")
    return load_settings(env, instance_path)


def with_dev_defaults(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` plus the fictional hotline number and, when that is used, its pool.

    A pool is only made up for the made-up hotline number, unset or given (the README has the
    CLI run with it, so it is often exported): a real HOTLINE_NUMBER keeps the settings' own
    default (that number alone), since Twilio cannot send from fictional ones.
    """
    env = dict(environ)
    if env.get("HOTLINE_NUMBER", "").strip() in ("", DEV_HOTLINE_NUMBER):
        env["HOTLINE_NUMBER"] = DEV_HOTLINE_NUMBER
        if not env.get("HOTLINE_POOL_NUMBERS", "").strip():
            env["HOTLINE_POOL_NUMBERS"] = DEV_POOL_NUMBERS
    return env


def prepare_programme(services: Services, *, demo: bool) -> int:
    """Ensure the default programme; with ``demo``, seed the demo roster if it has nobody.

    Returns how many demo supporters were added (0 when the roster already had people).
    """
    with transaction(services.sessions) as session:
        programme = ensure_default_programme(session, services.settings)
        if not demo:
            return 0
        return seed_demo_roster(session, services.vault, programme.id, services.clock())


def _configure_logging() -> None:
    """Our own INFO lines (they never carry a number or a body); only warnings from libraries."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    for name in ("hotline", "webhooks", "workers"):
        logging.getLogger(name).setLevel(logging.INFO)


def _display_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
