"""The hotline's settings: one frozen object, built from the environment in one place.

Nothing else in the code base reads ``os.environ``. See CONTRACT.md for the meaning of each name.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from hotline.phone import InvalidPhoneNumber, normalize
from hotline.plaintext import plain

CRISIS_TEXT_LIMIT = 500  # characters, as a programme's own in Settings
DEFAULT_CRISIS_TEXT = (
    "If you are in crisis or thinking about suicide, call or text 988 "
    "(Suicide & Crisis Lifeline) now, or 911 in an emergency."
)
PRODUCTION_REQUIRED = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "HOTLINE_SECRET_KEY",
    "HOTLINE_DATA_KEY",
    "REDIS_URL",
    "HOTLINE_PUBLIC_URL",
)
_OFFSET = re.compile(r"^\s*(\d+)\s*([smhd])\s*$", re.ASCII)
NO_CHECKINS = "none"  # the check-in cadence of a programme that sends none
MAX_OFFSET = timedelta(days=366)  # a check-in on the event's anniversary, no later
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DATABASE_BACKENDS = ("sqlite", "postgresql")
REDIS_SCHEMES = ("redis", "rediss", "unix")


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names it."""


@dataclass(frozen=True)
class Settings:
    env: str = "development"
    database_url: str = ""
    database_url_given: bool = True  # False: the SQLite file under instance/, by default
    redis_url: str | None = None
    public_url: str | None = None
    hotline_number: str = ""
    pool_numbers: tuple[str, ...] = ()
    pool_numbers_listed: bool = False  # HOTLINE_POOL_NUMBERS set (else the hotline number alone)
    twilio_account_sid: str | None = None
    twilio_auth_token: str | None = None
    twilio_auth_token_secondary: str | None = None
    twilio_api_base_url: str | None = None
    secret_key: str = ""
    data_keys: tuple[bytes, ...] = ()
    timezone: str = "UTC"
    offer_timeout: int = 180
    checkin_offsets: tuple[timedelta, ...] = (
        timedelta(days=1),
        timedelta(days=7),
        timedelta(days=30),
    )
    checkin_hours: tuple[time, time] | None = (time(9), time(20))
    crisis_text: str = DEFAULT_CRISIS_TEXT
    retention_days: int = 30
    trusted_proxies: int = 0  # reverse proxies in front whose X-Forwarded-For/-Proto we believe
    instance_path: Path = field(default_factory=lambda: Path("instance"))

    @property
    def production(self) -> bool:
        return self.env == "production"

    @property
    def simulated(self) -> bool:
        """True when texts and calls go to the in-process phone simulator instead of Twilio."""
        return not (self.twilio_account_sid and self.twilio_auth_token)

    @property
    def auth_tokens(self) -> tuple[str, ...]:
        """Tokens that may sign webhooks: the primary first, then the rotation secondary."""
        return tuple(t for t in (self.twilio_auth_token, self.twilio_auth_token_secondary) if t)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def load_settings(
    environ: Mapping[str, str] | None = None, instance_path: Path | None = None
) -> Settings:
    """Build the settings from ``environ`` (``os.environ`` by default, with ``.env`` applied).

    Raises SettingsError naming the first setting that is missing or malformed.
    """
    if environ is None:
        environ = process_environ()
    env = _get(environ, "HOTLINE_ENV") or "development"
    if env not in ("development", "production"):
        raise SettingsError("HOTLINE_ENV must be 'development' or 'production'")
    production = env == "production"
    if production:
        for name in PRODUCTION_REQUIRED:
            if not _get(environ, name):
                raise SettingsError(f"{name} is required when HOTLINE_ENV=production")
    instance = instance_path or Path(_get(environ, "HOTLINE_INSTANCE_PATH") or "instance")
    hotline_number = _number(environ, "HOTLINE_NUMBER", required=True)
    listed = _numbers(environ, "HOTLINE_POOL_NUMBERS")
    pool = listed or (hotline_number,)
    return Settings(
        env=env,
        database_url=_database_url(_get(environ, "DATABASE_URL"))
        or _default_database_url(instance),
        database_url_given=_get(environ, "DATABASE_URL") is not None,
        redis_url=_redis_url(_get(environ, "REDIS_URL")),
        public_url=_base_url(environ, "HOTLINE_PUBLIC_URL", "https://hotline.example.org"),
        hotline_number=hotline_number,
        pool_numbers=pool,
        pool_numbers_listed=bool(listed),
        twilio_account_sid=_get(environ, "TWILIO_ACCOUNT_SID"),
        twilio_auth_token=_get(environ, "TWILIO_AUTH_TOKEN"),
        twilio_auth_token_secondary=_get(environ, "TWILIO_AUTH_TOKEN_SECONDARY"),
        twilio_api_base_url=_base_url(environ, "TWILIO_API_BASE_URL", "http://127.0.0.1:8080"),
        secret_key=_get(environ, "HOTLINE_SECRET_KEY") or _instance_secret(instance, "secret_key"),
        data_keys=_data_keys(_get(environ, "HOTLINE_DATA_KEY") or _instance_data_key(instance)),
        timezone=_timezone(_get(environ, "HOTLINE_TIMEZONE") or "UTC"),
        offer_timeout=_positive_int(environ, "HOTLINE_OFFER_TIMEOUT", 180),
        checkin_offsets=parse_offsets(
            _get(environ, "HOTLINE_CHECKIN_OFFSETS") or "1d,7d,30d", "HOTLINE_CHECKIN_OFFSETS"
        ),
        checkin_hours=parse_hours(
            environ.get("HOTLINE_CHECKIN_HOURS", "09:00-20:00"), "HOTLINE_CHECKIN_HOURS"
        ),
        crisis_text=_crisis_text(environ),
        retention_days=_positive_int(environ, "HOTLINE_RETENTION_DAYS", 30),
        trusted_proxies=_positive_int(environ, "HOTLINE_TRUSTED_PROXIES", 0, 5, minimum=0),
        instance_path=instance,
    )


