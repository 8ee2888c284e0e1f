"""Texts to a supporter's phone refused for good: Twilio's error code and when.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-08

A supporter whose phone Twilio refuses (they texted STOP to a line number, not a mobile
number, a landline) was passed over without the coordinator learning why; the roster and the
API now show it (hotline/reach.py). No message body: the code and the time only.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | Sequence[str] | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("supporters", sa.Column("texts_refused_code", sa.Integer(), nullable=True))
    op.add_column("supporters", sa.Column("texts_refused_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("supporters") as batch:
        batch.drop_column("texts_refused_at")
        batch.drop_column("texts_refused_code")
