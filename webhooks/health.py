"""``GET /healthz``: the state of the database and of Redis, for load balancers and people."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify
from flask.typing import ResponseReturnValue

from hotline.migrate import schema_state
from hotline.services import Services
from workers.queue import redis_ok

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    services: Services = current_app.extensions["hotline"]
    database = schema_state(services.sessions.kw["bind"])
    connection = current_app.extensions.get("hotline.redis")
    redis = "ok" if connection is not None and redis_ok(connection) else "unavailable"
    if redis == "ok" and not services.settings.redis_url:
        redis = "ok (embedded)"
    status = "ok" if database == "ok" and redis.startswith("ok") else "degraded"
    return jsonify(status=status, database=database, redis=redis)
