"""The ``hotline`` command: database, accounts, roster shortcuts, worker and dev server."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

import click
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from hotline import accounts, audit, migrate, numbercheck, retirement, roster, rota, signin
from hotline import keys as keys_core
from hotline.db import make_engine, make_sessionmaker, transaction
from hotline.models import ApiToken, Coordinator, Programme, Supporter, utcnow
from hotline.people import set_alert_phone
from hotline.phone import InvalidPhoneNumber, normalize, redact
from hotline.privacy import Vault
from hotline.programmes import (
    DEFAULT_SLUG,
    NumberInUseError,
    NumberTakenError,
    OldNumberLeavingError,
    ensure_default_programme,
    ensure_programme,
)
from hotline.rotation import follow_programme_zones
from hotline.settings import Settings, SettingsError, is_timezone, load_settings
from hotline.telephony import TelephonyError
from hotline.telephony.twilio_adapter import TwilioTelephony

CLI_ACTOR = "command line"  # who the audit log names for changes made here
# Why `programme add` and `db upgrade` refuse a programme's numbers, changing nothing.
REFUSED = (
    NumberTakenError,
    NumberInUseError,
    OldNumberLeavingError,
    numbercheck.NotSetUpHereError,
)


def _settings() -> Settings:
    try:
        return load_settings()
    except SettingsError as error:
        raise click.ClickException(str(error)) from None


def _twilio(settings: Settings) -> TwilioTelephony | None:
    """The Twilio account of the deployment, None without its credentials (the simulator)."""
    if not (settings.twilio_account_sid and settings.twilio_auth_token):
        return None
    return TwilioTelephony(
        settings.twilio_account_sid,
        settings.twilio_auth_token,
        base_url=settings.twilio_api_base_url,
    )


def _gate(settings: Settings) -> numbercheck.Gate | None:
    """A number becomes the line's only once Twilio sends it here, as in the console."""
    return numbercheck.gate(_twilio(settings), settings.public_url)


def _programme(session: Session, slug: str) -> Programme:
    programme = session.scalar(select(Programme).where(Programme.slug == slug))
    if programme is None:
        # The database is migrated (``_session`` checked): the slug is mistyped, or the first
        # programme was never made (a database migrated by hand).
        slugs = ", ".join(session.scalars(select(Programme.slug).order_by(Programme.slug)))
        there = f"there are: {slugs}" if slugs else "there are none: run `hotline db upgrade`"
        raise click.ClickException(f"no programme {slug!r} ({there})")
    return programme


@click.group()
def main() -> None:
    """Confidential peer-support line for clinicians."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply migrations, then create or update the programme HOTLINE_NUMBER defines (with the
    Twilio credentials set, a number new to the line must already send here at Twilio: a
    HOTLINE_NUMBER that does not stops the upgrade, a HOTLINE_POOL_NUMBERS one is left out
    with a warning; so is a HOTLINE_POOL_NUMBERS one that is another programme's, that is a
    supporter's or clinician's phone, or that the setting listed at the last upgrade and the pool
    has lost since)."""
    settings = _settings()
    try:
        migrate.upgrade(settings.database_url)
    except OperationalError as error:
        if error.statement is not None:  # connected, and a migration failed: show it all
            raise
        raise _unreachable(error) from None
    engine = make_engine(settings.database_url)
    with transaction(make_sessionmaker(engine)) as session:
        try:
            ensure_default_programme(session, settings, Vault(settings.data_keys), _gate(settings))
        except REFUSED as error:
            raise click.ClickException(f"HOTLINE_NUMBER or HOTLINE_POOL_NUMBERS: {error}") from None
        session.flush()
        follow_programme_zones(session, settings.timezone)  # HOTLINE_TIMEZONE may have changed
    engine.dispose()
    click.echo(f"database at revision {migrate.head()}")


@main.group()
def coordinator() -> None:
    """Console accounts."""


@coordinator.command("create")
@click.argument("email")
@click.option("--programme", "slug", default=DEFAULT_SLUG, show_default=True)
@click.option("--admin", is_flag=True, help="May manage every programme.")
@click.password_option(prompt="Password (12+ characters)")
def coordinator_create(email: str, slug: str, admin: bool, password: str) -> None:
    """Create a coordinator who signs in with EMAIL."""
    with _session() as session:
        try:
            person = accounts.create_coordinator(
                session, email, password, _programme(session, slug).id, admin
            )
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"coordinator {person.email} created ({person.role})")


