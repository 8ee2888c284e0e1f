"""Canary scanning: look for known phone numbers and message bodies wherever the hotline keeps
anything, byte for byte.

    canaries = Canaries(numbers=[CLINICIAN], bodies=["wrong-dose-7Q2"])
    findings = canaries.scan(sqlite_blobs(path), redis_blobs(redis), trap.blobs())
    assert not findings, findings

A number is looked for in every common spelling (E.164, bare digits, national with dashes,
dots, spaces or brackets, percent-encoded); a body case-insensitively. Every blob is also
searched after zlib decompression, the form RQ stores job data and tracebacks in. Findings name
the place and the canary's label, never the canary itself, so a failure message leaks nothing.
"""

from __future__ import annotations

import logging
import subprocess
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import phonenumbers
from redis import Redis
from sqlalchemy import create_engine, inspect, make_url
from sqlalchemy.pool import NullPool

Blob = tuple[str, bytes]  # (where, what)


@dataclass(frozen=True)
class Finding:
    where: str
    canary: str  # a label such as "number 2" or "body 3", not the value


@dataclass
class Canaries:
    numbers: list[str] = field(default_factory=list)  # E.164
    bodies: list[str] = field(default_factory=list)

    def needles(self) -> list[tuple[str, bytes]]:
        """(label, lower-case bytes) for every spelling of every canary."""
        found: list[tuple[str, bytes]] = []
        for i, number in enumerate(self.numbers, 1):
            found += [(f"number {i}", s.lower().encode()) for s in spellings(number)]
        for i, body in enumerate(self.bodies, 1):
            found += [(f"body {i}", body.lower().encode())]
        return found

    def scan(self, *sources: Iterable[Blob]) -> list[Finding]:
        needles = self.needles()
        findings = []
        for where, blob in (b for source in sources for b in source):
            for variant in _variants(blob):
                haystack = variant.lower()
                findings += [Finding(where, label) for label, n in needles if n in haystack]
        return list(dict.fromkeys(findings))


def spellings(e164: str) -> set[str]:
    """Every way a log line, a URL or a column might spell the number."""
    parsed = phonenumbers.parse(e164, None)
    national = str(parsed.national_number)
    formats = [
        phonenumbers.PhoneNumberFormat.E164,
        phonenumbers.PhoneNumberFormat.INTERNATIONAL,
        phonenumbers.PhoneNumberFormat.NATIONAL,
        phonenumbers.PhoneNumberFormat.RFC3966,
    ]
    found = {phonenumbers.format_number(parsed, f) for f in formats}
    found |= {national, e164.lstrip("+"), "%2B" + e164[1:]}
    if len(national) == 10:  # NANP: 312-555-0142, 312.555.0142, 312 555 0142
        a, b, c = national[:3], national[3:6], national[6:]
        found |= {f"{a}{sep}{b}{sep}{c}" for sep in "-. "}
    return found


def _variants(blob: bytes) -> Iterator[bytes]:
    yield blob
    for wbits in (zlib.MAX_WBITS, -zlib.MAX_WBITS, zlib.MAX_WBITS | 16):
        try:
            yield zlib.decompress(blob, wbits)
            return
        except zlib.error:
            continue


# --- where to look -------------------------------------------------------------------------


def sqlite_blobs(database: Path) -> Iterator[Blob]:
    """The database file and its WAL, shared memory and journal, as raw bytes (freed pages too)."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        path = Path(f"{database}{suffix}")
        if path.exists():
            yield f"sqlite file {path.name}", path.read_bytes()


def postgres_blobs(sqlalchemy_url: str) -> Iterator[Blob]:
    """``pg_dump`` of the database (schema and data), plus a binary COPY of every table (bytea
    raw, not hex, so an unsealed value in a binary column would show)."""
    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    dump = subprocess.run(
        ["pg_dump", "--no-owner", url.render_as_string(hide_password=False)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    yield "pg_dump", dump.stdout
    engine = create_engine(sqlalchemy_url, poolclass=NullPool)
    try:
        tables = inspect(engine).get_table_names()
        connection = engine.raw_connection()
        try:
            cursor = connection.cursor()
            for table in tables:
                with cursor.copy(f'COPY "{table}" TO STDOUT (FORMAT binary)') as copy:
                    yield f"postgres table {table}", b"".join(bytes(chunk) for chunk in copy)
        finally:
            connection.close()
    finally:
        engine.dispose()


def redis_blobs(client: Redis) -> Iterator[Blob]:
    """Every key (its name, DUMP and its typed contents) in every database of ``client``'s
    server, RQ's queues, registries, job hashes and worker records included."""
    for db in _databases(client):
        kwargs = client.connection_pool.connection_kwargs
        other = client if db == kwargs.get("db", 0) else Redis(**{**kwargs, "db": db})
        for key in map(_raw, other.scan_iter(count=1000)):
            where = f"redis db{db} {_shape(key)}"
            yield where + " (name)", key
            dumped = other.dump(key)
            if isinstance(dumped, bytes):
                yield where + " (dump)", dumped
            for value in _contents(other, key):
                yield where, value


def _databases(client: Redis) -> list[int]:
    try:
        keyspace = client.info("keyspace")
    except Exception:  # fakeredis answers only part of INFO
        return [0]
    return sorted({0, *(int(name[2:]) for name in keyspace if str(name).startswith("db"))})


def _shape(key: bytes) -> str:
    """A key's name with ids blurred, so findings group by kind (``rq:job:*``)."""
    parts = key.decode(errors="replace").split(":")
    return ":".join(parts[:2] + (["*"] if len(parts) > 2 else []))


def _contents(client: Redis, key: bytes) -> list[bytes]:
    kind = _raw(client.type(key)).decode()
    values: list[Any]
    if kind == "string":
        values = [client.get(key) or b""]
    elif kind == "hash":
        values = [b for pair in client.hgetall(key).items() for b in pair]
    elif kind == "list":
        values = list(client.lrange(key, 0, -1))
    elif kind == "set":
        values = list(client.smembers(key))
    elif kind == "zset":
        values = list(client.zrange(key, 0, -1))
    elif kind == "stream":
        values = [repr(client.xrange(key))]
    else:
        values = []
    return [_raw(value) for value in values]


def _raw(value: object) -> bytes:
    """Redis answers bytes (or str, on a client that decodes); the scan reads bytes."""
    return value if isinstance(value, bytes) else str(value).encode()


class LogTrap(logging.Handler):
    """Every log record of the process at DEBUG, while active, whatever levels loggers set.

    Loggers the code deliberately quiets (werkzeug, twilio's HTTP client) are opened up too:
    the scan should hold even for an operator who turns everything up. Records are kept whole:
    the formatted line with any traceback, and every attribute, ``extra=`` fields included (a
    JSON log formatter would print those).
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self._saved: dict[logging.Logger, tuple[int, bool]] = {}
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))
        self.lines.append(repr(vars(record)))

    def __enter__(self) -> LogTrap:
        root = logging.getLogger()
        loggers = [root, *(logging.getLogger(n) for n in list(root.manager.loggerDict))]
        self._saved = {logger: (logger.level, logger.disabled) for logger in loggers}
        for logger in loggers:
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
        root.addHandler(self)
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        logging.getLogger().removeHandler(self)
        for logger, (level, disabled) in self._saved.items():
            logger.setLevel(level)
            logger.disabled = disabled

    def blobs(self) -> Iterator[Blob]:
        yield f"logs ({len(self.lines) // 2} records)", "\n".join(self.lines).encode()
