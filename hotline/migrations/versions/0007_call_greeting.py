"""A programme's spoken greeting for calls (the crisis sentence is always said after it).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07

Empty means the default greeting (``programmes.DEFAULT_CALL_GREETING``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("programmes", sa.Column("call_greeting", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programmes") as batch:
        batch.drop_column("call_greeting")