@coordinator.command("list")
def coordinator_list() -> None:
    """Every console account: email, role, programme, active or not, last sign-in."""
    with _session() as session:
        slugs = {p.id: p.slug for p in session.scalars(select(Programme))}
        for person in session.scalars(select(Coordinator).order_by(Coordinator.email)):
            where = slugs.get(person.programme_id, "") if person.programme_id else "every"
            state = "active" if person.active else "deactivated"
            last = _when(person.last_login_at) or "never signed in"
            click.echo(f"{person.email}\t{person.role}\t{where}\t{state}\t{last}")


@coordinator.command("deactivate")
@click.argument("email")
def coordinator_deactivate(email: str) -> None:
    """Stop EMAIL signing in (someone who has left); their console sessions end at once."""
    _set_active(email, False)


@coordinator.command("activate")
@click.argument("email")
def coordinator_activate(email: str) -> None:
    """Let a deactivated coordinator sign in again."""
    _set_active(email, True)


def _set_active(email: str, active: bool) -> None:
    with _session() as session:
        signin.set_active(session, _coordinator(session, email), active, CLI_ACTOR, utcnow())
    click.echo(f"coordinator {email.strip().lower()} {'active' if active else 'deactivated'}")


@coordinator.command("password")
@click.argument("email")
@click.password_option(prompt="New password (12+ characters)")
def coordinator_password(email: str, password: str) -> None:
    """Set a new password for EMAIL (one who forgot theirs); their console sessions end."""
    with _session() as session:
        person = _coordinator(session, email)
        try:
            signin.set_password(session, person, password, CLI_ACTOR, utcnow())
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None
    click.echo(f"password of {email.strip().lower()} changed; their sessions have ended")


def _coordinator(session: Session, email: str) -> Coordinator:
    person = session.scalar(select(Coordinator).where(Coordinator.email == email.strip().lower()))
    if person is None:
        raise click.ClickException(f"no coordinator {email!r} (`hotline coordinator list`)")
    return person


@main.group("api-token")
def api_token() -> None:
    """Bearer tokens for the admin API."""


@api_token.command("create")
@click.argument("name")
@click.option("--programme", "slug", default=DEFAULT_SLUG, show_default=True)
@click.option("--all-programmes", is_flag=True, help="A token for every programme.")
@click.option(
    "--expires-in",
    "days",
    type=click.IntRange(1, 3650),
    default=None,
    metavar="DAYS",
    help="Refuse the token after DAYS days (default: it never expires).",
)
def api_token_create(name: str, slug: str, all_programmes: bool, days: int | None) -> None:
    """Print a new token for NAME once; only its hash is kept."""
    with _session() as session:
        programme_id = None if all_programmes else _programme(session, slug).id
        now = utcnow()
        expires_at = now + timedelta(days=days) if days else None
        try:
            token = accounts.create_api_token(
                session, name, programme_id, actor=CLI_ACTOR, at=now, expires_at=expires_at
            )
        except accounts.AccountError as error:
            raise click.ClickException(str(error)) from None
        click.echo(token)


@api_token.command("list")
@click.option("--programme", "slug", default=None, help="Only this programme's tokens.")
def api_token_list(slug: str | None) -> None:
    """List tokens (never the tokens themselves): id, scope, name, last use, state, expiry."""
    with _session() as session:
        programme_id = None if slug is None else _programme(session, slug).id
        slugs = {pid: slug for pid, slug in session.execute(select(Programme.id, Programme.slug))}
        now = utcnow()
        for token in accounts.api_tokens(session, programme_id):
            scope = "all" if token.programme_id is None else slugs.get(token.programme_id, "?")
            used = _when(token.last_used_at) or "never used"
            state = accounts.token_state(token, now)
            ended = {"revoked": token.revoked_at, "expired": token.expires_at}.get(state)
            if ended is not None:
                state = f"{state} {_when(ended)}"
            elif token.expires_at is not None:
                state = f"live until {_when(token.expires_at)}"
            click.echo(f"{token.id}\t{scope}\t{token.name}\tlast used {used}\t{state}")


@api_token.command("revoke")
@click.argument("token_id", type=int)
def api_token_revoke(token_id: int) -> None:
    """Revoke token TOKEN_ID (see `hotline api-token list`): it stops working at once."""
    with _session() as session:
        token = session.get(ApiToken, token_id)
        if token is None:
            raise click.ClickException(f"no API token {token_id}")
        if not accounts.revoke_api_token(session, token, CLI_ACTOR, utcnow()):
            click.echo(f"API token {token_id} was already revoked")
            return
        click.echo(f"API token {token_id} ({token.name}) revoked")


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else ""


@main.group()
def programme() -> None:
    """Programmes served by this deployment."""


