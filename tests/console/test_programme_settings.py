"""Programme settings: validated, stored with the environment as default, audited redacted."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from hotline import accounts, audit, numbercheck, programme_settings, wording
from hotline.cli import main
from hotline.db import transaction
from hotline.models import Programme
from hotline.programmes import config_of, ensure_programme
from hotline.speech import digit_by_digit
from tests.console.conftest import ACTOR, Console
from tests.kit import sms
from tests.kit.calls import PRESS_1, Calls, Script
from tests.kit.harness import HOTLINE, POOL, SET_UP_HERE, Hotline
from tests.kit.harness import test_env as environment_for
from tests.kit.phones import Phones

ALICE, CLINICIAN = "+15550108001", "+15550109001"

BAD = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "IANA"),
    ({"timezone": "Europe"}, "timezone", "IANA"),
    ({"timezone": "../../etc/passwd"}, "timezone", "IANA"),
    ({"checkin_offsets": "1 week"}, "checkin_offsets", "duration"),
    ({"checkin_offsets": "400d"}, "checkin_offsets", "more than a year"),
    ({"checkin_offsets": "0m, 1d"}, "checkin_offsets", "no time after"),
    ({"checkin_offsets": "99999999999d"}, "checkin_offsets", "more than a year"),
    ({"checkin_offsets": "\u0663d"}, "checkin_offsets", "duration"),  # an Arabic-Indic 3
    ({"checkin_hours": "9-5pm"}, "checkin_hours", "window"),
    ({"checkin_hours": "09:00Z-20:00Z"}, "checkin_hours", "give no offset"),
    ({"checkin_hours": "09:00+01-20:00+01"}, "checkin_hours", "give no offset"),
    ({"offer_timeout": "5"}, "offer_timeout", "30 to 3600"),
    ({"offer_timeout": "\u00b2"}, "offer_timeout", "30 to 3600"),  # a superscript 2
    ({"pool_numbers": "+15550100001,not a number"}, "pool_numbers", "phone number"),
    ({"alert_phone": "12"}, "alert_phone", "phone number"),
    ({"greeting": "x" * 1001}, "greeting", "at most 1000"),
    ({"call_greeting": "x" * 501}, "call_greeting", "at most 500"),
    ({"checkin_offsets": ",".join(["1d"] * 80)}, "checkin_offsets", "at most 200"),  # valid
    ({"checkin_hours": "09:00:00.000000-20:00:00.000000"}, "checkin_hours", "at most 20"),
    ({"favourite_colour": "red"}, "favourite_colour", "unknown setting"),
]


def gate(hotline: Hotline) -> numbercheck.Gate | None:
    """The console's: the fake Twilio account of the harness, asked over its REST API."""
    return numbercheck.gate(hotline.services.telephony, hotline.settings.public_url)


def update(hotline: Hotline, changes: dict[str, object], **options: Any) -> None:
    """Settings saved with ``changes`` (``options``: update_settings's, e.g. ``shown``)."""
    services = hotline.services
    with transaction(services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme_settings.update_settings(
            session,
            services.vault,
            programme,
            changes,
            ACTOR,
            hotline.clock.now,
            "UTC",
            gate=gate(hotline),
            **options,
        )


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("changes", "field", "message"), BAD)
def test_bad_settings_are_refused(
    hotline: Hotline, changes: dict[str, object], field: str, message: str
) -> None:
    with pytest.raises(programme_settings.SettingsChangeError, match=message) as caught:
        update(hotline, changes)
    assert caught.value.field == field


