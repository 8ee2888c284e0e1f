"""The baseline: a bare Flask app answering every Twilio webhook with one fixed TwiML.

Served by the same gunicorn command line as the hotline (see ``bench/webhooks.py``), so the
difference between the two is the hotline's own work: signature check, form parsing, database
transaction, Redis wake-ups and TwiML rendering. It reads nothing from the request.
"""

from __future__ import annotations

from flask import Flask, Response

TWIML = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    "<Response><Message>Thanks, a peer supporter will text you back here.</Message></Response>"
)


def create_app() -> Flask:
    """The WSGI application (``gunicorn 'bench.bare_app:create_app()'``)."""
    app = Flask("bare")

    @app.post("/twilio/sms")
    @app.post("/twilio/status")
    def webhook() -> Response:
        return Response(TWIML, mimetype="text/xml")

    return app
