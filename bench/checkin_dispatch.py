"""Dispatch N due check-ins through real worker processes to a fake Twilio, and count the damage.

    python -m bench checkins [--count 10000] [--workers 2] [--per-row]

Sets up, all on loopback and all thrown away afterwards: a fresh PostgreSQL database on
``HOTLINE_BENCH_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
its own ``redis-server`` on a free port, and the test kit's fake Twilio. It inserts N clinicians
(fictional 555-01xx numbers, sealed by the vault), each with one check-in due now, enqueues the
wake-ups the core would (one for the minute; ``--per-row``: one per check-in), runs ``hotline
worker`` processes until no check-in is left to send, then prints the elapsed time, the rate,
duplicates, losses and the peak RSS of a worker.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select
from werkzeug.serving import WSGIRequestHandler, make_server

from bench.loopback import fresh_database, postgres_server, redis_server
from hotline.checkins import PENDING
from hotline.db import make_engine, make_sessionmaker, transaction
from hotline.drains import wake_up_for
from hotline.models import CheckIn, Clinician, Conversation, ConversationState
from hotline.people import CLINICIAN_CONTEXT
from hotline.privacy import Vault
from hotline.programmes import ensure_default_programme
from hotline.settings import Settings, load_settings
from hotline.wakeups import Task
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio
from workers.queue import RQWakeUps, connect, make_queue

TARGET_RATE = 200.0  # check-ins a second with two workers
HOTLINE_NUMBER = "+15550100000"
DATA_KEY = "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY="  # a throwaway key for fake numbers


@dataclass(frozen=True)
class Result:
    count: int
    workers: int
    elapsed: float  # seconds from starting the workers to the last check-in settled
    dispatch: float  # seconds from the first claim to the last
    duplicates: int  # texts beyond the first to one number, or not recorded on any check-in
    lost: int  # check-ins that never reached the fake Twilio
    states: dict[str, int]
    peak_rss_mb: float
    cpu_per_checkin_ms: float  # worker processes' CPU time, per check-in
    worker_failures: int

    @property
    def delivered(self) -> int:
        return self.count - self.lost

    @property
    def rate(self) -> float:
        return self.delivered / self.elapsed if self.elapsed else 0.0

    @property
    def dispatch_rate(self) -> float:
        return (self.delivered - 1) / self.dispatch if self.dispatch else 0.0


def add_command(commands: Any) -> None:
    parser = commands.add_parser("checkins", help="dispatch N due check-ins through real workers")
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (seconds)")
    parser.add_argument(
        "--per-row",
        action="store_true",
        help="one wake-up job per check-in (the old way), for comparison",
    )
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    server = postgres_server()
    result = run(args.count, args.workers, server, args.timeout, args.per_row)
    print(report(result))
    ok = result.duplicates == 0 and result.lost == 0 and result.worker_failures == 0
    return 0 if ok else 1


def run(count: int, workers: int, server: str, timeout: float, per_row: bool = False) -> Result:
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(server))
        redis_url = stack.enter_context(redis_server()).url
        fake, twilio_url = stack.enter_context(fake_twilio())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hotline-bench-")))
        env = worker_env(database_url, redis_url, twilio_url, workdir)
        settings = load_settings(env, instance_path=workdir)
        numbers = insert_due_checkins(settings, count)
        enqueue(redis_url, settings, per_row)
        ran = run_workers(env, workers, workdir, timeout, database_url)
        return tally(settings, fake, numbers, workers, ran)


# --- the loopback world -----------------------------------------------------------------------


class _KeepAliveHandler(WSGIRequestHandler):
    protocol_version = "HTTP/1.1"  # Twilio's API keeps connections open; so does this fake

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # request lines carry message SIDs


@contextmanager
def fake_twilio() -> Iterator[tuple[FakeTwilio, str]]:
    """The test kit's fake Twilio, served threaded with keep-alive (its own server answers one
    request at a time and closes every connection); yields it and its base URL."""
    fake = FakeTwilio()
    server = make_server("127.0.0.1", 0, fake, threaded=True, request_handler=_KeepAliveHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield fake, f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def worker_env(database_url: str, redis_url: str, twilio_url: str, workdir: Path) -> dict[str, str]:
    """Everything a worker reads, set explicitly (so no ``.env`` can point it elsewhere)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOTLINE_NUMBER": HOTLINE_NUMBER,
        "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002",
        "HOTLINE_PUBLIC_URL": "https://hotline.example.org",
        "HOTLINE_INSTANCE_PATH": str(workdir),
        "HOTLINE_SECRET_KEY": "bench",
        "HOTLINE_DATA_KEY": DATA_KEY,
        "HOTLINE_CHECKIN_HOURS": "",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": twilio_url,
    }


