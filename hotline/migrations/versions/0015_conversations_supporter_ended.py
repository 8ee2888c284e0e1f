"""An index on a supporter's conversations by when they ended.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07

Routing reads the pool numbers a supporter's recent conversations used (a new request comes
from the number she used longest ago): by this index it reads those of the past week, not
every conversation she ever had.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_conversations_supporter_ended", "conversations", ["supporter_id", "ended_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_conversations_supporter_ended", table_name="conversations")
