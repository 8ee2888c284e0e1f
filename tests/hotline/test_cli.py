"""The ``hotline`` command, run as an operator would (through click, against a real database)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import func, select

from hotline import migrate, roster, signin
from hotline.accounts import check_password, find_api_token
from hotline.cli import main
from hotline.db import make_engine, make_sessionmaker, transaction
from hotline.models import (
    ApiToken,
    AuditEntry,
    Channel,
    CheckIn,
    CheckInState,
    Clinician,
    Conversation,
    ConversationState,
    Coordinator,
    PoolNumber,
    Programme,
    ScheduleSettings,
    Shift,
    Supporter,
    utcnow,
)
from hotline.people import is_opted_out
from hotline.privacy import Vault
from hotline.programme_settings import TEXT_LIMITS
from hotline.settings import load_settings
from hotline.telephony.twilio_adapter import TwilioTelephony
from hotline.wording import MAX_TEXT
from tests.kit.calls import Calls
from tests.kit.fake_twilio import FakeTwilio
from tests.kit.harness import HOTLINE, POOL, SET_UP_HERE, Hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phones

pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def run(tmp_path: Path):  # type: ignore[no-untyped-def]
    env = {
        "HOTLINE_NUMBER": "+15550100000",
        "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002",
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.sqlite3'}",
    }
    runner = CliRunner(env=env)

    def invoke(*args: str, input: str | None = None) -> str:
        result = runner.invoke(main, list(args), input=input, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    invoke("db", "upgrade")
    engine = make_engine(env["DATABASE_URL"])
    invoke.sessions = make_sessionmaker(engine)  # type: ignore[attr-defined]
    invoke.runner = runner  # type: ignore[attr-defined]
    yield invoke
    engine.dispose()


def test_db_upgrade_creates_the_first_programme_from_the_environment(run) -> None:  # type: ignore[no-untyped-def]
    run("db", "upgrade")  # idempotent
    with run.sessions() as session:
        programme = session.scalar(select(Programme))
        assert programme.hotline_number == "+15550100000"
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
        assert pool == ["+15550100001", "+15550100002"]


def test_coordinator_and_api_token(run) -> None:  # type: ignore[no-untyped-def]
    out = run("coordinator", "create", "Lead@Example.org", input="a long passphrase\n" * 2)
    assert "lead@example.org" in out
    token = run("api-token", "create", "ops").strip()
    assert token.startswith("hl_") and len(token) > 30
    with run.sessions() as session, session.begin():
        person = session.scalar(select(Coordinator))
        assert check_password(person.password_hash, "a long passphrase")
        assert "passphrase" not in person.password_hash
        assert find_api_token(session, token) is not None
        assert find_api_token(session, token + "x") is None


def test_api_tokens_are_listed_and_revoked(run) -> None:  # type: ignore[no-untyped-def]
    token = run("api-token", "create", "directory sync").strip()
    listed = run("api-token", "list")
    assert "directory sync" in listed and "live" in listed and "never used" in listed
    assert token not in listed
    with run.sessions() as session, session.begin():
        assert find_api_token(session, token) is not None
    token_id = listed.split("\t", 1)[0]
    assert "revoked" in run("api-token", "revoke", token_id)
    assert "already revoked" in run("api-token", "revoke", token_id)
    assert "revoked 20" in run("api-token", "list")
    with run.sessions() as session, session.begin():
        assert find_api_token(session, token) is None  # refused from now on
        actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-2:] == ["api token created", "api token revoked"]
    missing = run.runner.invoke(main, ["api-token", "revoke", "999"])
    assert missing.exit_code != 0 and "no API token 999" in missing.output


def test_an_api_token_can_be_made_to_expire(run) -> None:  # type: ignore[no-untyped-def]
    token = run("api-token", "create", "quarterly export", "--expires-in", "90").strip()
    listed = run("api-token", "list")
    assert "quarterly export" in listed and "live until 20" in listed
    with run.sessions() as session, session.begin():
        row = session.scalar(select(ApiToken))
        assert row.expires_at - row.created_at == timedelta(days=90)
        assert find_api_token(session, token, row.expires_at - timedelta(seconds=1)) is not None
        assert find_api_token(session, token, row.expires_at) is None
    refused = run.runner.invoke(main, ["api-token", "create", "x", "--expires-in", "0"])
    assert refused.exit_code != 0 and "--expires-in" in refused.output
    unnamed = run.runner.invoke(main, ["api-token", "create", "   "])
    assert unnamed.exit_code != 0 and "name" in unnamed.output


def test_roster_shortcuts_seal_numbers_and_refuse_bad_input(run) -> None:  # type: ignore[no-untyped-def]
    supporter_id = run("supporter", "add", "Alice", "(555) 010-8001", "--discipline", "nurse")
    run("shift", "add", supporter_id.strip(), "2026-03-02T19:00-05:00", "2026-03-03T07:00-05:00")
    with run.sessions() as session:
        alice = session.scalar(select(Supporter))
        assert b"5550108001" not in alice.phone_sealed
        shift = session.scalar(select(Shift))
        assert shift.starts_at.isoformat() == "2026-03-03T00:00:00+00:00"
    bad = run.runner.invoke(main, ["supporter", "add", "Bob", "not a number"])
    assert bad.exit_code != 0 and "not a valid phone number" in bad.output
    naive = run.runner.invoke(main, ["shift", "add", "1", "2026-03-02T19:00", "2026-03-03T07:00"])
    assert naive.exit_code != 0 and "offset" in naive.output
    year = run.runner.invoke(main, ["shift", "add", "1", "2026-03-02T19:00Z", "2027-03-02T19:00Z"])
    assert year.exit_code != 0 and "at most 92 days" in year.output
    with run.sessions() as session:
        assert session.get_one(Supporter, alice.id).phone_verified_at is not None, "vouched for"
        actions = [
            (e.actor, e.action) for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
        ]
    assert actions == [("command line", "supporter.add"), ("command line", "shift.add")]


def test_short_passwords_are_refused(run) -> None:  # type: ignore[no-untyped-def]
    result = run.runner.invoke(
        main, ["coordinator", "create", "x@example.org"], input="short\nshort\n"
    )
    assert result.exit_code != 0 and "12 characters" in result.output


def test_db_upgrade_keeps_pool_numbers_added_since(run) -> None:  # type: ignore[no-untyped-def]
    with run.sessions() as session, session.begin():
        programme = session.scalar(select(Programme))
        programme.pool_numbers.append(PoolNumber(number="+15550100009"))  # as the console does
    run("db", "upgrade")
    with run.sessions() as session:
        pool = set(session.scalars(select(PoolNumber.number)))
    assert pool == {"+15550100001", "+15550100002", "+15550100009"}


def test_pool_numbers_set_after_a_first_deploy_on_the_hotline_number_alone_replace_it(
    tmp_path: Path,
) -> None:
    """HOTLINE_POOL_NUMBERS defaults to HOTLINE_NUMBER alone; once the IT team buys pool
    numbers and sets them, supporters' offers come from those, not from the line clinicians
    text (which stayed first in the pool, so every supporter's first offer came from it)."""
    env = {"HOTLINE_NUMBER": "+15550100000", "DATABASE_URL": f"sqlite:///{tmp_path / 'h.db'}"}
    runner = CliRunner(env=env)
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    pooled = {**env, "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002"}
    assert CliRunner(env=pooled).invoke(main, ["db", "upgrade"]).exit_code == 0
    engine = make_engine(env["DATABASE_URL"])
    try:
        with make_sessionmaker(engine)() as session:
            pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
    finally:
        engine.dispose()
    assert pool == ["+15550100001", "+15550100002"]


def test_db_upgrade_and_programme_add_refuse_a_persons_phone_as_a_line_number(run) -> None:  # type: ignore[no-untyped-def]
    """A number mistyped as a supporter's phone would cut that supporter off every line of the
    deployment (texts and calls from the line's own numbers are ignored): as the hotline
    number, or given to `programme add`, it is refused, as the console's Settings refuse it,
    and nothing changes. (Listed in HOTLINE_POOL_NUMBERS it is left out: see below.)"""
    run("supporter", "add", "Alice", "+15550108001")
    env = {**run.runner.env, "HOTLINE_NUMBER": "+15550108001"}
    upgrade = CliRunner(env=env).invoke(main, ["db", "upgrade"])
    assert upgrade.exit_code == 1
    assert "a supporter's or clinician's phone" in upgrade.output
    add = run.runner.invoke(
        main, ["programme", "add", "north", "--name", "North", "--number", "+15550108001"]
    )
    assert add.exit_code == 1
    assert "a supporter's or clinician's phone" in add.output
    north = ["programme", "add", "north", "--name", "North", "--number", "+15550200000"]
    pooled = run.runner.invoke(main, [*north, "--pool", "+15550200001,+15550108001"])
    assert pooled.exit_code == 1
    assert "a supporter's or clinician's phone" in pooled.output
    with run.sessions() as session:
        assert session.scalar(select(Programme.hotline_number)) == "+15550100000"
        pool = set(session.scalars(select(PoolNumber.number)))
        assert session.scalar(select(Programme).where(Programme.slug == "north")) is None
    assert pool == {"+15550100001", "+15550100002"}


def test_a_persons_phone_in_the_pool_setting_stops_no_release(
    run,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """HOTLINE_POOL_NUMBERS lists a supporter's phone (mistyped, or a number since given to
    a person): every release used to stop on it, security fixes included, until IT edited the
    environment. Now the release goes on, brings what it brings (here a new pool number),
    leaves that number out (in the pool, it would cut the supporter off every line), and says
    where it is listed and what to change, by its place there: no number, no name. It is not
    counted as applied: once the supporter's number changes, the next release adds it."""
    run("supporter", "add", "Alice", "+15550108001")
    env = {"HOTLINE_POOL_NUMBERS": "+15550100001,+15550108001,+15550100003"}
    for _ in range(2):  # and again at the next release, while it is still her phone
        caplog.clear()
        upgrade = run.runner.invoke(main, ["db", "upgrade"], env=env)
        assert upgrade.exit_code == 0, upgrade.output
        with run.sessions() as session:
            pool = set(session.scalars(select(PoolNumber.number)))
        assert pool == {"+15550100001", "+15550100002", "+15550100003"}
        left_out = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(left_out) == 1, left_out
        assert left_out[0].startswith("HOTLINE_POOL_NUMBERS: its number 2 of 3 is left out")
        assert "a supporter's or clinician's phone" in left_out[0]
        assert "remove it from HOTLINE_POOL_NUMBERS" in left_out[0]
        for shown in (caplog.text, upgrade.output):  # its place: no number, no name
            assert "0108001" not in shown and "•••001" not in shown
            assert "Alice" not in shown
    vault = Vault(load_settings(run.runner.env).data_keys)
    with run.sessions() as session, session.begin():  # a coordinator, on the Roster page
        alice = session.scalar(select(Supporter))
        roster.edit(session, vault, alice, {"phone": "+15550108002"}, "lead@example.org", utcnow())
    caplog.clear()
    upgrade = run.runner.invoke(main, ["db", "upgrade"], env=env)
    assert upgrade.exit_code == 0, upgrade.output
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []
    with run.sessions() as session:
        pool = set(session.scalars(select(PoolNumber.number)))
    assert pool == {"+15550100001", "+15550100002", "+15550100003", "+15550108001"}


def test_a_worker_without_redis_url_refuses_to_start(run) -> None:  # type: ignore[no-untyped-def]
    result = run.runner.invoke(main, ["worker", "--burst"])
    assert result.exit_code == 2
    assert "REDIS_URL" in result.output and "hotline dev" in result.output


def test_programme_add_refuses_another_programmes_number(run) -> None:  # type: ignore[no-untyped-def]
    """A number serves one programme: given to a second, its texts would reach only one. The
    refusal names the programme that has it and where, and prints the number masked, as every
    other refusal of a number does (it printed it in full, and named no programme)."""
    for number, pool, where in (
        (
            "+15550100001",
            "+15550200001",
            "+1•••••••001 is already another programme's number "
            "(programme 'default': pool number 1 of 2)",
        ),
        (
            "+15550200000",
            "+15550100000",
            "+1•••••••000 is already another programme's number "
            "(programme 'default': hotline number)",
        ),
    ):
        args = ["programme", "add", "north", "--name", "North", "--number", number, "--pool", pool]
        refused = run.runner.invoke(main, args)
        assert refused.exit_code != 0 and where in refused.output
        assert "+15550100000" not in refused.output and "+15550100001" not in refused.output
    run("programme", "add", "north", "--name", "North", "--number", "+15550200000")
    with run.sessions() as session:
        assert session.scalars(select(Programme.slug).order_by(Programme.id)).all() == [
            "default",
            "north",
        ]
    refused = run.runner.invoke(
        main, ["programme", "add", "default", "--name", "x", "--number", "+15550200000"]
    )
    assert refused.exit_code != 0 and "+15550200000" not in refused.output
    assert "+1•••••••000 is already another programme's number (programme 'north'" in (
        refused.output
    )
    upgrade = CliRunner(env={**run.runner.env, "HOTLINE_NUMBER": "+15550200000"}).invoke(
        main, ["db", "upgrade"]
    )
    assert upgrade.exit_code == 1 and "+15550200000" not in upgrade.output
    assert upgrade.output.startswith(
        "Error: HOTLINE_NUMBER or HOTLINE_POOL_NUMBERS: +1•••••••000 is already another "
        "programme's number (programme 'north': hotline number)"
    )


def test_programme_add_renames_a_programme_and_keeps_its_pool(run) -> None:  # type: ignore[no-untyped-def]
    """Run again on a programme to rename it: the name changes (texts and the console say it),
    the pool stays when --pool is not given, and `hotline db upgrade` keeps the new name."""
    run("programme", "add", "default", "--name", "North Hospital", "--number", "+15550100000")
    run("db", "upgrade")
    with run.sessions() as session:
        programme = session.scalar(select(Programme).where(Programme.slug == "default"))
        assert programme.name == "North Hospital"
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
        assert pool == ["+15550100001", "+15550100002"]


def test_programme_add_is_in_the_audit_log(run) -> None:  # type: ignore[no-untyped-def]
    """A programme added or renamed from the command line is audited as console changes are:
    who (the command line), what, old and new, numbers redacted; running it again unchanged
    adds nothing."""
    run("programme", "add", "north", "--name", "North", "--number", "+15550200000")
    run("programme", "add", "north", "--name", "North Hospital", "--number", "+15550200000")
    run("programme", "add", "north", "--name", "North Hospital", "--number", "+15550200000")
    with run.sessions() as session:
        entries = session.scalars(
            select(AuditEntry)
            .where(AuditEntry.action.startswith("programme."))
            .order_by(AuditEntry.id)
        ).all()
    assert [(e.action, e.actor) for e in entries] == [
        ("programme.add", "command line"),
        ("programme.edit", "command line"),
    ]
    assert entries[0].new["name"] == "North" and "5550200000" not in str(entries[0].new)
    assert (entries[1].old, entries[1].new) == ({"name": "North"}, {"name": "North Hospital"})


def test_programme_add_refuses_to_drop_a_pool_number_carrying_a_conversation(run) -> None:  # type: ignore[no-untyped-def]
    """As the Settings page does: the supporter's replies to a number no programme owns would
    be ignored, mid-conversation."""
    with run.sessions() as session, session.begin():
        programme = session.scalar(select(Programme).where(Programme.slug == "default"))
        session.add(
            Conversation(
                programme_id=programme.id,
                channel=Channel.SMS,
                state=ConversationState.ACTIVE,
                pool_number="+15550100001",
            )
        )
    args = ["programme", "add", "default", "--name", "Peer support", "--number", "+15550100000"]
    refused = run.runner.invoke(main, [*args, "--pool", "+15550100002,+15550100003"])
    assert refused.exit_code != 0 and "carrying a conversation" in refused.output
    run(*args, "--pool", "+15550100001,+15550100003")  # adding beside it is fine
    with run.sessions() as session:
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
        assert pool == ["+15550100001", "+15550100003"]


# --- hotline numbers check ----------------------------------------------------------------------

PUBLIC = "https://hotline.example.org"
RIGHT = {
    "sms_url": f"{PUBLIC}/twilio/sms",
    "voice_url": f"{PUBLIC}/twilio/voice",
    "status_callback": f"{PUBLIC}/twilio/status",
}


def twilio_env(fake: FakeTwilio) -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": fake.account_sid,
        "TWILIO_AUTH_TOKEN": fake.auth_token,
        "TWILIO_API_BASE_URL": fake.base_url,
        "HOTLINE_PUBLIC_URL": PUBLIC,
    }


def line_of(output: str, number: str) -> str:
    return next(line for line in output.splitlines() if line.startswith(number))


def test_numbers_check_names_each_number_set_up_wrong_and_configure_fixes_what_it_may(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
) -> None:
    """The IT team's check after a deploy: a pool number still sending texts to the old host
    (so clinicians' texts there never arrive), one not on the account, one handled by another
    service's application; --configure repoints only what is ours to repoint."""
    run("programme", "add", "north", "--name", "North", "--number", "+15550200000")
    fake_twilio.own_number("+15550100000", **RIGHT)
    stale = fake_twilio.own_number("+15550100001", sms_url="https://old.example.org/sms")
    fake_twilio.own_number("+155501000011")  # contains the pool number: not the same number
    fake_twilio.own_number("+15550200000", **RIGHT, voice_application_sid="AP" + "1" * 32)
    checked = run.runner.invoke(main, ["numbers", "check"], env=twilio_env(fake_twilio))
    assert checked.exit_code == 1, checked.output
    assert line_of(checked.output, "+15550100000").endswith("(default, hotline): ok")
    stale_line = line_of(checked.output, "+15550100001")
    assert f'"A message comes in" is POST https://old.example.org/sms, not POST {PUBLIC}' in (
        stale_line
    )
    assert '"A call comes in" is not set' in stale_line
    assert '"Call status changes" is not set' in stale_line
    assert "not a number of this Twilio account" in line_of(checked.output, "+15550100002")
    assert "AP" + "1" * 32 in line_of(checked.output, "+15550200000")
    assert "3 of 4 numbers need attention" in checked.output

    configured = run.runner.invoke(
        main, ["numbers", "check", "--configure"], env=twilio_env(fake_twilio)
    )
    assert configured.exit_code == 1, configured.output
    assert "+15550100001 (default, pool): webhooks set; ok" in configured.output
    assert "2 of 4 numbers need attention" in configured.output
    numbers = {n["sid"]: n for n in fake_twilio.numbers}
    assert {k: numbers[stale][k] for k in RIGHT} == RIGHT
    assert numbers[stale]["sms_method"] == "POST"
    untouched = next(n for n in numbers.values() if n["voice_application_sid"])
    assert untouched["voice_application_sid"] == "AP" + "1" * 32  # another service's app stays
    others = [n for n in numbers.values() if n["phone_number"] == "+155501000011"]
    assert others[0]["sms_url"] == ""  # a number that is not ours is never touched


def test_numbers_check_passes_when_every_number_is_set_up(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
) -> None:
    for number in ("+15550100000", "+15550100001", "+15550100002"):
        fake_twilio.own_number(number, **RIGHT)
    checked = run.runner.invoke(main, ["numbers", "check"], env=twilio_env(fake_twilio))
    assert checked.exit_code == 0, checked.output
    assert checked.output.count(": ok") == 3


def test_numbers_check_says_what_it_needs_and_when_twilio_cannot_be_read(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
) -> None:
    no_twilio = run.runner.invoke(main, ["numbers", "check"])
    assert no_twilio.exit_code == 1 and "TWILIO_ACCOUNT_SID" in no_twilio.output
    env = twilio_env(fake_twilio) | {"HOTLINE_PUBLIC_URL": ""}
    no_url = run.runner.invoke(main, ["numbers", "check"], env=env)
    assert no_url.exit_code == 1 and "HOTLINE_PUBLIC_URL" in no_url.output
    fake_twilio.fail_next_list(n=1, status=503, code=20503)
    down = run.runner.invoke(main, ["numbers", "check"], env=twilio_env(fake_twilio))
    assert down.exit_code == 1 and "could not read the numbers at Twilio" in down.output
    assert "Traceback" not in down.output
    wrong_token = twilio_env(fake_twilio) | {"TWILIO_AUTH_TOKEN": "not-the-token"}
    refused = run.runner.invoke(main, ["numbers", "check"], env=wrong_token)
    assert refused.exit_code == 1 and "could not read the numbers at Twilio" in refused.output


# --- which numbers may become the line's -------------------------------------------------------

CRM = {"sms_url": "https://crm.example.org/sms", "voice_url": "https://crm.example.org/voice"}


def test_programme_add_and_db_upgrade_take_a_number_only_once_twilio_sends_it_here(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
) -> None:
    """Every record of the line's numbers is deleted at Twilio every hour: a number another
    service on the account uses (its webhooks point there), or a mistyped one, is refused with
    what to set up first; numbers already the line's are not asked about again. At a release,
    such a HOTLINE_POOL_NUMBERS number is left out (the release goes on), a HOTLINE_NUMBER one
    stops it."""
    env = twilio_env(fake_twilio)
    fake_twilio.own_number("+15550200000", **RIGHT)
    fake_twilio.own_number("+15550200001", **CRM)
    add = ["programme", "add", "north", "--name", "North", "--number", "+15550200000"]
    refused = run.runner.invoke(main, [*add, "--pool", "+15550200001"], env=env)
    assert refused.exit_code == 1
    assert "+1•••••••001 cannot join the line yet" in refused.output
    assert '"A message comes in" is POST https://crm.example.org/sms' in refused.output
    assert "IT must set it up at Twilio" in refused.output
    mistyped = run.runner.invoke(main, [*add[:-1], "+15550200009"], env=env)
    assert mistyped.exit_code == 1 and "not a number of this Twilio account" in mistyped.output
    fake_twilio.fail_next_list(1, status=503, code=20503)
    down = run.runner.invoke(main, add, env=env)
    assert down.exit_code == 1 and "could not be checked at Twilio: try again" in down.output
    with run.sessions() as session:
        assert session.scalar(select(Programme).where(Programme.slug == "north")) is None
    assert run.runner.invoke(main, add, env=env).exit_code == 0

    assert run.runner.invoke(main, ["db", "upgrade"], env=env).exit_code == 0  # nothing new
    pooled = env | {"HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002,+15550200001"}
    upgrade = run.runner.invoke(main, ["db", "upgrade"], env=pooled)
    assert upgrade.exit_code == 0, upgrade.output  # the release goes on without it
    hotline_number = env | {"HOTLINE_NUMBER": "+15550200001"}
    renumbered = run.runner.invoke(main, ["db", "upgrade"], env=hotline_number)
    assert renumbered.exit_code == 1
    assert renumbered.output.startswith(
        "Error: HOTLINE_NUMBER or HOTLINE_POOL_NUMBERS: +1•••••••001"
    )
    with run.sessions() as session:
        pool = set(session.scalars(select(PoolNumber.number)))
    assert pool == {"+15550100001", "+15550100002", "+15550200000"}


def test_a_pool_number_released_at_twilio_but_still_in_the_environment_stops_no_release(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The coordinator took a pool number out in Settings and IT released it at Twilio, but
    HOTLINE_POOL_NUMBERS still lists it: every release used to stop on it ("IT must set it up
    at Twilio", which cannot be done) until the environment was edited. Now the release goes
    on, brings what it brings (here a new pool number that is set up), leaves the released
    number out (taken out of the pool since the setting was applied, it is not put back, so
    Twilio is not asked about it), and says where it is listed and what to change."""
    for number in ("+15550100000", "+15550100001", "+15550100003"):
        fake_twilio.own_number(number, **RIGHT)  # +15550100002 is no longer the account's
    with run.sessions() as session, session.begin():  # the coordinator, in Settings
        programme = session.scalar(select(Programme))
        programme.pool_numbers = [p for p in programme.pool_numbers if p.number != "+15550100002"]
    env = twilio_env(fake_twilio) | {
        "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002,+15550100003"
    }
    upgrade = run.runner.invoke(main, ["db", "upgrade"], env=env)
    assert upgrade.exit_code == 0, upgrade.output
    with run.sessions() as session:
        pool = set(session.scalars(select(PoolNumber.number)))
    assert pool == {"+15550100001", "+15550100003"}
    left_out = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(left_out) == 1, left_out
    assert left_out[0].startswith("HOTLINE_POOL_NUMBERS: its number 2 of 3 is not put back")
    assert "remove it from HOTLINE_POOL_NUMBERS" in left_out[0]
    assert "0100002" not in caplog.text and "•••002" not in caplog.text  # its place, no number


def test_the_first_release_after_migration_0019_applies_the_setting_as_releases_did(
    run,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """IT lists a new pool number in the release that brings migration 0019 (or one that was
    waiting at Twilio at the release before). The database has no record yet of what the
    setting listed: that release took the setting as it stood as applied, so the number stayed
    out for good, under a warning that a coordinator had taken it out. It applies the setting
    as releases did before it, and the edits count from there: taken out afterwards, the number
    stays out, said by its place."""
    add = ["programme", "add", "default", "--name", "Peer support", "--number", HOTLINE]
    run(*add, "--pool", "+15550100001")  # the release before listed this one alone
    url = run.runner.env["DATABASE_URL"]
    command.downgrade(migrate.alembic_config(url), "0018")  # as the release before left it
    caplog.clear()
    run("db", "upgrade")  # HOTLINE_POOL_NUMBERS: +15550100001,+15550100002
    with run.sessions() as session:
        assert session.scalars(select(PoolNumber.number)).all() == ["+15550100001", "+15550100002"]
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    run(*add, "--pool", "+15550100001")  # taken out again, by IT
    for _ in range(2):
        caplog.clear()
        run("db", "upgrade")
        with run.sessions() as session:
            assert session.scalars(select(PoolNumber.number)).all() == ["+15550100001"]
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warned) == 1, warned
        assert warned[0].startswith("HOTLINE_POOL_NUMBERS: its number 2 of 2 is not put back")
        assert "0100002" not in caplog.text and "•••002" not in caplog.text


def test_a_pool_number_moved_to_another_programme_but_still_in_the_environment_stops_no_release(
    run,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A coordinator moved a pool number HOTLINE_POOL_NUMBERS lists to another programme in
    Settings: every release stopped on it ("already another programme's number") until IT
    edited the environment, security fixes included. Now the release goes on, brings what it
    brings (here a new pool number), leaves the number with the programme it was moved to, and
    says where it is listed and what to change, by its place there (no number in the log)."""
    add = ["programme", "add", "north", "--name", "North", "--number", "+15550200000"]
    assert "north" in run(*add)
    with run.sessions() as session, session.begin():  # the coordinator, in Settings
        default, north = session.scalars(select(Programme).order_by(Programme.id)).all()
        moved = next(p for p in default.pool_numbers if p.number == "+15550100002")
        default.pool_numbers.remove(moved)
        north.pool_numbers.append(PoolNumber(number="+15550100002"))
    env = {"HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002,+15550100003"}
    upgrade = run.runner.invoke(main, ["db", "upgrade"], env=env)
    assert upgrade.exit_code == 0, upgrade.output
    with run.sessions() as session:
        pools = {
            slug: set(
                session.scalars(select(PoolNumber.number).where(PoolNumber.programme_id == pid))
            )
            for pid, slug in session.execute(select(Programme.id, Programme.slug))
        }
    assert pools == {
        "default": {"+15550100001", "+15550100003"},
        "north": {"+15550200000", "+15550100002"},
    }
    left_out = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(left_out) == 1, left_out
    assert left_out[0].startswith("HOTLINE_POOL_NUMBERS: its number 2 of 3 is left out")
    assert "programme 'north'" in left_out[0]
    assert "remove it from HOTLINE_POOL_NUMBERS" in left_out[0]
    assert "0100002" not in caplog.text and "•••002" not in caplog.text  # its place, no number


def test_db_upgrade_with_a_new_hotline_number_keeps_the_old_one_in_the_pool(run) -> None:  # type: ignore[no-untyped-def]
    """Clinicians keep texting the number they saved: taken off the line, their texts would be
    ignored; in the pool, they are answered with the new number."""
    renumbered = {**run.runner.env, "HOTLINE_NUMBER": "+15550100009"}
    assert CliRunner(env=renumbered).invoke(main, ["db", "upgrade"]).exit_code == 0
    with run.sessions() as session:
        assert session.scalar(select(Programme.hotline_number)) == "+15550100009"
        pool = session.scalars(select(PoolNumber.number).order_by(PoolNumber.id)).all()
    assert pool == ["+15550100001", "+15550100002", "+15550100000"]


def test_a_renumbered_programme_keeps_its_old_number_so_clinicians_learn_the_new_one(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """`programme add` with a new --number: a clinician who texts or calls the old one (the
    number they saved) is told the new one, not met with silence. A --pool that would drop the
    old number is refused; leaving it out later, once it is released, is a choice of its own."""
    new = "+15550100009"
    hotline.fake.own_number(new, **SET_UP_HERE)
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    add = ["programme", "add", "default", "--name", "Peer support", "--number", new]
    dropping = runner.invoke(main, [*add, "--pool", ",".join(POOL)])
    assert dropping.exit_code == 1
    assert "+1•••••••000, the number clinicians have saved, would leave the line" in (
        dropping.output
    )
    kept = runner.invoke(main, add)
    assert kept.exit_code == 0, kept.output
    assert "+15550100000 stays in its pool" in kept.output
    clinician = phones.phone("+15550109001")
    clinician.texts("is anyone there?", to=HOTLINE)
    clinician.expect_text(f"For peer support, text {new}.", from_=HOTLINE)
    call = calls.place("+15550109002", HOTLINE)
    assert call.hears("call 5 5 5, 0 1 0, 0 0 0 9")
    again = runner.invoke(main, [*add, "--pool", ",".join([*POOL, HOTLINE])])
    assert again.exit_code == 0, again.output
    released = runner.invoke(main, [*add, "--pool", ",".join(POOL)])  # a choice, later
    assert released.exit_code == 0, released.output
    phones.assert_no_unexpected()


def test_a_first_deploy_names_every_number_twilio_does_not_send_here_yet(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    """The release of a first deploy (`hotline db upgrade`, a brand-new HOTLINE_NUMBER and pool
    bought at Twilio, still on Twilio's own demo URLs) stops naming every number IT must set
    up, not one a deploy: IT sets them all up, and the next release creates the programme."""
    hotline, pool = "+15550300000", ("+15550300001", "+15550300002")
    demo = {"sms_url": "https://demo.twilio.com/welcome/sms/reply"}
    sids = [fake_twilio.own_number(number, **demo) for number in (hotline, *pool)]
    env = twilio_env(fake_twilio) | {
        "HOTLINE_NUMBER": hotline,
        "HOTLINE_POOL_NUMBERS": ",".join(pool),
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}",
    }
    refused = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert refused.exit_code == 1
    for shown in ("+1•••••••000", "+1•••••••001", "+1•••••••002"):
        assert f"{shown} cannot join the line yet" in refused.output
    assert "demo.twilio.com" in refused.output and "IT must set" in refused.output
    twilio = TwilioTelephony(
        fake_twilio.account_sid, fake_twilio.auth_token, base_url=fake_twilio.base_url
    )
    for sid in sids:  # IT, in the Twilio console
        twilio.point_webhooks(sid, RIGHT["sms_url"], RIGHT["voice_url"], RIGHT["status_callback"])
    done = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert done.exit_code == 0, done.output
    engine = make_engine(env["DATABASE_URL"])
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(Programme.hotline_number)) == hotline
        assert set(session.scalars(select(PoolNumber.number))) == set(pool)
    engine.dispose()


def test_numbers_check_before_the_first_release_checks_the_environments_numbers(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    """Before the first release (an empty database: no tables yet), there is no programme:
    IT's `hotline numbers check` reads HOTLINE_NUMBER and HOTLINE_POOL_NUMBERS at Twilio and
    says what to set up, never a silent pass nor 'run `hotline db upgrade` first' (the release
    that check is for)."""
    hotline, pool = "+15550300000", ("+15550300001",)
    demo = {"sms_url": "https://demo.twilio.com/welcome/sms/reply"}
    fake_twilio.own_number(hotline, **RIGHT)
    sid = fake_twilio.own_number(pool[0], **demo)
    env = twilio_env(fake_twilio) | {
        "HOTLINE_NUMBER": hotline,
        "HOTLINE_POOL_NUMBERS": ",".join(pool),
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}",
    }
    wrong_token = CliRunner().invoke(
        main, ["numbers", "check"], env=env | {"TWILIO_AUTH_TOKEN": "not-the-token"}
    )
    assert wrong_token.exit_code == 1 and "could not read the numbers at Twilio" in (
        wrong_token.output
    )
    checked = CliRunner().invoke(main, ["numbers", "check"], env=env)
    assert checked.exit_code == 1, checked.output
    assert line_of(checked.output, hotline).endswith("(HOTLINE_NUMBER, not yet the line's): ok")
    waiting = line_of(checked.output, pool[0])
    assert "(HOTLINE_POOL_NUMBERS, not yet the line's)" in waiting
    assert "demo.twilio.com" in waiting
    assert "1 of 2 numbers need attention" in checked.output
    numbers = {n["sid"]: n for n in fake_twilio.numbers}
    assert numbers[sid]["sms_url"] == demo["sms_url"]  # read only


def test_a_first_deploy_has_numbers_check_configure_set_up_its_numbers_before_its_release(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    """IT, with the production settings and an empty database, runs `hotline numbers check
    --configure` before the first release: the numbers nothing else uses (bought through the
    API with no URLs, or on Twilio's demo URLs) are pointed here, so the release takes them;
    one whose URLs send elsewhere (a mistyped number that is another service's) is left alone,
    and the release leaves it out."""
    hotline, fresh, crm = "+15550300000", "+15550300001", "+15550300002"
    demo = {
        "sms_url": "https://demo.twilio.com/welcome/sms/reply",
        "voice_url": "https://demo.twilio.com/welcome/voice/",
    }
    fake_twilio.own_number(hotline)
    fake_twilio.own_number(fresh, **demo)
    fake_twilio.own_number(crm, **CRM)
    env = twilio_env(fake_twilio) | {
        "HOTLINE_NUMBER": hotline,
        "HOTLINE_POOL_NUMBERS": f"{fresh},{crm}",
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}",
    }
    configured = CliRunner().invoke(main, ["numbers", "check", "--configure"], env=env)
    assert configured.exit_code == 1, configured.output
    for number in (hotline, fresh):
        assert line_of(configured.output, number).endswith("not yet the line's): webhooks set; ok")
    left = line_of(configured.output, crm)
    assert "left alone: it sends to crm.example.org (perhaps another service's)" in left
    assert "1 of 3 numbers need attention" in configured.output
    numbers = {n["phone_number"]: n for n in fake_twilio.numbers}
    assert {k: numbers[hotline][k] for k in RIGHT} == RIGHT
    assert {k: numbers[fresh][k] for k in RIGHT} == RIGHT
    assert numbers[crm]["sms_url"] == CRM["sms_url"]  # another service's stays as it was

    released = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert released.exit_code == 0, released.output
    engine = make_engine(env["DATABASE_URL"])
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(Programme.hotline_number)) == hotline
        assert set(session.scalars(select(PoolNumber.number))) == {fresh}
    engine.dispose()


def test_numbers_check_before_a_release_that_migrates_reads_the_lines_numbers(
    run,  # type: ignore[no-untyped-def]
    fake_twilio: FakeTwilio,
) -> None:
    """IT checks a new pool number with this version before its release, which also migrates
    the database: the line's numbers are still read from the database one revision behind,
    not refused with 'run `hotline db upgrade` first' (the release being prepared)."""
    for number in ("+15550100000", "+15550100001", "+15550100002", "+15550100003"):
        fake_twilio.own_number(number, **RIGHT)
    url = run.runner.env["DATABASE_URL"]
    command.downgrade(migrate.alembic_config(url), "-1")
    env = twilio_env(fake_twilio) | {
        "HOTLINE_POOL_NUMBERS": "+15550100001,+15550100002,+15550100003"
    }
    checked = run.runner.invoke(main, ["numbers", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert line_of(checked.output, "+15550100001").endswith("(default, pool): ok")
    assert line_of(checked.output, "+15550100003").endswith(
        "(HOTLINE_POOL_NUMBERS, not yet the line's): ok"
    )


def test_a_first_release_with_a_wrong_twilio_token_says_so(
    tmp_path: Path, fake_twilio: FakeTwilio
) -> None:
    """A mistyped TWILIO_AUTH_TOKEN at the first deploy: the release cannot ask Twilio about
    the new number, and says why and what to check, not to try again in a few minutes (which
    would fail the same way for ever)."""
    fake_twilio.own_number("+15550300000", **RIGHT)
    env = twilio_env(fake_twilio) | {
        "TWILIO_AUTH_TOKEN": "not-the-token",
        "HOTLINE_NUMBER": "+15550300000",
        "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'first.sqlite3'}",
    }
    refused = CliRunner().invoke(main, ["db", "upgrade"], env=env)
    assert refused.exit_code == 1
    assert "+1•••••••000 could not be checked at Twilio" in refused.output
    assert "(401)" in refused.output and "TWILIO_AUTH_TOKEN" in refused.output
    assert "try again" not in refused.output


@pytest.mark.parametrize(
    "args",
    [
        ["coordinator", "create", "x@example.org"],
        ["api-token", "create", "ops"],
        ["supporter", "add", "Ana", "+15550100011"],
        ["keys", "rotate", "--check"],
    ],
    ids=lambda args: " ".join(args[:2]),
)
def test_commands_before_db_upgrade_say_to_run_it(tmp_path: Path, args: list[str]) -> None:
    """An operator who makes an account before migrating is told what to do, not shown
    SQLAlchemy's 'no such table' traceback."""
    runner = CliRunner(
        env={
            "HOTLINE_NUMBER": "+15550100000",
            "HOTLINE_INSTANCE_PATH": str(tmp_path / "instance"),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'fresh.sqlite3'}",
        }
    )
    result = runner.invoke(main, args, input="a-long-password\na-long-password\n")
    assert result.exit_code == 1, result.output
    assert "run `hotline db upgrade` first" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_commands_on_a_database_an_upgrade_behind_say_to_run_it(tmp_path: Path) -> None:
    """A release deployed without its `release: hotline db upgrade` step."""
    url = f"sqlite:///{tmp_path / 'old.sqlite3'}"
    migrate.upgrade(url, "0009")
    runner = CliRunner(env={"HOTLINE_NUMBER": "+15550100000", "DATABASE_URL": url})
    result = runner.invoke(main, ["api-token", "create", "ops"])
    assert result.exit_code == 1
    assert "is at revision 0009" in result.output
    assert "run `hotline db upgrade` first" in result.output
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(main, ["api-token", "create", "ops"]).output.startswith("hl_")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"HOTLINE_TIMEZONE": "Mars/Olympus_Mons"}, "Error: HOTLINE_TIMEZONE:"),
        ({"HOTLINE_CHECKIN_HOURS": "9-5"}, "Error: HOTLINE_CHECKIN_HOURS:"),
        # Not the first production setting it lacks: it is the wrong command for production.
        ({"HOTLINE_ENV": "production"}, "Error: hotline dev is for development only"),
    ],
)
def test_hotline_dev_refuses_a_bad_setting_in_one_line(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    runner = CliRunner(env={"HOTLINE_INSTANCE_PATH": str(tmp_path), **env})
    result = runner.invoke(main, ["dev", "--port", "0"])
    assert result.exit_code == 1
    assert result.output.startswith(message) and result.output.count("\n") == 1, result.output


def test_an_unknown_programme_is_refused_naming_the_ones_there_are(run) -> None:  # type: ignore[no-untyped-def]
    run("programme", "add", "north", "--name", "North", "--number", "+15550200000")
    result = run.runner.invoke(main, ["api-token", "create", "ops", "--programme", "nort"])
    assert result.exit_code == 1
    assert "no programme 'nort' (there are: default, north)" in result.output
    assert "db upgrade" not in result.output  # the database is migrated: that would not help


@pytest.mark.parametrize("zone", ["Mars/Olympus_Mons", "Europe", "../../etc/passwd"])
def test_programme_add_refuses_a_time_zone_that_is_not_one(run, zone: str) -> None:  # type: ignore[no-untyped-def]
    """'Europe' is a folder of the zone database, not a zone: it was a traceback."""
    args = ["programme", "add", "north", "--name", "N", "--number", "+15550200000"]
    result = run.runner.invoke(main, [*args, "--timezone", zone])
    assert result.exit_code == 1
    assert result.output == f"Error: not an IANA time zone: {zone!r}\n"


@pytest.mark.parametrize("command", [["db", "upgrade"], ["api-token", "create", "ops"]])
def test_a_database_that_cannot_be_reached_is_one_line_naming_database_url(
    tmp_path: Path, command: list[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'h.sqlite3'}"
    runner = CliRunner(env={"HOTLINE_NUMBER": "+15550100000", "DATABASE_URL": url})
    result = runner.invoke(main, command)
    assert result.exit_code == 1
    assert result.output.startswith("Error: DATABASE_URL: cannot reach the database (")
    assert result.output.count("\n") == 1, result.output


# --- coordinators who leave, or forget their password ------------------------------------------


def test_a_deactivated_coordinator_is_signed_out_and_refused_until_activated(run) -> None:  # type: ignore[no-untyped-def]
    """Someone who has left the programme: their open console session ends at once and their
    password no longer signs in; activating them again lets them back."""
    run("coordinator", "create", "lead@example.org", input="a long passphrase\n" * 2)
    now = utcnow()
    with run.sessions() as session, session.begin():
        person = session.scalar(select(Coordinator))
        cookie = signin.open_session(session, person, now)
    assert "lead@example.org\tcoordinator\tdefault\tactive\tnever signed in" in run(
        "coordinator", "list"
    )
    assert "deactivated" in run("coordinator", "deactivate", "Lead@Example.org")
    assert "lead@example.org\tcoordinator\tdefault\tdeactivated" in run("coordinator", "list")
    with run.sessions() as session, session.begin():
        assert signin.find_session(session, cookie, now) is None
        refused = signin.authenticate(session, "lead@example.org", "a long passphrase", "x", now)
        assert refused is None
        (entry,) = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "coordinator.deactivated")
        )
        assert entry.actor == "command line" and entry.target == f"coordinator:{person.id}"
    run("coordinator", "activate", "lead@example.org")
    with run.sessions() as session, session.begin():
        back = signin.authenticate(session, "lead@example.org", "a long passphrase", "x", now)
        assert back is not None
        assert signin.find_session(session, cookie, now) is None  # the old session stays ended
    unknown = run.runner.invoke(main, ["coordinator", "deactivate", "nobody@example.org"])
    assert unknown.exit_code == 1 and "no coordinator" in unknown.output


