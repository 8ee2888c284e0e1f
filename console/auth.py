"""Console sign-in with Flask-Login over server-side sessions (hotline/signin.py).

The user id Flask-Login keeps in the signed cookie is the console session's random token, not
the coordinator's id: the user loader looks the token up, so revoking the row (sign-out, idle
timeout) makes any copy of the cookie worthless. Remember-me cookies are never issued.
A coordinator works in their own programme; an administrator picks one (kept in the cookie
session and checked on every request).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Flask, abort, g, session
from flask_login import LoginManager, current_user
from sqlalchemy import select

from console.context import now, services
from hotline import signin
from hotline.db import transaction
from hotline.models import Programme, Role

login_manager = LoginManager()
login_manager.login_view = "console.sign_in"
login_manager.login_message = "Please sign in to continue."
login_manager.login_message_category = "info"


@dataclass(frozen=True)
class ConsoleUser:
    """The signed-in coordinator, as the console sees them."""

    token: str
    coordinator_id: int
    email: str
    role: str
    programme_id: int | None  # None for an administrator

    is_authenticated = True
    is_active = True
    is_anonymous = False

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def get_id(self) -> str:
        return self.token


def init_app(app: Flask) -> None:
    login_manager.init_app(app)
    app.config.setdefault("REMEMBER_COOKIE_DURATION", 0)


def load_user(token: str) -> ConsoleUser | None:
    with transaction(services().sessions) as db:
        found = signin.find_session(db, token, now())
        if found is None:
            return None
        person = found.coordinator
        return ConsoleUser(token, person.id, person.email, person.role, person.programme_id)


login_manager.user_loader(load_user)


def user() -> ConsoleUser:
    found: ConsoleUser = current_user._get_current_object()
    return found


def programme_choices() -> list[tuple[int, str]]:
    """The programmes the signed-in coordinator may work in: (id, name), read once a request;
    a retired one's name says so (``hotline programme retire``)."""
    if "console_programmes" not in g:
        with services().sessions() as db:
            query = select(Programme.id, Programme.name, Programme.retired_at)
            query = query.order_by(Programme.id)
            if not user().is_admin:
                query = query.where(Programme.id == user().programme_id)
            g.console_programmes = [
                (pid, f"{name} (retired)" if retired_at else name)
                for pid, name, retired_at in db.execute(query)
            ]
    found: list[tuple[int, str]] = g.console_programmes
    return found


def programme_id() -> int:
    """The programme this request works in: the coordinator's own, or the admin's pick."""
    choices = [pid for pid, _ in programme_choices()]
    picked = session.get("programme_id")
    if picked in choices:
        return int(picked)
    if not choices:
        abort(403)
    return choices[0]
