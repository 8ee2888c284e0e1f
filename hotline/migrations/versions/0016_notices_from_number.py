"""Which of our numbers a notice went out from.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07

A supporter's text is a reply to a shift reminder or a code only on the number it came from:
with the hotline number in the pool, a text to it after a reminder from another pool number
was taken for a reply to that reminder. Notices sent before this have none, and no reply
answers them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("notices", sa.Column("from_number", sa.String(20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notices") as batch:
        batch.drop_column("from_number")
