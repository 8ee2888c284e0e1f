"""``/console/reports``: aggregates for a period as tables, a chart and a CSV download."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, timedelta
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, render_template, request
from flask.typing import ResponseReturnValue

from console import auth, chart, grid
from console.context import now, services
from hotline import rota, stats

bp = Blueprint("reports", __name__, url_prefix="/reports")
DEFAULT_WEEKS = 12
MAX_DAYS = 366


def _period(today: date) -> tuple[date, date]:
    """``from``..``to`` dates (inclusive ``to``); default: the last twelve weeks."""
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
    # Report weeks run Monday to Monday in UTC (hotline/stats.py), so the dates asked for and
    # shown are UTC dates: read in a local zone, a week's dates would widen it by one more.
    first, last = _period(now().astimezone(UTC).date())
    start, end = grid.bounds(first, last + timedelta(days=1), ZoneInfo("UTC"))
    with services().sessions() as db:
        report = stats.report(db, auth.programme_id(), start, end, now())
    first = report.start.date()
    last = (report.end - timedelta(days=1)).date()
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
