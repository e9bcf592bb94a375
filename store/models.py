"""The store's tables. Portable across SQLite and PostgreSQL: ids are strings or integers, JSON is
``sa.JSON``, timestamps are timezone-aware UTC (``UTCDateTime``), statuses are strings guarded by CHECK
constraints. Constraint names follow ``metadata.naming_convention`` so migrations can refer to them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT on PostgreSQL; SQLite only autoincrements an "INTEGER PRIMARY KEY".
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out — on SQLite too, which has no time zones."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store keeps aware UTC timestamps only")
        value = value.astimezone(UTC)
        # SQLite compares timestamps as text: store them all in UTC without an offset.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


IDEMPOTENCY_STATUSES = ("IN_PROGRESS", "COMPLETED")
RUN_STATUSES = ("PENDING", "RUNNING", "SUCCEEDED", "FAILED")
INBOX_STATUSES = ("RECEIVED", "PROCESSED", "FAILED", "IGNORED")
WORK_STATUSES = ("QUEUED", "CLAIMED", "DONE", "FAILED")
EXCEPTION_STATUSES = ("OPEN", "REPLAYING", "RESOLVED", "DISMISSED")


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


class CrossReference(Base):
    """One record's id in one system, tied to its canonical id."""

    __tablename__ = "cross_references"
    __table_args__ = (
        sa.UniqueConstraint("system", "entity_type", "system_id"),
        sa.UniqueConstraint("canonical_id", "system"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    canonical_id: Mapped[str] = mapped_column(sa.String(36))
    entity_type: Mapped[str] = mapped_column(sa.String(64))
    system: Mapped[str] = mapped_column(sa.String(16))
    system_id: Mapped[str] = mapped_column(sa.String(128))
    legal_entity: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class IdempotencyRecord(Base):
    __tablename__ = "idempotency_records"
    __table_args__ = (
        sa.UniqueConstraint("principal", "operation", "key"),
        sa.CheckConstraint(_one_of("status", IDEMPOTENCY_STATUSES), name="status"),
        sa.Index(None, "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(sa.String(255))
    principal: Mapped[str] = mapped_column(sa.String(255))
    operation: Mapped[str] = mapped_column(sa.String(128))
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    response: Mapped[Any | None] = mapped_column(sa.JSON)
    http_status: Mapped[int | None] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]


class IntegrationRun(Base):
    __tablename__ = "integration_runs"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        sa.Index(None, "flow", "subject"),
        sa.Index(None, "correlation_id"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    flow: Mapped[str] = mapped_column(sa.String(64))
    subject: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16))
    legal_entity: Mapped[str | None] = mapped_column(sa.String(64))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(64))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=1)
    input: Mapped[Any | None] = mapped_column(sa.JSON)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]


