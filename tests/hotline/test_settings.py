"""Settings from the environment: CONTRACT.md's defaults, production's refusals, clear errors."""

from __future__ import annotations

import base64
import secrets
import stat
import threading
from datetime import time, timedelta
from pathlib import Path

import pytest

from hotline.settings import (
    PRODUCTION_REQUIRED,
    Settings,
    SettingsError,
    load_settings,
    process_environ,
)

HOTLINE = "+15550100000"
KEY_A = "8RMPVRUczn9lC0NIJ-qZIRYdh6xR6tJbOMcsYr0pDYY="
KEY_B = base64.urlsafe_b64encode(bytes(range(32))).decode()

PRODUCTION = {
    "HOTLINE_ENV": "production",
    "HOTLINE_NUMBER": HOTLINE,
    "DATABASE_URL": "postgresql+psycopg://hotline@db.internal/hotline",
    "REDIS_URL": "redis://redis.internal:6379/0",
    "HOTLINE_PUBLIC_URL": "https://hotline.example.org",
    "TWILIO_ACCOUNT_SID": "AC" + "0" * 32,
    "TWILIO_AUTH_TOKEN": "production-token",
    "HOTLINE_SECRET_KEY": "production-secret",
    "HOTLINE_DATA_KEY": KEY_A,
}


def load(tmp_path: Path, **environ: str) -> Settings:
    return load_settings({"HOTLINE_NUMBER": HOTLINE, **environ}, instance_path=tmp_path)


def error_for(tmp_path: Path, environ: dict[str, str]) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(environ, instance_path=tmp_path)
    return str(caught.value)


# --- defaults --------------------------------------------------------------------------------

DEFAULTS = [
    ("env", "development"),
    ("timezone", "UTC"),
    ("offer_timeout", 180),
    ("checkin_offsets", (timedelta(days=1), timedelta(days=7), timedelta(days=30))),
    ("checkin_hours", (time(9, 0), time(20, 0))),
    ("pool_numbers", (HOTLINE,)),
    ("hotline_number", HOTLINE),
    ("public_url", None),
    ("redis_url", None),
    ("twilio_auth_token_secondary", None),
]


@pytest.mark.parametrize(("attribute", "expected"), DEFAULTS, ids=[d[0] for d in DEFAULTS])
def test_defaults_match_the_contract(tmp_path: Path, attribute: str, expected: object) -> None:
    assert getattr(load(tmp_path), attribute) == expected


def test_default_crisis_text_names_988(tmp_path: Path) -> None:
    assert "988" in load(tmp_path).crisis_text


def test_default_database_is_an_sqlite_file_under_the_instance_path(tmp_path: Path) -> None:
    url = load(tmp_path).database_url
    assert url.startswith("sqlite:///")
    assert str(tmp_path.resolve()) in url


def test_without_twilio_credentials_development_uses_the_simulator(tmp_path: Path) -> None:
    assert load(tmp_path).simulated
    assert not load(tmp_path, TWILIO_ACCOUNT_SID="AC1", TWILIO_AUTH_TOKEN="t").simulated


PARSED = [
    ("HOTLINE_OFFER_TIMEOUT", "45", "offer_timeout", 45),
    ("HOTLINE_CHECKIN_OFFSETS", "30m, 2h,7d", "checkin_offsets",
     (timedelta(minutes=30), timedelta(hours=2), timedelta(days=7))),
    ("HOTLINE_CHECKIN_OFFSETS", "90s", "checkin_offsets", (timedelta(seconds=90),)),
    ("HOTLINE_CHECKIN_OFFSETS", "none", "checkin_offsets", ()),
    ("HOTLINE_CHECKIN_HOURS", "08:30-21:15", "checkin_hours", (time(8, 30), time(21, 15))),
    ("HOTLINE_CHECKIN_HOURS", "", "checkin_hours", None),
    ("HOTLINE_CHECKIN_HOURS", "   ", "checkin_hours", None),
    ("HOTLINE_TIMEZONE", "America/Chicago", "timezone", "America/Chicago"),
    ("HOTLINE_POOL_NUMBERS", "+15550100001, (555) 010-0002", "pool_numbers",
     ("+15550100001", "+15550100002")),
    ("HOTLINE_NUMBER", "(555) 010-0000", "hotline_number", HOTLINE),
    ("HOTLINE_PUBLIC_URL", "https://hotline.example.org/", "public_url",
     "https://hotline.example.org"),
    ("HOTLINE_PUBLIC_URL", "http://127.0.0.1:8080/line", "public_url",
     "http://127.0.0.1:8080/line"),
    ("REDIS_URL", "rediss://:secret@redis.internal:6380/1", "redis_url",
     "rediss://:secret@redis.internal:6380/1"),
    ("REDIS_URL", "unix:///run/redis.sock", "redis_url", "unix:///run/redis.sock"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "attribute", "expected"), PARSED, ids=[f"{p[0]}={p[1]!r}" for p in PARSED]
)
def test_settings_are_parsed(
    tmp_path: Path, name: str, value: str, attribute: str, expected: object
) -> None:
    assert getattr(load(tmp_path, **{name: value}), attribute) == expected


