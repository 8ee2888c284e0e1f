"""Security headers and CSRF for the console, the API and the calendar feeds.

CSRF: Flask-WTF's ``CSRFProtect`` is installed with its app-wide check off, so the Twilio
webhooks (signed) and the API (bearer tokens, no cookies) are untouched; the console blueprint
calls ``csrf.protect()`` before every unsafe request, and every console form carries the token.
Headers: a strict CSP (no scripts at all, styles from our own origin only), no framing, no
sniffing, no referrer (the calendar URLs carry secrets), and nothing cached.
"""

from __future__ import annotations

from flask import Flask, request
from flask_wtf.csrf import CSRFProtect
from werkzeug.wrappers import Response

csrf = CSRFProtect()
PREFIXES = ("/console", "/api/", "/calendar/")
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def init_app(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", 8 * 3600)
    # Over HTTPS Flask-WTF also demands a same-origin Referer, which our Referrer-Policy
    # (no-referrer: calendar links carry secrets) means browsers never send: every form would
    # fail. The token, bound to the session, and the SameSite=Lax cookie are the protection.
    app.config.setdefault("WTF_CSRF_SSL_STRICT", False)
    csrf.init_app(app)
    app.after_request(add_headers)


def add_headers(response: Response) -> Response:
    """Every console, API and calendar response gets the headers (others are left alone)."""
    if request.path.startswith(PREFIXES):
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response
