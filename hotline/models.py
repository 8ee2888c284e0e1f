"""The data model. Every row belongs to a programme; no message body has a column anywhere.

Phone numbers are stored sealed (``*_sealed``, AES-GCM, see privacy.py) and found by their
keyed hash (``*_hash``). The only text that is ever held is a clinician's message waiting for a
supporter to accept (``PendingText.sealed``), encrypted, and deleted as soon as it is relayed.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def naive_utc(value: datetime) -> datetime:
    """An aware instant as the database stores it: naive UTC (SQLite keeps no offset)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: pass an aware UTC datetime")
    return value.astimezone(UTC).replace(tzinfo=None)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no offset: store naive UTC)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return naive_utc(value)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


# Deterministic constraint names on every backend, so migrations can name what they alter.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Channel(StrEnum):
    SMS = "sms"
    VOICE = "voice"


class ConversationState(StrEnum):
    QUEUED = "queued"  # waiting: nobody accepted yet (offers may be out)
    ACTIVE = "active"  # a supporter accepted
    ENDED = "ended"


OPEN_CONVERSATION = (ConversationState.QUEUED, ConversationState.ACTIVE)  # not ended yet


class OfferState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    PASSED = "passed"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"  # the conversation ended or was taken before an answer
    # ACCEPT of an offer a call withdrew, as that call rang (the clinician called instead of
    # waiting): the request is hers if they hang up first (ringing._reopen, routing.take_claimed).
    CLAIMED = "claimed"


class CheckInState(StrEnum):
    SCHEDULED = "scheduled"
    CLAIMED = "claimed"  # in a worker's batch, not yet handed to Twilio: due again if it dies
    SENDING = "sending"  # handed to Twilio (or about to be)
    SENT = "sent"
    FAILED = "failed"
    CANCELLED = "cancelled"
    UNKNOWN = "unknown"  # a worker died after handing it to Twilio: never resent


class Role(StrEnum):
    COORDINATOR = "coordinator"
    ADMIN = "admin"


class Programme(Base):
    """One peer-support programme: its confidential number, pool, roster, schedule and texts.

    Text columns left NULL fall back to the environment's defaults (see programmes.py).
    """

    __tablename__ = "programmes"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    hotline_number: Mapped[str] = mapped_column(String(20), unique=True)
    timezone: Mapped[str | None] = mapped_column(String(64))
    greeting: Mapped[str | None] = mapped_column(Text)
    call_greeting: Mapped[str | None] = mapped_column(Text)  # said before the crisis sentence
    crisis_text: Mapped[str | None] = mapped_column(Text)
    resources_text: Mapped[str | None] = mapped_column(Text)
    checkin_offsets: Mapped[str | None] = mapped_column(String(200))
    checkin_hours: Mapped[str | None] = mapped_column(String(20))
    checkin_text: Mapped[str | None] = mapped_column(Text)
    offer_timeout: Mapped[int | None] = mapped_column(Integer)
    # Where "nobody is available" alerts go by text (the coordinator's phone), sealed.
    alert_phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Retired (retirement.py): its numbers answer that the line has closed, with the
    # programme's resources and crisis sentence; nothing is offered, reminded or checked in.
    retired_at: Mapped[datetime | None]
    # HOTLINE_POOL_NUMBERS as the last `hotline db upgrade` applied it to this programme, E.164
    # comma-separated (the line's own Twilio numbers, as pool_numbers holds them), so the next
    # one applies only what IT changed since (pool_setting.py). NULL: never recorded.
    applied_pool_setting: Mapped[str | None] = mapped_column(Text)

    pool_numbers: Mapped[list[PoolNumber]] = relationship(
        back_populates="programme", order_by="PoolNumber.id", cascade="all, delete-orphan"
    )


class PoolNumber(Base):
    """A number that masks the supporter side of this programme's conversations."""

    __tablename__ = "pool_numbers"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id", ondelete="CASCADE"))
    number: Mapped[str] = mapped_column(String(20), unique=True)

    programme: Mapped[Programme] = relationship(back_populates="pool_numbers")


