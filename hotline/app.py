"""Composition root: builds the services from settings and the Flask app around them."""

from __future__ import annotations

import logging
import sys
from typing import Any

from flask import Flask, Request, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from redis import Redis
from werkzeug.middleware.proxy_fix import ProxyFix

from hotline.accesslog import masked
from hotline.db import make_engine, make_sessionmaker
from hotline.migrate import NEEDS_UPGRADE, head, schema_state
from hotline.privacy import Vault
from hotline.programmes import remember_crisis_texts
from hotline.services import Services
from hotline.settings import Settings, SettingsError, load_settings
from hotline.telephony import Telephony
from hotline.telephony.simulator import PhoneNetwork, SimulatedTelephony
from hotline.telephony.twilio_adapter import TwilioTelephony
from workers.queue import RQWakeUps, connect, embedded_redis, make_queue

log = logging.getLogger(__name__)

APP_LOAD_ERROR = 4  # gunicorn's exit status for "App failed to load": its master then stops
WEBHOOK_PREFIX = "/twilio/"  # webhooks.twilio's blueprint: no browser, no cookie session

# Longest a web request's or a job's SQL statement may run on PostgreSQL, lock waits included:
# a webhook blocked behind a stuck transaction gets its fallback (the crisis line) inside
# Twilio's 15 s instead of no answer at all; a text's transaction can wait on two locks (its
# event key, then the programme's rotation), 10 s at worst. Migrations and `hotline keys
# rotate` have no limit.
STATEMENT_TIMEOUT_MS = 5_000
MAX_CONTENT_LENGTH = 256 * 1024  # Twilio's largest form is a few KB; refuse 1 MB bodies (413)


def build_telephony(settings: Settings, network: PhoneNetwork | None = None) -> Telephony:
    """Twilio when credentials are set, else the simulator (refused in production)."""
    if settings.twilio_account_sid and settings.twilio_auth_token:
        return TwilioTelephony(
            settings.twilio_account_sid,
            settings.twilio_auth_token,
            base_url=settings.twilio_api_base_url,
        )
    if settings.production:
        raise RuntimeError("production needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    return SimulatedTelephony(network or PhoneNetwork())


def build_redis(settings: Settings) -> Redis:
    return connect(settings.redis_url) if settings.redis_url else embedded_redis()


def build_services(
    settings: Settings,
    *,
    redis: Redis | None = None,
    telephony: Telephony | None = None,
    **overrides: Any,
) -> Services:
    """Everything the core needs, wired from ``settings``; nothing connects until used."""
    if settings.production and not settings.database_url_given:
        # Allowed (CONTRACT.md), and almost never meant: on a platform every process, the
        # release's too, has a file of its own that a redeploy wipes, and the web's has no
        # schema (every text answered with the crisis fallback, /healthz degraded).
        log.warning(
            "DATABASE_URL is not set: this process uses its own SQLite file under %s, which no "
            "other process or machine shares; set DATABASE_URL to the PostgreSQL database "
            "(or to that file's sqlite:/// URL, to keep it on purpose)",
            settings.instance_path,
        )
    connection = redis if redis is not None else build_redis(settings)
    engine = make_engine(settings.database_url, statement_timeout_ms=STATEMENT_TIMEOUT_MS)
    return Services(
        settings=settings,
        sessions=make_sessionmaker(engine),
        vault=Vault(settings.data_keys),
        telephony=telephony or build_telephony(settings),
        wakeups=RQWakeUps(make_queue(connection)),
        **overrides,
    )


def create_app(
    settings: Settings | None = None,
    *,
    services: Services | None = None,
    redis: Redis | None = None,
) -> Flask:
    """The WSGI application (``gunicorn 'hotline.app:create_app()'``)."""
    if settings is None:
        settings = services.settings if services else _server_settings()
    if services is None:
        redis = redis if redis is not None else build_redis(settings)
        services = build_services(settings, redis=redis)
    app = _App("hotline", instance_path=str(settings.instance_path.resolve()))
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=MAX_CONTENT_LENGTH,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.production,
    )
    if settings.trusted_proxies:
        # The client's address (sign-in throttling) and scheme come from the proxies' headers,
        # believing only as many hops as there are proxies we run; the host never (Twilio's
        # signatures are checked against HOTLINE_PUBLIC_URL in production, not the request).
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxies, x_proto=settings.trusted_proxies
        )
    app.session_interface = _ConsoleSessions()
    if services.crisis_texts.due(services.clock()):
        remember_crisis_texts(services)
    check_schema(services)
    app.extensions["hotline"] = services
    app.extensions["hotline.redis"] = redis if redis is not None else _redis_of(services)
    _register(app, settings)
    _quiet_request_logs()
    return app


def check_schema(services: Services) -> None:
    """Say so at start when the database is behind this version (a deploy whose `release:`
    step did not run). Web and worker processes still start (the upgrade may be running
    now; a web process answers with the crisis-line fallback meanwhile)."""
    if schema_state(services.sessions.kw["bind"]) == NEEDS_UPGRADE:
        log.error(
            "the database is not migrated to this version (revision %s): run `hotline db "
            "upgrade`; until then every text and call gets only the crisis-line fallback",
            head(),
        )


def _register(app: Flask, settings: Settings) -> None:
    from console import install as install_console
    from webhooks.health import bp as health_bp
    from webhooks.twilio import bp as twilio_bp

    app.register_blueprint(twilio_bp)
    app.register_blueprint(health_bp)
    install_console(app)
    if not settings.production:
        from hotline.devphone import bp as devphone_bp

        app.register_blueprint(devphone_bp)


def _server_settings() -> Settings:
    """The environment's settings for a WSGI server; a bad one is one line on stderr and the
    process exits, with gunicorn's "App failed to load" status (4), so the master stops at once
    instead of printing a traceback from every worker it boots."""
    try:
        return load_settings()
    except SettingsError as error:
        print(f"hotline: {error}", file=sys.stderr, flush=True)
        raise SystemExit(APP_LOAD_ERROR) from None


class _App(Flask):
    """Flask, whose line for an unhandled error does not name a calendar feed's secret."""

    def log_exception(self, exc_info: Any) -> None:
        # Flask's own line names the request path, and a feed's path is its only key: a feed
        # polled while the database restarts would write it to the error log, around the
        # masking gunicorn's logger class does (this goes to wsgi.errors, or the root logger).
        self.logger.error(
            "Exception on %s [%s]", masked(request.path), request.method, exc_info=exc_info
        )


class _ConsoleSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, opened only where a browser can hold one: a Twilio
    webhook carries no cookie and gets a null session (no serializer built per request)."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if request.path.startswith(WEBHOOK_PREFIX):
            return None
        return super().open_session(app, request)


def _redis_of(services: Services) -> Redis | None:
    wakeups = services.wakeups
    return wakeups.queue.connection if isinstance(wakeups, RQWakeUps) else None


def _quiet_request_logs() -> None:
    # Werkzeug's access log prints query strings; webhook forms are POST bodies, never logged.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