def process_environ() -> dict[str, str]:
    """A copy of the process environment with ``.env`` applied (``.env`` never overrides).

    For callers that layer their own defaults before ``load_settings`` (``hotline dev``), so
    that this module stays the one place that reads ``os.environ``.
    """
    from dotenv import find_dotenv, load_dotenv

    # The ``.env`` of the directory the command runs in (or a parent), not of the package's
    # install location, which is where python-dotenv looks by default.
    load_dotenv(find_dotenv(usecwd=True), override=False)
    return dict(os.environ)


def parse_offsets(text: str, name: str = "offsets") -> tuple[timedelta, ...]:
    """``"1d,7d,30d"`` -> timedeltas, soonest first whatever the order written (``7d,1d``
    means the same; check-ins are scheduled and numbered in time order); units s, m, h, d.
    ``"none"``: no check-ins (a programme whose peers follow up by phone themselves)."""
    if text.strip().lower() == NO_CHECKINS:
        return ()
    offsets = []
    for part in text.split(","):
        match = _OFFSET.match(part)
        if not match:
            raise SettingsError(f"{name}: {part.strip()!r} is not a duration like 30m, 2h or 7d")
        seconds = int(match[1]) * _UNITS[match[2]]
        if not seconds:  # a check-in as the conversation ends, beside the peer's goodbye
            raise SettingsError(f"{name}: {part.strip()!r} is no time after the conversation")
        if seconds > MAX_OFFSET.total_seconds():
            raise SettingsError(f"{name}: {part.strip()!r} is more than a year (366d at most)")
        offsets.append(timedelta(seconds=seconds))
    return tuple(sorted(offsets))


def parse_hours(text: str, name: str = "hours") -> tuple[time, time] | None:
    """``"09:00-20:00"`` -> (start, end) local times; empty means any time."""
    if not text.strip():
        return None
    try:
        start, end = (time.fromisoformat(p.strip()) for p in text.split("-"))
    except ValueError:
        raise SettingsError(f"{name}: {text!r} is not a window like 09:00-20:00") from None
    if start.tzinfo is not None or end.tzinfo is not None:
        raise SettingsError(f"{name}: {text!r} is local to the programme: give no offset")
    if start == end:
        raise SettingsError(f"{name}: the window {text!r} is empty")
    return start, end


def _crisis_text(environ: Mapping[str, str]) -> str:
    """HOTLINE_CRISIS_TEXT, made plain, at most CRISIS_TEXT_LIMIT characters: said in every
    greeting, with the programme's greeting (a coordinator's, up to 1,000) beside it, and a
    text over 1,600 characters is refused by Twilio (21617), crisis sentence and all."""
    text = plain(_get(environ, "HOTLINE_CRISIS_TEXT") or DEFAULT_CRISIS_TEXT).strip()
    if not text:  # zero-width characters alone: no crisis line would be said at all
        raise SettingsError("HOTLINE_CRISIS_TEXT has no text once made plain")
    if len(text) > CRISIS_TEXT_LIMIT:
        raise SettingsError(
            f"HOTLINE_CRISIS_TEXT must be at most {CRISIS_TEXT_LIMIT} characters "
            f"(it has {len(text)}): it is said in every greeting"
        )
    return text


def _get(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name, "").strip()
    return value or None


