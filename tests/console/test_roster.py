"""The roster: validation, verification codes texted by a job, CSV onboarding, the audit log."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from hotline import audit, onboarding, roster, verification
from hotline.db import transaction
from hotline.models import AuditEntry, Notice, NoticeState, Supporter
from hotline.people import supporter_phone
from hotline.wakeups import Task
from tests.console.conftest import ACTOR
from tests.kit.harness import POOL, Hotline

ALICE, BOB = "+15550108001", "+15550108002"

BAD_INPUTS = [
    ({"name": " "}, "name", "required"),
    ({"name": "x" * 201}, "name", "at most 200"),
    ({"phone": "555-CALL-NOW"}, "phone", "not a valid phone"),
    ({"phone": "12"}, "phone", "not a valid phone"),
    ({"phone": "'; DROP TABLE supporters; --"}, "phone", "not a valid phone"),
    ({"discipline": "astronaut"}, "discipline", "must be one of"),
    ({"max_conversations": 0}, "max_conversations", "between 1 and 10"),
    ({"max_conversations": "two"}, "max_conversations", "whole number"),
    ({"email": "not-an-email"}, "email", "not an email"),
]


@pytest.mark.parametrize(("change", "field", "message"), BAD_INPUTS)
def test_bad_input_names_the_field(change: dict[str, object], field: str, message: str) -> None:
    data = {"name": "Alice", "phone": ALICE, **change}
    with pytest.raises(roster.RosterError, match=message) as caught:
        roster.clean(roster.SupporterInput(**data))  # type: ignore[arg-type]
    assert caught.value.field == field
    assert ALICE not in str(caught.value)


GOOD_INPUTS = [
    ({"phone": "(555) 010-8001"}, "phone", ALICE),
    ({"discipline": "RN"}, "discipline", "nurse"),
    ({"discipline": "doctor"}, "discipline", "physician"),
    ({"discipline": ""}, "discipline", None),
    ({"name": "  Alice   Smith "}, "name", "Alice Smith"),
    ({"max_conversations": "3"}, "max_conversations", 3),
]


@pytest.mark.parametrize(("change", "field", "expected"), GOOD_INPUTS)
def test_input_is_normalised(change: dict[str, object], field: str, expected: object) -> None:
    data = {"name": "Alice", "phone": ALICE, **change}
    cleaned = roster.clean(roster.SupporterInput(**data))  # type: ignore[arg-type]
    assert getattr(cleaned, field) == expected


def add(hotline: Hotline, name: str, phone: str) -> roster.Change:
    with transaction(hotline.services.sessions) as session:
        return roster.add(
            session,
            hotline.services.vault,
            hotline.programme_id,
            roster.SupporterInput(name, phone),
            ACTOR,
            hotline.clock.now,
        )


def test_a_new_supporter_is_texted_a_code_by_a_job_and_verified_with_it(hotline: Hotline) -> None:
    change = add(hotline, "Alice", ALICE)
    (notice,) = change.notices
    hotline.services.wakeups.schedule(Task.SEND_NOTICE, notice.id)
    assert hotline.fake.messages == []  # nothing is sent inside the request
    hotline.run_jobs()
    (message,) = [m for m in hotline.fake.messages if m["to"] == ALICE]
    assert message["from_"] == POOL[0]
    code = next(w.strip(".") for w in message["body"].split() if w.strip(".").isdigit())
    services = hotline.services
    with transaction(services.sessions) as session:
        supporter = session.get_one(Supporter, change.supporter.id)
        assert (
            roster.confirm_code(
                session,
                services.vault,
                supporter,
                "000000" if code != "000000" else "111111",
                ACTOR,
                hotline.clock.now,
            )
            == verification.Outcome.WRONG
        )
        assert (
            roster.confirm_code(session, services.vault, supporter, code, ACTOR, hotline.clock.now)
            == verification.Outcome.VERIFIED
        )
        assert supporter.phone_verified_at == hotline.clock.now
    hotline.run_jobs()
    with hotline.session() as session:
        assert session.get_one(Notice, notice.id).state == NoticeState.SENT


def test_codes_expire_and_wrong_tries_run_out(hotline: Hotline) -> None:
    change = add(hotline, "Alice", ALICE)
    services = hotline.services
    with transaction(services.sessions) as session:
        supporter = session.get_one(Supporter, change.supporter.id)
        code = verification.code_of(session, services.vault, supporter.id)
        for _ in range(verification.MAX_ATTEMPTS):
            verification.confirm(session, services.vault, supporter, "x", hotline.clock.now)
        assert (
            verification.confirm(session, services.vault, supporter, code or "", hotline.clock.now)
            == verification.Outcome.TOO_MANY
        )
        roster.resend_code(session, services.vault, supporter, ACTOR, hotline.clock.now)
        later = hotline.clock.now + verification.CODE_TTL + timedelta(seconds=1)
        fresh = verification.code_of(session, services.vault, supporter.id) or ""
        assert (
            verification.confirm(session, services.vault, supporter, fresh, later)
            == verification.Outcome.EXPIRED
        )


def test_a_replaced_code_is_never_texted(hotline: Hotline) -> None:
    change = add(hotline, "Alice", ALICE)
    services = hotline.services
    with transaction(services.sessions) as session:
        supporter = session.get_one(Supporter, change.supporter.id)
        roster.resend_code(session, services.vault, supporter, ACTOR, hotline.clock.now)
    hotline.clock.advance(minutes=1)
    hotline.sweep()
    assert len([m for m in hotline.fake.messages if m["to"] == ALICE]) == 1


def test_the_same_number_twice_is_refused(hotline: Hotline) -> None:
    add(hotline, "Alice", ALICE)
    with pytest.raises(roster.RosterError, match="already on the roster"):
        add(hotline, "Alice again", "(555) 010-8001")


def test_edits_are_audited_with_redacted_numbers_and_never_change_the_log(hotline: Hotline) -> None:
    change = add(hotline, "Alice", ALICE)
    services = hotline.services
    with transaction(services.sessions) as session:
        supporter = session.get_one(Supporter, change.supporter.id)
        roster.edit(
            session,
            services.vault,
            supporter,
            {"phone": BOB, "name": "Alicia"},
            ACTOR,
            hotline.clock.now,
        )
        assert supporter_phone(services.vault, supporter) == BOB
        assert supporter.phone_verified_at is None
    with hotline.session() as session:
        entries = audit.entries(session, hotline.programme_id)
    assert [e.action for e in entries] == ["supporter.edit", "supporter.add"]
    assert entries[0].old == {"name": "Alice", "phone": "+1•••••••001"}
    assert entries[0].new == {
        "name": "Alicia",
        "phone": "+1•••••••002",
        "verification": "code texted",
    }
    assert ALICE not in repr([(e.old, e.new) for e in entries])
    with pytest.raises(audit.AuditError), transaction(services.sessions) as session:
        session.get_one(AuditEntry, entries[0].id).action = "tampered"
    with pytest.raises(audit.AuditError), transaction(services.sessions) as session:
        session.delete(session.get_one(AuditEntry, entries[0].id))


CSV = """Name,Phone,Discipline,Max_Conversations,Email
Alice,+15550108001,nurse,2,alice@example.org
Bob,not a number,,,
<script>alert(1)</script>,+15550108003,doctor,3,
Dup,+15550108001,,,

