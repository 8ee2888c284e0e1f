"""When the sweeper last asked Twilio about a call whose final status has not come.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07

A call's final status callback can be lost (answered 503 while the database was down); the
sweeper asks Twilio at most every few minutes per call rather than waiting hours.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("status_asked_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("status_asked_at")