def test_settings_apply_with_defaults_and_are_audited_redacted(hotline: Hotline) -> None:
    for number in ("+15550100005", "+15550100006"):
        hotline.fake.own_number(number, **SET_UP_HERE)
    update(
        hotline,
        {
            "greeting": "Hello <b>there</b>",
            "timezone": "America/Chicago",
            "checkin_offsets": "2d, 14d",
            "checkin_hours": "any",
            "alert_phone": "+15550106000",
            "pool_numbers": "+15550100005, +15550100006",
            "reminder_minutes": "30",
        },
    )
    services = hotline.services
    with hotline.session() as session:
        programme = session.get_one(Programme, hotline.programme_id)
        p = config_of(programme, services.settings)
        shown = programme_settings.view(session, services.vault, programme)
        (entry,) = audit.entries(session, hotline.programme_id)
    assert p.greeting == "Hello <b>there</b>" and p.zone.key == "America/Chicago"
    assert p.checkin_hours is None and len(p.checkin_offsets) == 2
    assert p.pool_numbers == ("+15550100005", "+15550100006")
    assert shown["alert_phone"] == "+1•••••••000" and shown["reminder_minutes"] == 30
    assert "+15550106000" not in repr((entry.old, entry.new))
    assert entry.new is not None and entry.new["alert_phone"] == "+1•••••••000"
    update(hotline, {"greeting": "", "timezone": ""})
    with hotline.session() as session:
        p = config_of(session.get_one(Programme, hotline.programme_id), services.settings)
    assert p.greeting.startswith("You've reached") and p.zone.key == "UTC"


