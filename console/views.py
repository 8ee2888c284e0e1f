"""The coordinator console under ``/console``: sign-in, live status, audit log, and the pages
of roster_views, schedule_views, report_views, settings_views and token_views (nested
blueprints).

Every page needs a signed-in coordinator and works in one programme (``auth.programme_id``);
every unsafe request must carry the CSRF token. Nothing shown identifies a clinician, and a
phone number is only ever shown masked.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from flask import Blueprint, abort, flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user, logout_user
from markupsafe import Markup
from sqlalchemy.exc import IntegrityError

from console import auth
from console.context import now, services, zone_of
from console.forms import ActionForm, PasswordForm, ProgrammeForm, SignInForm, options
from console.security import csrf
from hotline import audit, signin, status, wording
from hotline.db import transaction

log = logging.getLogger(__name__)
bp = Blueprint(
    "console", __name__, url_prefix="/console", template_folder="templates", static_folder="static"
)
OPEN_ENDPOINTS = frozenset({"console.sign_in", "console.static"})
# Forms that act on no one programme (every other form says which programme it was shown for).
PROGRAMME_FREE = frozenset(
    {"console.sign_in", "console.sign_out", "console.switch_programme", "console.change_password"}
)


@bp.before_request
def guard() -> ResponseReturnValue | None:
    """CSRF on every unsafe request; a signed-in coordinator for every page but sign-in."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()
    if any("\x00" in v for v in (*request.args.values(), *request.form.values())):
        # PostgreSQL text cannot hold NUL: refuse it here, not with a 500 from the database.
        abort(400, "text may not contain NUL characters")
    if request.endpoint not in OPEN_ENDPOINTS and not current_user.is_authenticated:
        refused: ResponseReturnValue = auth.login_manager.unauthorized()
        return refused
    if current_user.is_authenticated:
        # Read before any view opens a session: SQLite writers (BEGIN IMMEDIATE) would queue.
        auth.programme_id()
        return _stale_programme()
    return None


def _stale_programme() -> ResponseReturnValue | None:
    """A form shown for one programme and sent after a switch to another (an administrator's
    other tab) is refused: it would write that page's values into the programme now picked."""
    shown = request.form.get("programme") if request.method == "POST" else None
    if shown is None or request.endpoint in PROGRAMME_FREE or shown == str(auth.programme_id()):
        return None
    names = dict(auth.programme_choices())
    page = render_template(
        "console/stale.html",
        shown=names.get(int(shown) if shown.isdigit() else 0, "another programme"),
        current=names.get(auth.programme_id(), ""),
    )
    return page, 409


@bp.errorhandler(IntegrityError)
def changed_meanwhile(error: IntegrityError) -> ResponseReturnValue:
    """A change the database refused because another made at the same moment conflicts (two
    adds of one phone number, each checked before either was written): a page, not a 500."""
    log.warning("console change refused by a concurrent one on %s", request.endpoint)
    return render_template("console/conflict.html"), 409


@bp.app_template_filter("local")
def local(at: datetime, zone: ZoneInfo, form: str) -> str:
    """``at`` on the programme's clock as ``form`` says, and which reading in the hour the clock
    reads twice (a break until the second 01:10 read "until 01:10", over at first sight)."""
    here = at.astimezone(zone)
    return here.strftime(form) + wording.which_reading(here)


@bp.app_context_processor
def common() -> dict[str, Any]:
    if not request.path.startswith("/console") or not current_user.is_authenticated:
        return {}
    choices = auth.programme_choices()
    current = auth.programme_id()
    form = ProgrammeForm(programme_id=current)
    form.programme_id.choices = options(choices)
    return {
        "me": auth.user(),
        "programme_input": Markup('<input name="programme" type="hidden" value="{}">').format(
            current
        ),
        "programme_name": dict(choices).get(current, ""),
        "programme_form": form if len(choices) > 1 else None,
        "action_form": ActionForm(),
    }


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> ResponseReturnValue:
    form = SignInForm()
    if not form.validate_on_submit():
        return render_template("console/sign_in.html", form=form)
    address = request.remote_addr or "unknown"
    with transaction(services().sessions) as db:
        wait = signin.retry_after(db, form.email.data, address, now())
        person = (
            None
            if wait
            else signin.authenticate(db, form.email.data, form.password.data, address, now())
        )
        token = signin.open_session(db, person, now()) if person else None
    if wait is not None:
        minutes = max(1, round(wait.total_seconds() / 60))
        flash(f"Too many attempts. Try again in about {minutes} minute(s).", "error")
        return render_template("console/sign_in.html", form=form), 429
    if token is None:
        flash("That email and password do not match an account.", "error")
        return render_template("console/sign_in.html", form=form), 401
    session.clear()
    login_user(auth.load_user(token))
    return redirect(url_for("console.live"))


