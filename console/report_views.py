"""``/console/reports``: aggregates for a period as tables, a chart and a CSV download."""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue

from console import auth, chart, grid
from console.context import now, services, zone_of
from hotline import rota, stats

bp = Blueprint("reports", __name__, url_prefix="/reports")
DEFAULT_WEEKS = 12
MAX_DAYS = 366


def _period(today: date) -> tuple[date, date]:
    """``from``..``to`` local dates (inclusive ``to``); default: the last twelve weeks."""
    try:
        last = rota.parse_date(request.args.get("to", ""), "to")
    except rota.RotaError:  # missing, malformed or out of range
        last = today
    try:
        first = rota.parse_date(request.args.get("from", ""), "from")
    except rota.RotaError:
        first = last - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1)
    if not 0 <= (last - first).days < MAX_DAYS:
        first = last - timedelta(weeks=DEFAULT_WEEKS) + timedelta(days=1)
    return first, last


def _report() -> tuple[stats.Report, date, date]:
    pid = auth.programme_id()
    with services().sessions() as db:
        zone = zone_of(db, pid)
        first, last = _period(now().astimezone(zone).date())
        start, end = grid.bounds(first, last + timedelta(days=1), zone)
        report = stats.report(db, pid, zone, start, end)
    # Reports cover whole weeks: show the dates they really cover.
    first = report.start.astimezone(zone).date()
    last = (report.end.astimezone(zone) - timedelta(days=1)).date()
    return report, first, last


@bp.get("")
def index() -> ResponseReturnValue:
    report, first, last = _report()
    return render_template(
        "console/reports.html",
        report=report,
        first=first,
        last=last,
        chart=chart.weekly_bars(report.weeks),
        min_cell=stats.MIN_CELL,
    )


@bp.get("/export.csv")
def download() -> ResponseReturnValue:
    report, first, last = _report()
    out = io.StringIO()
    csv.writer(out).writerows(stats.csv_rows(report))
    name = f"peer-support-report-{first.isoformat()}-to-{last.isoformat()}.csv"
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