# --- production ------------------------------------------------------------------------------


def test_production_starts_with_every_required_setting(tmp_path: Path) -> None:
    settings = load_settings(PRODUCTION, instance_path=tmp_path)
    assert settings.production
    assert settings.data_keys == (base64.urlsafe_b64decode(KEY_A),)
    assert not settings.simulated


@pytest.mark.parametrize("missing", PRODUCTION_REQUIRED)
@pytest.mark.parametrize("absent", ["unset", "blank"])
def test_production_refuses_to_start_without_each_required_setting(
    tmp_path: Path, missing: str, absent: str
) -> None:
    environ = dict(PRODUCTION)
    if absent == "unset":
        del environ[missing]
    else:
        environ[missing] = "   "
    message = error_for(tmp_path, environ)
    assert missing in message
    others = [name for name in PRODUCTION_REQUIRED if name != missing]
    assert not [name for name in others if name in message], message


def test_production_never_generates_keys(tmp_path: Path) -> None:
    environ = {k: v for k, v in PRODUCTION.items() if k != "HOTLINE_DATA_KEY"}
    error_for(tmp_path, environ)
    assert not (tmp_path / "data_key").exists()
    assert not (tmp_path / "secret_key").exists()


def test_the_environment_must_be_development_or_production(tmp_path: Path) -> None:
    assert "HOTLINE_ENV" in error_for(tmp_path, {**PRODUCTION, "HOTLINE_ENV": "staging"})


# --- malformed settings ----------------------------------------------------------------------

MALFORMED = [
    ("HOTLINE_NUMBER", None),
    ("HOTLINE_NUMBER", ""),
    ("HOTLINE_NUMBER", "hotline"),
    ("HOTLINE_NUMBER", "123"),
    ("HOTLINE_NUMBER", "sip:line@example.org"),
    ("HOTLINE_POOL_NUMBERS", "+15550100001,not-a-number"),
    ("HOTLINE_DATA_KEY", "not base64 at all!"),
    ("HOTLINE_DATA_KEY", base64.urlsafe_b64encode(b"sixteen byte key").decode()),
    ("HOTLINE_DATA_KEY", f"{KEY_A},too-short"),
    ("HOTLINE_DATA_KEY", f"{KEY_A},"),
    ("HOTLINE_TIMEZONE", "Mars/Olympus_Mons"),
    ("HOTLINE_TIMEZONE", "Eastern"),
    ("HOTLINE_TIMEZONE", "Europe"),
    ("HOTLINE_TIMEZONE", "../../etc/passwd"),
    ("HOTLINE_CHECKIN_OFFSETS", "1w"),
    ("HOTLINE_CHECKIN_OFFSETS", "tomorrow"),
    ("HOTLINE_CHECKIN_OFFSETS", "1d,,7d"),
    ("HOTLINE_CHECKIN_OFFSETS", "-1d"),
    ("HOTLINE_CHECKIN_OFFSETS", "1.5d"),
    ("HOTLINE_CHECKIN_OFFSETS", "0d,7d"),
    ("HOTLINE_CHECKIN_HOURS", "9am-5pm"),
    ("HOTLINE_CHECKIN_HOURS", "09:00"),
    ("HOTLINE_CHECKIN_HOURS", "09:00-20:00-22:00"),
    ("HOTLINE_CHECKIN_HOURS", "25:00-26:00"),
    ("HOTLINE_CHECKIN_HOURS", "09:00-09:00"),
    ("HOTLINE_OFFER_TIMEOUT", "three minutes"),
    ("HOTLINE_OFFER_TIMEOUT", "0"),
    ("HOTLINE_OFFER_TIMEOUT", "-180"),
    ("HOTLINE_OFFER_TIMEOUT", "2.5"),
    ("HOTLINE_OFFER_TIMEOUT", "3m"),
    # Signatures are checked against HOTLINE_PUBLIC_URL: without its scheme, every webhook
    # would be refused 403 and the line would go silent.
    ("HOTLINE_PUBLIC_URL", "hotline.example.org"),
    ("HOTLINE_PUBLIC_URL", "hotline.example.org:443"),
    ("HOTLINE_PUBLIC_URL", "ftp://hotline.example.org"),
    ("HOTLINE_PUBLIC_URL", "https://"),
    ("HOTLINE_PUBLIC_URL", "https://hotline.example.org:port"),
    ("HOTLINE_PUBLIC_URL", "https://hotline.example.org/?line=1"),
    ("TWILIO_API_BASE_URL", "127.0.0.1:8080"),
    ("REDIS_URL", "redis.internal:6379"),
    ("REDIS_URL", "http://redis.internal:6379/0"),
    ("DATABASE_URL", "hotline.sqlite3"),
    ("DATABASE_URL", "mysql://hotline@db.internal/hotline"),
]