# --- the work ---------------------------------------------------------------------------------


def fictional_number(i: int) -> str:
    """+1 NPA 555-01XX: the 555-0100..0199 block is reserved for fiction in every area code."""
    return f"+1{201 + i // 100}55501{i % 100:02d}"


def insert_due_checkins(settings: Settings, count: int) -> list[str]:
    """N clinicians, each with an ended conversation and one check-in due a minute ago."""
    vault = Vault(settings.data_keys)
    numbers = [fictional_number(i) for i in range(count)]
    due = datetime.now(UTC) - timedelta(minutes=1)
    engine = make_engine(settings.database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            pid = ensure_default_programme(session, settings).id
            people = [
                {
                    "programme_id": pid,
                    "phone_sealed": vault.seal(n, CLINICIAN_CONTEXT),
                    "phone_hash": vault.blind_index(n),
                }
                for n in numbers
            ]
            clinicians = _insert(session, Clinician, people)
            ended = {"state": ConversationState.ENDED, "accepted_at": due, "ended_at": due}
            conversations = _insert(
                session,
                Conversation,
                [
                    {"programme_id": pid, "clinician_id": c, "channel": "sms", **ended}
                    for c in clinicians
                ],
            )
            checkins = [
                {
                    "programme_id": pid,
                    "conversation_id": v,
                    "clinician_id": c,
                    "sequence": 1,
                    "due_at": due,
                }
                for c, v in zip(clinicians, conversations, strict=True)
            ]
            _insert(session, CheckIn, checkins)
    finally:
        engine.dispose()
    return numbers


def _insert(session: Any, model: Any, rows: list[dict[str, Any]]) -> list[int]:
    statement = insert(model).returning(model.id, sort_by_parameter_order=True)
    return list(session.scalars(statement, rows))


def enqueue(redis_url: str, settings: Settings, per_row: bool) -> None:
    """The wake-ups the core asks for, through the same adapter: one per due minute (here one
    for all), or with ``per_row`` one per check-in as before per-minute wake-ups."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(CheckIn.id, CheckIn.due_at).order_by(CheckIn.id))
            due = {row.id: row.due_at.replace(tzinfo=UTC) for row in rows}
    finally:
        engine.dispose()
    redis = connect(redis_url)
    wakeups = RQWakeUps(make_queue(redis))
    for ident, due_at in due.items():
        if per_row:
            wakeups.schedule(Task.SEND_CHECKIN, ident)
        else:
            wakeups.schedule(Task.SEND_DUE_CHECKINS, *wake_up_for(due_at))
    redis.close()


@dataclass(frozen=True)
class Workers:
    """How the worker processes ran."""

    elapsed: float  # seconds from starting them to the last check-in settled
    peak_rss_kb: int  # the largest worker's peak resident set
    cpu: float  # user + system seconds, all workers together
    failures: int  # workers that exited non-zero or early, or work left at the timeout


def run_workers(
    env: dict[str, str], count: int, workdir: Path, timeout: float, database_url: str
) -> Workers:
    """Run ``count`` ``hotline worker`` processes, as the Procfile does, until no check-in is
    left to send (or the timeout); then stop them as a process manager would (SIGTERM).

    Not ``--burst``: a burst worker quits the moment the queue is empty, which with one
    wake-up per minute is at once for all but the first, and production workers never do."""
    argv = [sys.executable, "-m", "hotline.cli", "worker"]
    started = time.perf_counter()
    with open(workdir / "workers.log", "wb") as log:
        # Each in its own process group: a worker forks RQ's scheduler, and the stop signal
        # goes to the whole group, as a process manager sends it.
        procs = [
            subprocess.Popen(
                argv,
                env=env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            for _ in range(count)
        ]
    try:
        settled = _wait_until_settled(database_url, procs, started + timeout)
        elapsed = time.perf_counter() - started
        for proc in procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        usages = [_reap(proc, time.perf_counter() + 30) for proc in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    failures = sum(1 for proc in procs if proc.returncode != 0) + (0 if settled else 1)
    if failures:
        print((workdir / "workers.log").read_text()[-4000:], file=sys.stderr)
    return Workers(
        elapsed=elapsed,
        peak_rss_kb=max((int(u.ru_maxrss) for u in usages if u), default=0),
        cpu=sum(u.ru_utime + u.ru_stime for u in usages if u),
        failures=failures,
    )


def _wait_until_settled(
    database_url: str, procs: list[subprocess.Popen[bytes]], deadline: float
) -> bool:
    """Poll until no check-in is scheduled, claimed or being sent; False at the deadline or if
    a worker exits first."""
    engine = make_engine(database_url)
    pending = select(func.count()).where(CheckIn.state.in_(PENDING))
    try:
        while time.perf_counter() < deadline:
            with engine.connect() as connection:
                if connection.scalar(pending) == 0:
                    return True
            if any(proc.poll() is not None for proc in procs):
                print("a worker exited before the work was done", file=sys.stderr)
                return False
            time.sleep(0.1)
    finally:
        engine.dispose()
    print("the check-ins were not all sent before the timeout", file=sys.stderr)
    return False


def _reap(proc: subprocess.Popen[bytes], deadline: float) -> Any:
    """Wait for ``proc`` until ``deadline``; its resource usage (None if it is still running)."""
    while time.perf_counter() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage
        time.sleep(0.05)
    print("a worker did not finish before the timeout; stopping it", file=sys.stderr)
    _dump_stacks(proc.pid)
    return None


def _dump_stacks(pid: int) -> None:
    """Where a stuck worker is (py-spy, from the bench extra), best effort."""
    py_spy = Path(sys.executable).with_name("py-spy")
    if py_spy.exists():
        dump = subprocess.run(
            [str(py_spy), "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        )
        print(dump.stdout[-6000:] or dump.stderr[-2000:], file=sys.stderr)


def tally(
    settings: Settings, fake: FakeTwilio, numbers: list[str], workers: int, run: Workers
) -> Result:
    """Count what reached the fake Twilio against what the database says was sent."""
    messages = fake.messages
    per_number = Counter(m["to"] for m in messages)
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as connection:
            states = Counter(connection.scalars(select(CheckIn.state)))
            sids = set(connection.scalars(select(CheckIn.provider_sid)))
            first, last = connection.execute(
                select(func.min(CheckIn.claimed_at), func.max(CheckIn.claimed_at))
            ).one()
    finally:
        engine.dispose()
    unrecorded = sum(1 for m in messages if m["sid"] not in sids)
    return Result(
        count=len(numbers),
        workers=workers,
        elapsed=run.elapsed,
        dispatch=(last - first).total_seconds() if first and last else 0.0,
        duplicates=max(sum(c - 1 for c in per_number.values()), unrecorded),
        lost=len(set(numbers) - set(per_number)),
        states={str(state): n for state, n in states.items()},
        peak_rss_mb=run.peak_rss_kb / 1024,
        cpu_per_checkin_ms=1000 * run.cpu / max(len(numbers), 1),
        worker_failures=run.failures,
    )


def report(result: Result) -> str:
    verdict = "meets" if result.rate >= TARGET_RATE else "MISSES"
    return "\n".join(
        [
            f"check-in dispatch: {result.count} due check-ins, {result.workers} worker processes",
            f"  elapsed      {result.elapsed:8.2f} s   (workers started -> all settled)",
            f"  rate         {result.rate:8.1f} /s  ({verdict} the {TARGET_RATE:.0f}/s target)",
            f"  dispatch     {result.dispatch_rate:8.1f} /s  (first claim -> last claim)",
            f"  duplicates   {result.duplicates:8d}",
            f"  lost         {result.lost:8d}",
            f"  states       {result.states}",
            f"  peak RSS     {result.peak_rss_mb:8.1f} MiB (largest worker)",
            f"  worker CPU   {result.cpu_per_checkin_ms:8.2f} ms per check-in (all workers)",
            f"  failed exits {result.worker_failures:8d}",
        ]
    )
