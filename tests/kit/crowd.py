"""A crowd of webhooks at once, on PostgreSQL: many people texting the line in the same second.

    crowd = Crowd(hotline)
    answers = crowd.together([Post(CLINICIAN, HOTLINE, "hello"), ...])   # all at one instant
    answers = crowd.in_order(posts, hold_at=PROGRAMME_LOCK)              # a queue, in order
    placed = crowd.at_once([lambda: calls.place(CALLER, HOTLINE, script), ...])

Each post (or call) runs in its own thread through the app (signed, as Twilio sends it).
``together`` and ``at_once`` start them at one barrier. ``in_order`` makes the queue a burst
makes when the line is busy: the first post stops inside its transaction at its first
statement starting with ``hold_at``, each next one starts only once the one before is waiting
on a lock in the database (so they reach it in order), and then the first goes on
(``Crowd.released``). ``Crowd.errors`` names every database error a webhook met, caught or not
(a deadlock retried, a duplicate key a savepoint caught); ``Crowd.hooks`` runs a function of a
post's thread (``post-N``) after each of its statements, to slow one down.

SQLite serialises writers: tests using this skip there.
"""

from __future__ import annotations

import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import pytest
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import NullPool

from tests.kit.harness import Hotline

# The programme's row lock (routing.lock_programme): offer-making's mutex.
PROGRAMME_LOCK = (
    "SELECT programmes.id \nFROM programmes \nWHERE programmes.id = %(id_1)s::INTEGER "
    "FOR NO KEY UPDATE"
)
QUEUED_WITHIN_S = 5.0
T = TypeVar("T")


@dataclass(frozen=True)
class Post:
    """One inbound text as Twilio posts it; ``sid`` repeats a delivery when given."""

    from_: str
    to: str
    body: str
    sid: str | None = None


@dataclass(frozen=True)
class Answer:
    post: Post
    status: int
    texts: tuple[tuple[str, str, str], ...]  # (to, from, body) of each <Message> delivered


class Crowd:
    def __init__(self, hotline: Hotline) -> None:
        self.hotline = hotline
        self.engine: Engine = hotline.services.sessions.kw["bind"]
        if self.engine.dialect.name == "sqlite":
            pytest.skip("SQLite serialises writers: a crowd needs PostgreSQL")
        self.errors: list[str] = []
        self.released = threading.Event()  # in_order: the first post has gone on
        # Statement hooks by thread name: (statement, failed) -> None.
        self.hooks: dict[str, Callable[[str, bool], None]] = {}

    def together(self, posts: Sequence[Post]) -> list[Answer]:
        """Every post at once, from a barrier; the answers in the order of ``posts``."""
        return self.at_once([partial(self.post, post) for post in posts])

    def at_once(self, actions: Sequence[Callable[[], T]]) -> list[T]:
        """Every action (a post, a call placed) at once, from a barrier; their results."""
        barrier = threading.Barrier(len(actions))
        return self._run(actions, lambda: barrier.wait(10), lambda _i, _t: None)

    def post(self, post: Post) -> Answer:
        extra = {"MessageSid": post.sid} if post.sid else {}
        response = self.hotline.sms(post.from_, post.to, post.body, **extra)
        answered = messages(response.get_data(as_text=True))
        # What reaches the phones: Twilio drops a <Message> to a pair opted out (21610).
        # A bare <Message> goes back to the sender, from the number texted.
        fake = self.hotline.fake
        delivered = tuple(
            (to, from_, body)
            for to, from_, body in answered
            if fake.reply(from_ or post.to, to or post.from_, body)
        )
        return Answer(post, response.status_code, delivered)

    def in_order(self, posts: Sequence[Post], hold_at: str = PROGRAMME_LOCK) -> list[Answer]:
        """The first post held at its first ``hold_at`` statement until every other one,
        started one after the other, waits on a lock in the database behind it."""
        held, go = threading.Event(), self.released

        def hold(statement: str, _failed: bool) -> None:
            if statement.startswith(hold_at) and not go.is_set():
                held.set()
                go.wait(10)

        self.hooks.setdefault("post-0", hold)

        def queue_up(i: int, thread: threading.Thread) -> None:
            if i == 0:
                deadline = time.monotonic() + QUEUED_WITHIN_S
                while thread.is_alive() and not held.wait(0.01) and not _late(deadline):
                    pass
            else:
                self._wait_for_queue(i)
            if i == len(posts) - 1:
                go.set()

        try:
            actions = [partial(self.post, post) for post in posts]
            return self._run(actions, lambda: None, queue_up)
        finally:
            go.set()

    def queued(self) -> int:
        """Backends of this database waiting on a lock."""
        with self._watcher().connect() as connection:
            found = connection.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar()
        return int(found or 0)

    @contextmanager
    def watching(self) -> Iterator[None]:
        def executed(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
            self._hook(statement, failed=False)

        def failed(context: Any) -> None:
            self.errors.append(type(context.original_exception).__name__)
            self._hook(context.statement or "", failed=True)

        event.listen(self.engine, "after_cursor_execute", executed)
        event.listen(self.engine, "handle_error", failed)
        try:
            yield
        finally:
            event.remove(self.engine, "after_cursor_execute", executed)
            event.remove(self.engine, "handle_error", failed)

    def _hook(self, statement: str, *, failed: bool) -> None:
        hook = self.hooks.get(threading.current_thread().name)
        if hook is not None:
            hook(statement, failed)

    def _run(
        self,
        actions: Sequence[Callable[[], T]],
        before: Callable[[], object],
        after_start: Callable[[int, threading.Thread], None],
    ) -> list[T]:
        results: dict[int, T] = {}
        raised: list[BaseException] = []

        def run(i: int, action: Callable[[], T]) -> None:
            before()
            try:
                results[i] = action()
            except BaseException as error:
                raised.append(error)

        threads = [
            threading.Thread(target=run, args=(i, action), name=f"post-{i}")
            for i, action in enumerate(actions)
        ]
        with self.watching():
            for i, thread in enumerate(threads):
                thread.start()
                after_start(i, thread)
            for thread in threads:
                thread.join(30)
        if raised:
            raise raised[0]
        assert len(results) == len(actions), "a webhook did not answer within 30 s"
        return [results[i] for i in range(len(actions))]

    def _wait_for_queue(self, waiting: int) -> None:
        deadline = time.monotonic() + QUEUED_WITHIN_S
        while self.queued() < waiting and not _late(deadline):
            time.sleep(0.01)

    def _watcher(self) -> Engine:
        if not hasattr(self, "_watching_engine"):
            self._watching_engine = create_engine(self.engine.url, poolclass=NullPool)
        return self._watching_engine


def _late(deadline: float) -> bool:
    return time.monotonic() > deadline


def messages(xml: str) -> tuple[tuple[str, str, str], ...]:
    """(to, from, body) of each <Message> in a TwiML answer."""
    root = ET.fromstring(xml)  # noqa: S314 - our own TwiML, in a test
    return tuple(
        (m.get("to") or "", m.get("from") or "", m.findtext("Body") or m.text or "")
        for m in root.iter("Message")
    )


@pytest.fixture
def crowd(hotline: Hotline) -> Crowd:
    return Crowd(hotline)