@bp.post("/sign-out")
def sign_out() -> ResponseReturnValue:
    with transaction(services().sessions) as db:
        signin.revoke(db, auth.user().token, now())
    logout_user()
    session.clear()
    flash("Signed out.", "info")
    return redirect(url_for("console.sign_in"))


@bp.route("/password", methods=["GET", "POST"])
def change_password() -> ResponseReturnValue:
    """The signed-in coordinator's own password: the current one is checked (and throttled
    as at sign-in); their other sessions end."""
    form = PasswordForm()
    if not form.validate_on_submit():
        status = 422 if request.method == "POST" else 200
        return render_template("console/password.html", form=form), status
    me, address = auth.user(), request.remote_addr or "unknown"
    with transaction(services().sessions) as db:
        wait = signin.retry_after(db, me.email, address, now())
        person = (
            None if wait else signin.authenticate(db, me.email, form.current.data, address, now())
        )
        if person is not None:
            # Their other sessions end: whoever signed in with the old one is out at once.
            signin.set_password(db, person, form.new.data, me.email, now(), keep_token=me.token)
    if wait is not None:
        minutes = max(1, round(wait.total_seconds() / 60))
        flash(f"Too many attempts. Try again in about {minutes} minute(s).", "error")
        return render_template("console/password.html", form=form), 429
    if person is None:
        form.current.errors = ["That is not your current password."]
        return render_template("console/password.html", form=form), 422
    flash("Password changed. Any other session of yours has been signed out.", "success")
    return redirect(url_for("console.live"))


@bp.post("/programme")
def switch_programme() -> ResponseReturnValue:
    form = ProgrammeForm()
    form.programme_id.choices = options(auth.programme_choices())
    if form.validate_on_submit():
        session["programme_id"] = form.programme_id.data
    return redirect(_same_page_elsewhere(request.referrer))


def _same_page_elsewhere(url: str | None) -> str:
    """Where a programme switch made on ``url`` goes: the same page of the other programme, or
    for one of the old programme's supporters, shifts or tokens (a number in the path), the
    list of that section; the Live page for anything else."""
    if not url or not url.startswith(request.host_url + "console"):
        return url_for("console.live")
    parts = urlsplit(url).path.split("/")  # "", "console", section, ...
    if any(part.isdigit() for part in parts):
        return "/".join(parts[:3])
    return url


@bp.get("/")
def index() -> ResponseReturnValue:
    return redirect(url_for("console.live"))


@bp.get("/live")
def live() -> ResponseReturnValue:
    with services().sessions() as db:
        zone = zone_of(db, auth.programme_id())
        current = status.live(db, auth.programme_id(), now())
    return render_template("console/live.html", status=current, zone=zone)


@bp.get("/audit")
def audit_log() -> ResponseReturnValue:
    before = request.args.get("before", type=int)
    if before is not None and not 0 < before < 2**31:
        before = None  # not an id the log can hold: the newest entries
    with services().sessions() as db:
        entries = audit.entries(
            db, auth.programme_id(), limit=50, before_id=before, deployment=auth.user().is_admin
        )
        zone = zone_of(db, auth.programme_id())
    return render_template("console/audit.html", entries=entries, zone=zone)


def register_pages() -> None:
    from console import report_views, roster_views, schedule_views, settings_views, token_views

    for child in (
        roster_views.bp,
        schedule_views.bp,
        report_views.bp,
        settings_views.bp,
        token_views.bp,
    ):
        bp.register_blueprint(child)


register_pages()
