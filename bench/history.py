"""Seeding for the webhook benchmark: the roster on call now, and years of past conversations.

``seed_roster`` makes the live part through the ORM: the programme, supporters on call, and
accepted conversations that the relay traffic talks on. ``add_history`` bulk-loads finished
conversations with PostgreSQL ``COPY``, shaped as the hotline leaves them: clinicians (their
numbers purged after the retention period, as ``hotline.retention`` does), ended conversations
(done, inactive or STOP; a few never accepted), their offers (some passed or expired before
the accepted one), their check-ins (sent, cancelled or failed, a few still scheduled), the
one-off shifts of those years, and the last three days of webhook de-duplication keys.
Numbers are fictional (555-01XX) and history numbers are not numbers at all.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

from bench.loadgen import fictional_number
from hotline.db import make_sessionmaker, transaction
from hotline.models import (
    Clinician,
    Conversation,
    ConversationState,
    Offer,
    OfferState,
    Shift,
)
from hotline.people import CLINICIAN_CONTEXT, new_supporter
from hotline.privacy import Vault
from hotline.programmes import ensure_default_programme
from hotline.settings import Settings

DISCIPLINES = ("nurse", "physician", "pharmacist", "respiratory", "paramedic", None)
HISTORY_YEARS = 5
RETENTION = timedelta(days=30)  # hotline's default HOTLINE_RETENTION_DAYS
CONVERSATIONS_PER_CLINICIAN = 2.5
CONVERSATIONS_PER_SHIFT = 20
EVENTS_PER_CONVERSATION = 10  # texts and status callbacks, de-duplicated for three days
SUPPORTER_BASE = 0  # fictional_number indices: supporters 0.., active clinicians 100..
CLINICIAN_BASE = 100
NEW_CLINICIAN_BASE = 1_000


@dataclass(frozen=True)
class Roster:
    programme_id: int
    supporter_ids: list[int]
    supporters: list[str]  # fictional numbers, same order
    clinicians: list[str]  # each with one active conversation
    supporter_lines: list[tuple[str, str]]  # (supporter number, pool number) per conversation
    pool_numbers: tuple[str, ...]


def seed_roster(
    engine: Engine, settings: Settings, vault: Vault, supporters: int, conversations_each: int
) -> Roster:
    """Supporters on call for two days, each in ``conversations_each`` accepted conversations."""
    now = datetime.now(UTC)
    rng = random.Random(7)
    with transaction(make_sessionmaker(engine)) as session:
        programme = ensure_default_programme(session, settings)
        pool = tuple(p.number for p in programme.pool_numbers)
        if conversations_each >= len(pool):
            raise ValueError("each supporter needs a pool number left for new offers")
        numbers = [fictional_number(SUPPORTER_BASE + i) for i in range(supporters)]
        people = [
            new_supporter(
                vault,
                programme.id,
                f"Bench supporter {i}",
                number,
                discipline=DISCIPLINES[i % len(DISCIPLINES)],
                max_conversations=conversations_each + 1,
                phone_verified_at=now - timedelta(days=90),
                last_offered_at=now - timedelta(minutes=rng.randrange(1, 600)),
            )
            for i, number in enumerate(numbers)
        ]
        session.add_all(people)
        session.flush()
        for s in people:
            session.add(
                Shift(
                    programme_id=programme.id,
                    supporter_id=s.id,
                    starts_at=now - timedelta(hours=1),
                    ends_at=now + timedelta(days=2),
                )
            )
        clinicians: list[str] = []
        lines: list[tuple[str, str]] = []
        for k, s in enumerate(people):
            for j in range(conversations_each):
                number = fictional_number(CLINICIAN_BASE + len(clinicians))
                clinician = Clinician(
                    programme_id=programme.id,
                    phone_sealed=vault.seal(number, CLINICIAN_CONTEXT),
                    phone_hash=vault.blind_index(number),
                    last_supporter_id=s.id,
                    last_contact_at=now,
                )
                session.add(clinician)
                session.flush()
                started = now - timedelta(minutes=30 + k)
                conv = Conversation(
                    programme_id=programme.id,
                    clinician_id=clinician.id,
                    channel="sms",
                    state=ConversationState.ACTIVE,
                    supporter_id=s.id,
                    pool_number=pool[j],
                    created_at=started,
                    accepted_at=started + timedelta(minutes=2),
                    last_activity_at=now,
                )
                session.add(conv)
                session.flush()
                session.add(
                    Offer(
                        conversation_id=conv.id,
                        supporter_id=s.id,
                        pool_number=pool[j],
                        state=OfferState.ACCEPTED,
                        offered_at=started,
                        expires_at=started + timedelta(minutes=3),
                        answered_at=started + timedelta(minutes=2),
                    )
                )
                clinicians.append(number)
                lines.append((numbers[k], pool[j]))
        return Roster(programme.id, [s.id for s in people], numbers, clinicians, lines, pool)


# --- history ----------------------------------------------------------------------------------

CLINICIAN_COLUMNS = (
    "id",
    "programme_id",
    "phone_sealed",
    "phone_hash",
    "checkins_declined",
    "last_supporter_id",
    "last_contact_at",
    "created_at",
)
CONVERSATION_COLUMNS = (
    "id",
    "programme_id",
    "clinician_id",
    "channel",
    "state",
    "discipline_wanted",
    "supporter_id",
    "pool_number",
    "created_at",
    "accepted_at",
    "ended_at",
    "end_reason",
    "fallback_at",
    "last_activity_at",
)
OFFER_COLUMNS = (
    "conversation_id",
    "supporter_id",
    "pool_number",
    "state",
    "offered_at",
    "expires_at",
    "answered_at",
)
CHECKIN_COLUMNS = (
    "programme_id",
    "conversation_id",
    "clinician_id",
    "sequence",
    "due_at",
    "state",
    "attempts",
    "provider_sid",
    "delivery_status",
    "error_code",
    "claimed_at",
    "sent_at",
    "replied_at",
    "created_at",
)
SHIFT_COLUMNS = ("programme_id", "supporter_id", "starts_at", "ends_at", "created_at")
EVENT_COLUMNS = ("key", "received_at")
CHECKIN_OFFSETS = (timedelta(days=1), timedelta(days=7), timedelta(days=30))
OFFER_TIMEOUT = timedelta(minutes=3)
NULL = "\\N"  # COPY text format; no value written here holds a tab, newline or backslash


@dataclass
class HistoryCounts:
    clinicians: int = 0
    conversations: int = 0
    offers: int = 0
    checkins: int = 0
    shifts: int = 0
    events: int = 0

    def add(self, other: HistoryCounts) -> None:
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class _Tables:
    """COPY text lines per table (formatted here: psycopg's per-value dumpers cost more than
    the server does)."""

    clinicians: list[str] = field(default_factory=list)
    conversations: list[str] = field(default_factory=list)
    offers: list[str] = field(default_factory=list)
    checkins: list[str] = field(default_factory=list)
    shifts: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def add_history(
    engine: Engine, vault: Vault, roster: Roster, count: int, seed: int, block: int = 100_000
) -> HistoryCounts:
    """Bulk-load ``count`` more finished conversations (and what goes with them) with COPY.

    In blocks of consecutive time (each with its own clinicians), to bound the memory used."""
    counts = HistoryCounts()
    for start in range(0, count, block):
        n = min(block, count - start)
        n_clinicians = max(1, int(n / CONVERSATIONS_PER_CLINICIAN))
        window = (start / count, (start + n) / count)
        first_clinician = _reserve(engine, "clinicians", n_clinicians)
        first_conversation = _reserve(engine, "conversations", n)
        tables = _generate(
            vault,
            roster,
            n,
            n_clinicians,
            first_clinician,
            first_conversation,
            window,
            seed * 1_000 + start // block,
        )
        counts.add(_load(engine, tables))
    return counts


def _load(engine: Engine, tables: _Tables) -> HistoryCounts:
    raw = engine.raw_connection()
    try:
        conn: Any = raw.driver_connection
        with conn.cursor() as cur:
            _skip_foreign_key_checks(cur)
            counts = HistoryCounts(
                clinicians=_copy(cur, "clinicians", CLINICIAN_COLUMNS, tables.clinicians),
                conversations=_copy(
                    cur, "conversations", CONVERSATION_COLUMNS, tables.conversations
                ),
                offers=_copy(cur, "offers", OFFER_COLUMNS, tables.offers),
                checkins=_copy(cur, "checkins", CHECKIN_COLUMNS, tables.checkins),
                shifts=_copy(cur, "shifts", SHIFT_COLUMNS, tables.shifts),
                events=_copy(cur, "webhook_events", EVENT_COLUMNS, tables.events),
            )
        conn.commit()
    finally:
        raw.close()
    return counts


def _generate(
    vault: Vault,
    roster: Roster,
    count: int,
    n_clinicians: int,
    first_clinician: int,
    first_conversation: int,
    window: tuple[float, float],
    seed: int,
) -> _Tables:
    """One block: ``count`` conversations in ``window`` (fractions of the history's span)."""
    rng = random.Random(seed)
    rand, randrange, choice = rng.random, rng.randrange, rng.choice
    now = datetime.now(UTC).replace(tzinfo=None)
    oldest = now - timedelta(days=365 * HISTORY_YEARS)
    span = (now - timedelta(days=2) - oldest).total_seconds()
    supporters, pool, pid = roster.supporter_ids, roster.pool_numbers, roster.programme_id
    out = _Tables()
    last_contact: list[datetime | None] = [None] * n_clinicians
    last_supporter: list[int | None] = [None] * n_clinicians
    lo, hi = window[0] * span, window[1] * span
    starts = sorted(lo + rand() * (hi - lo) for _ in range(count))
    for i, offset in enumerate(starts):
        conv, who = first_conversation + i, randrange(n_clinicians)
        created = oldest + timedelta(seconds=offset)
        ended = created + timedelta(minutes=20 + 160 * rand())
        if rand() < 0.05:  # nobody accepted; the clinician sent STOP while waiting
            other = choice(supporters)
            out.conversations.append(
                f"{conv}\t{pid}\t{first_clinician + who}\tsms\tended\t{NULL}\t{NULL}\t{NULL}"
                f"\t{created}\t{NULL}\t{ended}\tstop\t{created + OFFER_TIMEOUT}\t{ended}"
            )
            out.offers.append(
                f"{conv}\t{other}\t{pool[0]}\texpired\t{created}\t{created + OFFER_TIMEOUT}\t{NULL}"
            )
        else:
            supporter, number = choice(supporters), choice(pool)
            x = rand()
            reason = "done" if x < 0.7 else "inactive" if x < 0.92 else "stop"
            offered = created
            if rand() < 0.3:  # someone passed, or let it expire, first
                other = choice(supporters)
                if other != supporter:
                    state = "passed" if rand() < 0.5 else "expired"
                    offered = created + OFFER_TIMEOUT
                    out.offers.append(
                        f"{conv}\t{other}\t{pool[0]}\t{state}\t{created}\t{offered}\t{offered}"
                    )
            accepted = offered + timedelta(seconds=30 + 120 * rand())
            out.offers.append(
                f"{conv}\t{supporter}\t{number}\taccepted\t{offered}"
                f"\t{offered + OFFER_TIMEOUT}\t{accepted}"
            )
            channel = "voice" if rand() < 0.1 else "sms"
            discipline = DISCIPLINES[randrange(5)] if rand() < 0.2 else NULL
            out.conversations.append(
                f"{conv}\t{pid}\t{first_clinician + who}\t{channel}\tended\t{discipline}"
                f"\t{supporter}\t{number}\t{created}\t{accepted}\t{ended}\t{reason}"
                f"\t{NULL}\t{ended}"
            )
            if reason != "stop":
                _checkins(out.checkins, rand, pid, conv, first_clinician + who, ended, now)
            last_supporter[who] = supporter
        previous = last_contact[who]
        if previous is None or ended > previous:
            last_contact[who] = ended
    for k in range(n_clinicians):
        contact = last_contact[k] or oldest
        since = contact - timedelta(days=30 * rand())
        declined = "t" if rand() < 0.05 else "f"
        chosen = last_supporter[k] or NULL
        if now - contact < RETENTION:  # still identified; older ones the sweeper purged
            secret = f"history-{seed}-{k}"  # not a phone number: these rows are never matched
            sealed = "\\\\x" + vault.seal(secret, CLINICIAN_CONTEXT).hex()
            hashed = vault.blind_index(secret)
        else:
            sealed = hashed = NULL
        out.clinicians.append(
            f"{first_clinician + k}\t{pid}\t{sealed}\t{hashed}\t{declined}\t{chosen}"
            f"\t{contact}\t{since}"
        )
    for _ in range(max(1, count // CONVERSATIONS_PER_SHIFT)):
        at = oldest + timedelta(seconds=rand() * span)
        out.shifts.append(
            f"{pid}\t{choice(supporters)}\t{at}\t{at + timedelta(hours=12)}"
            f"\t{at - timedelta(days=14)}"
        )
    for k in range(int(count * EVENTS_PER_CONVERSATION * 3 / (365 * HISTORY_YEARS))):
        at = now - timedelta(seconds=rand() * 3 * 86400)
        out.events.append(f"sms:SMhist{seed:04x}{k:022x}\t{at}")
    return out


def _checkins(
    out: list[str],
    rand: Any,
    pid: int,
    conv: int,
    clinician: int,
    ended: datetime,
    now: datetime,
) -> None:
    """The three follow-ups after a conversation that ended normally."""
    for seq, offset in enumerate(CHECKIN_OFFSETS, start=1):
        due = ended + offset
        head = f"{pid}\t{conv}\t{clinician}\t{seq}\t{due}"
        x = rand()
        if due > now or x < 0.15:
            state = "scheduled" if due > now else "cancelled"
            out.append(
                f"{head}\t{state}\t0\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{NULL}\t{ended}"
            )
        elif x > 0.97:
            out.append(
                f"{head}\tfailed\t1\tSMhc{conv:016x}{seq:014x}\tundelivered\t30003"
                f"\t{due}\t{due}\t{NULL}\t{ended}"
            )
        else:
            replied = due + timedelta(hours=2) if rand() < 0.2 else NULL
            out.append(
                f"{head}\tsent\t1\tSMhc{conv:016x}{seq:014x}\tdelivered\t{NULL}"
                f"\t{due}\t{due}\t{replied}\t{ended}"
            )


def analyze(engine: Engine) -> None:
    """What autovacuum would have done by the time years of history exist."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("VACUUM ANALYZE"))


def _skip_foreign_key_checks(cur: Any) -> None:
    """The rows are made consistent above; checking each foreign key costs most of the load
    (PostgreSQL runs a trigger per row). Needs a superuser; without one the checks just run."""
    cur.execute("SAVEPOINT replica")
    try:
        cur.execute("SET LOCAL session_replication_role = replica")
    except Exception:  # not permitted: load with the checks
        cur.execute("ROLLBACK TO SAVEPOINT replica")


def _reserve(engine: Engine, table: str, n: int) -> int:
    """Take ``n`` ids from ``table``'s sequence; the first one."""
    with engine.connect() as connection:
        last = connection.execute(
            text(
                "SELECT setval(pg_get_serial_sequence(:table, 'id'), "
                "(SELECT coalesce(last_value, 0) FROM pg_sequences WHERE sequencename = :seq)"
                " + :n)"
            ),
            {"table": table, "seq": f"{table}_id_seq", "n": n},
        ).scalar_one()
        connection.commit()
    return int(last) - n + 1


def _copy(cur: Any, table: str, columns: Sequence[str], lines: list[str]) -> int:
    with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for i in range(0, len(lines), 20_000):
            copy.write("\n".join(lines[i : i + 20_000]) + "\n")
    return len(lines)
