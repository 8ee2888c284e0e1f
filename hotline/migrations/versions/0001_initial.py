"""The initial schema: every table of hotline/models.py.

Revision ID: 0001
Revises:
Create Date: 2026-11-22

UTCDateTime columns are plain ``sa.DateTime()`` here: the type decorator only converts values in
Python, the database column is a naive timestamp holding UTC.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = (
    "programmes",
    "pool_numbers",
    "supporters",
    "clinicians",
    "opt_outs",
    "shifts",
    "conversations",
    "offers",
    "pending_texts",
    "webhook_events",
    "checkins",
    "coordinators",
    "console_sessions",
    "api_tokens",
    "audit_log",
)


def upgrade() -> None:
    op.create_table(
        "programmes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("hotline_number", sa.String(length=20), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("greeting", sa.Text(), nullable=True),
        sa.Column("crisis_text", sa.Text(), nullable=True),
        sa.Column("resources_text", sa.Text(), nullable=True),
        sa.Column("checkin_offsets", sa.String(length=200), nullable=True),
        sa.Column("checkin_hours", sa.String(length=20), nullable=True),
        sa.Column("checkin_text", sa.Text(), nullable=True),
        sa.Column("offer_timeout", sa.Integer(), nullable=True),
        sa.Column("alert_phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_programmes"),
        sa.UniqueConstraint("slug", name="uq_programmes_slug"),
        sa.UniqueConstraint("hotline_number", name="uq_programmes_hotline_number"),
    )
    op.create_table(
        "pool_numbers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=20), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pool_numbers"),
        sa.ForeignKeyConstraint(
            ["programme_id"],
            ["programmes.id"],
            name="fk_pool_numbers_programme_id_programmes",
            ondelete="CASCADE",
        ),
        sa.UniqueConstraint("number", name="uq_pool_numbers_number"),
    )
    op.create_table(
        "supporters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("discipline", sa.String(length=40), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("max_conversations", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("phone_verified_at", sa.DateTime(), nullable=True),
        sa.Column("break_until", sa.DateTime(), nullable=True),
        sa.Column("last_offered_at", sa.DateTime(), nullable=True),
        sa.Column("calendar_token", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_supporters"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_supporters_programme_id_programmes"
        ),
        sa.UniqueConstraint(
            "programme_id", "phone_hash", name="uq_supporters_programme_id_phone_hash"
        ),
        sa.UniqueConstraint("calendar_token", name="uq_supporters_calendar_token"),
    )
    op.create_index("ix_supporters_programme_id", "supporters", ["programme_id"])
    op.create_table(
        "clinicians",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("phone_sealed", sa.LargeBinary(), nullable=True),
        sa.Column("phone_hash", sa.String(length=64), nullable=True),
        sa.Column("checkins_declined", sa.Boolean(), nullable=False),
        sa.Column("last_supporter_id", sa.Integer(), nullable=True),
        sa.Column("last_contact_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_clinicians"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_clinicians_programme_id_programmes"
        ),
        sa.ForeignKeyConstraint(
            ["last_supporter_id"],
            ["supporters.id"],
            name="fk_clinicians_last_supporter_id_supporters",
        ),
        sa.UniqueConstraint(
            "programme_id", "phone_hash", name="uq_clinicians_programme_id_phone_hash"
        ),
    )
    op.create_index("ix_clinicians_programme_id", "clinicians", ["programme_id"])
    op.create_table(
        "opt_outs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("phone_hash", sa.String(length=64), nullable=False),
        sa.Column("sender", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_opt_outs"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_opt_outs_programme_id_programmes"
        ),
        sa.UniqueConstraint(
            "programme_id",
            "phone_hash",
            "sender",
            name="uq_opt_outs_programme_id_phone_hash_sender",
        ),
    )
    op.create_index("ix_opt_outs_programme_id", "opt_outs", ["programme_id"])
    op.create_table(
        "shifts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(), nullable=False),
        sa.Column("ends_at", sa.DateTime(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_shifts"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_shifts_programme_id_programmes"
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"],
            ["supporters.id"],
            name="fk_shifts_supporter_id_supporters",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_shifts_window", "shifts", ["programme_id", "starts_at", "ends_at"])
    op.create_table(
        "conversations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=True),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("discipline_wanted", sa.String(length=40), nullable=True),
        sa.Column("supporter_id", sa.Integer(), nullable=True),
        sa.Column("pool_number", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=True),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(length=20), nullable=True),
        sa.Column("fallback_at", sa.DateTime(), nullable=True),
        sa.Column("last_activity_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_conversations"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_conversations_programme_id_programmes"
        ),
        sa.ForeignKeyConstraint(
            ["clinician_id"], ["clinicians.id"], name="fk_conversations_clinician_id_clinicians"
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["supporters.id"], name="fk_conversations_supporter_id_supporters"
        ),
    )
    op.create_index("ix_conversations_open", "conversations", ["programme_id", "state"])
    op.create_index("ix_conversations_clinician", "conversations", ["clinician_id", "state"])
    op.create_index("ix_conversations_supporter", "conversations", ["supporter_id", "state"])
    op.create_table(
        "offers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("supporter_id", sa.Integer(), nullable=False),
        sa.Column("pool_number", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("offered_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_offers"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_offers_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["supporter_id"], ["supporters.id"], name="fk_offers_supporter_id_supporters"
        ),
        sa.UniqueConstraint(
            "conversation_id", "supporter_id", name="uq_offers_conversation_id_supporter_id"
        ),
    )
    op.create_index("ix_offers_pending", "offers", ["state", "expires_at"])
    op.create_table(
        "pending_texts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pending_texts"),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_pending_texts_conversation_id_conversations",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_pending_texts_conversation_id", "pending_texts", ["conversation_id"])
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("received_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_events"),
        sa.UniqueConstraint("key", name="uq_webhook_events_key"),
    )
    op.create_index("ix_webhook_events_received_at", "webhook_events", ["received_at"])
    op.create_table(
        "checkins",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("clinician_id", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("due_at", sa.DateTime(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("provider_sid", sa.String(length=64), nullable=True),
        sa.Column("delivery_status", sa.String(length=20), nullable=True),
        sa.Column("error_code", sa.Integer(), nullable=True),
        sa.Column("claimed_at", sa.DateTime(), nullable=True),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
        sa.Column("replied_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_checkins"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_checkins_programme_id_programmes"
        ),
        sa.ForeignKeyConstraint(
            ["conversation_id"],
            ["conversations.id"],
            name="fk_checkins_conversation_id_conversations",
        ),
        sa.ForeignKeyConstraint(
            ["clinician_id"], ["clinicians.id"], name="fk_checkins_clinician_id_clinicians"
        ),
        sa.UniqueConstraint("provider_sid", name="uq_checkins_provider_sid"),
    )
    op.create_index("ix_checkins_clinician_id", "checkins", ["clinician_id"])
    op.create_index("ix_checkins_due", "checkins", ["state", "due_at"])
    op.create_table(
        "coordinators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=20), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_login_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_coordinators"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_coordinators_programme_id_programmes"
        ),
        sa.UniqueConstraint("email", name="uq_coordinators_email"),
    )
    op.create_table(
        "console_sessions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("coordinator_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_console_sessions"),
        sa.ForeignKeyConstraint(
            ["coordinator_id"],
            ["coordinators.id"],
            name="fk_console_sessions_coordinator_id_coordinators",
        ),
        sa.UniqueConstraint("token_hash", name="uq_console_sessions_token_hash"),
    )
    op.create_index("ix_console_sessions_coordinator_id", "console_sessions", ["coordinator_id"])
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_api_tokens_programme_id_programmes"
        ),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("programme_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("target", sa.String(length=120), nullable=True),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_log"),
        sa.ForeignKeyConstraint(
            ["programme_id"], ["programmes.id"], name="fk_audit_log_programme_id_programmes"
        ),
    )
    op.create_index("ix_audit_log_programme_id", "audit_log", ["programme_id"])


def downgrade() -> None:
    # Dropping a table drops its indexes and constraints with it.
    for table in reversed(TABLES):
        op.drop_table(table)
