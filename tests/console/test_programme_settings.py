"""Programme settings: validated, stored with the environment as default, audited redacted."""

from __future__ import annotations

import pytest

from hotline import audit, programme_settings, wording
from hotline.db import transaction
from hotline.models import Programme
from hotline.programmes import config_of
from tests.console.conftest import ACTOR
from tests.kit import sms
from tests.kit.harness import Hotline

BAD = [
    ({"timezone": "Mars/Olympus_Mons"}, "timezone", "IANA"),
    ({"timezone": "Europe"}, "timezone", "IANA"),
    ({"timezone": "../../etc/passwd"}, "timezone", "IANA"),
    ({"checkin_offsets": "1 week"}, "checkin_offsets", "duration"),
    ({"checkin_hours": "9-5pm"}, "checkin_hours", "window"),
    ({"offer_timeout": "5"}, "offer_timeout", "30 to 3600"),
    ({"pool_numbers": "+15550100001,not a number"}, "pool_numbers", "phone number"),
    ({"alert_phone": "12"}, "alert_phone", "phone number"),
    ({"greeting": "x" * 1001}, "greeting", "at most 1000"),
    ({"favourite_colour": "red"}, "favourite_colour", "unknown setting"),
]


def update(hotline: Hotline, changes: dict[str, object]) -> None:
    services = hotline.services
    with transaction(services.sessions) as session:
        programme = session.get_one(Programme, hotline.programme_id)
        programme_settings.update_settings(
            session, services.vault, programme, changes, ACTOR, hotline.clock.now, "UTC"
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