Eve,+15550108005,astronaut,,
"""


def test_csv_import_reports_each_row_and_adds_the_good_ones(hotline: Hotline) -> None:
    services = hotline.services
    with transaction(services.sessions) as session:
        report = onboarding.import_csv(
            session, services.vault, hotline.programme_id, CSV, ACTOR, hotline.clock.now
        )
    assert [(r.line, r.added) for r in report.rows] == [
        (2, True),
        (3, False),
        (4, True),
        (5, False),
        (7, False),
    ]
    assert "not a valid phone number" in report.rows[1].message
    assert "already on the roster" in report.rows[3].message
    assert "discipline" in report.rows[4].message
    assert (report.added, report.rejected, len(report.notices)) == (2, 3, 2)
    assert not any("+1555" in r.message for r in report.rows)
    with hotline.session() as session:
        names = session.scalars(select(Supporter.name).order_by(Supporter.id)).all()
    assert names == ["Alice", "<script>alert(1)</script>"]  # stored inertly, escaped on display


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("phone\n+15550108001\n", "missing: name"),
        ("", "missing: name, phone"),
        ("name,phone\n" + "a,b\n" * 501, "at most 500"),
        ("name,phone," + "x" * 140_000 + "\nAlice,+15550108001\n", "not valid CSV"),  # header
    ],
)
def test_unreadable_csv_files_are_refused_whole(text: str, message: str) -> None:
    with pytest.raises(onboarding.ImportFileError, match=message):
        onboarding.read_rows(text)