def test_a_coordinator_who_forgot_their_password_gets_a_new_one(run) -> None:  # type: ignore[no-untyped-def]
    run("coordinator", "create", "lead@example.org", input="a long passphrase\n" * 2)
    now = utcnow()
    with run.sessions() as session, session.begin():
        cookie = signin.open_session(session, session.scalar(select(Coordinator)), now)
    short = run.runner.invoke(
        main, ["coordinator", "password", "lead@example.org"], input="short\n" * 2
    )
    assert short.exit_code == 1 and "at least 12 characters" in short.output
    run("coordinator", "password", "lead@example.org", input="another long phrase\n" * 2)
    with run.sessions() as session, session.begin():
        assert signin.find_session(session, cookie, now) is None  # whoever had it is out
        old = signin.authenticate(session, "lead@example.org", "a long passphrase", "x", now)
        new = signin.authenticate(session, "lead@example.org", "another long phrase", "x", now)
        assert old is None and new is not None
        entry = session.scalar(
            select(AuditEntry).where(AuditEntry.action == "coordinator.password")
        )
        assert entry is not None and "phrase" not in str(entry.new) + str(entry.old)


def test_a_retired_programme_answers_that_its_line_has_closed_and_sends_nothing_more(
    hotline: Hotline, phones: Phones, calls: Calls
) -> None:
    """A health system stops running a programme: `hotline programme retire` is refused while
    a conversation is open on it; once it has ended, texts and calls to its numbers (from a
    clinician or a supporter) are told the line has closed, with the resources and the crisis
    sentence, no request opens, and the check-ins the conversation left are cancelled. `restore`
    runs it again."""
    hotline.add_supporter("Alice", "+15550108001")
    clinician, alice = phones.talking("+15550109001", "+15550108001")
    bob = hotline.add_supporter("Bob", "+15550108002", on_call=False)
    now = hotline.clock.now
    hotline.add_shift(bob, now + timedelta(minutes=20), now + timedelta(hours=8))
    with transaction(hotline.services.sessions) as session:  # reminders 30 minutes before
        session.add(ScheduleSettings(programme_id=hotline.programme_id, reminder_minutes=30))
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    refused = runner.invoke(main, ["programme", "retire", "default"])
    assert refused.exit_code == 1 and "1 conversations and 0 calls are still open" in refused.output
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    retired = runner.invoke(main, ["programme", "retire", "default"])
    assert retired.exit_code == 0, retired.output
    assert "3 check-ins and 0 reminders cancelled" in retired.output
    clinician.texts("it happened again tonight", to=HOTLINE)
    closed = clinician.expect_text("This peer support line has closed", from_=HOTLINE)
    assert "988" in closed.body and "Employee Assistance Program" in closed.body
    alice.texts("BACK", to=POOL[0])
    alice.expect_text("This peer support line has closed", from_=POOL[0])
    assert calls.place("+15550109002", HOTLINE).hears("This peer support line has closed")
    with hotline.session() as session:
        states = set(session.scalars(select(CheckIn.state)))
        assert states == {CheckInState.CANCELLED}
        assert session.scalar(select(func.count()).select_from(Conversation)) == 1  # no new one
    hotline.sweep()  # Bob's shift starts in 20 minutes: no reminder from a closed line
    phones.assert_no_unexpected()
    restored = runner.invoke(main, ["programme", "restore", "default"])
    assert restored.exit_code == 0, restored.output
    clinician.texts("are you there?", to=HOTLINE)
    alice.expect_text("Reply ACCEPT")
    hotline.sweep()
    phones.phone("+15550108002").expect_text("reminder, you are on call")


