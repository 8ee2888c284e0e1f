"""Provider-side message deletion queue (message bodies must not linger at Twilio).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "message_deletions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sid", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_deletions")),
        sa.UniqueConstraint("sid", name=op.f("uq_message_deletions_sid")),
    )
    op.create_index("ix_message_deletions_due", "message_deletions", ["due_at"])


def downgrade() -> None:
    op.drop_index("ix_message_deletions_due", table_name="message_deletions")
    op.drop_table("message_deletions")
