"""HOTLINE_POOL_NUMBERS as the last ``hotline db upgrade`` applied it (pool_setting.py).

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-08

The environment's pool setting acts as edits: each upgrade adds only the numbers it lists that
it did not list last time, so a number someone took out of the pool since is not put back.
The numbers are the line's own Twilio numbers, stored as pool_numbers stores them. NULL: not
recorded yet: the first upgrade after this one applies the setting as releases did before it
(adding what the pool lacks), and records it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | Sequence[str] | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("programmes", sa.Column("applied_pool_setting", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("programmes") as batch:
        batch.drop_column("applied_pool_setting")
