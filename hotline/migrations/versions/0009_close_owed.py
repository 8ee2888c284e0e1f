"""A closed request's "it has closed" text owed again when Twilio did not take it.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

Set when the text is lost (429, 5xx, unreachable after the short retries); the sweeper sends
it again and clears it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("close_owed_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("close_owed_at")