def test_forget_to_a_retired_programme_still_erases_the_number(
    hotline: Hotline, phones: Phones
) -> None:
    """A clinician of a programme retired since they were supported texts FORGET to its
    number: their number is erased at once, as ever, and they are told so (not that the line
    has closed, with their number kept until the purge)."""
    hotline.add_supporter("Alice", "+15550108001")
    clinician, alice = phones.talking("+15550109001", "+15550108001")
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    assert runner.invoke(main, ["programme", "retire", "default"]).exit_code == 0
    clinician.texts("FORGET", to=HOTLINE)
    done = clinician.expect_text("your number and anything linking you to this line have been")
    assert "Text here again" not in done.body  # the line has closed
    with hotline.session() as session:
        assert session.scalars(select(Clinician.phone_sealed)).all() == [None]
    phones.assert_no_unexpected()


def test_a_punctuated_stop_to_a_retired_programme_is_confirmed(
    hotline: Hotline, phones: Phones
) -> None:
    """`Stop.`, which Twilio may take for an ordinary text, is confirmed by the line itself
    (README), on a retired programme too: not met with silence, and the block is kept."""
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    assert runner.invoke(main, ["programme", "retire", "default"]).exit_code == 0
    clinician = phones.phone("+15550109001")
    clinician.texts("Stop.", to=HOTLINE)
    clinician.expect_text("no more texts from this number", from_=HOTLINE)
    with transaction(hotline.services.sessions) as session:
        vault, pid = hotline.services.vault, hotline.programme_id
        assert is_opted_out(session, vault, pid, "+15550109001", HOTLINE)
    phones.assert_no_unexpected()


