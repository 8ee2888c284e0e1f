"""``/console/settings``: the programme's texts, check-in cadence, numbers and schedule options.

Blank fields put a setting back to the environment's default. Numbers are shown masked; typing
a new one replaces it (blank keeps it).

The page carries the settings' version as it showed them (a hidden field): a save from a page
opened before someone else saved is refused (409), and the page shown again as the settings
stand, since it sends back every field and would undo theirs unseen. A form without it (a page
the release before showed) is saved as it was then, whatever the settings are now.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from console import auth
from console.context import now, services
from console.forms import ActionForm, SettingsForm
from hotline import feeds, numbercheck, programme_settings
from hotline.db import transaction
from hotline.models import Programme
from hotline.programmes import config_of

bp = Blueprint("settings", __name__, url_prefix="/settings")
KEEP_WHEN_BLANK = ("pool_numbers", "alert_phone")


def _context(form: SettingsForm | None = None) -> dict[str, Any]:
    with transaction(services().sessions) as db:
        programme = db.get_one(Programme, auth.programme_id())
        stored = programme_settings.view(db, services().vault, programme)
        version = programme_settings.version(db, services().vault, programme)
        effective = programme_settings.effective(config_of(programme, services().settings))
        blank = Programme(id=programme.id, name=programme.name, hotline_number="")
        defaults = programme_settings.effective(config_of(blank, services().settings))
        token = feeds.programme_token(db, programme.id)
    if form is None:
        shown = {k: v for k, v in stored.items() if k not in KEEP_WHEN_BLANK}
        # Not the request's form (Flask-WTF's default): refused as stale, the page shows the
        # settings as they stand, not as sent.
        form = SettingsForm(formdata=None, data={**shown, "version": version})
    return {
        "form": form,
        "stored": stored,
        "effective": effective,
        "defaults": defaults,
        "feed_token": token,
    }


@bp.post("/calendar")
def new_calendar_link() -> ResponseReturnValue:
    if ActionForm().validate_on_submit():
        with transaction(services().sessions) as db:
            feeds.new_programme_link(db, auth.programme_id(), auth.user().email, now())
        flash("New calendar link: the old one no longer works.", "success")
    return redirect(url_for("console.settings.index"))


@bp.get("")
def index() -> ResponseReturnValue:
    return render_template("console/settings.html", **_context())


@bp.post("")
def save() -> ResponseReturnValue:
    form = SettingsForm()
    if not form.validate_on_submit():
        return render_template("console/settings.html", **_context(form)), 422
    changes = {
        name: form[name].data
        for name in programme_settings.FIELDS
        if not (name in KEEP_WHEN_BLANK and not form[name].data)
    }
    if form.clear_alert_phone.data:
        changes["alert_phone"] = None
    shown = {form.version.data} if form.version.data else None
    try:
        with transaction(services().sessions) as db:
            programme = db.get_one(Programme, auth.programme_id())
            programme_settings.update_settings(
                db,
                services().vault,
                programme,
                changes,
                auth.user().email,
                now(),
                services().settings.timezone,
                gate=numbercheck.gate(services().telephony, services().settings.public_url),
                shown=shown,
            )
    except programme_settings.StaleSettingsError as error:
        flash(str(error), "error")
        return render_template("console/settings.html", **_context()), 409
    except programme_settings.SettingsChangeError as error:
        getattr(form, error.field).errors = [str(error)]
        return render_template("console/settings.html", **_context(form)), 422
    flash("Settings saved.", "success")
    return redirect(url_for("console.settings.index"))
