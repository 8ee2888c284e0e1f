"""When a clinician waiting with nobody free was last told so again.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07

``fallback_at`` is when the clinician was first told that nobody is free, and the reports
count fallbacks by it; the reminders a clinician gets when writing again while waiting are
throttled by this column instead, so they no longer move that first time.
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


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("reminded_at")
