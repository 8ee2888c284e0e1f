"""Whether an API token vouches for the phone numbers written with it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A token a coordinator makes in the console does not (a code is texted, as in the console); the
command line's and an administrator's do. Tokens made before this revision keep vouching.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "api_tokens",
        sa.Column("vouches", sa.Boolean(), nullable=False, server_default=sa.true()),
    )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("vouches")