def test_a_spoken_greeting_is_said_to_callers_and_the_crisis_sentence_always_follows(
    hotline: Hotline, calls: Calls
) -> None:
    hotline.add_supporter("Alice", ALICE)
    update(hotline, {"call_greeting": "You\u2019ve reached the forYOU team at Mercy."})
    call = calls.place(CLINICIAN, HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert call.hears("You've reached the forYOU team at Mercy.")
    crisis = digit_by_digit(hotline.settings.crisis_text)  # as said aloud
    assert call.hears(crisis) and not call.hears("clinician peer support")
    said = " ".join(call.heard)
    assert said.index("forYOU team") < said.index(crisis)
    update(hotline, {"call_greeting": ""})  # back to the default
    again = calls.place("+15550109002", HOTLINE, Script(phones={ALICE: PRESS_1}))
    assert again.hears("clinician peer support line") and again.hears(crisis)


def test_pasted_typography_is_made_plain_so_texts_stay_in_gsm7(hotline: Hotline) -> None:
    pasted = "We\u2019re here \u2014 \u201cno judgement\u201d\u2026 Text\u00a0us."
    update(hotline, {"greeting": pasted, "checkin_text": "Thinking of you \u2013 reply any time."})
    with hotline.session() as session:
        p = config_of(session.get_one(Programme, hotline.programme_id), hotline.settings)
    assert p.greeting == 'We\'re here - "no judgement"... Text us.'
    assert p.checkin_text == "Thinking of you - reply any time."
    assert sms.is_gsm7(wording.greeting(p)) and sms.is_gsm7(p.checkin_text)
    update(hotline, {"greeting": "Bienvenue, \u00e9quipe \u2014 \u00bfhola?"})
    with hotline.session() as session:
        kept = session.get_one(Programme, hotline.programme_id).greeting
    assert kept == "Bienvenue, \u00e9quipe - \u00bfhola?", "accents are the coordinator's choice"


def test_a_stored_setting_a_newer_release_refuses_falls_back_instead_of_failing_texts(
    hotline: Hotline, phones: Phones
) -> None:
    """Check-in hours with a zone offset were once accepted; comparing them with local times
    failed every DONE. Stored before the fix, they must now read as the default."""
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme.checkin_hours, programme.checkin_offsets = "09:00Z-20:00Z", "3000000d"
        p = config_of(programme, hotline.services.settings)
    assert (p.checkin_hours, p.checkin_offsets) == (
        hotline.services.settings.checkin_hours,
        hotline.services.settings.checkin_offsets,
    )
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.talking(CLINICIAN, ALICE, first="rough night")
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    phones.assert_no_unexpected()


def test_a_pool_number_carrying_a_conversation_cannot_be_removed_until_it_ends(
    hotline: Hotline, phones: Phones
) -> None:
    """Texts to a number no programme owns are ignored: removing a live conversation's number
    would make the supporter's replies vanish."""
    hotline.add_supporter("Alice", ALICE)
    clinician, alice = phones.phone(CLINICIAN), phones.phone(ALICE)
    clinician.texts("rough night")
    clinician.expect_text("confidential")
    assert alice.expect_text("Reply ACCEPT").from_ == POOL[0]
    others = ",".join(POOL[1:])
    with pytest.raises(programme_settings.SettingsChangeError, match="carrying") as caught:
        update(hotline, {"pool_numbers": others})  # an offer is pending on it
    assert caught.value.field == "pool_numbers"
    alice.texts("ACCEPT")
    alice.expect_text("connected")
    alice.expect_text("rough night")
    clinician.expect_text("joined")
    with pytest.raises(programme_settings.SettingsChangeError, match="carrying"):
        update(hotline, {"pool_numbers": others})  # the conversation runs on it
    alice.texts("DONE")
    alice.expect_text("Conversation closed")
    clinician.expect_text("not alone")
    update(hotline, {"pool_numbers": others})
    with hotline.session() as session:
        numbers = session.get_one(Programme, hotline.programme_id).pool_numbers
        assert [n.number for n in numbers] == list(POOL[1:])
    phones.assert_no_unexpected()


def test_a_pool_number_that_is_a_persons_phone_is_refused_in_every_programme(
    hotline: Hotline, phones: Phones
) -> None:
    """Texts from the line's own numbers are ignored everywhere (the loop guard): a pool number
    that is a person's phone would cut them off from every programme's line."""
    hotline.add_supporter("Alice", ALICE)
    phones.phone(CLINICIAN).texts("rough night")
    phones.phone(CLINICIAN).expect_text("confidential")
    phones.phone(ALICE).expect_text("Reply ACCEPT")
    with transaction(hotline.services.sessions) as session:
        north = ensure_programme(
            session, slug="north", name="North", hotline_number="+15550200000", pool_numbers=()
        )
        for person in (ALICE, CLINICIAN):  # a supporter, and a clinician, of another programme
            with pytest.raises(programme_settings.SettingsChangeError, match="phone") as caught:
                programme_settings.update_settings(
                    session,
                    hotline.services.vault,
                    north,
                    {"pool_numbers": f"+15550200001,{person}"},
                    ACTOR,
                    hotline.clock.now,
                    "UTC",
                    gate=gate(hotline),
                )
            assert caught.value.field == "pool_numbers"
    phones.phone(CLINICIAN).texts("still here")  # reaches the line still
    phones.phone(ALICE).texts("ACCEPT")
    phones.phone(ALICE).expect_text("connected")
    phones.phone(ALICE).expect_text("rough night")
    phones.phone(ALICE).expect_text("still here")
    phones.phone(CLINICIAN).expect_text("joined")
    phones.assert_no_unexpected()


# --- which numbers may join a pool ------------------------------------------------------------

NEW = "+15550100005"  # a number the IT team bought for the pool
CRM = {"sms_url": "https://crm.example.org/sms", "voice_url": "https://crm.example.org/voice"}
NOT_SET_UP_HERE = [
    pytest.param(CRM, "A message comes in&#34; is POST https://crm.example.org/sms", id="crm"),
    pytest.param(None, "not a number of this Twilio account", id="not-the-accounts"),
    pytest.param(
        {**SET_UP_HERE, "sms_application_sid": "AP" + "2" * 32}, "AP" + "2" * 32, id="application"
    ),
    pytest.param(
        {"sms_url": SET_UP_HERE["sms_url"]}, "A call comes in&#34; is not set", id="texts-only"
    ),
]


def pool_of(hotline: Hotline) -> list[str]:
    with hotline.session() as session:
        return [p.number for p in session.get_one(Programme, hotline.programme_id).pool_numbers]


@pytest.mark.sqlite_only
@pytest.mark.parametrize(("setup", "problem"), NOT_SET_UP_HERE)
def test_a_number_twilio_does_not_send_here_cannot_join_the_pool(
    console: Console, setup: dict[str, str] | None, problem: str
) -> None:
    """The coordinator is told what IT must do first, and the pool stays as it was."""
    hotline = console.hotline
    if setup is not None:
        hotline.fake.own_number(NEW, **setup)
    page = console.post("/console/settings", {"pool_numbers": ",".join([*POOL, NEW])})
    assert page.status_code == 422  # type: ignore[attr-defined]
    shown = page.get_data(as_text=True)  # type: ignore[attr-defined]
    assert "+1•••••••005 cannot join the line yet" in shown and problem in shown
    assert "IT must set it up at Twilio" in shown
    assert pool_of(hotline) == list(POOL)


def test_another_services_number_keeps_its_records_and_a_number_set_up_here_joins(
    hotline: Hotline,
) -> None:
    """The hourly clean-up deletes every record of the line's numbers at Twilio: a number of the
    same account that another service uses (an appointment-reminder system) would lose its
    records. It is refused; one IT has pointed at this line joins."""
    reminders, patient = "+15550177001", "+15550177002"
    hotline.fake.own_number(reminders, **CRM)
    theirs = hotline.fake.keep_message(
        reminders, patient, "Your appointment is at 9", hotline.clock.now - timedelta(hours=2)
    )
    with pytest.raises(programme_settings.SettingsChangeError, match="cannot join") as caught:
        update(hotline, {"pool_numbers": [*POOL, reminders]})
    assert caught.value.field == "pool_numbers"
    hotline.sweep()
    hotline.clock.advance(seconds=25)
    hotline.sweep()
    assert theirs not in hotline.fake.deleted
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    update(hotline, {"pool_numbers": [*POOL, NEW]})
    assert pool_of(hotline) == [*POOL, NEW]


def test_a_number_another_programme_has_cannot_join_the_pool(hotline: Hotline) -> None:
    """Set up here at Twilio, but north's: a number has one programme."""
    hotline.fake.own_number("+15550200001", **SET_UP_HERE)
    with transaction(hotline.services.sessions) as session:
        ensure_programme(
            session,
            slug="north",
            name="North",
            hotline_number="+15550200000",
            pool_numbers=("+15550200001",),
        )
    for theirs in ("+15550200000", "+15550200001"):
        with pytest.raises(programme_settings.SettingsChangeError, match="another programme"):
            update(hotline, {"pool_numbers": [*POOL, theirs]})
    assert pool_of(hotline) == list(POOL)


def api_call(hotline: Hotline, token: str, changes: dict[str, Any]) -> Any:
    headers = {"Authorization": f"Bearer {token}"}
    return hotline.client.patch("/api/v1/programme", json=changes, headers=headers)


def test_the_api_says_why_a_pool_number_cannot_join_and_when_to_try_again(
    hotline: Hotline,
) -> None:
    """A number Twilio does not send here is a 422 on ``pool_numbers``; Twilio not answering
    is a 503 (nothing wrong with the request: the same one may pass later), as documented."""
    with transaction(hotline.services.sessions) as session:
        token = accounts.create_api_token(session, "directory sync", hotline.programme_id)
    changes = {"pool_numbers": [*POOL, NEW], "greeting": "Hello from the forYOU team."}
    refused = api_call(hotline, token, changes)
    assert refused.status_code == 422
    error = refused.get_json()["error"]
    assert (
        error["field"] == "pool_numbers"
        and "not a number of this Twilio account" in (error["message"])
    )
    hotline.fake.own_number(NEW, **SET_UP_HERE)
    hotline.fake.fail_next_list(1, status=503, code=20503)
    later = api_call(hotline, token, changes)
    assert later.status_code == 503
    error = later.get_json()["error"]
    assert error == {
        "status": 503,
        "message": "+1•••••••005 could not be checked at Twilio: try again in a few minutes",
        "field": "pool_numbers",
    }
    document = hotline.client.get("/api/v1/openapi.json").get_json()
    assert "503" in document["paths"]["/programme"]["patch"]["responses"]
    with hotline.session() as session:
        assert session.get_one(Programme, hotline.programme_id).greeting is None
    assert pool_of(hotline) == list(POOL)
    done = api_call(hotline, token, changes)
    assert done.status_code == 200
    assert done.get_json()["stored"]["pool_numbers"][-1] == "+1•••••••005"
    assert pool_of(hotline) == [*POOL, NEW]


def test_numbers_already_the_lines_are_not_asked_about_at_twilio(hotline: Hotline) -> None:
    """Taking a number out of the pool, or putting the hotline number in, needs no answer from
    Twilio (the pool's numbers here are not even on the fake account)."""
    hotline.fake.fail_next_list(1, status=503, code=20503)
    update(hotline, {"pool_numbers": [*POOL[:2], HOTLINE]})
    assert pool_of(hotline) == [*POOL[:2], HOTLINE]


def test_a_control_character_in_a_spoken_text_does_not_break_every_call(hotline: Hotline) -> None:
    """A word processor's manual line break is a vertical tab, which XML cannot carry: Twilio
    would refuse every call's answer (error 12100). Saving drops it; one stored already (by an
    older release, or the environment's crisis sentence) is dropped as it is spoken."""
    update(hotline, {"call_greeting": "Welcome to the peer line.\x0bThis call is confidential."})
    with transaction(hotline.services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        assert programme.call_greeting == "Welcome to the peer line.\nThis call is confidential."
        programme.crisis_text = "Call 988 now.\x0c"  # written past the settings page
    response = hotline.post("/twilio/voice", CallSid="CA" + "c" * 32, From=CLINICIAN, To=HOTLINE)
    said = " ".join(ET.fromstring(response.get_data(as_text=True)).itertext())  # noqa: S314
    assert "This call is confidential." in said and "Call 9 8 8 now." in said


@pytest.mark.sqlite_only
def test_a_pool_number_taken_out_in_settings_stays_out_at_the_next_release(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """The coordinator took a pool number out in Settings; HOTLINE_POOL_NUMBERS still lists it,
    and Twilio still sends it here. The next release (`hotline db upgrade`) put it back in the
    pool without a word, and offers went out from it again. It stays out now, and the release
    says so by its place in the setting (no number in the log), with what IT changes; a new
    number the setting brings still joins."""
    hotline = console.hotline
    for number in (*POOL, NEW):
        hotline.fake.own_number(number, **SET_UP_HERE)
    saved = console.post("/console/settings", {"pool_numbers": ",".join(POOL[:2])})
    assert saved.status_code == 302  # type: ignore[attr-defined]
    assert pool_of(hotline) == list(POOL[:2])
    env = environment_for(
        hotline.settings.database_url, hotline.fake, HOTLINE_POOL_NUMBERS=",".join([*POOL, NEW])
    )
    caplog.clear()
    upgrade = CliRunner(env=env).invoke(main, ["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    assert pool_of(hotline) == [*POOL[:2], NEW]
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1, warned
    assert warned[0].startswith(
        "HOTLINE_POOL_NUMBERS: its number 3 of 4 is not put back in programme 'default''s "
        "pool: a coordinator took it out in Settings on "
    )
    assert "remove it from HOTLINE_POOL_NUMBERS" in warned[0]
    assert POOL[2] not in caplog.text and "•••003" not in caplog.text
    again = CliRunner(env=env).invoke(main, ["db", "upgrade"])  # and at every release after
    assert again.exit_code == 0, again.output
    assert pool_of(hotline) == [*POOL[:2], NEW]
    console.post("/console/settings", {"pool_numbers": ",".join([*POOL, NEW])})  # back in
    assert set(pool_of(hotline)) == {*POOL, NEW}
    caplog.clear()
    assert CliRunner(env=env).invoke(main, ["db", "upgrade"]).exit_code == 0
    assert set(pool_of(hotline)) == {*POOL, NEW}
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_release_with_no_pool_setting_leaves_the_pool_settings_gave_and_warns_nothing(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """HOTLINE_POOL_NUMBERS unset (its default: the hotline number alone), and the pool kept in
    Settings, without the hotline number. Every release warned that the hotline number, "its
    number 1 of 1", was not put back and was to be removed from a setting IT never wrote."""
    hotline = console.hotline
    for number in (HOTLINE, *POOL):
        hotline.fake.own_number(number, **SET_UP_HERE)
    env = environment_for(hotline.settings.database_url, hotline.fake, HOTLINE_POOL_NUMBERS="")
    first = CliRunner(env=env).invoke(main, ["db", "upgrade"])  # the line run on its default
    assert first.exit_code == 0, first.output
    assert HOTLINE in pool_of(hotline)
    saved = console.post("/console/settings", {"pool_numbers": ",".join(POOL[:2])})
    assert saved.status_code == 302  # type: ignore[attr-defined]
    for _ in range(2):
        caplog.clear()
        upgrade = CliRunner(env=env).invoke(main, ["db", "upgrade"])
        assert upgrade.exit_code == 0, upgrade.output
        assert pool_of(hotline) == list(POOL[:2])
        assert not [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


def release(hotline: Hotline, pool: list[str], caplog: pytest.LogCaptureFixture) -> list[str]:
    """`hotline db upgrade` with HOTLINE_POOL_NUMBERS listing ``pool``: the warnings it logs."""
    env = environment_for(
        hotline.settings.database_url, hotline.fake, HOTLINE_POOL_NUMBERS=",".join(pool)
    )
    caplog.clear()
    upgrade = CliRunner(env=env).invoke(main, ["db", "upgrade"])
    assert upgrade.exit_code == 0, upgrade.output
    return [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]


@pytest.mark.sqlite_only
def test_a_new_pool_number_that_masks_like_one_taken_out_joins_at_the_next_release(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """IT bought a pool number that masks as one a coordinator took out in Settings (same
    country code, same last three digits) and listed it in HOTLINE_POOL_NUMBERS. The release
    held it back as if it were the one taken out (the audit log it read keeps numbers masked),
    and a coordinator had to add it by hand. It joins; the one taken out stays out."""
    hotline = console.hotline
    alike = "+15550200003"  # +1•••••••003, as POOL[2]
    for number in (*POOL, alike):
        hotline.fake.own_number(number, **SET_UP_HERE)
    console.post("/console/settings", {"pool_numbers": ",".join(POOL[:2])})
    assert pool_of(hotline) == list(POOL[:2])
    warned = release(hotline, [*POOL, alike], caplog)
    assert pool_of(hotline) == [*POOL[:2], alike]
    assert len(warned) == 1, warned
    assert warned[0].startswith("HOTLINE_POOL_NUMBERS: its number 3 of 4 is not put back")


@pytest.mark.sqlite_only
def test_a_pool_number_it_takes_out_of_the_environment_and_puts_back_joins_again(
    console: Console, caplog: pytest.LogCaptureFixture
) -> None:
    """A coordinator took a pool number out in Settings; the releases after kept it out while
    HOTLINE_POOL_NUMBERS listed it. IT then took it out of the setting, and later put it back
    (the number is to serve again): that is IT adding it, and the release adds it, without a
    warning. It was held back for ever, until a coordinator added it in Settings."""
    hotline = console.hotline
    for number in POOL:
        hotline.fake.own_number(number, **SET_UP_HERE)
    console.post("/console/settings", {"pool_numbers": ",".join(POOL[:2])})
    assert len(release(hotline, list(POOL), caplog)) == 1  # kept out, and said
    assert pool_of(hotline) == list(POOL[:2])
    assert release(hotline, list(POOL[:2]), caplog) == []  # IT takes it out of the setting
    assert pool_of(hotline) == list(POOL[:2])
    assert release(hotline, list(POOL), caplog) == []  # and puts it back
    assert pool_of(hotline) == list(POOL)