@programme.command("add")
@click.argument("slug")
@click.option("--name", required=True)
@click.option("--number", required=True, help="The programme's confidential number (E.164).")
@click.option(
    "--pool",
    default="",
    help="Comma-separated E.164 masking numbers (default: the hotline number; on an update, "
    "the pool as it is).",
)
@click.option("--timezone", default=None, help="IANA time zone, e.g. America/Chicago.")
def programme_add(slug: str, name: str, number: str, pool: str, timezone: str | None) -> None:
    """Add (or update: rename, renumber) a programme with its own number, pool, roster and
    schedule. Refused, changing nothing, when a number is another programme's or someone's
    phone, when a new number does not send here at Twilio yet, or when the new pool would drop
    a number carrying a conversation or an offer now, or the old number of a renumbering (it
    stays in the pool, where clinicians who text it are told the new one)."""
    hotline = _number(number)
    pool_numbers = tuple(_number(n) for n in pool.split(",") if n.strip())
    if timezone is not None and not is_timezone(timezone):
        raise click.ClickException(f"not an IANA time zone: {timezone!r}")
    with _session() as session:
        existing = session.scalar(select(Programme).where(Programme.slug == slug))
        before = _programme_view(existing) if existing else {}
        renumbered_from = existing.hotline_number if existing else hotline
        try:
            programme = ensure_programme(
                session,
                slug=slug,
                name=name,
                hotline_number=hotline,
                pool_numbers=pool_numbers,
                timezone=timezone,
                vault=Vault(_settings().data_keys),
                gate=_gate(_settings()),
            )
        except REFUSED as error:
            raise click.ClickException(str(error)) from None
        session.flush()
        follow_programme_zones(session, _settings().timezone, programme.id)
        old, new = audit.changed(before, _programme_view(programme))
        if new:
            audit.record(
                session,
                programme_id=programme.id,
                actor=CLI_ACTOR,
                action="programme.edit" if existing else "programme.add",
                target=f"programme:{programme.id}",
                old=old or None,
                new=new,
                at=utcnow(),
            )
    click.echo(f"programme {slug} serves {hotline}")
    if renumbered_from != hotline:
        click.echo(
            f"{renumbered_from} stays in its pool: a clinician who texts or calls it is told "
            f"{hotline}; take it out with --pool once Twilio no longer sends it here"
        )


def _programme_view(programme: Programme) -> dict[str, object]:
    """What ``programme add`` sets, as the audit log shows it (numbers redacted there)."""
    return {
        "name": programme.name,
        "hotline_number": programme.hotline_number,
        "pool_numbers": [p.number for p in programme.pool_numbers],
        "timezone": programme.timezone,
    }


@programme.command("retire")
@click.argument("slug")
def programme_retire(slug: str) -> None:
    """Retire a programme the health system stops running: every text and call to its numbers
    is answered that the line has closed, with its resources and crisis sentence (set them
    first to say where to turn now); pending check-ins and reminders are cancelled. Refused
    while a conversation or a call is open on it. Release its numbers at Twilio afterwards."""
    with _session() as session:
        programme = _programme(session, slug)
        try:
            done = retirement.retire(session, programme, utcnow())
        except retirement.StillOpenError as error:
            raise click.ClickException(str(error)) from None
        if done is None:
            since = _when(programme.retired_at)
            click.echo(f"programme {slug} is already retired (since {since}): nothing changed")
            return
        _audit_retirement(session, programme, "programme.retire")
    click.echo(
        f"programme {slug} retired: its numbers answer that the line has closed; "
        f"{done.checkins_cancelled} check-ins and {done.notices_cancelled} reminders cancelled"
    )


@programme.command("restore")
@click.argument("slug")
def programme_restore(slug: str) -> None:
    """Run a retired programme again: texts and calls to its numbers reach peers."""
    with _session() as session:
        programme = _programme(session, slug)
        if not retirement.restore(session, programme):
            click.echo(f"programme {slug} is not retired: nothing changed")
            return
        _audit_retirement(session, programme, "programme.restore")
    click.echo(f"programme {slug} runs: texts and calls to {programme.hotline_number} reach peers")


def _audit_retirement(session: Session, programme: Programme, action: str) -> None:
    audit.record(
        session,
        programme_id=programme.id,
        actor=CLI_ACTOR,
        action=action,
        target=f"programme:{programme.id}",
        old=None,
        new={"retired": programme.retired_at is not None},
        at=utcnow(),
    )


@programme.command("alerts")
@click.argument("slug")
@click.argument("phone")
def programme_alerts(slug: str, phone: str) -> None:
    """Text PHONE (the coordinator) when a request finds nobody available."""
    vault = Vault(_settings().data_keys)
    with _session() as session:
        set_alert_phone(vault, _programme(session, slug), _number(phone))
    click.echo(f"alerts for {slug} go to {redact(_number(phone))}")