def test_a_retired_programme_with_the_longest_resources_still_says_so_whole(
    hotline: Hotline, phones: Phones
) -> None:
    """Retiring, the coordinator writes where its clinicians turn now into the resources (the
    console allows 1,500 characters): with the closing's own words and the crisis sentence
    that passed Twilio's 1,600, and the crisis sentence, last, was lost. The closing and the
    crisis sentence go as one text, the resources as another."""
    resources = ("Mercy's clinicians: call the EAP at 555-0100, any hour. " * 40)[
        : TEXT_LIMITS["resources_text"]
    ].strip()
    with transaction(hotline.services.sessions) as session:
        session.get_one(Programme, hotline.programme_id).resources_text = resources
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    assert runner.invoke(main, ["programme", "retire", "default"]).exit_code == 0
    clinician = phones.phone("+15550109001")
    clinician.texts("is anyone there", to=HOTLINE)
    closed = clinician.expect_text("This peer support line has closed", from_=HOTLINE)
    assert len(closed.body) <= MAX_TEXT and "call or text 988" in closed.body
    assert clinician.expect_text(from_=HOTLINE).body == resources
    phones.assert_no_unexpected()


def test_retiring_or_restoring_twice_says_so_and_is_audited_once(run) -> None:  # type: ignore[no-untyped-def]
    """`hotline programme retire` run again on a retired programme wrote a second audit entry,
    and `restore` on a running one said it runs as if it had just been restored: each says
    nothing changed, and the audit log holds one entry per real change."""
    assert "programme default retired" in run("programme", "retire", "default")
    with run.sessions() as session:
        retired_at = session.scalar(select(Programme.retired_at))
    again = run("programme", "retire", "default")
    assert "programme default is already retired" in again and "nothing changed" in again
    assert f"{retired_at:%Y-%m-%d %H:%M}" in again
    assert "programme default runs" in run("programme", "restore", "default")
    live = run("programme", "restore", "default")
    assert "programme default is not retired: nothing changed" in live
    with run.sessions() as session:
        assert session.scalar(select(Programme.retired_at)) is None
        actions = session.scalars(
            select(AuditEntry.action)
            .where(AuditEntry.action.startswith("programme.r"))
            .order_by(AuditEntry.id)
        ).all()
    assert actions == ["programme.retire", "programme.restore"]


