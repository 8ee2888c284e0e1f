"""``/api/v1/stats`` (aggregates only) and ``/api/v1/programme`` (the programme's settings)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy.orm import Session

from console.api import body, caller, fail, writing
from console.api_schedule import instant
from console.context import now, services
from console.present import iso, report_json
from hotline import numbercheck, programme_settings, stats
from hotline.db import transaction
from hotline.models import Programme
from hotline.programmes import config_of

bp = Blueprint("programme", __name__)
MAX_REPORT = timedelta(days=366)
DEFAULT_REPORT = timedelta(weeks=12)


@bp.get("/stats")
def get_stats() -> Response:
    """Aggregate counts over ``from``..``to`` (default: the last twelve weeks)."""
    end = instant("to", now())
    start = instant("from", end - DEFAULT_REPORT)
    if not timedelta(0) < end - start <= MAX_REPORT:
        fail(422, "'to' must come after 'from', at most a year later", "to")
    with transaction(services().sessions) as session:
        report = stats.report(session, caller().programme_id(), start, end, now())
    return jsonify(report_json(report))


def settings_json(session: Session, programme: Programme) -> dict[str, Any]:
    p = config_of(programme, services().settings)
    return {
        "slug": programme.slug,
        "name": programme.name,
        "retired_at": iso(programme.retired_at),
        "stored": programme_settings.view(session, services().vault, programme),
        "effective": programme_settings.effective(p),
    }


@bp.get("/programme")
def get_programme() -> Response:
    with transaction(services().sessions) as session:
        programme = session.get_one(Programme, caller().programme_id())
        return jsonify(settings_json(session, programme))


@bp.patch("/programme")
def update_programme() -> Response:
    """Change settings; an empty string or null puts a setting back to its default. A pool
    number Twilio could not be asked about is a 503: the same request may pass later."""
    data = body()
    gate = numbercheck.gate(services().telephony, services().settings.public_url)
    with writing() as session:
        programme = session.get_one(Programme, caller().programme_id())
        try:
            programme_settings.update_settings(
                session,
                services().vault,
                programme,
                data,
                caller().actor,
                now(),
                services().settings.timezone,
                gate=gate,
            )
        except programme_settings.SettingsChangeError as error:
            fail(503 if error.later else 422, str(error), error.field)
        shown = settings_json(session, programme)
    return jsonify(shown)