@main.group()
def numbers() -> None:
    """The line's numbers at Twilio."""


@numbers.command("check")
@click.option(
    "--configure",
    is_flag=True,
    help="Point the webhooks of every number found wrong at HOTLINE_PUBLIC_URL (of one not yet "
    "the line's, only if its URLs send nowhere else).",
)
def numbers_check(configure: bool) -> None:
    """Check that every programme's numbers are this Twilio account's and send their texts,
    calls and call statuses to HOTLINE_PUBLIC_URL, and those HOTLINE_NUMBER and
    HOTLINE_POOL_NUMBERS name that are not the line's yet (run it before the first release
    too); exit status 1 if any is not."""
    settings = _settings()
    twilio = _twilio(settings)
    if twilio is None:
        raise click.ClickException(
            "needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the simulator has no numbers to check)"
        )
    if not settings.public_url:
        raise click.ClickException("needs HOTLINE_PUBLIC_URL, the base URL Twilio reaches")
    ours = _line_numbers(settings.database_url)
    coming = numbercheck.coming_numbers(settings, ours)
    checked = [(it.number, f"{it.programme}, {it.role}", False) for it in ours]
    checked += [(number, f"{setting}, not yet the line's", True) for number, setting in coming]
    try:
        wrong = sum(
            _check_number(twilio, settings.public_url, number, place, configure, new)
            for number, place, new in checked
        )
    except TelephonyError as error:
        raise click.ClickException(f"could not read the numbers at Twilio: {error}") from None
    if wrong:
        hint = " (`hotline numbers check --configure` sets the URLs where it may)"
        if configure:
            hint = (
                ": set them up in the Twilio console (README: Twilio console set-up); one not "
                "yet the line's that is not to be (released, mistyped) comes out of its setting"
            )
        click.echo(f"{wrong} of {len(checked)} numbers need attention{hint}", err=True)
        sys.exit(1)


def _check_number(
    twilio: TwilioTelephony, public_url: str, number: str, place: str, configure: bool, new: bool
) -> bool:
    """Print how ``number`` is set up, pointing it here first with ``configure`` where that
    may be done; whether it still needs attention. A ``new`` number (one the environment
    names, not yet the line's) may be another service's, mistyped: it is pointed here only
    when its URLs send nowhere else (numbercheck.sends_elsewhere)."""
    wanted = numbercheck.Webhooks.at(public_url)
    setup = twilio.number_setup(number)
    found, done = numbercheck.problems(setup, wanted), ""
    if found and configure and setup is not None and numbercheck.can_configure(setup):
        elsewhere = numbercheck.sends_elsewhere(setup, public_url) if new else None
        if elsewhere:
            done = f"left alone: it sends to {elsewhere} (perhaps another service's); "
        else:
            twilio.point_webhooks(setup.sid, wanted.sms, wanted.voice, wanted.status)
            found = numbercheck.problems(twilio.number_setup(number), wanted)
            done = "webhooks set; "
    click.echo(f"{number} ({place}): {done}{'; '.join(found) or 'ok'}")
    return bool(found)


def _line_numbers(database_url: str) -> list[numbercheck.OurNumber]:
    """The programmes' numbers, for `numbers check`, which prepares releases: none on a
    database with no tables yet (before the first release), and read from one a release
    behind this version too (before a release that migrates it)."""
    try:
        if migrate.current(database_url) is None:
            click.echo("no programme yet (the database has no tables): before the first release")
            return []
    except OperationalError as error:
        raise _unreachable(error) from None
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            return numbercheck.our_numbers(session)
    finally:
        engine.dispose()


@main.group()
def supporter() -> None:
    """Roster shortcuts (the console does this with more care)."""


@supporter.command("add")
@click.argument("name")
@click.argument("phone")
@click.option("--programme", "slug", default=DEFAULT_SLUG, show_default=True)
@click.option("--discipline", default=None)
@click.option("--max-conversations", default=2, show_default=True)
def supporter_add(
    name: str, phone: str, slug: str, discipline: str | None, max_conversations: int
) -> None:
    """Add a supporter; prints their id. The operator vouches for the number (audited, as an
    admin API token does); the console verifies numbers with a texted code instead."""
    settings = _settings()
    data = roster.SupporterInput(name, phone, discipline, max_conversations)
    with _session() as session:
        try:
            change = roster.add(
                session,
                Vault(settings.data_keys),
                _programme(session, slug).id,
                data,
                CLI_ACTOR,
                utcnow(),
                verify=False,
            )
        except roster.RosterError as error:
            raise click.ClickException(str(error)) from None
        click.echo(str(change.supporter.id))


