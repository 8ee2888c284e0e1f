"""The coordinator console's tables: rotations, overrides, verifications, notices, throttling.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "rotations",
    "rotation_members",
    "overrides",
    "phone_verifications",
    "notices",
    "schedule_settings",
    "login_failures",
)


def _fk(table: str, column: str, target: str, cascade: bool = False) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=f"fk_{table}_{column}_{target}",
        ondelete="CASCADE" if cascade else None,
    )


def upgrade() -> None:
    op.create_table(
        "rotations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("handoff_weekday", sa.Integer(), nullable=False),
        sa.Column("handoff_time", sa.Time(), nullable=False),
        sa.Column("anchor_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rotations"),
        _fk("rotations", "programme_id", "programmes"),
    )
    op.create_index("ix_rotations_programme_id", "rotations", ["programme_id"])
    op.create_table(
        "rotation_members",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rotation_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rotation_members"),
        _fk("rotation_members", "rotation_id", "rotations", cascade=True),
        _fk("rotation_members", "supporter_id", "supporters", cascade=True),
        sa.UniqueConstraint(
            "rotation_id", "position", name="uq_rotation_members_rotation_id_position"
        ),
    )
    op.create_index("ix_rotation_members_supporter_id", "rotation_members", ["supporter_id"])
    op.create_table(
        "overrides",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("replaces_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_overrides"),
        _fk("overrides", "programme_id", "programmes"),
        _fk("overrides", "supporter_id", "supporters", cascade=True),
        _fk("overrides", "replaces_id", "supporters", cascade=True),
    )
    op.create_index("ix_overrides_window", "overrides", ["programme_id", "starts_at", "ends_at"])
    op.create_table(
        "phone_verifications",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("code_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("notice_key", sa.String(length=120), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_phone_verifications"),
        _fk("phone_verifications", "supporter_id", "supporters", cascade=True),
        sa.UniqueConstraint("supporter_id", name="uq_phone_verifications_supporter_id"),
    )
    op.create_table(
        "notices",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(), nullable=True),
        sa.Column("ends_at", sa.DateTime(), nullable=True),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notices"),
        _fk("notices", "programme_id", "programmes"),
        _fk("notices", "supporter_id", "supporters", cascade=True),
        sa.UniqueConstraint("key", name="uq_notices_key"),
    )
    op.create_index("ix_notices_programme_id", "notices", ["programme_id"])
    op.create_index("ix_notices_pending", "notices", ["state", "due_at"])
    op.create_table(
        "schedule_settings",
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("reminder_minutes", sa.Integer(), nullable=True),
        sa.Column("gap_warning_hours", sa.Integer(), nullable=True),
        sa.Column("calendar_token", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("programme_id", name="pk_schedule_settings"),
        _fk("schedule_settings", "programme_id", "programmes"),
        sa.UniqueConstraint("calendar_token", name="uq_schedule_settings_calendar_token"),
    )
    op.create_table(
        "login_failures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_login_failures"),
    )
    op.create_index("ix_login_failures_key", "login_failures", ["key", "at"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in reversed(TABLES):
        op.drop_table(table)
