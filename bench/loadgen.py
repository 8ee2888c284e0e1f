"""The load generator: signed Twilio webhooks over loopback HTTP/1.1, from its own process.

    python -m bench.loadgen SPEC.json RESULT.json

``bench/webhooks.py`` writes the spec (the target port, the traffic mix, the fictional numbers
of the seeded world, the phases) and reads the result. Every request is built and signed before
the clock starts, each with a unique MessageSid, so signing costs nothing during a measurement.

Two schedules:

* ``closed``: N connections each send back-to-back for a fixed time; completions per second
  over the measured window is the throughput. Run at several N to find the saturation plateau.
* ``open``: requests are released at a fixed rate whatever the answers do (an open loop, as
  Twilio behaves); latency is measured from each request's *intended* send time, so queueing
  behind a slow server is counted (no coordinated omission).

Only ``127.0.0.1`` is ever contacted; every phase has a time and a request-count limit. Nothing
here prints a number or a message body: results hold only counts and timings.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from tests.kit.signing import sign

LOOPBACK = "127.0.0.1"
REQUEST_TIMEOUT = 15.0  # seconds: Twilio gives a webhook no longer than this
MAX_OPEN_CONNECTIONS = 256
PREBUILT = 3_000  # requests signed before a closed-loop level starts
CDF_POINTS = 400

SMS_PATH = "/twilio/sms"
STATUS_PATH = "/twilio/status"
KINDS = ("first", "relay_clinician", "relay_supporter", "status")
MIXES: dict[str, dict[str, float]] = {
    # In-conversation relays both ways on accepted conversations (the targets' "relay").
    "relay": {"relay_clinician": 0.5, "relay_supporter": 0.5},
    # A burst as a unit-wide event brings it: new clinicians, relays, and Twilio's status
    # callbacks for the messages the hotline's TwiML sent.
    "mix": {"first": 0.1, "relay_clinician": 0.2, "relay_supporter": 0.2, "status": 0.5},
}
BODIES = (
    "bench text: it has been a long shift and I keep going over it",
    "bench text: thanks, that helps, can we keep talking for a bit",
    "bench text: I am here, take your time",
    "bench text: what happened tonight was not only on you",
)


# --- the world and the requests ---------------------------------------------------------------


def fictional_number(i: int) -> str:
    """+1 NPA 555-01XX: the 555-0100..0199 block is reserved for fiction (80,000 of them)."""
    if not 0 <= i < 80_000:
        raise ValueError("fictional numbers run out at 80,000")
    return f"+1{200 + i // 100}55501{i % 100:02d}"


@dataclass(frozen=True)
class World:
    """What the seeded database holds, as the load generator needs it (fictional numbers)."""

    public_url: str
    auth_token: str
    account_sid: str
    hotline: str
    clinicians: list[str]  # each has one active conversation
    supporter_lines: list[tuple[str, str]]  # (supporter, pool number) of an active conversation
    new_clinicians: tuple[int, int]  # fictional_number indices for first texts: [start, stop)


@dataclass
class RequestFactory:
    world: World
    host: str
    seed: int
    keepalive: bool = False
    _sids: Iterator[int] = field(init=False)
    _new: Iterator[int] = field(init=False)

    def __post_init__(self) -> None:
        self._sids = iter(range(1, 1 << 60))
        self._new = iter(range(*self.world.new_clinicians))
        self._random = random.Random(self.seed)

    def sid(self) -> str:
        return f"SM{self.seed:08x}{next(self._sids):024x}"

    def build(self, mix: dict[str, float], count: int) -> list[tuple[str, bytes]]:
        """``count`` signed requests, kinds drawn from ``mix`` (fewer if new numbers run out)."""
        return list(itertools.islice(self.stream(mix), count))

    def stream(self, mix: dict[str, float]) -> Iterator[tuple[str, bytes]]:
        """Signed requests, kinds drawn from ``mix``, until the new numbers run out."""
        kinds, weights = zip(*mix.items(), strict=True)
        while True:
            kind = self._random.choices(kinds, weights)[0]
            try:
                request = self.request(kind)
            except StopIteration:
                return
            yield kind, request

    def request(self, kind: str) -> bytes:
        w, r = self.world, self._random
        if kind == "first":
            return self._sms(fictional_number(next(self._new)), w.hotline)
        if kind == "relay_clinician":
            return self._sms(r.choice(w.clinicians), w.hotline)
        if kind == "relay_supporter":
            supporter, pool = r.choice(w.supporter_lines)
            return self._sms(supporter, pool)
        if kind == "status":
            supporter, pool = r.choice(w.supporter_lines)
            state = "delivered" if r.random() < 0.7 else "sent"
            sid = self.sid()
            params = {
                "AccountSid": w.account_sid,
                "ApiVersion": "2010-04-01",
                "From": pool,
                "MessageSid": sid,
                "MessageStatus": state,
                "SmsSid": sid,
                "SmsStatus": state,
                "To": supporter,
            }
            return self._post(STATUS_PATH, params)
        raise ValueError(f"unknown request kind {kind}")

    def _sms(self, from_: str, to: str) -> bytes:
        sid = self.sid()
        params = {
            "AccountSid": self.world.account_sid,
            "ApiVersion": "2010-04-01",
            "Body": self._random.choice(BODIES),
            "From": from_,
            "FromCountry": "US",
            "MessageSid": sid,
            "NumMedia": "0",
            "NumSegments": "1",
            "SmsMessageSid": sid,
            "SmsSid": sid,
            "SmsStatus": "received",
            "To": to,
            "ToCountry": "US",
        }
        return self._post(SMS_PATH, params)

    def _post(self, path: str, params: dict[str, str]) -> bytes:
        body = urlencode(params).encode()
        signature = sign(self.world.public_url + path, params, self.world.auth_token)
        connection = "" if self.keepalive else "Connection: close\r\n"
        head = (
            f"POST {path} HTTP/1.1\r\n"
            f"Host: {self.host}\r\n"
            "User-Agent: TwilioProxy/1.1\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"X-Twilio-Signature: {signature}\r\n"
            f"{connection}"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body


def split_request(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    """A request built above as (path, headers, body), for Flask's test client."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return lines[0].split(" ")[1], headers, body


