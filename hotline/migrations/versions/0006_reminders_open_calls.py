"""When a clinician waiting with nobody free was last told so again; calls not yet over.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``fallback_at`` is when the clinician was first told that nobody is free, and the reports
count fallbacks by it; the reminders a clinician gets when writing again while waiting are
throttled by this column instead, so they no longer move that first time.

``ix_calls_open``: the sweeper ends calls whose final status callback never came (so their
records at Twilio are deleted too); it finds them by state and age, not by reading every call.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("reminded_at", sa.DateTime(), nullable=True))
    op.create_index("ix_calls_open", "calls", ["state", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_calls_open", table_name="calls")
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("reminded_at")
