"""Soak: signed webhooks at a steady rate against the real processes, with Redis restarted and
the worker killed along the way; then count what was lost, duplicated or answered 5xx.

    python -m bench soak                    # 5 minutes at 50 requests a second
    python -m bench soak --duration 60      # a short run

All on loopback and thrown away afterwards: a fresh PostgreSQL database on
``HOTLINE_BENCH_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
a ``redis-server`` of its own, the test kit's fake Twilio, and the Procfile's processes run as
the Procfile says (``release``, then ``web`` under gunicorn and ``worker``), in production mode
(soak_world.py).
The soak plays Twilio for the phones (see soak_traffic.py): clinicians and supporters text,
offers are accepted or left to time out, texts the worker sends get their status callbacks.

At a third of the run Redis is stopped for a few seconds and started again, empty; at two
thirds a worker (of ``--workers``, 2 by default: one cannot keep up with deleting a message
record at Twilio for every one of 50 texts a second on a small machine) is SIGKILLed and a new
one started, as a process manager would. After the
load the soak drains (sessions finish, check-ins go out) for at most ``--drain`` seconds, then
checks: no 5xx and no failed request; every word relayed exactly once, to the right phone and
from the right masked number; every conversation accepted and closed; every check-in sent at
most once; every delivered message record deleted at Twilio; no number or word in the web and
worker logs. Exit status 0 when all hold.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, func, select
from sqlalchemy.pool import NullPool

from bench.loopback import free_port, fresh_database, postgres_server
from bench.soak_traffic import TOKEN, Traffic, describe, supporter_number
from bench.soak_world import (
    HOTLINE,
    SUPPORTERS,
    Procfile,
    RedisProcess,
    environment,
    seed_roster,
    wait_for_http,
)
from hotline.checkins import PENDING as PENDING_CHECKINS
from hotline.models import CheckIn, Conversation, MessageDeletion, Offer
from tests.kit.fake_twilio import FakeTwilio

REDIS_DOWN_SECONDS = 3.0
RAMP_SECONDS = 10.0


def add_command(commands: Any) -> None:
    parser = commands.add_parser("soak", help="minutes of webhooks with Redis and worker faults")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of load")
    parser.add_argument("--rate", type=float, default=50.0, help="webhook requests a second")
    parser.add_argument("--drain", type=float, default=240.0, help="at most, after the load")
    parser.add_argument("--offer-timeout", type=int, default=8, help="HOTLINE_OFFER_TIMEOUT")
    parser.add_argument("--max-active", type=int, default=30, help="conversations at once")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--logs", type=Path, help="copy the web and worker logs here")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    server = postgres_server()
    result = run(args, server)
    print(json.dumps(result, indent=2, default=str))
    failures = verdict(result)
    print("SOAK PASSED" if not failures else "SOAK FAILED: " + "; ".join(failures))
    return 0 if not failures else 1


def run(args: argparse.Namespace, server: str) -> dict[str, Any]:
    with ExitStack() as stack:
        database_url = stack.enter_context(fresh_database(server, "hotline_soak", migrated=False))
        redis = stack.enter_context(RedisProcess())
        fake = stack.enter_context(FakeTwilio())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hotline-soak-")))
        port = free_port()
        env = environment(database_url, redis.url, fake, workdir, port, args.offer_timeout)
        procfile = Procfile(env, workdir)
        procfile.run_once("release")
        seed_roster(env, workdir)
        stack.callback(procfile.stop_all)
        procfile.start("web")
        for instance in range(1, args.workers + 1):
            procfile.start(f"worker.{instance}")
        wait_for_http(port)
        traffic = Traffic(f"http://127.0.0.1:{port}", HOTLINE, SUPPORTERS, args.max_active)
        monitor = Monitor(fake, traffic)
        stack.callback(monitor.stop)
        monitor.start()
        faults = load(traffic, procfile, redis, args.duration, args.rate)
        drained = drain(traffic, database_url, args.drain, args.rate)
        monitor.stop()
        procfile.stop_all()
        result = tally(traffic, monitor, fake, database_url, workdir, faults, drained, args)
        if args.logs:
            args.logs.mkdir(parents=True, exist_ok=True)
            for name in ("release", "web", "worker"):
                shutil.copy(workdir / f"{name}.log", args.logs / f"{name}.log")
        return result | {"restarted_after_exiting": dict(procfile.exits)}
    raise AssertionError("unreachable")


# --- Twilio's side: REST messages the worker sends --------------------------------------------


class Monitor:
    """Reads every text the worker sends through the fake Twilio, as the phones would: offers
    are handed to the traffic to accept, and each message gets its 'delivered' callback."""

    def __init__(self, fake: FakeTwilio, traffic: Traffic) -> None:
        self.fake, self.traffic = fake, traffic
        self.seen: dict[str, dict[str, Any]] = {}
        self.callbacks: Counter[int] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="soak-monitor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            for message in self.fake.messages:
                if message["sid"] not in self.seen:
                    self._read(message)

    def _read(self, message: dict[str, Any]) -> None:
        self.seen[message["sid"]] = message
        to, from_, body = message["to"], message["from_"], message["body"]
        self.traffic.ledger.deliver(to, from_, body)
        if "Reply ACCEPT" in body:
            self.traffic.offered(to, from_)
        if message["status_callback"]:
            try:
                self.callbacks[self.fake.post_status(message["sid"], "delivered")] += 1
            except Exception as error:  # counted, not fatal: the web process may be busy
                self.callbacks[-1] += 1
                print(f"status callback failed: {type(error).__name__}", file=sys.stderr)


# --- the run ----------------------------------------------------------------------------------


def load(
    traffic: Traffic, procfile: Procfile, redis: RedisProcess, duration: float, rate: float
) -> list[str]:
    """``duration`` seconds at ``rate`` requests a second, with the faults on schedule."""
    faults = [(duration / 3, "redis restart"), (2 * duration / 3, "worker kill")]
    done: list[str] = []
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=32, thread_name_prefix="soak") as pool:
        for at in _ticks(duration, rate):
            _sleep_until(started + at)
            elapsed = time.monotonic() - started
            if faults and elapsed >= faults[0][0]:
                _, fault = faults.pop(0)
                threading.Thread(target=_inject, args=(fault, procfile, redis)).start()
                done.append(f"{fault} at {elapsed:.0f} s")
            if int(elapsed) != int(elapsed - 1 / rate):
                procfile.supervise()
            request = traffic.next_request()
            if request is not None:
                pool.submit(_guarded, request, traffic)
    return done


def _ticks(duration: float, rate: float) -> Iterator[float]:
    """When each request goes, in seconds from the start: the rate ramps up over the first
    RAMP_SECONDS (freshly started processes warm up), then holds."""
    at = 0.0
    while at < duration:
        yield at
        at += 1 / (rate * min(1.0, max(0.2, at / RAMP_SECONDS)))


def _inject(fault: str, procfile: Procfile, redis: RedisProcess) -> None:
    if fault == "redis restart":
        redis.stop()
        time.sleep(REDIS_DOWN_SECONDS)
        redis.start()
    else:
        procfile.kill("worker.1")
        procfile.start("worker.1")


def drain(traffic: Traffic, database_url: str, limit: float, rate: float) -> float:
    """Let conversations finish and check-ins go out; seconds it took (at most ``limit``)."""
    traffic.starting = False
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=16, thread_name_prefix="drain") as pool:
        while time.monotonic() - started < limit:
            request = traffic.next_request(fillers=False)
            if request is not None:
                pool.submit(_guarded, request, traffic)
                time.sleep(1 / rate)
                continue
            if not traffic.unfinished() and not _work_pending(database_url):
                break
            time.sleep(0.5)
    return time.monotonic() - started


def _guarded(request: Any, traffic: Traffic) -> None:
    try:
        request()
    except Exception as error:  # a bug in the soak or an answer it cannot read: count it
        traffic.stats.record(None, 0.0, f"soak: {type(error).__name__}: {error}")


def _sleep_until(when: float) -> None:
    pause = when - time.monotonic()
    if pause > 0:
        time.sleep(pause)


def _work_pending(database_url: str) -> bool:
    """Check-ins still to send, or message records still to delete at Twilio."""
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            checkins = connection.scalar(
                select(func.count()).select_from(CheckIn).where(CheckIn.state.in_(PENDING_CHECKINS))
            )
            deletions = connection.scalar(select(func.count()).select_from(MessageDeletion))
    finally:
        engine.dispose()
    return bool(checkins or deletions)


# --- the verdict ------------------------------------------------------------------------------


def tally(
    traffic: Traffic,
    monitor: Monitor,
    fake: FakeTwilio,
    database_url: str,
    workdir: Path,
    faults: list[str],
    drained: float,
    args: argparse.Namespace,
) -> dict[str, Any]:
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            conversations = Counter(connection.scalars(select(Conversation.state)))
            checkins = Counter(connection.scalars(select(CheckIn.state)))
            offers = connection.scalar(select(func.count()).select_from(Offer)) or 0
    finally:
        engine.dispose()
    rest = list(monitor.seen.values())
    checkin_texts = Counter(m["to"] for m in rest if "Checking in" in m["body"])
    offer_texts = traffic.ledger.other.get("Peer support request.", 0)
    undeleted = [m["sid"] for m in fake.messages if m["sid"] in monitor.seen]
    return {
        "duration_s": args.duration,
        "rate_per_s": args.rate,
        "faults": faults,
        "drain_s": round(drained, 1),
        "http": describe(traffic.stats),
        "server": server_times(workdir),
        "load_average": os.getloadavg(),
        "duplicates_answered": traffic.stats.duplicates_answered,
        "words": traffic.ledger.verdict(),
        "sessions": len(traffic.sessions),
        "sessions_unfinished": len(traffic.unfinished()),
        "conversations": {str(k): v for k, v in conversations.items()},
        "offers": {"rows": offers, "texts": offer_texts},
        "checkins": {str(k): v for k, v in checkins.items()},
        "checkin_texts": sum(checkin_texts.values()),
        "checkins_twice": sum(1 for n in checkin_texts.values() if n > 1),
        "rest_texts": len(rest),
        "status_callbacks": dict(monitor.callbacks),
        "records_left_at_twilio": len(undeleted),
        "tracebacks_in_logs": {k: dict(v) for k, v in tracebacks(workdir).items()},
        "log_leaks": scan_logs(workdir, traffic),
    }


def server_times(workdir: Path) -> dict[str, float]:
    """Request times as the web process measured them (gunicorn's ``%(L)s`` in the access log):
    what the soak measures as well includes waiting for a CPU on a shared machine."""
    path = workdir / "web.log"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    times = sorted(float(m[1]) for m in map(_ACCESS.search, lines) if m)
    if not times:
        return {}
    pick = {"p50_ms": 0.5, "p99_ms": 0.99, "max_ms": 1.0}
    return {
        k: round(times[min(len(times) - 1, int(q * len(times)))] * 1000, 1) for k, q in pick.items()
    }


_ACCESS = re.compile(r'" \d{3} ([0-9.]+)s$')


def tracebacks(workdir: Path) -> dict[str, Counter[str]]:
    """The exceptions that ended each traceback in the process logs, counted by process."""
    found: dict[str, Counter[str]] = {}
    for name in ("web", "worker"):
        path = workdir / f"{name}.log"
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        ends = Counter(
            _exception_line(lines, i) for i, line in enumerate(lines) if "Traceback" in line
        )
        if ends:
            found[name] = ends
    return found


def _exception_line(lines: list[str], start: int) -> str:
    """The first unindented line after a traceback's frames: the exception and its message."""
    for line in lines[start + 1 :]:
        if line and not line.startswith((" ", "Traceback", "During handling", "The above")):
            return line[:160]
    return "?"


def scan_logs(workdir: Path, traffic: Traffic) -> int:
    """Numbers and words of the soak found in the web and worker logs (should be none)."""
    numbers = {s.clinician[2:] for s in traffic.sessions} | {
        supporter_number(j)[2:] for j in range(SUPPORTERS)
    }
    leaks = 0
    for name in ("web", "worker"):
        path = workdir / f"{name}.log"
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        leaks += sum(1 for run in re.findall(r"\d{10,}", text) if run[-10:] in numbers)
        leaks += len(TOKEN.findall(text))
    return leaks


def verdict(result: dict[str, Any]) -> list[str]:
    failures = []
    http = result["http"]
    server_errors = sum(n for status, n in http["statuses"].items() if int(status) >= 500)
    if server_errors or http["errors"]:
        failures.append(f"{server_errors} 5xx, {sum(http['errors'].values())} failed requests")
    words = result["words"]
    for what in ("lost", "duplicated", "misrouted", "unexpected"):
        if words[what]:
            failures.append(f"{words[what]} words {what}")
    if result["duplicates_answered"]:
        failures.append(f"{result['duplicates_answered']} redeliveries processed again")
    if result["sessions_unfinished"]:
        failures.append(f"{result['sessions_unfinished']} conversations never finished")
    if result["offers"]["texts"] > result["offers"]["rows"]:
        failures.append("more offer texts than offers")
    if result["checkins_twice"]:
        failures.append(f"{result['checkins_twice']} clinicians checked in on twice")
    if result["records_left_at_twilio"]:
        failures.append(f"{result['records_left_at_twilio']} delivered records left at Twilio")
    if result["log_leaks"]:
        failures.append(f"{result['log_leaks']} numbers or words in the logs")
    return failures
