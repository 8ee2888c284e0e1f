"""An index for "on call now or later": shifts by programme and end time.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22

``schedule.load_layers`` asks for the shifts with ``starts_at < end AND ends_at > start``.
``ix_shifts_window`` leads with ``starts_at``, which every past shift satisfies, so each first
text read every shift ever recorded (50,000 rows after years of history: ~4 ms per query,
twice per first text). Shifts still running or yet to come are few, found by ``ends_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_shifts_ending", "shifts", ["programme_id", "ends_at"])


def downgrade() -> None:
    op.drop_index("ix_shifts_ending", table_name="shifts")