def _number(environ: Mapping[str, str], name: str, *, required: bool) -> str:
    value = _get(environ, name)
    if value is None:
        if required:
            raise SettingsError(f"{name} is required (the E.164 number clinicians text and call)")
        return ""
    try:
        return normalize(value)
    except InvalidPhoneNumber:
        raise SettingsError(f"{name}: not a valid phone number in E.164 form") from None


def _numbers(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = _get(environ, name) or ""
    try:
        return tuple(dict.fromkeys(normalize(n) for n in raw.split(",") if n.strip()))
    except InvalidPhoneNumber:
        raise SettingsError(f"{name}: every entry must be a valid E.164 number") from None


def _positive_int(
    environ: Mapping[str, str],
    name: str,
    default: int,
    maximum: int = 100_000,
    *,
    minimum: int = 1,
) -> int:
    raw = _get(environ, name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not minimum <= int(raw) <= maximum:
        raise SettingsError(f"{name} must be a whole number from {minimum} to {maximum}")
    return int(raw)


def is_timezone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone of the installed database."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, e.g. 'Europe'
        return False
    return True


def _timezone(name: str) -> str:
    if not is_timezone(name):
        raise SettingsError(f"HOTLINE_TIMEZONE: {name!r} is not an IANA time zone")
    return name


def _data_keys(text: str) -> tuple[bytes, ...]:
    keys = []
    for part in text.split(","):
        try:
            key = base64.urlsafe_b64decode(part.strip().encode())
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise SettingsError(
                "HOTLINE_DATA_KEY: each key must be 32 random bytes in URL-safe base64 "
                "(as Fernet.generate_key() prints)"
            )
        keys.append(key)
    return tuple(keys)


def _database_url(url: str | None) -> str | None:
    """PostgreSQL URLs as platforms hand them out (``postgres://``, ``postgresql://``) name no
    driver, or one we do not ship: they get psycopg 3, the one installed. The error never
    repeats the URL: it may hold the database password."""
    if url:
        scheme, separator, rest = url.partition("://")
        if separator and scheme.partition("+")[0] in ("postgres", "postgresql"):
            url = "postgresql+psycopg://" + rest  # psycopg2's URL would stop with a traceback
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            raise SettingsError(
                "DATABASE_URL: not a database URL (e.g. postgresql://user:password@host/hotline)"
            ) from None
        if backend not in DATABASE_BACKENDS:
            raise SettingsError(f"DATABASE_URL: {backend!r} is not supported (use PostgreSQL)")
    return url


def _redis_url(url: str | None) -> str | None:
    """Checked here so a malformed one stops every process at start with its name, not later
    with redis-py's traceback; the error never repeats it (it may hold the password)."""
    if url is not None and urlsplit(url).scheme not in REDIS_SCHEMES:
        raise SettingsError("REDIS_URL: not a Redis URL (redis://, rediss:// or unix://)")
    return url


def _base_url(environ: Mapping[str, str], name: str, example: str) -> str | None:
    """An http(s) base URL, without its trailing slash. HOTLINE_PUBLIC_URL is what signatures
    are checked against: one without its scheme (``hotline.example.org``) would have every
    webhook refused and the line go silent; TWILIO_API_BASE_URL so would every send."""
    url = _get(environ, name)
    if url is None:
        return None
    parts = urlsplit(url)
    try:
        _ = parts.port  # a port that is not a number raises ValueError
    except ValueError:
        parts = parts._replace(netloc="")
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        # Repeated so the operator sees what was read, but never a password in it.
        shown = without_password(url)
        raise SettingsError(f"{name}: {shown!r} is not a base URL like {example} (no query)")
    return url.rstrip("/")


def without_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` part as ``***``, to show or log."""
    return re.sub(r"//([^/@]*?):[^/@]*@", r"//\1:***@", url)


def _default_database_url(instance: Path) -> str:
    instance.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(instance / 'hotline.sqlite3').resolve()}"


def _instance_secret(instance: Path, name: str) -> str:
    """A development secret generated once and kept under ``instance/`` (never in production)."""
    return _instance_file(instance / name, lambda: secrets.token_urlsafe(32))


def _instance_data_key(instance: Path) -> str:
    return _instance_file(
        instance / "data_key", lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    )


def _instance_file(path: Path, generate: Callable[[], str]) -> str:
    """Read ``path``, first creating it with ``generate()`` if it is absent.

    Web and worker processes start together: the value is written to a private temporary file
    and linked into place, so nobody reads a half-written key and a second writer can never
    replace the first one's key (which would leave data nobody can decrypt).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(generate())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process won; use its value
        finally:
            temporary.unlink()
    return path.read_text().strip()
