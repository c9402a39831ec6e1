# SPDX-License-Identifier: GPL-3.0-or-later
"""The tables of casemail, as typed SQLAlchemy 2 models.

The same models run on SQLite (the embedded default) and PostgreSQL. Times are stored as aware UTC
datetimes; JSON columns hold only plain lists and dicts. Raw messages and attachment bytes are not in
the database: rows name a blob by its sha256 and the blob store keeps the bytes.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that always comes back timezone-aware in UTC.

    SQLite has no time zones and hands back naive datetimes; normalising here keeps every comparison in
    the code between aware values, whichever database is underneath.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class Base(DeclarativeBase):
    pass


class Counter(Base):
    """Named counters, such as the next case number.

    A row updated with UPDATE ... RETURNING inside the writing transaction works on both databases and
    never hands out a number twice; a gap can appear only if that transaction rolls back.
    """

    __tablename__ = "counter"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, nullable=False)


class Contact(Base):
    __tablename__ = "contact"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The address as first seen, and the key it is matched by (see store.contacts.address_key).
    address: Mapped[str] = mapped_column(String(320), nullable=False)
    address_key: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    display_name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="customer")
    notify: Mapped[str] = mapped_column(String(16), nullable=False, default="every")
    bouncing: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    bounce_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[int] = mapped_column(Integer, nullable=False, unique=True)
    subject: Mapped[str] = mapped_column(Text, nullable=False)
    product: Mapped[str | None] = mapped_column(String(100))
    version: Mapped[str | None] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text, nullable=False, default="")
    severity: Mapped[int] = mapped_column(Integer, nullable=False, default=3)
    severity_source: Mapped[str] = mapped_column(String(20), nullable=False, default="default")
    production_down: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="open")
    requester_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), nullable=False)
    follow_up_of_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    requester: Mapped[Contact] = relationship(foreign_keys=[requester_id], lazy="joined")
    follow_up_of: Mapped[Case | None] = relationship(remote_side=[id], foreign_keys=[follow_up_of_id])

    __table_args__ = (
        Index("ix_case_requester_updated", "requester_id", "updated_at"),
        Index("ix_case_status_updated", "status", "updated_at"),
        # Created by migration 0004 with the subject search index (FTS5 / GIN), which is not mapped.
        Index("ix_case_updated", "updated_at", "number"),
    )


class Participant(Base):
    """Someone other than the requester who follows the case (CC'd on it, or added by staff)."""

    __tablename__ = "participant"

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    contact_id: Mapped[int] = mapped_column(ForeignKey("contact.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), nullable=False, default="cc")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    contact: Mapped[Contact] = relationship(lazy="joined")


class Inbound(Base):
    """Every message received, whatever became of it.

    A row is written and committed together with the raw blob before the transport acknowledges the
    mail (state 'accepted'); processing later fills the outcome. A row left in 'accepted' after a
    crash is processed again on restart.
    """

    __tablename__ = "inbound"

    id: Mapped[int] = mapped_column(primary_key=True)
    transport: Mapped[str] = mapped_column(String(16), nullable=False)
    mail_from: Mapped[str | None] = mapped_column(String(320))
    rcpt_tos: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    message_id: Mapped[str | None] = mapped_column(String(998))
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    # The raw message itself when it is small (store.inbound.INLINE_BYTES): recording it costs a share
    # of the group's one commit instead of a blob file, its fsync and its directory's. Larger mail is in
    # the blob store under sha256. Deferred: only processing and showing the mail read it.
    raw: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="accepted")
    outcome: Mapped[str | None] = mapped_column(String(24))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_inbound_state", "state"),
        Index("ix_inbound_message_id", "message_id"),
        Index("ix_inbound_sha256", "sha256"),
    )


class Entry(Base):
    """One item of a case's activity history: a mail in, a mail out, or an event."""

    __tablename__ = "entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), nullable=False)
    kind: Mapped[str] = mapped_column(String(24), nullable=False)
    visibility: Mapped[str] = mapped_column(String(16), nullable=False, default="public")
    author_id: Mapped[int | None] = mapped_column(ForeignKey("contact.id"))
    subject: Mapped[str] = mapped_column(Text, nullable=False, default="")
    text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    full_text: Mapped[str] = mapped_column(Text, nullable=False, default="")
    html: Mapped[str | None] = mapped_column(Text)
    message_id: Mapped[str | None] = mapped_column(String(998))
    # Which signal tied this mail to its case ("message-id", "reply-address", "footer", "subject",
    # "new"), and anything else worth showing an operator about it.
    matched_by: Mapped[str | None] = mapped_column(String(24))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("inbound.id"))
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    author: Mapped[Contact | None] = relationship(lazy="joined")
    attachments: Mapped[list[Attachment]] = relationship(
        back_populates="entry", order_by="Attachment.id", lazy="selectin"
    )

    __table_args__ = (
        Index("ix_entry_case", "case_id", "id"),
        Index("ix_entry_message_id", "message_id"),
    )


class Attachment(Base):
    __tablename__ = "attachment"

    id: Mapped[int] = mapped_column(primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("entry.id"), nullable=False)
    filename: Mapped[str] = mapped_column(String(255), nullable=False)
    declared_type: Mapped[str] = mapped_column(String(255), nullable=False)
    sniffed_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    content_id: Mapped[str | None] = mapped_column(String(998))
    inline: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    entry: Mapped[Entry] = relationship(back_populates="attachments")

    __table_args__ = (Index("ix_attachment_entry", "entry_id"),)


class Outbox(Base):
    """A mail to send, queued in the same transaction as what caused it.

    Intake writes an intent (template and a snapshot of its context); the notifier renders it once, at
    its first claim, and keeps the bytes, so every retry sends the same mail with the same Message-ID.
    """

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    template: Mapped[str] = mapped_column(String(80), nullable=False)
    context: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    recipients: Mapped[list[str]] = mapped_column(JSON, nullable=False)
    message_id: Mapped[str] = mapped_column(String(998), nullable=False, unique=True)
    rendered_sha256: Mapped[str | None] = mapped_column(String(64))
    # The rendered bytes themselves when they are small (store.outbox.INLINE_BYTES), so that keeping
    # them costs a share of the batch's one commit rather than a file, its fsync and its directory's.
    # Larger mails are in the blob store under rendered_sha256. Deferred: only sending and showing
    # the mail read them.
    rendered: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="queued")
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_outbox_due", "state", "next_attempt_at"),
        # Recent mail of one template (rate limits, answered requests), see outbox.sent_to_since.
        Index("ix_outbox_template_created", "template", "created_at"),
    )


class JobRun(Base):
    """One scheduled job done, by its natural key (e.g. "reminder:<case>:<entry>", "digest:staff:<date>").

    The row is inserted only if absent, in the same transaction as the mail the job queues, so running a
    job twice, or in two daemons at once, queues that mail once: the second insert finds the key taken.
    """

    __tablename__ = "job_run"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    # The mail the job queued; None when it found nothing to send (a digest without activity).
    outbox_id: Mapped[int | None] = mapped_column(ForeignKey("outbox.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
