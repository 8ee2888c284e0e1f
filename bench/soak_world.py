"""The soak's world, all on loopback and thrown away afterwards: a fresh PostgreSQL database,
a ``redis-server`` that can be stopped and started, and the Procfile's processes run as the
Procfile says (loopback instead of 0.0.0.0), with the roster seeded as the console would."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.loopback import free_port, wait_for_redis
from bench.soak_traffic import supporter_number
from hotline.db import make_engine, make_sessionmaker, transaction
from hotline.models import Shift
from hotline.people import new_supporter
from hotline.privacy import Vault
from hotline.programmes import ensure_default_programme
from hotline.settings import load_settings
from tests.kit.fake_twilio import ACCOUNT_SID, AUTH_TOKEN, FakeTwilio

HOTLINE = "+15550100000"
POOL = ("+15550100001", "+15550100002", "+15550100003")
DATA_KEY = "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY="  # throwaway key for fake numbers
SUPPORTERS = 20
ROOT = Path(__file__).resolve().parent.parent


class RedisProcess:
    """Our own ``redis-server`` on a fixed loopback port, without persistence: a restart
    comes back empty, as a Redis without persistence does."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        self._argv += ["--save", "", "--appendonly", "no"]
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._process = subprocess.Popen(
            self._argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_redis(self.port)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None


def environment(
    database_url: str, redis_url: str, fake: FakeTwilio, workdir: Path, port: int, timeout: int
) -> dict[str, str]:
    """Everything the processes read, set explicitly (no ``.env`` can point them elsewhere)."""
    return {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(ROOT),
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
        "HOTLINE_ENV": "production",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "HOTLINE_NUMBER": HOTLINE,
        "HOTLINE_POOL_NUMBERS": ",".join(POOL),
        "HOTLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "HOTLINE_INSTANCE_PATH": str(workdir),
        "HOTLINE_SECRET_KEY": "soak-secret",
        "HOTLINE_DATA_KEY": DATA_KEY,
        "HOTLINE_OFFER_TIMEOUT": str(timeout),
        "HOTLINE_CHECKIN_OFFSETS": "20s",
        "HOTLINE_CHECKIN_HOURS": "",
        "TWILIO_ACCOUNT_SID": ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": AUTH_TOKEN,
        "TWILIO_API_BASE_URL": fake.base_url,
    }


class Procfile:
    """The Procfile's processes, each run as its line says (loopback instead of 0.0.0.0).

    A process is named by its type, with an instance number when several run (``worker.2``);
    every instance of a type appends to the type's log (``worker.log``).
    """

    def __init__(self, env: dict[str, str], workdir: Path) -> None:
        lines = (ROOT / "Procfile").read_text().splitlines()
        self.commands = dict(line.split(": ", 1) for line in lines if ": " in line)
        self.env, self.workdir = env, workdir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.exits: Counter[str] = Counter()

    def _spawn(self, name: str) -> subprocess.Popen[bytes]:
        kind = name.split(".")[0]
        command = self.commands[kind].replace("0.0.0.0", "127.0.0.1")  # noqa: S104
        log = open(self.workdir / f"{kind}.log", "ab")  # noqa: SIM115 - the child keeps it
        return subprocess.Popen(
            ["/bin/sh", "-c", f"exec {command}"],
            env=self.env,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def run_once(self, name: str) -> None:
        if self._spawn(name).wait(120) != 0:
            raise RuntimeError(f"{name} failed: {(self.workdir / f'{name}.log').read_text()}")

    def start(self, name: str) -> None:
        self.running[name] = self._spawn(name)

    def kill(self, name: str) -> None:
        """SIGKILL, no warning (the whole process group: gunicorn's workers, RQ's scheduler)."""
        process = self.running.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def supervise(self) -> None:
        """Restart whatever exited on its own, as a process manager would, and count it."""
        for name, process in list(self.running.items()):
            if process.poll() is not None:
                self.exits[name] += 1
                self.start(name)

    def stop_all(self) -> None:
        for name in list(self.running):
            process = self.running.pop(name)
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)


def seed_roster(env: dict[str, str], workdir: Path) -> None:
    """The supporters, on call for the whole soak (as the console would add them)."""
    settings = load_settings(env, instance_path=workdir)
    vault = Vault(settings.data_keys)
    engine = make_engine(settings.database_url)
    now = datetime.now(UTC)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            pid = ensure_default_programme(session, settings).id
            for j in range(SUPPORTERS):
                person = new_supporter(vault, pid, f"Peer {j}", supporter_number(j))
                person.max_conversations = 3
                session.add(person)
                session.flush()
                start, end = now - timedelta(hours=1), now + timedelta(days=1)
                session.add(
                    Shift(programme_id=pid, supporter_id=person.id, starts_at=start, ends_at=end)
                )
    finally:
        engine.dispose()


def wait_for_http(port: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("the web process did not start")
