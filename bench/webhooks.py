"""Webhook throughput and latency: the hotline under gunicorn against a bare Flask baseline.

    python -m bench webhooks            # 1,000 vs 1,000,000 past conversations (~10 min)
    python -m bench webhooks --quick    # 1,000 vs 50,000, shorter phases (~4 min)

Sets up, all on loopback and all thrown away afterwards: two fresh PostgreSQL databases on
``HOTLINE_BENCH_POSTGRES_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/test``),
migrated and seeded alike (``bench/history.py``) except for their history, 1,000 past
conversations in one and 1,000,000 in the other; its own ``redis-server``; the test kit's fake
Twilio; and the web process exactly as the Procfile's ``web:`` line starts it (gunicorn, same
workers, threads, timeout and access log), bound to 127.0.0.1, once per database, plus once for
the bare Flask app (``bench/bare_app.py``) and once for the bare app with one committed INSERT
per request (``bench/floor_app.py``: the least any webhook that must be de-duplicated does).
A second process (``bench/loadgen.py``) sends the
signed webhooks. For each app it finds the throughput at saturation (closed loop, several
concurrencies; for the bare app, the floor and the relay in two rounds, the best counting, the
two hotlines' relay in turn, small, large, large, small) and the p50/p99 latency at half of that
rate (open loop); the two hotlines are measured in alternating rounds at the same rate, so a
change in the machine's background load falls on both alike. Figures go to
``bench/out/latest.json``, a chart to ``docs/performance.png``. Method and results:
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text

from bench import history
from bench.loadgen import merge
from bench.loopback import (
    children,
    cpu_seconds,
    free_port,
    fresh_database,
    memory,
    postgres_server,
    redis_server,
    stop,
)
from hotline.db import make_engine
from hotline.privacy import Vault
from hotline.settings import Settings, load_settings
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "latest.json"
CHART = ROOT / "docs" / "performance.png"
HOTLINE_APP = "hotline.app:create_app()"
BARE_APP = "bench.bare_app:create_app()"
FLOOR_APP = "bench.floor_app:create_app()"
PUBLIC_URL = "https://hotline.example.org"
HOTLINE_NUMBER = "+15550100000"
POOL = tuple(f"+1555010000{i}" for i in range(1, 6))
DATA_KEY = "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY="  # a throwaway key for fake numbers
RUN_LIMIT = 15 * 60.0  # seconds: the whole run stops by itself well before this

# Targets (ISSUE 8), reported against, not enforced.
TARGET_THROUGHPUT_RATIO = 0.5
TARGET_P99_MS = 50.0
TARGET_GROWTH = 1.2


@dataclass(frozen=True)
class Plan:
    name: str
    history: tuple[int, int]  # past conversations in the small and in the large database
    levels: tuple[int, ...]  # closed-loop concurrencies tried for the saturation throughput
    warmup: float  # seconds before each measurement, not counted
    saturation: float  # seconds measured per concurrency level
    latency: float  # seconds measured per latency round (open loop at half of peak)
    rounds: int  # latency rounds, alternating small and large; saturation rounds (best counts)
    max_rate: float = 3_000.0  # requests built per second of a phase (the count limit)
    probe: int = 400  # requests through the in-process cost probe, per database
    supporters: int = 40
    conversations_each: int = 2  # active conversations per supporter (the relay traffic)


FULL = Plan("full", (1_000, 1_000_000), (4, 8, 16, 32), 2.0, 8.0, 10.0, 2)
QUICK = Plan("quick", (1_000, 50_000), (8, 16, 32), 1.0, 4.0, 5.0, 2)


def add_command(commands: Any) -> None:
    parser = commands.add_parser(
        "webhooks", help="webhook throughput/latency vs bare Flask, history growth, memory"
    )
    parser.add_argument("--quick", action="store_true", help="50,000 past conversations, short")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also sample the relay path with py-spy (bench/out/relay-profile.txt)",
    )
    parser.add_argument("--out", type=Path, default=OUT, help="where the figures go (JSON)")
    parser.add_argument("--chart", type=Path, default=CHART, help="where the chart goes (PNG)")
    parser.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    plan = QUICK if args.quick else FULL
    results = run(plan, postgres_server(), profile=args.profile)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(report(results))
    try:
        chart(results, args.chart)
        print(f"\nfigures: {_shown(args.out)}   chart: {_shown(args.chart)}")
    except ImportError:
        print(f"\nfigures: {_shown(args.out)}   (no chart: pip install -e '.[bench]')")
    return 0


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


# --- the run ----------------------------------------------------------------------------------


class Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self, what: str, needs: float) -> None:
        if self.left() < needs:
            raise TimeoutError(f"not enough time left for {what}; stopping (RUN_LIMIT)")


@dataclass
class Site:
    """One hotline database: its history size, settings, and the web process's environment."""

    label: str
    history: int
    engine: Engine
    settings: Settings
    env: dict[str, str]


