"""How many times a supporter was offered one request.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A request still waiting is offered once more to an on-call peer who passed or let it lapse
half an hour before (routing.ASK_AGAIN_AFTER), on the same offer row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("offers", sa.Column("asked", sa.Integer(), nullable=False, server_default="1"))


def downgrade() -> None:
    with op.batch_alter_table("offers") as batch:
        batch.drop_column("asked")
