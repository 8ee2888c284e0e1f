"""The coordinator's console (web pages) and admin JSON API: Flask blueprints over the core.

``install(app)`` is the one entry the app factory calls: it sets up sign-in, CSRF and the
security headers, and registers ``console.views.bp`` (``/console``), ``console.api.bp``
(``/api/v1``) and ``console.calendar.bp`` (``/calendar``, secret-URL iCalendar feeds).
"""

from __future__ import annotations

from flask import Flask


def install(app: Flask) -> None:
    from console import api, auth, calendar, security, views

    auth.init_app(app)
    security.init_app(app)
    app.register_blueprint(views.bp)
    app.register_blueprint(api.bp)
    app.register_blueprint(calendar.bp)
    for code in (404, 405):
        app.register_error_handler(code, api.not_found_or_method)