class IntegrationStep(Base):
    """One outbound write of a run. ``key`` is deterministic (``erp:customer:<canonical id>``) and unique
    across runs, so a write done by any run is never done again."""

    __tablename__ = "integration_steps"
    __table_args__ = (
        sa.UniqueConstraint("key"),
        sa.CheckConstraint(_one_of("status", RUN_STATUSES), name="status"),
        sa.Index(None, "run_id"),
        sa.Index(None, "correlation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("integration_runs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    result: Mapped[Any | None] = mapped_column(sa.JSON)
    error: Mapped[Any | None] = mapped_column(sa.JSON)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # The attempt that last claimed the step; a replay moves the run's id, never a finished step's.
    correlation_id: Mapped[str | None] = mapped_column(sa.String(64))


class AuditEntry(Base):
    """Append-only: repositories offer no update or delete."""

    __tablename__ = "audit_entries"
    __table_args__ = (
        sa.Index(None, "at"),
        sa.Index(None, "operation", "at"),
        sa.Index(None, "principal", "at"),
        sa.Index(None, "correlation_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    principal: Mapped[str] = mapped_column(sa.String(255))
    roles: Mapped[list[str]] = mapped_column(sa.JSON)
    operation: Mapped[str] = mapped_column(sa.String(128))
    input: Mapped[Any | None] = mapped_column(sa.JSON)
    result: Mapped[Any | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(32))
    correlation_id: Mapped[str | None] = mapped_column(sa.String(64))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class InboxEvent(Base):
    __tablename__ = "inbox_events"
    __table_args__ = (
        sa.UniqueConstraint("source", "source_event_id"),
        sa.CheckConstraint(_one_of("status", INBOX_STATUSES), name="status"),
        sa.Index(None, "status", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(sa.String(64))
    source_event_id: Mapped[str] = mapped_column(sa.String(255))
    payload: Mapped[Any | None] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default="RECEIVED")
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    processed_at: Mapped[datetime | None]


class OutboxEvent(Base):
    """``id`` is the event id subscribers resume from; it only ever grows (AUTOINCREMENT on SQLite)."""

    __tablename__ = "outbox_events"
    __table_args__ = (
        sa.Index(None, "topic", "id"),
        sa.Index(
            "ix_outbox_events_unpublished",
            "id",
            postgresql_where=sa.text("published_at IS NULL"),
            sqlite_where=sa.text("published_at IS NULL"),
        ),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(sa.String(128))
    key: Mapped[str | None] = mapped_column(sa.String(255))
    payload: Mapped[Any] = mapped_column(sa.JSON)
    legal_entity: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    published_at: Mapped[datetime | None]


class WorkItem(Base):
    __tablename__ = "work_items"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key"),
        sa.CheckConstraint(_one_of("status", WORK_STATUSES), name="status"),
        sa.Index(None, "kind", "status", "available_at"),
        sa.Index(None, "status", "lease_expires_at"),
        sa.Index(None, "kind", "status", "updated_at"),  # finished when: throughput, pruning (0002)
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    dedupe_key: Mapped[str | None] = mapped_column(sa.String(255))
    payload: Mapped[Any] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), default="QUEUED")
    attempts: Mapped[int] = mapped_column(sa.Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(sa.Integer, default=5)
    last_error: Mapped[Any | None] = mapped_column(sa.JSON)
    available_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(sa.String(128))
    lease_expires_at: Mapped[datetime | None]
    legal_entity: Mapped[str | None] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IntegrationException(Base):
    __tablename__ = "integration_exceptions"
    __table_args__ = (
        sa.CheckConstraint(_one_of("status", EXCEPTION_STATUSES), name="status"),
        sa.Index(None, "status", "created_at"),
        sa.Index(None, "flow", "subject"),
        sa.Index(None, "run_id"),
        sa.Index(None, "legal_entity", "status"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True, default=new_id)
    flow: Mapped[str] = mapped_column(sa.String(64))
    reason_code: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="OPEN")
    step: Mapped[str | None] = mapped_column(sa.String(255))
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("integration_runs.id", ondelete="SET NULL"))
    subject: Mapped[str | None] = mapped_column(sa.String(128))
    payload: Mapped[Any | None] = mapped_column(sa.JSON)
    upstream_error: Mapped[Any | None] = mapped_column(sa.JSON)
    correlation_id: Mapped[str | None] = mapped_column(sa.String(64))
    legal_entity: Mapped[str | None] = mapped_column(sa.String(64))
    occurrences: Mapped[int] = mapped_column(sa.Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    resolved_at: Mapped[datetime | None]
    resolution_note: Mapped[str | None] = mapped_column(sa.Text)
    dismissed_by: Mapped[str | None] = mapped_column(sa.String(255))


class SyncCursor(Base):
    __tablename__ = "sync_cursors"
    __table_args__ = (sa.UniqueConstraint("name"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(sa.String(128))
    value: Mapped[str] = mapped_column(sa.String(255))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class MappingVersion(Base):
    __tablename__ = "mapping_versions"
    __table_args__ = (sa.UniqueConstraint("fingerprint"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    version: Mapped[str] = mapped_column(sa.String(64))
    fingerprint: Mapped[str] = mapped_column(sa.String(128))
    content: Mapped[str] = mapped_column(sa.Text)
    loaded_at: Mapped[datetime] = mapped_column(default=utcnow)
    active: Mapped[bool] = mapped_column(sa.Boolean, default=False)
