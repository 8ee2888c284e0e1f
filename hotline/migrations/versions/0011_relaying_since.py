"""When a conversation's held texts went on their way through the REST API.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

While set (and fresh), a clinician's new text is held behind them rather than relayed ahead.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("conversations", sa.Column("relaying_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("relaying_since")
