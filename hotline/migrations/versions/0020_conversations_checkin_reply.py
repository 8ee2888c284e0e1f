"""Whether a conversation began as a clinician's reply to a check-in.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-09

A reply to a check-in was answered with the whole first-contact greeting and offered to peers
as a stranger's request. It is now answered briefly (with the crisis sentence), and each peer
it is offered to is told it answers a check-in; the request remembers which it is here. A
flag, no message body. Conversations before this one read as not: they were offered as such.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | Sequence[str] | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "conversations",
        sa.Column("checkin_reply", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    with op.batch_alter_table("conversations") as batch:
        batch.drop_column("checkin_reply")