# --- HTTP/1.1 on asyncio streams --------------------------------------------------------------


class Closed(Exception):
    """The server closed a kept-alive connection before answering (retry on a new one)."""


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(LOOPBACK, port)
        return cls(reader, writer)

    @property
    def stale(self) -> bool:
        return self.reader.at_eof() or self.writer.is_closing()

    async def exchange(self, request: bytes) -> tuple[int, bool]:
        """Send ``request``; (status code, whether the connection can be reused)."""
        self.writer.write(request)
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                raise Closed from None
            raise
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, keep = 0, True
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "connection" and value.strip().lower() == "close":
                keep = False
        if length:
            await self.reader.readexactly(length)
        return status, keep

    def close(self) -> None:
        self.writer.close()


@dataclass
class Sample:
    kind: str
    start: float  # intended (open loop) or actual (closed loop) send time, loop clock
    end: float
    status: int  # 0: timeout or connection error

    @property
    def latency(self) -> float:
        return self.end - self.start


class Pool:
    """At most ``limit`` requests in flight. With ``keepalive``, connections are reused (most
    recently used first); without, each request has its own connection, as a router in front
    of gunicorn would spread them (kept-alive connections stay with the worker that accepted
    them, and a few hot ones can leave the other worker idle)."""

    def __init__(self, port: int, limit: int, keepalive: bool = False) -> None:
        self.port = port
        self.keepalive = keepalive
        self.idle: list[Connection] = []
        self.slots = asyncio.Semaphore(limit)
        self.opened = 0

    async def send(self, request: bytes) -> int:
        async with self.slots:
            for _attempt in range(3):
                conn = self._take()
                fresh = conn is None
                if conn is None:
                    conn = await Connection.open(self.port)
                    self.opened += 1
                try:
                    status, keep = await conn.exchange(request)
                except Closed:
                    conn.close()
                    if fresh:
                        raise
                    continue
                except BaseException:
                    conn.close()
                    raise
                if keep and self.keepalive:
                    self.idle.append(conn)
                else:
                    conn.close()
                return status
            raise Closed

    def _take(self) -> Connection | None:
        while self.idle:
            conn = self.idle.pop()
            if not conn.stale:
                return conn
            conn.close()
        return None

    def close(self) -> None:
        for conn in self.idle:
            conn.close()
        self.idle.clear()


async def _timed(pool: Pool, kind: str, request: bytes, start: float) -> Sample:
    loop = asyncio.get_running_loop()
    try:
        status = await asyncio.wait_for(pool.send(request), REQUEST_TIMEOUT)
    except (TimeoutError, OSError, Closed, asyncio.IncompleteReadError, ValueError):
        status = 0
    return Sample(kind, start, loop.time(), status)


# --- the two schedules ------------------------------------------------------------------------


async def closed_loop(
    port: int,
    requests: Iterator[tuple[str, bytes]],
    concurrency: int,
    warmup: float,
    duration: float,
    keepalive: bool = False,
) -> dict[str, Any]:
    """``concurrency`` clients, back-to-back, for ``warmup + duration`` seconds at most."""
    loop = asyncio.get_running_loop()
    pool = Pool(port, concurrency, keepalive)
    feed = requests
    samples: list[Sample] = []
    t0 = loop.time()
    measure_from, deadline = t0 + warmup, t0 + warmup + duration

    async def client() -> None:
        while loop.time() < deadline:
            item = next(feed, None)
            if item is None:
                return
            samples.append(await _timed(pool, item[0], item[1], loop.time()))

    await asyncio.gather(*(client() for _ in range(concurrency)))
    pool.close()
    measured = [s for s in samples if measure_from <= s.end <= deadline]
    window = min(deadline, max((s.end for s in samples), default=deadline)) - measure_from
    summary = summarize(measured)
    ok = sum(1 for s in measured if 200 <= s.status < 300)
    summary.update(
        concurrency=concurrency,
        window=round(window, 3),
        throughput=ok / window if window > 0 else 0.0,
        exhausted=next(feed, None) is None,
        connections=pool.opened,
    )
    return summary