@pytest.mark.parametrize(
    ("name", "value"), MALFORMED, ids=[f"{name}={value!r}" for name, value in MALFORMED]
)
def test_a_missing_or_malformed_setting_is_an_error_naming_it(
    tmp_path: Path, name: str, value: str | None
) -> None:
    environ = {"HOTLINE_NUMBER": HOTLINE, "HOTLINE_DATA_KEY": KEY_A}
    if value is None:
        del environ[name]
    else:
        environ[name] = value
    assert name in error_for(tmp_path, environ)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_URL", "redis.internal:6379?password=hunter2-secret"),
        ("DATABASE_URL", "hotline:hunter2-secret@db.internal"),
        # Twilio can call webhooks with HTTP basic auth in their URL; a query makes this one bad.
        ("HOTLINE_PUBLIC_URL", "https://twilio:hunter2-secret@hotline.example.org/?x=1"),
        ("TWILIO_API_BASE_URL", "ftp://AC1:hunter2-secret@api.example.org"),
    ],
)
def test_a_malformed_url_is_one_line_naming_it_and_never_repeats_its_password(
    tmp_path: Path, name: str, value: str
) -> None:
    message = error_for(tmp_path, {"HOTLINE_NUMBER": HOTLINE, name: value})
    assert message.startswith(name) and "\n" not in message
    assert "hunter2" not in message


def test_a_bad_data_key_is_not_repeated_in_the_error(tmp_path: Path) -> None:
    almost = KEY_A[:-8]  # a real key, truncated: still secret material
    message = error_for(tmp_path, {"HOTLINE_NUMBER": HOTLINE, "HOTLINE_DATA_KEY": almost})
    assert almost not in message
    assert "HOTLINE_DATA_KEY" in message


# --- keys ------------------------------------------------------------------------------------


