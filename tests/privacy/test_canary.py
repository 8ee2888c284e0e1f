"""Canary scan: a whole scripted scenario with canary numbers and canary words, then every byte
the hotline keeps is searched for them. Nothing may show: no word anywhere, no number in any
plain spelling, on either database tier.

Searched: the SQLite file with its WAL (freed pages included) or a pg_dump plus a binary COPY
of every table; every Redis key and value (RQ's queues, registries and job hashes, zlib
decompressed); and every log record of the process at DEBUG, the loggers the code quiets
included. The scan runs twice: while the clinician's first texts are held (sealed) waiting for
a supporter, and at the end.

The fake Twilio is not searched: it stands for Twilio, which does receive numbers and words. The
scenario checks instead that every message sent through Twilio asks for a status callback, so
its record can be deleted after delivery, that the delivered ones were, and that the call's
records (the caller's leg and the supporter's) were deleted too.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select

from hotline.db import transaction
from hotline.models import Clinician, MessageDeletion, PendingText, Programme
from hotline.people import set_alert_phone
from tests.kit.calls import PRESS_1, Calls, Script
from tests.kit.harness import HOTLINE, Hotline
from tests.kit.leaks import (
    Blob,
    Canaries,
    LogTrap,
    postgres_blobs,
    redis_blobs,
    sqlite_blobs,
)
from tests.kit.phones import Phones
from tests.kit.signing import deliver_to

# Fictional numbers (NPA-555-01XX) that appear nowhere else in the suite.
CLINICIAN, CALLER = "+13125550142", "+16175550163"
ALICE, BOB = "+14155550171", "+12065550129"
COORDINATOR = "+17135550118"
NUMBERS = [CLINICIAN, CALLER, ALICE, BOB, COORDINATOR]

WORDS = {
    "first": "I think I gave the wrong dose tonight kestrel-4471",
    "held": "I can't stop shaking, the family was there marmoset-2208",
    "supporter": "That sounds so heavy. I'm here with you ocelot-9315",
    "reply": "I keep seeing the monitor flatline pangolin-6620",
    "callback": "status callback body should never be kept wombat-1187",
    "later": "thank you for listening narwhal-3054",
    "forget": "please forget me axolotl-7742",
}
OFFER = "Reply ACCEPT"


@pytest.fixture
def trap() -> Iterator[LogTrap]:
    with LogTrap() as trap:
        yield trap


def everything(hotline: Hotline, database_url: str, trap: LogTrap) -> list[Blob]:
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        database = list(sqlite_blobs(Path(url.database)))
    else:
        database = list(postgres_blobs(database_url))
    blobs = [*database, *redis_blobs(hotline.redis), *trap.blobs()]
    assert len(blobs) > 5, "the scan found nothing to read"
    return blobs


def assert_no_canary(blobs: list[Blob], capture: str) -> None:
    canaries = Canaries(numbers=NUMBERS, bodies=list(WORDS.values()))
    findings = canaries.scan(blobs, [("stdout/stderr", capture.encode())])
    assert not findings, f"canaries found: {findings}"


def printed(capfd: pytest.CaptureFixture[str]) -> str:
    """What reached stdout and stderr (RQ's worker adds a stream handler of its own)."""
    captured = capfd.readouterr()
    return captured.out + captured.err


def held_texts(hotline: Hotline) -> int:
    with hotline.session() as session:
        return session.scalar(select(func.count()).select_from(PendingText)) or 0


def test_no_number_and_no_word_is_kept_anywhere(
    hotline: Hotline,
    phones: Phones,
    calls: Calls,
    trap: LogTrap,
    database_url: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    hotline.add_supporter("Alice", ALICE)
    hotline.add_supporter("Bob", BOB)
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        set_alert_phone(hotline.services.vault, programme, COORDINATOR)
    clinician, alice, bob = phones.phone(CLINICIAN), phones.phone(ALICE), phones.phone(BOB)

    # A first text and a second one, both held (sealed) while nobody has accepted.
    clinician.texts(WORDS["first"])
    clinician.expect_text("confidential", from_=HOTLINE)
    alice.expect_text(OFFER)
    clinician.texts(WORDS["held"])
    assert held_texts(hotline) == 2
    assert_no_canary(everything(hotline, database_url, trap), printed(capfd))

    # Alice passes, Bob accepts: the held texts reach him; then texts both ways.
    alice.texts("PASS")
    alice.expect_text("Passed on")
    bob.expect_text(OFFER)
    bob.texts("ACCEPT")
    bob.expect_text("connected")
    bob.expect_text(WORDS["first"])
    bob.expect_text(WORDS["held"])
    clinician.expect_text("joined")
    assert held_texts(hotline) == 0
    bob.texts(WORDS["supporter"])
    clinician.expect_text(WORDS["supporter"])
    clinician.texts(WORDS["reply"])
    bob.expect_text(WORDS["reply"])
    bob.texts("RESOURCES")
    bob.expect_text("sent")
    clinician.expect_text()

    # Twilio's callback for a relayed text (with a Body it should not send, to be sure).
    relayed_sid = "SM" + "7e" * 16
    callback = hotline.post(
        "/twilio/status",
        MessageSid=relayed_sid,
        MessageStatus="delivered",
        To=CLINICIAN,
        From=HOTLINE,
        Body=WORDS["callback"],
    )
    assert callback.status_code == 204
    bob.texts("DONE")
    bob.expect_text("closed")
    clinician.expect_text("not alone")

    # A call from someone else: Alice takes it, is texted how to close it, and does.
    call = calls.place(CALLER, HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert call.bridged_with == ALICE
    hotline.run_jobs()
    alice.expect_text("Thank you for taking that call")
    alice.texts("DONE")
    alice.expect_text("closed")
    phones.phone(CALLER).expect_text("not alone")

    # A day later the check-ins go out through a real RQ worker; Twilio is busy at first.
    hotline.fake.fail_next(status=503, code=None)
    hotline.clock.advance(days=1, minutes=1)
    hotline.run_jobs()
    hotline.clock.advance(minutes=5)
    hotline.run_jobs()
    clinician.expect_text("Checking in", from_=HOTLINE)
    phones.phone(CALLER).expect_text("Checking in", from_=HOTLINE)
    # Every text sent through the API: the follow-up after the call and the check-ins (the
    # follow-up's record may be gone already: its backstop deletion came due in the day).
    sent = hotline.fake.sent
    assert len(sent) == 3 and all(m["status_callback"] for m in sent), "each asks for a callback"
    delivered = [m["sid"] for m in hotline.fake.messages]  # those still at Twilio
    for sid in delivered:
        hotline.fake.post_status(sid, "delivered", deliver=deliver_to(hotline.client))

    # The clinician says something, then STOP; the caller asks to be forgotten.
    clinician.texts(WORDS["later"])
    clinician.texts("STOP")
    phones.phone(CALLER).texts(WORDS["forget"])
    phones.phone(CALLER).expect_text("A peer will text here")  # answering their check-in
    phones.phone(CALLER).texts("FORGET")
    phones.phone(CALLER).expect_text("erased")
    hotline.clock.advance(minutes=10)
    hotline.run_jobs()
    hotline.sweep()

    # Provider records: the delivered ones are gone; any later one can be deleted too.
    assert all(m["status_callback"] for m in hotline.fake.messages)
    assert {m["sid"] for m in sent} <= set(hotline.fake.deleted), "records still at Twilio"
    assert set(call.sids) <= set(hotline.fake.deleted), "call records still at Twilio"
    with hotline.session() as session:
        assert relayed_sid not in set(session.scalars(select(MessageDeletion.sid)))
        forgotten = session.scalars(select(Clinician).where(Clinician.phone_hash.is_(None)))
        assert len(forgotten.all()) == 1

    assert_no_canary(everything(hotline, database_url, trap), printed(capfd))


def test_the_scan_finds_canaries_planted_in_each_place(
    hotline: Hotline, trap: LogTrap, database_url: str
) -> None:
    """The scanners read what they claim to: a planted canary is found in every store."""
    planted_number, planted_body = "+13125550199", "planted words heron-5150"
    with transaction(hotline.services.sessions) as session:
        session.add(
            Clinician(programme_id=hotline.programme_id, phone_sealed=planted_body.encode())
        )
        programme = session.get_one(Programme, hotline.programme_id)
        n = planted_number
        programme.resources_text = f"call ({n[2:5]}) {n[5:8]}-{n[8:]}"
    hotline.redis.rpush("rq:queue:planted", f"workers.jobs.x('{planted_number}')".encode())
    hotline.redis.hset("rq:job:planted", "data", zlib.compress(planted_body.encode()))
    logging.getLogger("hotline.planted").debug("texting %s", planted_number)
    blobs = everything(hotline, database_url, trap)
    canaries = Canaries(numbers=[planted_number], bodies=[planted_body])
    places = {finding.where.split(" ")[0] for finding in canaries.scan(blobs)}
    database = "sqlite" if "sqlite" in database_url else "pg_dump"
    assert {database, "redis", "logs"} <= places, places
    if database == "pg_dump":
        found = {finding.where for finding in canaries.scan(blobs)}
        assert "postgres table clinicians" in found
