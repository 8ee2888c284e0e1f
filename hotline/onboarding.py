"""Onboarding a cohort: supporters imported from CSV, with a report on every row.

The first row names the columns (any order, any case): ``name`` and ``phone`` are required,
``discipline``, ``max_conversations`` and ``email`` optional. Each data row is added on its own
savepoint, so a bad row never stops the others; the report says, per line, what was added or
why it was rejected, and never repeats a phone number. Every added supporter is texted a code.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from hotline import audit, roster
from hotline.models import Notice
from hotline.privacy import Vault

MAX_ROWS = 500
MAX_BYTES = 256 * 1024
COLUMNS = ("name", "phone", "discipline", "max_conversations", "email")
REQUIRED = ("name", "phone")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (not CSV, too big, missing columns)."""


@dataclass(frozen=True)
class RowResult:
    line: int
    added: bool
    message: str
    supporter_id: int | None = None


@dataclass(frozen=True)
class ImportReport:
    rows: tuple[RowResult, ...]
    notices: tuple[Notice, ...]

    @property
    def added(self) -> int:
        return sum(r.added for r in self.rows)

    @property
    def rejected(self) -> int:
        return len(self.rows) - self.added


def read_rows(text: str) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) for every non-empty data row; raises ImportFileError for the file."""
    if len(text.encode()) > MAX_BYTES:
        raise ImportFileError(f"the file is larger than {MAX_BYTES // 1024} KB")
    if "\x00" in text:
        raise ImportFileError("the file holds NUL characters: save it from the spreadsheet as CSV")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")))
    try:  # reading the header row can fail as any row can (a cell over csv's field limit)
        header = [h.strip().lower() for h in reader.fieldnames or []]
    except csv.Error:
        raise ImportFileError("the file is not valid CSV") from None
    missing = [c for c in REQUIRED if c not in header]
    if missing:
        raise ImportFileError("the first row must name the columns; missing: " + ", ".join(missing))
    reader.fieldnames = header
    rows = []
    try:
        for row in reader:
            values = {k: (v or "").strip() for k, v in row.items() if k in COLUMNS}
            if any(values.values()):
                rows.append((reader.line_num, values))
    except csv.Error:
        raise ImportFileError("the file is not valid CSV") from None
    if len(rows) > MAX_ROWS:
        raise ImportFileError(f"at most {MAX_ROWS} supporters per file")
    return rows


def import_csv(
    session: Session, vault: Vault, programme_id: int, text: str, actor: str, now: datetime
) -> ImportReport:
    """Add every acceptable row of ``text`` to the programme's roster; report on each."""
    results: list[RowResult] = []
    notices: list[Notice] = []
    for line, values in read_rows(text):
        try:
            with session.begin_nested():
                change = roster.add(session, vault, programme_id, _input(values), actor, now)
        except roster.RosterError as error:
            results.append(RowResult(line, False, str(error)))
            continue
        notices.extend(change.notices)
        results.append(RowResult(line, True, "added; code texted", change.supporter.id))
    report = ImportReport(tuple(results), tuple(notices))
    audit.record(
        session,
        programme_id=programme_id,
        actor=actor,
        action="supporter.import",
        new={"added": report.added, "rejected": report.rejected},
        at=now,
    )
    return report


def _input(values: dict[str, str]) -> roster.SupporterInput:
    return roster.SupporterInput(
        name=values.get("name", ""),
        phone=values.get("phone", ""),
        discipline=values.get("discipline") or None,
        max_conversations=values.get("max_conversations") or 2,
        email=values.get("email") or None,
    )