@main.group()
def shift() -> None:
    """One-off on-call shifts."""


@shift.command("add")
@click.argument("supporter_id", type=int)
@click.argument("starts_at")
@click.argument("ends_at")
def shift_add(supporter_id: int, starts_at: str, ends_at: str) -> None:
    """Put SUPPORTER_ID on call from STARTS_AT to ENDS_AT (ISO 8601 with offset; the same
    checks as the console and the API: active, verified, at most 92 days)."""
    with _session() as session:
        person = session.get(Supporter, supporter_id)
        if person is None:
            raise click.ClickException(f"no supporter {supporter_id}")
        try:
            rota.add_shift(
                session, person.programme_id, person.id, starts_at, ends_at, CLI_ACTOR, utcnow()
            )
        except rota.RotaError as error:
            raise click.ClickException(f"{error} ({error.field})") from None
    click.echo("shift added")


@main.group()
def keys() -> None:
    """HOTLINE_DATA_KEY rotation (see docs/SECURITY.md)."""


@keys.command("rotate")
@click.option("--batch-size", default=keys_core.BATCH_SIZE, show_default=True)
@click.option("--check", is_flag=True, help="Only count what is not yet under the first key.")
def keys_rotate(batch_size: int, check: bool) -> None:
    """Re-seal every sealed value and re-index every number under the first data key."""
    settings = _settings()
    _migrated(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        sessions, vault = make_sessionmaker(engine), Vault(settings.data_keys)
        report = None if check else keys_core.rotate(sessions, vault, batch_size)
        left = keys_core.stale(sessions, vault)
    finally:
        engine.dispose()
    if report is not None:
        for name, count in sorted(report.rewritten.items()):
            click.echo(f"re-sealed {count} in {name}")
        click.echo(f"re-indexed {report.opt_outs_reindexed} opt-outs")
        for name, count in sorted(report.unreadable.items()):
            click.echo(f"UNREADABLE: {count} in {name} (no key in HOTLINE_DATA_KEY opens them)")
    for name, count in sorted(left.items()):
        click.echo(f"not under the first key: {count} in {name}")
    if left:
        raise click.ClickException("keep every old key in HOTLINE_DATA_KEY for now")
    click.echo("everything is under the first key: the others can be removed")


@main.command()
@click.option("--burst", is_flag=True, help="Run queued jobs, then exit.")
@click.option("--no-sweeper", is_flag=True, help="Leave sweeping to other workers.")
def worker(burst: bool, no_sweeper: bool) -> None:
    """Run an RQ worker (with the scheduler) and the sweeper."""
    from workers.main import run_worker

    settings = _settings()
    if not settings.redis_url:
        # Without it this process would get a private in-memory stand-in that no web process
        # can reach: no wake-up would ever arrive, only the sweeper's late catch-up.
        raise click.UsageError(
            "hotline worker needs REDIS_URL (the Redis the web processes use); "
            "`hotline dev` runs web, worker and an embedded Redis in one process"
        )
    run_worker(settings, burst=burst, sweeper=not no_sweeper)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=5000, show_default=True)
def dev(host: str, port: int) -> None:
    """Web, worker and phone simulator in one process, on embedded defaults."""
    from hotline.dev import run_dev

    try:
        run_dev(host, port)
    except SettingsError as error:  # raised at start, before anything listens
        raise click.ClickException(str(error)) from None


def _migrated(database_url: str) -> None:
    """Refuse, with what to do, a database ``hotline db upgrade`` has not brought up to date:
    commands would otherwise fail on a missing table or column with a traceback."""
    try:
        revision = migrate.current(database_url)
    except OperationalError as error:
        raise _unreachable(error) from None
    if migrate.is_behind(revision):
        at = f"is at revision {revision}" if revision else "has no tables yet"
        raise click.ClickException(
            f"the database {at} (this version needs {migrate.head()}): "
            "run `hotline db upgrade` first"
        )


def _unreachable(error: OperationalError) -> click.ClickException:
    """The driver's own first line (host, port, why; never the password) under the setting."""
    reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
    return click.ClickException(f"DATABASE_URL: cannot reach the database ({reason})")


@contextmanager
def _session() -> Iterator[Session]:
    database_url = _settings().database_url
    _migrated(database_url)
    engine = make_engine(database_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


def _number(raw: str) -> str:
    try:
        return normalize(raw)
    except InvalidPhoneNumber:
        raise click.ClickException(
            "not a valid phone number (use E.164, e.g. +15551234567)"
        ) from None


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