class Supporter(Base):
    __tablename__ = "supporters"
    __table_args__ = (UniqueConstraint("programme_id", "phone_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    phone_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    phone_hash: Mapped[str] = mapped_column(String(64))
    discipline: Mapped[str | None] = mapped_column(String(40))
    email: Mapped[str | None] = mapped_column(String(254))
    max_conversations: Mapped[int] = mapped_column(Integer, default=2)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    phone_verified_at: Mapped[datetime | None]
    break_until: Mapped[datetime | None]
    # The round-robin pointer: the least recently offered eligible supporter goes first.
    last_offered_at: Mapped[datetime | None]
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    # Twilio refused a text to their phone for good, the phone's fault (reach.py): its error
    # code and when, never the text; cleared once a text to them goes through.
    texts_refused_code: Mapped[int | None] = mapped_column(Integer)
    texts_refused_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Clinician(Base):
    """A person who contacted a programme's line; known only by a sealed number and its hash."""

    __tablename__ = "clinicians"
    __table_args__ = (UniqueConstraint("programme_id", "phone_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    phone_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)  # NULL once forgotten
    phone_hash: Mapped[str | None] = mapped_column(String(64))
    checkins_declined: Mapped[bool] = mapped_column(Boolean, default=False)
    last_supporter_id: Mapped[int | None] = mapped_column(ForeignKey("supporters.id"))
    last_contact_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class OptOut(Base):
    """Twilio blocks a (recipient, sender) pair after STOP; we mirror that and never send to it."""

    __tablename__ = "opt_outs"
    __table_args__ = (UniqueConstraint("programme_id", "phone_hash", "sender"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    phone_hash: Mapped[str] = mapped_column(String(64))
    sender: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Shift(Base):
    """A one-off on-call period."""

    __tablename__ = "shifts"
    __table_args__ = (
        Index("ix_shifts_window", "programme_id", "starts_at", "ends_at"),
        # "On call now or later" is selective on ends_at, not starts_at: without this, every
        # first text scans every past shift (see docs/PERFORMANCE.md).
        Index("ix_shifts_ending", "programme_id", "ends_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"))
    supporter_id: Mapped[int] = mapped_column(ForeignKey("supporters.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Conversation(Base):
    __tablename__ = "conversations"
    __table_args__ = (
        Index("ix_conversations_open", "programme_id", "state"),
        Index("ix_conversations_clinician", "clinician_id", "state"),
        Index("ix_conversations_supporter", "supporter_id", "state"),
        Index("ix_conversations_supporter_ended", "supporter_id", "ended_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"))
    clinician_id: Mapped[int | None] = mapped_column(ForeignKey("clinicians.id"))
    channel: Mapped[Channel] = mapped_column(String(10))
    state: Mapped[ConversationState] = mapped_column(String(10), default=ConversationState.QUEUED)
    discipline_wanted: Mapped[str | None] = mapped_column(String(40))
    # Opened by a text answering a check-in (checkins.note_reply): the clinician had the
    # greeting before and is answered briefly; each peer offered it is told what it is.
    checkin_reply: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    supporter_id: Mapped[int | None] = mapped_column(ForeignKey("supporters.id"))
    pool_number: Mapped[str | None] = mapped_column(String(20))  # the supporter's masked line
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(20))
    fallback_at: Mapped[datetime | None]  # when the clinician was told nobody is free
    reminded_at: Mapped[datetime | None]  # when told so again, writing while waiting
    # A closed request's "it has closed" text Twilio did not take: the sweeper tells them again.
    close_owed_at: Mapped[datetime | None]
    # Held texts on their way through the REST API since (hotline/held.py): a clinician's text
    # meanwhile is held behind them, not relayed ahead. A lease: stale after held.LEASE.
    relaying_since: Mapped[datetime | None]
    last_activity_at: Mapped[datetime] = mapped_column(default=utcnow)


class Offer(Base):
    __tablename__ = "offers"
    __table_args__ = (
        UniqueConstraint("conversation_id", "supporter_id"),
        Index("ix_offers_pending", "state", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    supporter_id: Mapped[int] = mapped_column(ForeignKey("supporters.id"))
    pool_number: Mapped[str] = mapped_column(String(20))
    state: Mapped[OfferState] = mapped_column(String(10), default=OfferState.PENDING)
    offered_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    # How many times this supporter was offered this request (routing.ASKED_AT_MOST): a request
    # still waiting is offered again, on this row, to a peer who passed or let it lapse.
    asked: Mapped[int] = mapped_column(default=1, server_default="1")


class PendingText(Base):
    """A clinician's text held, sealed, until a supporter accepts; deleted once relayed."""

    __tablename__ = "pending_texts"

    id: Mapped[int] = mapped_column(primary_key=True)
    conversation_id: Mapped[int] = mapped_column(
        ForeignKey("conversations.id", ondelete="CASCADE"), index=True
    )
    sealed: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """One processed Twilio delivery; the unique key makes a duplicate delivery a no-op."""

    __tablename__ = "webhook_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)  # e.g. "sms:SM123"
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class CheckIn(Base):
    __tablename__ = "checkins"
    __table_args__ = (Index("ix_checkins_due", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"))
    conversation_id: Mapped[int] = mapped_column(ForeignKey("conversations.id"))
    clinician_id: Mapped[int] = mapped_column(ForeignKey("clinicians.id"), index=True)
    sequence: Mapped[int] = mapped_column(Integer)  # 1 for the first offset, 2 for the next...
    due_at: Mapped[datetime]
    state: Mapped[CheckInState] = mapped_column(String(10), default=CheckInState.SCHEDULED)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    provider_sid: Mapped[str | None] = mapped_column(String(64), unique=True)
    delivery_status: Mapped[str | None] = mapped_column(String(20))
    error_code: Mapped[int | None] = mapped_column(Integer)
    claimed_at: Mapped[datetime | None]
    sent_at: Mapped[datetime | None]
    replied_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Coordinator(Base):
    __tablename__ = "coordinators"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"))  # NULL: admin
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[Role] = mapped_column(String(20), default=Role.COORDINATOR)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_login_at: Mapped[datetime | None]


class ConsoleSession(Base):
    """A server-side console session: a copied cookie dies when this row is revoked."""

    __tablename__ = "console_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    coordinator_id: Mapped[int] = mapped_column(ForeignKey("coordinators.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None]


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"))  # NULL: all
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]  # NULL: never
    # Whether a phone number written with it counts as verified (the holder vouches for it), as
    # an administrator may; a coordinator's token has a code texted instead.
    vouches: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class AuditEntry(Base):
    """Append-only record of coordinator and operator actions (never a full phone number)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int | None] = mapped_column(ForeignKey("programmes.id"), index=True)
    actor: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(60))
    target: Mapped[str | None] = mapped_column(String(120))
    old: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    new: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    at: Mapped[datetime] = mapped_column(default=utcnow)


# --- confidentiality ---


class MessageDeletion(Base):
    """A provider record to delete: a message (so Twilio does not keep the body either) or a
    call leg (so it does not keep who called whom). The name predates call records.

    Holds only Twilio's SID (``SM``/``MM`` a message, ``CA`` a call); the row itself is deleted
    once the provider has deleted the record.
    """

    __tablename__ = "message_deletions"
    __table_args__ = (Index("ix_message_deletions_due", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sid: Mapped[str] = mapped_column(String(64), unique=True)
    due_at: Mapped[datetime]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- console ---


class Rotation(Base):
    """A weekly rotation: members take one-week turns in ``position`` order.

    Turns hand off at ``handoff_weekday`` (0 Monday .. 6 Sunday) and ``handoff_time`` on the
    wall clock of ``timezone`` (the programme's, copied here so the schedule needs no settings).
    Turn 0 starts at the first hand-off on or after ``anchor_date``; nothing before it.
    """

    __tablename__ = "rotations"

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    timezone: Mapped[str] = mapped_column(String(64))
    handoff_weekday: Mapped[int] = mapped_column(Integer)
    handoff_time: Mapped[time]
    anchor_date: Mapped[date]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    members: Mapped[list[RotationMember]] = relationship(
        back_populates="rotation",
        order_by="RotationMember.position",
        cascade="all, delete-orphan",
    )


class RotationMember(Base):
    __tablename__ = "rotation_members"
    __table_args__ = (UniqueConstraint("rotation_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    rotation_id: Mapped[int] = mapped_column(ForeignKey("rotations.id", ondelete="CASCADE"))
    supporter_id: Mapped[int] = mapped_column(
        ForeignKey("supporters.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)

    rotation: Mapped[Rotation] = relationship(back_populates="members")


class Override(Base):
    """From ``starts_at`` to ``ends_at``, ``supporter_id`` is on call and ``replaces_id`` (the
    supporter they cover for, if any) is not, whatever the rotations and shifts say."""

    __tablename__ = "overrides"
    __table_args__ = (Index("ix_overrides_window", "programme_id", "starts_at", "ends_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"))
    supporter_id: Mapped[int] = mapped_column(ForeignKey("supporters.id", ondelete="CASCADE"))
    replaces_id: Mapped[int | None] = mapped_column(ForeignKey("supporters.id", ondelete="CASCADE"))
    starts_at: Mapped[datetime]
    ends_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class PhoneVerification(Base):
    """A code texted to a supporter's number; while the row exists they are not on call."""

    __tablename__ = "phone_verifications"

    id: Mapped[int] = mapped_column(primary_key=True)
    supporter_id: Mapped[int] = mapped_column(
        ForeignKey("supporters.id", ondelete="CASCADE"), unique=True
    )
    code_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    notice_key: Mapped[str] = mapped_column(String(120))  # the Notice that texts this code
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    expires_at: Mapped[datetime]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class NoticeKind(StrEnum):
    VERIFICATION = "verification"
    REMINDER = "reminder"
    GAP = "gap"


class NoticeState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"  # nobody to send it to (no alert phone), or no longer true


class Notice(Base):
    """A text the schedule sends once: a verification code, a shift reminder, a gap warning.

    The unique ``key`` makes creating it twice a no-op; a sender claims it (pending -> sending)
    before calling the provider, so two workers never send the same one.
    """

    __tablename__ = "notices"
    __table_args__ = (Index("ix_notices_pending", "state", "due_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), index=True)
    key: Mapped[str] = mapped_column(String(120), unique=True)
    kind: Mapped[NoticeKind] = mapped_column(String(20))
    supporter_id: Mapped[int | None] = mapped_column(
        ForeignKey("supporters.id", ondelete="CASCADE")
    )
    starts_at: Mapped[datetime | None]
    ends_at: Mapped[datetime | None]
    due_at: Mapped[datetime]
    state: Mapped[NoticeState] = mapped_column(String(10), default=NoticeState.PENDING)
    sent_at: Mapped[datetime | None]
    # Our number it went out from: only a text to that number is a reply to it.
    from_number: Mapped[str | None] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleSettings(Base):
    """A programme's schedule options; a programme without a row has the defaults."""

    __tablename__ = "schedule_settings"

    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"), primary_key=True)
    reminder_minutes: Mapped[int | None] = mapped_column(Integer)  # None: no reminder texts
    # Coverage gaps this far ahead are texted to the alert phone (None: the console only).
    gap_warning_hours: Mapped[int | None] = mapped_column(Integer)
    calendar_token: Mapped[str | None] = mapped_column(String(64), unique=True)


class LoginFailure(Base):
    """A failed console sign-in (keyed by a hash of the email or address), kept a short while."""

    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key", "key", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


# --- voice line ---


class CallState(StrEnum):
    GREETING = "greeting"  # hearing the greeting and the discipline choice
    PEER = "peer"  # the caller's peer in a live conversation is rung first (peercall.py)
    RINGING = "ringing"  # supporters are being rung, one at a time (the pending offer)
    BRIDGED = "bridged"  # a supporter pressed 1: the two are talking
    CALLBACK = "callback"  # nobody took it: a call-back conversation is offered by text
    THROUGH = "through"  # a supporter calling their caller through the mask (masking.py)
    ENDED = "ended"  # the caller hung up, or the call is over


class Call(Base):
    """One inbound call to a hotline number, from the greeting to the hang-up; or a supporter's
    call through the mask (state ``through``, from the dial to the hang-up), kept only so the
    line knows they are on the phone.

    Holds no number and no recording: the caller is the clinician row (NULL for a hidden
    number, and for a supporter's call through the mask), ``call_sid`` is Twilio's id of the
    caller's leg, and each supporter rung is an Offer of ``conversation_id``.
    """

    __tablename__ = "calls"
    __table_args__ = (Index("ix_calls_open", "state", "created_at"),)  # not ENDED, by age

    id: Mapped[int] = mapped_column(primary_key=True)
    programme_id: Mapped[int] = mapped_column(ForeignKey("programmes.id"))
    call_sid: Mapped[str] = mapped_column(String(64), unique=True)
    clinician_id: Mapped[int | None] = mapped_column(ForeignKey("clinicians.id"))
    conversation_id: Mapped[int | None] = mapped_column(ForeignKey("conversations.id"), index=True)
    state: Mapped[CallState] = mapped_column(String(10), default=CallState.GREETING)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    ended_at: Mapped[datetime | None]
    # When the follow-up to the supporter who took the call (how to reach the caller, how to
    # close it) was claimed; NULL while it is owed.
    followed_up_at: Mapped[datetime | None]
    # While set, a run is sending that follow-up since then: a lease (held.RELAY_LEASE),
    # cleared once Twilio took the text. A stale one is a run killed mid-send: owed again.
    following_up_since: Mapped[datetime | None]
    # When the sweeper last asked Twilio whether a call with no final status is over (its
    # status callback may have been lost: it came while the database was down).
    status_asked_at: Mapped[datetime | None]
