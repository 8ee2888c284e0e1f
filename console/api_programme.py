"""``/api/v1/stats`` (aggregates only) and ``/api/v1/programme`` (the programme's settings).

The settings are read with an ``ETag`` (programme_settings.version); a ``PATCH`` sent with
``If-Match`` applies only to the settings that ETag names, else 412 and nothing changes (two
scripts, or a script and a coordinator, would otherwise undo each other's changes unseen).
Without ``If-Match`` it applies to the settings as they stand, as it always has.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from flask import Blueprint, Response, jsonify, request
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
STALE = (
    "the settings changed since that ETag was read: read them again (GET /api/v1/programme) "
    "and send the change with the new ETag"
)


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


def settings_response(session: Session, programme: Programme) -> Response:
    response = jsonify(settings_json(session, programme))
    response.set_etag(programme_settings.version(session, services().vault, programme))
    return response


@bp.get("/programme")
def get_programme() -> Response:
    with transaction(services().sessions) as session:
        programme = session.get_one(Programme, caller().programme_id())
        return settings_response(session, programme)


@bp.patch("/programme")
def update_programme() -> Response:
    """Change settings; an empty string or null puts a setting back to its default. A pool
    number Twilio could not be asked about is a 503: the same request may pass later. With
    ``If-Match``, a 412 unless it names the settings as they stand (``*``: any)."""
    data = body()
    gate = numbercheck.gate(services().telephony, services().settings.public_url)
    # Strong comparison (RFC 9110): a weak ETag never matches; none sent: nothing to match.
    shown = request.if_match if request.if_match else None
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
                shown=shown,
            )
        except programme_settings.StaleSettingsError:
            fail(412, STALE)
        except programme_settings.SettingsChangeError as error:
            fail(503 if error.later else 422, str(error), error.field)
        answer = settings_response(session, programme)
    return answer