def test_development_generates_keys_under_the_instance_path(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    settings = load(instance)
    assert settings.secret_key
    assert len(settings.data_keys) == 1 and len(settings.data_keys[0]) == 32
    for name in ("secret_key", "data_key"):
        mode = stat.S_IMODE((instance / name).stat().st_mode)
        assert mode & 0o077 == 0, f"{name} is readable by others: {oct(mode)}"


def test_a_restart_loads_the_same_generated_keys(tmp_path: Path) -> None:
    first, second = load(tmp_path), load(tmp_path)
    assert second.data_keys == first.data_keys
    assert second.secret_key == first.secret_key


def test_two_instances_never_share_generated_keys(tmp_path: Path) -> None:
    one, other = load(tmp_path / "one"), load(tmp_path / "other")
    assert one.data_keys != other.data_keys
    assert one.secret_key != other.secret_key


def load_together(instance: Path, processes: int) -> list[Settings | BaseException]:
    """Load settings from ``processes`` threads released at the same instant."""
    results: list[Settings | BaseException] = []
    barrier = threading.Barrier(processes)

    def start() -> None:
        barrier.wait()
        try:
            results.append(load(instance))
        except BaseException as error:
            results.append(error)

    threads = [threading.Thread(target=start) for _ in range(processes)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_processes_starting_together_agree_on_the_generated_keys(tmp_path: Path) -> None:
    """``hotline dev``'s web and worker (or a Procfile runner) load settings at the same time:
    if each generated its own data key, what one encrypted the other could never open."""
    for attempt in range(20):
        instance = tmp_path / f"attempt-{attempt}"
        results = load_together(instance, 6)
        loaded = [r for r in results if isinstance(r, Settings)]
        assert len(loaded) == 6, [r for r in results if not isinstance(r, Settings)]
        assert len({s.data_keys for s in loaded}) == 1
        assert len({s.secret_key for s in loaded}) == 1
        assert load(instance).data_keys == loaded[0].data_keys
        assert not [p.name for p in instance.iterdir() if p.name.startswith(".")]


def test_configured_keys_win_over_generated_ones(tmp_path: Path) -> None:
    settings = load(tmp_path, HOTLINE_DATA_KEY=KEY_A, HOTLINE_SECRET_KEY="configured")
    assert settings.data_keys == (base64.urlsafe_b64decode(KEY_A),)
    assert settings.secret_key == "configured"
    assert not (tmp_path / "data_key").exists()


def test_a_comma_separated_data_key_list_loads_every_key_in_order(tmp_path: Path) -> None:
    key_c = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    settings = load(tmp_path, HOTLINE_DATA_KEY=f"{KEY_B}, {KEY_A} ,{key_c}")
    assert settings.data_keys == tuple(base64.urlsafe_b64decode(k) for k in (KEY_B, KEY_A, key_c))


@pytest.mark.parametrize(
    ("given", "used"),
    [
        (
            "postgres://u:p@db.internal:5432/hotline",
            "postgresql+psycopg://u:p@db.internal:5432/hotline",
        ),
        (
            "postgresql://u@db/hotline?sslmode=require",
            "postgresql+psycopg://u@db/hotline?sslmode=require",
        ),
        ("postgresql+psycopg://u@db/hotline", "postgresql+psycopg://u@db/hotline"),
        # A driver named that is not installed (guides still write psycopg2's) stopped every
        # process with ModuleNotFoundError's traceback instead of starting on psycopg 3.
        (
            "postgresql+psycopg2://u:p@db.internal:5432/hotline",
            "postgresql+psycopg://u:p@db.internal:5432/hotline",
        ),
        ("postgres+psycopg2://u@db/hotline", "postgresql+psycopg://u@db/hotline"),
        ("sqlite:////var/lib/hotline.db", "sqlite:////var/lib/hotline.db"),
    ],
)
def test_platform_database_urls_get_the_installed_driver(
    tmp_path: Path, given: str, used: str
) -> None:
    assert load(tmp_path, DATABASE_URL=given).database_url == used


def test_a_dot_env_in_the_working_directory_is_read_and_never_overrides(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text(
        "HOTLINE_TEST_FROM_DOTENV=from-file\nHOTLINE_TIMEZONE=Asia/Tokyo\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOTLINE_TEST_FROM_DOTENV", "")  # so monkeypatch removes it afterwards
    monkeypatch.delenv("HOTLINE_TEST_FROM_DOTENV")
    monkeypatch.setenv("HOTLINE_TIMEZONE", "Europe/Paris")

    environ = process_environ()

    assert environ["HOTLINE_TEST_FROM_DOTENV"] == "from-file"
    assert environ["HOTLINE_TIMEZONE"] == "Europe/Paris", "the real environment wins"


def test_production_without_a_database_url_warns_that_it_uses_a_file_of_its_own(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Production may run on SQLite (CONTRACT.md), but on a platform a missing DATABASE_URL
    gives every process a file of its own: the release migrated one nobody serves from, and the
    web answered every text with the crisis fallback, with nothing in its log to say why."""
    from hotline.app import build_services

    unset = {k: v for k, v in PRODUCTION.items() if k != "DATABASE_URL"}
    build_services(load_settings(unset, instance_path=tmp_path))
    (warning,) = [r.getMessage() for r in caplog.records if "DATABASE_URL" in r.getMessage()]
    assert "DATABASE_URL is not set" in warning and str(tmp_path) in warning
    caplog.clear()
    for given in (PRODUCTION, {**unset, "DATABASE_URL": f"sqlite:///{tmp_path}/kept.db"}):
        build_services(load_settings(given, instance_path=tmp_path))
    assert not [r for r in caplog.records if "DATABASE_URL" in r.getMessage()]


def test_a_crisis_sentence_too_long_for_the_greeting_is_refused_naming_the_setting(
    tmp_path: Path,
) -> None:
    """Said in every greeting beside the programme's own greeting: longer than a programme's
    crisis sentence may be in Settings, the greeting could pass Twilio's 1,600 characters and
    be refused whole, the crisis line with it."""
    assert load(tmp_path, HOTLINE_CRISIS_TEXT="Call 988. " * 50).crisis_text.startswith("Call")
    error = error_for(tmp_path, {"HOTLINE_NUMBER": HOTLINE, "HOTLINE_CRISIS_TEXT": "x" * 501})
    assert "HOTLINE_CRISIS_TEXT must be at most 500 characters (it has 501)" in error
    invisible = {"HOTLINE_NUMBER": HOTLINE, "HOTLINE_CRISIS_TEXT": "\u200b\u00ad"}
    assert "HOTLINE_CRISIS_TEXT has no text once made plain" in error_for(tmp_path, invisible)
