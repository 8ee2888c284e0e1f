"""``/console/tokens``: the admin API's bearer tokens, created (shown once) and revoked.

A coordinator sees and manages the tokens of the programme they work in; an administrator also
those for every programme. A token is only ever shown in the answer to the request that made
it (never in a flash message: those travel in the session cookie, which is signed, not secret).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, abort, flash, redirect, render_template, url_for
from flask.typing import ResponseReturnValue

from console import auth
from console.context import now, services
from console.forms import ActionForm, TokenForm
from hotline import accounts
from hotline.db import transaction
from hotline.models import ApiToken

bp = Blueprint("tokens", __name__, url_prefix="/tokens")


def _visible(token: ApiToken) -> bool:
    if token.programme_id is None:
        return auth.user().is_admin
    return token.programme_id == auth.programme_id()


def _page(form: TokenForm | None = None, shown: str | None = None) -> str:
    with services().sessions() as db:
        tokens = [t for t in accounts.api_tokens(db, None) if _visible(t)]
    if form is None:
        form = TokenForm()
    if not auth.user().is_admin:
        del form.every_programme
    at = now()
    states = {t.id: accounts.token_state(t, at) for t in tokens}
    context: dict[str, Any] = {"tokens": tokens, "states": states, "form": form, "shown": shown}
    return render_template("console/tokens.html", **context)


@bp.get("")
def index() -> ResponseReturnValue:
    return _page()


@bp.post("")
def create() -> ResponseReturnValue:
    form = TokenForm()
    if not auth.user().is_admin:
        del form.every_programme
    if not form.validate_on_submit():
        return _page(form), 422
    every = auth.user().is_admin and bool(form.every_programme.data)
    at = now()
    days = int(form.expires_in.data) if form.expires_in.data else None
    try:
        with transaction(services().sessions) as db:
            token = accounts.create_api_token(
                db,
                form.name.data,
                None if every else auth.programme_id(),
                actor=auth.user().email,
                at=at,
                expires_at=at + timedelta(days=days) if days else None,
                vouches=auth.user().is_admin,  # as in the console: only they vouch for numbers
            )
    except accounts.AccountError as error:
        form.name.errors = [str(error)]
        return _page(form), 422
    return _page(shown=token), 201


@bp.post("/<int:token_id>/revoke")
def revoke(token_id: int) -> ResponseReturnValue:
    if not ActionForm().validate_on_submit():
        abort(400)
    with transaction(services().sessions) as db:
        token = db.get(ApiToken, token_id) if 0 < token_id < 2**31 else None
        if token is None or not _visible(token):
            abort(404)
        if accounts.revoke_api_token(db, token, auth.user().email, now()):
            flash(f"Token “{token.name}” revoked: it no longer works.", "success")
    return redirect(url_for("console.tokens.index"))