def test_a_request_closed_text_owed_as_the_programme_retires_is_sent_as_the_line_closing(
    hotline: Hotline, phones: Phones
) -> None:
    """Nobody took a clinician's request in two days and Twilio did not take the text telling
    them it closed (a 503): the sweeper owes it for a day. The programme retired meanwhile,
    and the sweeper, which passes retired programmes by, never told them: the line's last word
    to them was that their request waits. It tells them now that the line has closed, with
    where to turn (not "text here any time to try again"), once."""
    clinician = phones.phone("+15550109001")
    clinician.texts("rough week", to=HOTLINE)
    clinician.expect_text("No peer is free right now; your request is waiting", from_=HOTLINE)
    hotline.clock.advance(hours=48, seconds=1)
    hotline.fake.fail_for("+15550109001", code=None, status=503)
    assert hotline.sweep().conversations_closed == 1
    hotline.fake.clear_faults()
    runner = CliRunner(env=environment_for(hotline.settings.database_url, hotline.fake))
    retired = runner.invoke(main, ["programme", "retire", "default"])
    assert retired.exit_code == 0, retired.output
    hotline.clock.advance(seconds=30)
    hotline.sweep()
    hotline.sweep()
    closed = clinician.expect_text("This peer support line has closed", from_=HOTLINE)
    assert "988" in closed.body and "Employee Assistance Program" in closed.body
    assert "try again" not in closed.body
    with hotline.session() as session:
        assert session.scalar(select(Conversation.close_owed_at)) is None
    phones.assert_no_unexpected()
