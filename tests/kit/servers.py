"""A real Redis for the integration tier: our own ``redis-server`` on a free port, or a given one.

Order: ``HOTLINE_TEST_REDIS_URL`` if set; else start ``redis-server`` (installed here) with no
persistence; else 127.0.0.1:6379 if it answers. With none of those, tests that need a real Redis
are skipped with a loud message and the rest run on the embedded stand-in (fakeredis).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from redis import Redis
from redis.exceptions import RedisError

NOTICES: list[str] = []


@dataclass
class RedisServer:
    url: str
    process: subprocess.Popen[bytes] | None = None
    port: int | None = None

    def stop(self) -> None:
        """Stop our own server (fault tests); ``start`` brings it back on the same port."""
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None

    def start(self) -> None:
        if self.process is None and self.port is not None:
            self.process = _spawn(self.port)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _spawn(port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("redis-server")
    assert binary is not None
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = Redis(port=port, socket_connect_timeout=0.2)
    for _ in range(100):
        try:
            client.ping()
            client.close()
            return process
        except RedisError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("redis-server did not start")


def _answers(url: str) -> bool:
    try:
        with Redis.from_url(url, socket_connect_timeout=0.5) as client:
            return bool(client.ping())
    except RedisError:
        return False


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | None]:
    given = os.environ.get("HOTLINE_TEST_REDIS_URL")
    if given:
        yield RedisServer(given) if _answers(given) else None
        return
    if shutil.which("redis-server"):
        port = _free_port()
        server = RedisServer(f"redis://127.0.0.1:{port}/0", _spawn(port), port)
        yield server
        server.stop()
        return
    if _answers("redis://127.0.0.1:6379/0"):
        yield RedisServer("redis://127.0.0.1:6379/15")
        return
    NOTICES.append(
        "NO REDIS SERVER: redis-server is not installed and none answers on 127.0.0.1:6379. "
        "Tests marked 'redis' were SKIPPED; the rest ran on the embedded stand-in."
    )
    yield None


@pytest.fixture
def real_redis(redis_server: RedisServer | None) -> Iterator[Redis]:
    """A flushed real Redis; skips (loudly, see the summary) when none can be had."""
    if redis_server is None:
        pytest.skip("no real Redis server (integration tier skipped)")
    redis_server.start()
    client = Redis.from_url(redis_server.url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for notice in NOTICES:
        terminalreporter.write_line(f"!!! {notice}", red=True, bold=True)
