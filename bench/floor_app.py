"""A second baseline: bare Flask plus the least a relay cannot skip, one durable write.

Every Twilio webhook must be de-duplicated in the database (Twilio retries deliveries, and a
relay must not go out twice), so each request here inserts its ``MessageSid`` into a table of
its own and commits, with psycopg and no ORM, then answers the bare app's fixed TwiML. It reads
nothing else, looks nothing up and sends nothing: the distance between it and the bare app is
what one PostgreSQL transaction costs on this machine, and the distance between it and the
hotline is the hotline's own work.
"""

from __future__ import annotations

import os
import threading
from contextlib import suppress

import psycopg
from flask import Flask, Response, request

from bench.bare_app import TWIML


def create_app() -> Flask:
    """The WSGI application (``gunicorn 'bench.floor_app:create_app()'``)."""
    url = os.environ["DATABASE_URL"].replace("postgresql+psycopg://", "postgresql://", 1)
    local = threading.local()  # one connection per gunicorn thread, as a pool would hand out

    def connection() -> psycopg.Connection[tuple[object, ...]]:
        if getattr(local, "connection", None) is None:
            local.connection = psycopg.connect(url)
        conn: psycopg.Connection[tuple[object, ...]] = local.connection
        return conn

    # The other gunicorn worker may create it at the same moment.
    with (
        psycopg.connect(url, autocommit=True) as setup,
        suppress(psycopg.errors.UniqueViolation),
    ):
        setup.execute("CREATE TABLE IF NOT EXISTS bench_floor (key text PRIMARY KEY)")

    app = Flask("floor")

    @app.post("/twilio/sms")
    @app.post("/twilio/status")
    def webhook() -> Response:
        conn = connection()
        conn.execute(
            "INSERT INTO bench_floor (key) VALUES (%s) ON CONFLICT DO NOTHING",
            (request.form.get("MessageSid", ""),),
        )
        conn.commit()
        return Response(TWIML, mimetype="text/xml")

    return app
