"""When a programme was retired (``hotline programme retire``).

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07

A programme a health system stops running: its numbers answer every text and call with the
line's closing, its resources and the crisis sentence, and nothing more is offered, reminded
or checked in. NULL: the programme runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | Sequence[str] | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("programmes", sa.Column("retired_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programmes") as batch:
        batch.drop_column("retired_at")
