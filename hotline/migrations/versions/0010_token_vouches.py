"""Whether an API token vouches for the phone numbers written with it.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

A token a coordinator makes in the console does not (a code is texted, as in the console); the
command line's and an administrator's do. Of the tokens made before this revision, those the
audit log shows a coordinator (not an administrator) made stop vouching; the rest keep it.
"""

from __future__ import annotations

import re
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
    connection = op.get_bind()
    coordinators = {
        email
        for email, role in connection.execute(sa.text("SELECT email, role FROM coordinators"))
        if role != "admin"
    }
    made = connection.execute(
        sa.text("SELECT target, actor FROM audit_log WHERE action = 'api token created'")
    )
    for target, actor in made:
        found = re.match(r"api token (\d+) ", target or "")
        if found and actor in coordinators:
            connection.execute(
                sa.text("UPDATE api_tokens SET vouches = :no WHERE id = :id"),
                {"no": False, "id": int(found.group(1))},
            )


def downgrade() -> None:
    with op.batch_alter_table("api_tokens") as batch:
        batch.drop_column("vouches")
