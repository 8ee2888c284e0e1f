"""``/calendar``: the secret-URL iCalendar feeds (no sign-in: the URL is the secret).

``/calendar/supporter/<token>.ics`` is one supporter's own on-call periods;
``/calendar/programme/<token>.ics`` is the programme's whole schedule. An unknown token is a 404.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort

from console.context import now, services
from hotline import feeds
from hotline.db import transaction
from hotline.models import Programme

bp = Blueprint("calendar", __name__, url_prefix="/calendar")
ICS = "text/calendar; charset=utf-8"


@bp.get("/supporter/<token>.ics")
def supporter_feed(token: str) -> Response:
    with transaction(services().sessions) as session:
        supporter = feeds.supporter_by_token(session, token)
        if supporter is None:
            abort(404)
        name = session.get_one(Programme, supporter.programme_id).name
        return Response(feeds.supporter_feed(session, supporter, name, now()), mimetype=ICS)


@bp.get("/programme/<token>.ics")
def programme_feed(token: str) -> Response:
    with transaction(services().sessions) as session:
        programme = feeds.programme_by_token(session, token)
        if programme is None:
            abort(404)
        return Response(feeds.programme_feed(session, programme, now()), mimetype=ICS)