def run(plan: Plan, server: str, *, profile: bool = False) -> dict[str, Any]:
    deadline = Deadline(RUN_LIMIT)
    results: dict[str, Any] = {"plan": asdict(plan), "machine": machine(), "phases": {}}
    started = time.perf_counter()
    with ExitStack() as stack:
        print(f"webhooks benchmark ({plan.name}): setting up on loopback ...", flush=True)
        redis = stack.enter_context(redis_server())
        fake = stack.enter_context(FakeTwilio())
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hotline-bench-")))
        sites, rosters = [], []
        results["seeding"] = []
        for index, (label, size) in enumerate(zip(("small", "large"), plan.history, strict=True)):
            url = stack.enter_context(fresh_database(server))
            env = web_env(url, f"{redis.url.rsplit('/', 1)[0]}/{index}", fake, workdir)
            settings = load_settings(env, instance_path=workdir)
            engine = make_engine(url)
            stack.callback(engine.dispose)
            site = Site(label, size, engine, settings, env)
            print(f"  seeding {size:,} past conversations ...", flush=True)
            t = time.perf_counter()
            vault = Vault(settings.data_keys)
            roster = history.seed_roster(
                engine, settings, vault, plan.supporters, plan.conversations_each
            )
            counts = history.add_history(engine, vault, roster, size, seed=1)
            history.analyze(engine)
            seconds = time.perf_counter() - t
            results["seeding"].append({"conversations": size, "seconds": seconds, **asdict(counts)})
            sites.append(site)
            rosters.append(roster)
        small, large = sites
        results["machine"]["postgres"] = _postgres_version(small.engine)
        roster = rosters[0]
        if (roster.clinicians, roster.supporter_lines) != (
            rosters[1].clinicians,
            rosters[1].supporter_lines,
        ):
            raise RuntimeError("the two databases were seeded with different rosters")
        world = {
            "public_url": PUBLIC_URL,
            "auth_token": AUTH_TOKEN,
            "account_sid": ACCOUNT_SID,
            "hotline": HOTLINE_NUMBER,
            "clinicians": roster.clinicians,
            "supporter_lines": roster.supporter_lines,
            "new_clinicians": [history.NEW_CLINICIAN_BASE, history.NEW_CLINICIAN_BASE],
        }
        bench = Bench(plan, deadline, workdir, world, redis.pid)
        phases = results["phases"]
        rounds = range(plan.rounds)  # of saturation, for the bare app, the floor and the relay

        print("  cost per request, in process ...", flush=True)
        results["cost"] = cost_probe(sites, world, bench.take_new(2_000), plan.probe)

        with bench.web(BARE_APP, small) as web:
            phases["bare"] = bench.best_of([bench.saturation(web, "bare", "relay") for _ in rounds])
            rate = phases["bare"]["peak"] / 2
            phases["bare"]["latency"] = bench.latency({"bare": web}, "relay", rate)["bare"]
            phases["bare"]["memory"] = web.memory()

        with bench.web(FLOOR_APP, small) as web:
            phases["floor"] = bench.best_of(
                [bench.saturation(web, "floor", "relay") for _ in rounds]
            )
            rate = phases["floor"]["peak"] / 2
            phases["floor"]["latency"] = bench.latency({"floor": web}, "relay", rate)["floor"]
            phases["floor"]["memory"] = web.memory()

        with bench.web(HOTLINE_APP, small) as web_small, bench.web(HOTLINE_APP, large) as web_large:
            webs = {"small": web_small, "large": web_large}
            # The relay's peak in rounds, the databases in turn and in the other order each
            # round (small, large, large, small): measured one after the other once, the first
            # was the lower in every run, whichever database it was. The mix once each (its
            # first texts use up fictional numbers).
            order = list(webs.items())
            relay_runs: dict[str, list[dict[str, Any]]] = {key: [] for key in webs}
            for turn in rounds:
                for key, web in order if turn % 2 == 0 else order[::-1]:
                    name = "relay" if key == "small" else "relay_large"
                    relay_runs[key].append(bench.saturation(web, name, "relay"))
            for mix in ("relay", "mix"):
                new_each = 20_000 if mix == "mix" else 0
                for key, web in webs.items():
                    name = mix if key == "small" else f"{mix}_large"
                    phases[name] = (
                        bench.best_of(relay_runs[key])
                        if mix == "relay"
                        else bench.saturation(web, name, mix, new_clinicians=new_each)
                    )
                rate = phases[mix]["peak"] / 2  # the small database's half peak, for both
                merged = bench.latency(webs, mix, rate, new_clinicians=new_each // 4)
                phases[mix]["latency"] = merged["small"]
                phases[f"{mix}_large"]["latency"] = merged["large"]
            for key, web in webs.items():
                phases["relay" if key == "small" else "relay_large"]["memory"] = web.memory()
            if profile:
                results["profile"] = bench.profile(web_small)
            results["web_restarts"] = web_small.restarts() + web_large.restarts()
    results["elapsed_s"] = time.perf_counter() - started
    results["summary"] = summarize(results)
    return results


def machine() -> dict[str, Any]:
    with open("/proc/loadavg", encoding="ascii") as f:
        load = float(f.read().split()[0])
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": load,
    }