async def open_loop(
    port: int,
    requests: list[tuple[str, bytes]],
    rate: float,
    warmup: float,
    duration: float,
    keepalive: bool = False,
) -> dict[str, Any]:
    """Release requests at ``rate`` per second for ``warmup + duration`` seconds."""
    loop = asyncio.get_running_loop()
    pool = Pool(port, MAX_OPEN_CONNECTIONS, keepalive)
    count = min(len(requests), int(rate * (warmup + duration)))
    tasks: list[asyncio.Task[Sample]] = []
    lateness: list[float] = []
    t0 = loop.time() + 0.05
    for i in range(count):
        intended = t0 + i / rate
        delay = intended - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        lateness.append(loop.time() - intended)
        kind, request = requests[i]
        tasks.append(asyncio.create_task(_timed(pool, kind, request, intended)))
    done = await asyncio.gather(*tasks)
    pool.close()
    measure_from = t0 + warmup
    measured = [s for s in done if s.start >= measure_from]
    summary = summarize(measured)
    lateness.sort()
    summary.update(
        rate=rate,
        offered=len(measured),
        dispatch_late_p99_ms=1000 * _quantile(lateness, 0.99),
        connections=pool.opened,
        samples=[[s.kind, round(s.latency, 6), s.status] for s in measured],
    )
    return summary


def _quantile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One summary over the raw samples of several open-loop runs (which are dropped)."""
    samples = [
        Sample(kind, 0.0, latency, status)
        for run in runs
        for kind, latency, status in run.pop("samples", [])
    ]
    return summarize(samples)


def summarize(samples: list[Sample]) -> dict[str, Any]:
    latencies = sorted(s.latency for s in samples)
    step = max(1, len(latencies) // CDF_POINTS)
    by_kind = {}
    for kind in KINDS:
        mine = sorted(s.latency for s in samples if s.kind == kind)
        if mine:
            by_kind[kind] = {
                "count": len(mine),
                "p50_ms": 1000 * _quantile(mine, 0.5),
                "p99_ms": 1000 * _quantile(mine, 0.99),
            }
    return {
        "count": len(samples),
        "statuses": dict(Counter(str(s.status) for s in samples)),
        "errors": sum(1 for s in samples if not 200 <= s.status < 300),
        "p50_ms": 1000 * _quantile(latencies, 0.5),
        "p90_ms": 1000 * _quantile(latencies, 0.9),
        "p99_ms": 1000 * _quantile(latencies, 0.99),
        "max_ms": 1000 * (latencies[-1] if latencies else 0.0),
        "mean_ms": 1000 * (sum(latencies) / len(latencies) if latencies else 0.0),
        "by_kind": by_kind,
        "cdf_ms": [round(1000 * x, 3) for x in latencies[::step]],
    }


# --- the process ------------------------------------------------------------------------------


def run(spec: dict[str, Any]) -> dict[str, Any]:
    """Run the phases of ``spec``; the result mirrors them (one dict per closed level)."""
    world = World(
        **{**spec["world"], "supporter_lines": [tuple(x) for x in spec["world"]["supporter_lines"]]}
    )
    port = int(spec["port"])
    keepalive = bool(spec.get("keepalive", False))
    factory = RequestFactory(world, f"{LOOPBACK}:{port}", int(spec.get("seed", 1)), keepalive)
    mix = MIXES[spec["mix"]]
    started = time.perf_counter()
    if spec["mode"] == "closed":
        levels = []
        for level in spec["levels"]:
            # Built and signed ahead of the clock, then (for fast servers) as they are sent.
            limit = int(spec["max_requests"])
            ready = factory.build(mix, min(PREBUILT, limit))
            feed = itertools.islice(itertools.chain(ready, factory.stream(mix)), limit)
            levels.append(
                asyncio.run(
                    closed_loop(port, feed, int(level), spec["warmup"], spec["duration"], keepalive)
                )
            )
        result: dict[str, Any] = {"levels": levels}
    elif spec["mode"] == "open":
        rate = float(spec["rate"])
        count = min(int(spec["max_requests"]), int(rate * (spec["warmup"] + spec["duration"])))
        requests = factory.build(mix, count)
        result = asyncio.run(
            open_loop(port, requests, rate, spec["warmup"], spec["duration"], keepalive)
        )
    else:
        raise ValueError(f"unknown mode {spec['mode']}")
    result["wall_s"] = round(time.perf_counter() - started, 3)
    return result


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m bench.loadgen SPEC.json RESULT.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        spec = json.load(f)
    result = run(spec)
    with open(argv[1], "w", encoding="utf-8") as f:
        json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
