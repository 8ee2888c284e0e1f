"""When a run began sending a taken call's follow-up text to its supporter.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08

A lease: a run killed before Twilio took the text (a job past its timeout while Twilio hangs)
leaves it set, and once it is stale the sweeper sends the follow-up again.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("calls", sa.Column("following_up_since", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.drop_column("following_up_since")