def _postgres_version(engine: Engine) -> str:
    with engine.connect() as connection:
        return str(connection.execute(text("SHOW server_version")).scalar_one())


def web_env(database_url: str, redis_url: str, fake: FakeTwilio, workdir: Path) -> dict[str, str]:
    """Everything the web process reads, set explicitly (so no ``.env`` can point it elsewhere)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOTLINE_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOTLINE_NUMBER": HOTLINE_NUMBER,
        "HOTLINE_POOL_NUMBERS": ",".join(POOL),
        "HOTLINE_PUBLIC_URL": PUBLIC_URL,
        "HOTLINE_INSTANCE_PATH": str(workdir),
        "HOTLINE_SECRET_KEY": "bench",
        "HOTLINE_DATA_KEY": DATA_KEY,
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.base_url,
    }


# --- the web process, as the Procfile starts it -----------------------------------------------


def procfile_argv(app: str, port: int, env: dict[str, str]) -> list[str]:
    """The Procfile's ``web:`` command, expanded, bound to 127.0.0.1, serving ``app``."""
    line = next(
        row for row in (ROOT / "Procfile").read_text().splitlines() if row.startswith("web:")
    )
    values = {**env, "PORT": str(port)}

    def expand(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        return values.get(name) or (match[2] or "")

    argv = shlex.split(re.sub(r"\$\{(\w+):-([^}]*)\}|\$(\w+)", expand, line[4:].strip()))
    if argv[0] != "gunicorn" or "--bind" not in argv or argv[-1] != HOTLINE_APP:
        raise SystemExit("the Procfile's web: line is not the gunicorn command this bench knows")
    argv[0] = str(Path(sys.executable).with_name("gunicorn"))
    bind = argv.index("--bind") + 1
    argv[bind] = f"127.0.0.1:{port}"  # loopback only, whatever the Procfile binds in production
    argv[-1] = app
    return argv


@dataclass
class Web:
    process: subprocess.Popen[bytes]
    port: int
    workers: list[int]
    site: Site  # the database it serves (the bare app has one too, and never touches it)

    def memory(self) -> dict[str, Any]:
        """Peak and current RSS (VmHWM, VmRSS) of each web worker, in MiB."""
        rows = []
        for pid in children(self.process.pid):
            m = memory(pid)
            rows.append({"hwm_mib": m.hwm_kb / 1024, "rss_mib": m.rss_kb / 1024})
        master = memory(self.process.pid)
        return {
            "workers": rows,
            "peak_worker_hwm_mib": max((r["hwm_mib"] for r in rows), default=0.0),
            "master_hwm_mib": master.hwm_kb / 1024,
        }

    def restarts(self) -> int:
        """Workers that are not the ones started (killed by the timeout, or crashed)."""
        return len(set(self.workers) - set(children(self.process.pid)))


class Bench:
    def __init__(
        self, plan: Plan, deadline: Deadline, workdir: Path, world: dict[str, Any], redis_pid: int
    ) -> None:
        self.plan, self.deadline, self.workdir = plan, deadline, workdir
        self.world, self.redis_pid = world, redis_pid
        self.next_new = history.NEW_CLINICIAN_BASE
        self.seed = 0

    @contextmanager
    def web(self, app: str, site: Site) -> Iterator[Web]:
        """The Procfile's web process serving ``app`` on ``site``'s database, until exit."""
        port = free_port()
        argv = procfile_argv(app, port, site.env)
        workers = int(argv[argv.index("--workers") + 1])
        name = {BARE_APP: "bare", FLOOR_APP: "floor"}.get(app, site.label)
        log_path = self.workdir / f"{name}-gunicorn.log"  # the access log: paths, no SIDs
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                env={**site.env, "PORT": str(port)},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            pids = _wait_ready(process, port, workers, log_path)
            yield Web(process, port, pids, site)
        finally:
            stop(process, grace=25.0)

    def saturation(
        self, web: Web, label: str, mix: str, *, new_clinicians: int = 0
    ) -> dict[str, Any]:
        """Closed loop at each concurrency level; the best throughput is the peak."""
        plan = self.plan
        print(f"  {label}: saturation at concurrency {list(plan.levels)} ...", flush=True)
        closed = self._loadgen(
            web,
            {
                "mode": "closed",
                "mix": mix,
                "levels": list(plan.levels),
                "warmup": plan.warmup,
                "duration": plan.saturation,
                "max_requests": int(plan.max_rate * (plan.warmup + plan.saturation)),
            },
            new_clinicians,
        )
        best = max(closed["levels"], key=lambda level: level["throughput"])
        print(f"  {label}: peak {best['throughput']:.0f} req/s", flush=True)
        return {
            "mix": mix,
            "saturation": closed,
            "peak": best["throughput"],
            "peak_concurrency": best["concurrency"],
        }

    @staticmethod
    def best_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
        """The round of saturation with the highest peak, and every round's peak."""
        best = max(runs, key=lambda run: run["peak"])
        return {**best, "round_peaks": [run["peak"] for run in runs]}

    def latency(
        self, webs: dict[str, Web], mix: str, rate: float, *, new_clinicians: int = 0
    ) -> dict[str, dict[str, Any]]:
        """Open loop at ``rate``: ``rounds`` rounds, each web in turn; samples pooled per web."""
        plan = self.plan
        print(f"  {mix}: latency at {rate:.0f} req/s, {' / '.join(webs)} ...", flush=True)
        runs: dict[str, list[dict[str, Any]]] = {key: [] for key in webs}
        for _round in range(plan.rounds):
            for key, web in webs.items():
                spec = {
                    "mode": "open",
                    "mix": mix,
                    "rate": rate,
                    "warmup": plan.warmup,
                    "duration": plan.latency,
                    "max_requests": int(rate * (plan.warmup + plan.latency)) + 1,
                }
                runs[key].append(self._loadgen(web, spec, new_clinicians))
        out = {}
        for key, done in runs.items():
            merged = merge(done)
            merged["rate"] = rate
            merged["rounds"] = [
                {k: run[k] for k in ("p50_ms", "p99_ms", "dispatch_late_p99_ms", "cpu_s")}
                for run in done
            ]
            merged["cpu_s"] = {
                name: round(sum(run["cpu_s"][name] for run in done), 2) for name in done[0]["cpu_s"]
            }
            merged["wall_s"] = sum(run["wall_s"] for run in done)
            out[key] = merged
        return out

    def take_new(self, count: int) -> tuple[int, int]:
        """Indices of ``count`` fictional numbers no phase has used (new clinicians)."""
        start, self.next_new = self.next_new, self.next_new + count
        return start, self.next_new

    def _loadgen(self, web: Web, spec: dict[str, Any], new_clinicians: int) -> dict[str, Any]:
        self.seed += 1
        world = dict(self.world)
        world["new_clinicians"] = list(self.take_new(new_clinicians))
        spec = {**spec, "port": web.port, "seed": self.seed, "world": world}
        spec_path = self.workdir / f"loadgen-{self.seed}.json"
        result_path = self.workdir / f"loadgen-{self.seed}-result.json"
        fd = os.open(spec_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(spec, f)
        levels = len(spec.get("levels", [1]))
        limit = levels * (spec["warmup"] + spec["duration"] + 20) + 60
        self.deadline.check("a load phase", limit)
        before = self._cpu(web)
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", str(spec_path), str(result_path)], cwd=ROOT
        )
        status, usage = _wait(process, limit)
        after = self._cpu(web)
        if status != 0:
            raise RuntimeError(f"the load generator failed (exit {status})")
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
        cpu = {name: after[name] - before.get(name, 0.0) for name in after}
        cpu["loadgen"] = usage.ru_utime + usage.ru_stime
        ours = cpu["web"] + cpu["postgres"] + cpu["redis"] + cpu["loadgen"]
        cpu["others"] = max(0.0, cpu.pop("machine") - ours)
        result["cpu_s"] = {name: round(value, 2) for name, value in cpu.items()}
        return result

    def _cpu(self, web: Web) -> dict[str, float]:
        """CPU seconds so far: web workers (and each one), the PostgreSQL backends of the web's
        database, Redis, and the whole machine (``machine`` minus ours is everyone else's)."""
        out = {"web": 0.0, "postgres": 0.0, "redis": 0.0, "machine": machine_busy_seconds()}
        for i, pid in enumerate(children(web.process.pid)):
            out[f"web_{i}"] = _cpu_or_zero(pid)
            out["web"] += out[f"web_{i}"]
        with web.site.engine.connect() as connection:
            backends = connection.scalars(
                text("SELECT pid FROM pg_stat_activity WHERE datname = :db"),
                {"db": web.site.engine.url.database},
            ).all()
        out["postgres"] = sum(_cpu_or_zero(pid) for pid in backends)
        out["redis"] = _cpu_or_zero(self.redis_pid)
        return out

    def profile(self, web: Web) -> dict[str, Any]:
        """Sample both web workers with py-spy during a relay saturation run."""
        py_spy = Path(sys.executable).with_name("py-spy")
        if not py_spy.exists():
            return {"skipped": "py-spy is not installed (pip install py-spy)"}
        seconds = self.plan.saturation * 2
        raw = self.workdir / "relay-profile.raw"
        print("  profile: py-spy on the web workers during a relay run ...", flush=True)
        sampler = subprocess.Popen(
            [
                str(py_spy),
                *("record", "--format", "raw", "--output", str(raw), "--rate", "250"),
                *("--duration", str(int(seconds) + 2), "--subprocesses", "--nonblocking"),
                *("--pid", str(web.process.pid)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            self._loadgen(
                web,
                {
                    "mode": "closed",
                    "mix": "relay",
                    "levels": [max(self.plan.levels)],
                    "warmup": 1.0,
                    "duration": seconds,
                    "max_requests": int(self.plan.max_rate * (1 + seconds)),
                },
                0,
            )
        finally:
            _wait(sampler, seconds + 30)
        if not raw.exists():
            return {"skipped": "py-spy could not attach (ptrace not permitted?)"}
        summary = summarize_profile(raw.read_text(encoding="utf-8"))
        destination = OUT.with_name("relay-profile.txt")
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(format_profile(summary), encoding="utf-8")
        summary["file"] = _shown(destination)
        return summary


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent not idle (all CPUs, from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_or_zero(pid: int) -> float:
    try:
        return cpu_seconds(pid)
    except OSError:
        return 0.0


def _wait(process: subprocess.Popen[bytes], limit: float) -> tuple[int, Any]:
    """Wait for ``process`` at most ``limit`` seconds (then kill it); exit status and rusage."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return process.returncode, usage
        time.sleep(0.05)
    process.kill()
    _pid, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    raise TimeoutError(f"{process.args!r} did not finish within {limit:.0f} s")


def _wait_ready(
    process: subprocess.Popen[bytes], port: int, workers: int, log: Path, limit: float = 60.0
) -> list[int]:
    """Until every worker has booted and answers; the worker pids."""
    end = time.monotonic() + limit
    answered = 0
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited: {log.read_text(errors='replace')[-2000:]}")
        pids = children(process.pid)
        if len(pids) >= workers:
            try:
                # A new connection each time, so both workers load the app and warm up.
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                    pass
                answered += 1
            except urllib.error.HTTPError:
                answered += 1  # the bare app has no /healthz: a 404 still means it is up
            except OSError:
                time.sleep(0.1)
            if answered >= 20:
                time.sleep(0.5)
                return children(process.pid)
        else:
            time.sleep(0.1)
    raise TimeoutError("gunicorn did not become ready")


# --- cost per request, in process -------------------------------------------------------------


def cost_probe(
    sites: list[Site], world: dict[str, Any], new: tuple[int, int], count: int
) -> dict[str, dict[str, Any]]:
    """Per request, by kind, through Flask's test client in this process: SQL round trips, the
    app's CPU time, and the wall time (which includes PostgreSQL's and Redis's work).

    Each request goes to every site's app in turn, so a change in the machine's load falls on
    all of them alike. The round trips are exact and the CPU time is this process's own; both
    stay comparable on a busy machine where throughput and latency do not. Round trips are
    the statements, BEGINs and COMMITs each engine sends (its pool's pre-ping comes on top).
    """
    from flask import Flask
    from sqlalchemy import event

    from bench.loadgen import MIXES, RequestFactory, World, split_request
    from hotline.app import create_app

    apps: list[Flask] = []
    trips = [0]

    def count_trip(*_args: Any) -> None:
        trips[0] += 1

    spec = {**world, "new_clinicians": new}
    spec["supporter_lines"] = [tuple(line) for line in spec["supporter_lines"]]
    factory = RequestFactory(World(**spec), "127.0.0.1", seed=99)
    warmup = 50
    samples: dict[str, dict[str, list[tuple[int, float, float]]]] = {s.label: {} for s in sites}
    try:
        for site in sites:
            apps.append(create_app(site.settings))
            for name in ("before_cursor_execute", "begin", "commit"):
                event.listen(apps[-1].extensions["hotline"].sessions.kw["bind"], name, count_trip)
        clients = [app.test_client() for app in apps]
        for i, (kind, raw) in enumerate(factory.build(MIXES["mix"], count + warmup)):
            path, headers, body = split_request(raw)
            for site, client in zip(sites, clients, strict=True):
                trips[0], cpu, wall = 0, time.process_time(), time.perf_counter()
                response = client.post(path, data=body, headers=headers)
                spent, took = time.process_time() - cpu, time.perf_counter() - wall
                if response.status_code >= 300:
                    raise RuntimeError(f"the cost probe got HTTP {response.status_code}")
                if i >= warmup:
                    samples[site.label].setdefault(kind, []).append((trips[0], spent, took))
    finally:
        for app in apps:
            app.extensions["hotline"].sessions.kw["bind"].dispose()
            redis = app.extensions.get("hotline.redis")
            if redis is not None:
                redis.close()
    return {
        label: {
            kind: {
                "count": len(rows),
                "round_trips": statistics.mean(t for t, _, _ in rows),
                "cpu_ms": 1000 * statistics.median(c for _, c, _ in rows),
                "wall_ms": 1000 * statistics.median(w for _, _, w in rows),
            }
            for kind, rows in sorted(kinds.items())
        }
        for label, kinds in samples.items()
    }


# --- profile summary --------------------------------------------------------------------------

PROFILE_MARKERS = {
    "signature check": "require_signature",
    "relay in one statement (fastrelay.relay)": "relay (hotline/fastrelay.py",
    "database transaction (run_in_transaction)": "run_in_transaction",
    "  commit": "commit (sqlalchemy/orm/session.py",
    "  own_numbers (loop guard)": "own_numbers",
    "  find_by_number": "find_by_number",
    "  events.claim (savepoint)": "claim (hotline/events.py",
    "  queue_deletion": "queue_deletion",
    "  find_supporter / find_clinician": "find_",
    "  pool_pre_ping / checkout": "_checkout",
    "Redis wake-ups (effects.schedule)": "schedule (hotline/effects.py",
    "TwiML rendering": "messages (webhooks/twiml.py",
    "gunicorn access log": "glogging.py",
}


def summarize_profile(raw: str) -> dict[str, Any]:
    """Collapsed stacks -> share of busy samples per marker (inclusive) and per leaf function."""
    total = 0
    inclusive = dict.fromkeys(PROFILE_MARKERS, 0)
    leaves: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = stack.split(";")
        if not any("handle_request" in f or "wsgi_app" in f for f in frames):
            continue  # idle threads and the arbiter: only time spent serving requests
        count = int(count_text)
        total += count
        for label, marker in PROFILE_MARKERS.items():
            if any(marker in frame for frame in frames):
                inclusive[label] += count
        leaf = frames[-1]
        leaves[leaf] = leaves.get(leaf, 0) + count
    top = sorted(leaves.items(), key=lambda item: -item[1])[:15]
    return {
        "busy_samples": total,
        "inclusive_share": {k: v / total for k, v in inclusive.items()} if total else {},
        "top_leaves": [{"frame": f, "share": n / total} for f, n in top] if total else [],
    }


def format_profile(summary: dict[str, Any]) -> str:
    lines = [f"relay path, py-spy, {summary['busy_samples']} samples inside requests", ""]
    lines += [f"{share:6.1%}  {label}" for label, share in summary["inclusive_share"].items()]
    lines += ["", "top leaf frames (self time):"]
    lines += [f"{row['share']:6.1%}  {row['frame']}" for row in summary["top_leaves"]]
    return "\n".join(lines) + "\n"


# --- results ----------------------------------------------------------------------------------


def summarize(results: dict[str, Any]) -> dict[str, Any]:
    phases = results["phases"]
    bare, relay, mix = phases["bare"], phases["relay"], phases["mix"]
    large = phases["relay_large"]
    small_n, large_n = results["plan"]["history"]
    growth_p50 = large["latency"]["p50_ms"] / relay["latency"]["p50_ms"]
    growth_p99 = large["latency"]["p99_ms"] / relay["latency"]["p99_ms"]
    mix_large = phases["mix_large"]
    first = mix["latency"]["by_kind"].get("first", {})
    first_large = mix_large["latency"]["by_kind"].get("first", {})
    summary = {
        "first_text_growth_p50": (first_large.get("p50_ms", 0.0) / first["p50_ms"])
        if first.get("p50_ms")
        else None,
        "relay_vs_bare_throughput": relay["peak"] / bare["peak"],
        "floor_vs_bare_throughput": phases["floor"]["peak"] / bare["peak"],
        "relay_vs_floor_throughput": relay["peak"] / phases["floor"]["peak"],
        "mix_vs_bare_throughput": mix["peak"] / bare["peak"],
        "relay_p99_ms": relay["latency"]["p99_ms"],
        "growth_p50": growth_p50,
        "growth_p99": growth_p99,
        "growth_peak": relay["peak"] / large["peak"],
        "history": [small_n, large_n],
        "web_worker_peak_rss_mib": max(
            relay["memory"]["peak_worker_hwm_mib"], large["memory"]["peak_worker_hwm_mib"]
        ),
        "bare_worker_peak_rss_mib": bare["memory"]["peak_worker_hwm_mib"],
    }
    cost = results.get("cost", {})
    if "small" in cost and "large" in cost:
        summary["in_process_wall_growth"] = {
            kind: cost["large"][kind]["wall_ms"] / row["wall_ms"]
            for kind, row in cost["small"].items()
            if kind in cost["large"] and row["wall_ms"]
        }
    runs = [p[part] for p in phases.values() for part in ("saturation", "latency")]
    capacity = sum(r["wall_s"] for r in runs) * (results["machine"]["cpus"] or 1)
    summary["others_cpu_share"] = sum(r["cpu_s"]["others"] for r in runs) / capacity
    summary["targets"] = {
        "relay throughput >= 0.5x bare": summary["relay_vs_bare_throughput"]
        >= TARGET_THROUGHPUT_RATIO,
        "relay p99 <= 50 ms at half of peak": summary["relay_p99_ms"] <= TARGET_P99_MS,
        f"relay latency growth {small_n:,} -> {large_n:,} <= 1.2x (p50)": growth_p50
        <= TARGET_GROWTH,
    }
    return summary


ROWS = (
    ("bare", "bare Flask (fixed TwiML)"),
    ("floor", "bare Flask + one durable INSERT"),
    ("relay", "hotline relay, {small} past"),
    ("mix", "hotline mix, {small} past"),
    ("relay_large", "hotline relay, {large} past"),
    ("mix_large", "hotline mix, {large} past"),
)


def report(results: dict[str, Any]) -> str:
    plan, phases, summary = results["plan"], results["phases"], results["summary"]
    small, large = (f"{n:,}" for n in plan["history"])
    m = results["machine"]
    out = [
        "",
        f"webhooks benchmark ({plan['name']}): gunicorn as in the Procfile, PostgreSQL "
        f"{m.get('postgres', '?')}, {m['cpus']} CPUs, load average {m['loadavg_at_start']:.2f}"
        " at start",
        "",
        f"{'':34}{'peak req/s':>11}{'@conc':>7}{'rate':>8}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}",
    ]
    for key, title in ROWS:
        p = phases[key]
        lat = p["latency"]
        errors = lat["errors"] + sum(level["errors"] for level in p["saturation"]["levels"])
        out.append(
            f"{title.format(small=small, large=large):34}{p['peak']:11.0f}"
            f"{p['peak_concurrency']:7d}{lat['rate']:8.0f}{lat['p50_ms']:9.1f}{lat['p99_ms']:9.1f}"
            f"{errors:8d}"
        )
    out += [
        "",
        "in process, alternating, per request: SQL round trips / app CPU ms / wall ms (medians):",
    ]
    for label, kinds in results.get("cost", {}).items():
        size = small if label == "small" else large
        out.append(
            f"  {size:>9} past: "
            + ", ".join(
                f"{k} {v['round_trips']:.0f} / {v['cpu_ms']:.1f} / {v['wall_ms']:.1f}"
                for k, v in kinds.items()
            )
        )
    out.append("")
    for key, history_size in (("mix", small), ("mix_large", large)):
        kinds = phases[key]["latency"]["by_kind"]
        out.append(
            f"mix with {history_size} past, p50/p99 ms by kind: "
            + ", ".join(f"{k} {v['p50_ms']:.1f}/{v['p99_ms']:.1f}" for k, v in kinds.items())
        )
    out += [
        "",
        "CPU seconds in the half-rate runs (web/postgres/redis/loadgen/other processes): "
        + "; ".join(
            f"{key} "
            + "/".join(
                f"{phases[key]['latency']['cpu_s'][n]:.0f}"
                for n in ("web", "postgres", "redis", "loadgen", "others")
            )
            for key, _ in ROWS
        ),
        "peak req/s in each saturation round (the best counts): "
        + "; ".join(
            f"{key} " + "/".join(f"{peak:.0f}" for peak in phases[key]["round_peaks"])
            for key, _ in ROWS
            if "round_peaks" in phases[key]
        ),
        "",
        f"relay / bare throughput   {summary['relay_vs_bare_throughput']:.2f}x"
        f"   (mix / bare {summary['mix_vs_bare_throughput']:.2f}x)",
        f"one durable INSERT / bare throughput   {summary['floor_vs_bare_throughput']:.2f}x"
        f"   (relay / that {summary['relay_vs_floor_throughput']:.2f}x)",
        f"relay growth {small} -> {large} past conversations: p50 x{summary['growth_p50']:.2f},"
        f" p99 x{summary['growth_p99']:.2f}, peak throughput x{1 / summary['growth_peak']:.2f}"
        f" (first texts in the mix: p50 x{summary['first_text_growth_p50'] or 0:.2f})",
        "in-process wall time growth, same requests alternating: "
        + ", ".join(f"{k} x{v:.2f}" for k, v in summary.get("in_process_wall_growth", {}).items()),
        f"peak RSS of a web worker (VmHWM): hotline {summary['web_worker_peak_rss_mib']:.1f} MiB,"
        f" bare Flask {summary['bare_worker_peak_rss_mib']:.1f} MiB",
        "",
        "targets:",
    ]
    out += [f"  {'met   ' if ok else 'MISSED'}  {name}" for name, ok in summary["targets"].items()]
    seeding = ", ".join(
        f"{s['conversations']:,} in {s['seconds']:.0f} s" for s in results["seeding"]
    )
    out += ["", f"seeding: {seeding}; whole run {results['elapsed_s']:.0f} s"]
    if results.get("web_restarts"):
        out.append(f"WARNING: {results['web_restarts']} web worker(s) restarted during the run")
    share = summary["others_cpu_share"]
    out.append(f"other processes used {share:.0%} of the machine's CPU during the load phases")
    if share > 0.1 or m["loadavg_at_start"] > 0.5 * (m["cpus"] or 1):
        out.append("WARNING: the machine was busy; throughput and latency figures are pessimistic")
    if "profile" in results and "inclusive_share" in results["profile"]:
        out += ["", format_profile(results["profile"])]
    return "\n".join(out)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    phases, plan = results["phases"], results["plan"]
    small, large = (f"{n:,}" for n in plan["history"])
    labels = {
        "bare": "bare Flask",
        "floor": "bare Flask + 1 INSERT",
        "relay": f"relay, {small} past",
        "mix": f"mix, {small} past",
        "relay_large": f"relay, {large} past",
        "mix_large": f"mix, {large} past",
    }
    colours = {
        "bare": "#888888",
        "floor": "#9467bd",
        "relay": "#1f77b4",
        "mix": "#2ca02c",
        "relay_large": "#d62728",
        "mix_large": "#ff7f0e",
    }
    fig, ((sat, bars), (cdf, mem)) = plt.subplots(2, 2, figsize=(12, 8.5))
    fig.suptitle(
        f"Webhooks under gunicorn (Procfile settings), {results['machine']['cpus']} CPUs "
        f"shared with PostgreSQL, Redis and the load generator ({plan['name']} run)"
    )
    for key, label in labels.items():
        levels = phases[key]["saturation"]["levels"]
        sat.plot(
            [lv["concurrency"] for lv in levels],
            [lv["throughput"] for lv in levels],
            marker="o",
            label=label,
            color=colours[key],
        )
    sat.set(title="Throughput, closed loop", xlabel="concurrent connections", ylabel="req/s")
    sat.set_xscale("log", base=2)
    sat.legend()
    keys = list(labels)
    x = range(len(keys))
    p50 = [phases[k]["latency"]["p50_ms"] for k in keys]
    p99 = [phases[k]["latency"]["p99_ms"] for k in keys]
    bars.bar([i - 0.2 for i in x], p50, width=0.4, label="p50", color="#9ecae1")
    bars.bar([i + 0.2 for i in x], p99, width=0.4, label="p99", color="#3182bd")
    bars.axhline(TARGET_P99_MS, color="#d62728", linestyle="--", label="p99 target (50 ms)")
    bars.set_xticks(list(x), [labels[k].replace(", ", "\n").replace(" + ", "\n+ ") for k in keys])
    bars.tick_params(axis="x", labelsize=8)  # "1,000,000 past" under six bars
    bars.set(title="Latency at half of peak (open loop)", ylabel="ms")
    bars.legend()
    for key, label in labels.items():
        points = phases[key]["latency"]["cdf_ms"]
        if points:
            ys = [(i + 1) / len(points) for i in range(len(points))]
            cdf.plot(
                points,
                ys,
                label=f"{label} @ {phases[key]['latency']['rate']:.0f}/s",
                color=colours[key],
            )
    cdf.set_xscale("log")
    cdf.set(title="Latency distribution at half of peak", xlabel="ms", ylabel="fraction")
    cdf.legend()
    names = ["bare Flask", f"hotline ({large} past)"]
    hwm = [
        phases["bare"]["memory"]["peak_worker_hwm_mib"],
        phases["relay_large"]["memory"]["peak_worker_hwm_mib"],
    ]
    mem.bar(names, hwm, color=["#888888", "#1f77b4"])
    mem.set(title="Peak RSS of a web worker (VmHWM)", ylabel="MiB")
    for i, v in enumerate(hwm):
        mem.text(i, v, f"{v:.0f}", ha="center", va="bottom")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
