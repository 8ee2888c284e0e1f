"""The throwaway loopback world a benchmark runs in: a fresh database, its own Redis, processes.

Everything binds to ``127.0.0.1`` and is torn down on the way out (the database is dropped
``WITH (FORCE)``, the processes are stopped by their own pid).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import create_engine, make_url
from sqlalchemy.pool import NullPool

from hotline.migrate import upgrade

POSTGRES_ENV = "HOTLINE_BENCH_POSTGRES_URL"
DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_server() -> str:
    return os.environ.get(POSTGRES_ENV) or DEFAULT_POSTGRES


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def fresh_database(
    server: str, prefix: str = "hotline_bench", *, migrated: bool = True
) -> Iterator[str]:
    """A new database on ``server``, migrated unless told otherwise (the soak leaves that to the
    Procfile's release step); dropped (WITH FORCE) on the way out."""
    url = make_url(server)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.host not in (None, "127.0.0.1", "localhost", "::1"):
        raise SystemExit(f"{POSTGRES_ENV} must point at a loopback server")
    name = f"{prefix}_{os.getpid()}_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        database_url = url.set(database=name).render_as_string(hide_password=False)
        try:
            if migrated:
                upgrade(database_url)
            yield database_url
        finally:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@dataclass(frozen=True)
class RedisServer:
    url: str
    pid: int


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    """Our own ``redis-server`` on a free loopback port, without persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not installed")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_redis(port)
        yield RedisServer(f"redis://127.0.0.1:{port}/0", process.pid)
    finally:
        stop(process)


def wait_for_redis(port: int) -> None:
    """Return once the ``redis-server`` on ``port`` answers PING (about 5 s at most)."""
    with Redis(port=port, socket_connect_timeout=0.2) as client:
        for _ in range(100):
            try:
                client.ping()
                return
            except RedisError:
                time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


def stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM ``process`` (only it), then SIGKILL after ``grace`` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(grace)


# --- /proc ------------------------------------------------------------------------------------


def children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (Linux)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(entry))
    return sorted(found)


@dataclass(frozen=True)
class Memory:
    hwm_kb: int  # VmHWM: the peak resident set size
    rss_kb: int  # VmRSS: the resident set size now


def memory(pid: int) -> Memory:
    values = {"VmHWM": 0, "VmRSS": 0}
    with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0])
    return Memory(values["VmHWM"], values["VmRSS"])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks
