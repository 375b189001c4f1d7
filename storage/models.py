"""SQLAlchemy 2.0 typed models: the whole schema.

Every table that several processes write has a natural unique key, so writers use
``INSERT ... ON CONFLICT`` instead of read-then-insert. Timestamps are stored as aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """DateTime that always round-trips as an aware UTC datetime (SQLite forgets tz)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime(), dict[str, Any]: JSON}


class SourceRow(Base):
    """A configured source with its HTTP validators, schedule state and health."""

    __tablename__ = "sources"
    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    kind: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(Text)
    etag: Mapped[str | None] = mapped_column(Text)
    last_modified: Mapped[str | None] = mapped_column(Text)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    health: Mapped[str] = mapped_column(String(16), default="new")
    error_streak: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_status: Mapped[str | None] = mapped_column(String(32))
    last_fetch_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    last_new_at: Mapped[datetime | None]
    next_due_at: Mapped[datetime | None]
    interval: Mapped[float | None] = mapped_column(Float)
    timing: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # crawler.daemon.schedule state
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # scale-out dispatch (storage.dispatch): the lease of the poll handed to a worker, and its fencing token
    dispatch_until: Mapped[datetime | None]
    dispatched_at: Mapped[datetime | None]
    generation: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class FetchLogRow(Base):
    __tablename__ = "fetch_log"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(200), index=True)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    status: Mapped[str] = mapped_column(String(32))  # ok | not-modified | error
    http_status: Mapped[int | None] = mapped_column(Integer)
    bytes: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    new_documents: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[str | None] = mapped_column(Text)


class StoryRow(Base):
    __tablename__ = "stories"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    title: Mapped[str] = mapped_column(Text)
    first_document_id: Mapped[int | None] = mapped_column(BigInteger)
    first_source_id: Mapped[str | None] = mapped_column(String(200))
    first_seen: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DocumentRow(Base):
    __tablename__ = "documents"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    canonical_url: Mapped[str] = mapped_column(Text, unique=True)
    url: Mapped[str] = mapped_column(Text)
    source_id: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64), unique=True)  # of the normalised text
    published: Mapped[datetime | None] = mapped_column(index=True)
    discovered: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    author: Mapped[str | None] = mapped_column(Text)
    language: Mapped[str | None] = mapped_column(String(16))
    origin: Mapped[str] = mapped_column(String(16), default="article")
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id"), index=True)


class AliasRow(Base):
    """Every URL a document was seen under."""

    __tablename__ = "document_aliases"
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)


class SightingRow(Base):
    """A document seen through a source (a feed entry or a page)."""

    __tablename__ = "sightings"
    source_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    entry_id: Mapped[str] = mapped_column(Text, primary_key=True)
    document_id: Mapped[int | None] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str | None] = mapped_column(Text)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class SnapshotRow(Base):
    __tablename__ = "page_snapshots"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    source_id: Mapped[str] = mapped_column(String(200), index=True)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    added_text: Mapped[str | None] = mapped_column(Text)


class BandRow(Base):
    """MinHash LSH band hashes: the near-duplicate index, shared by every process."""

    __tablename__ = "minhash_bands"
    __table_args__ = {"sqlite_with_rowid": False}  # noqa: RUF012
    band: Mapped[int] = mapped_column(Integer, primary_key=True)
    hash: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)


class SignatureRow(Base):
    __tablename__ = "minhash_signatures"
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True)
    signature: Mapped[bytes] = mapped_column()


class MatchRow(Base):
    __tablename__ = "matches"
    __table_args__ = (UniqueConstraint("document_id", "rule_id", "evidence_hash"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    document_id: Mapped[int] = mapped_column(ForeignKey("documents.id", ondelete="CASCADE"), index=True)
    story_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    rule_id: Mapped[str] = mapped_column(String(200), index=True)
    title: Mapped[str] = mapped_column(Text, default="")
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[str] = mapped_column(Text)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    spans: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    captures: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    labels: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    alert_id: Mapped[int | None] = mapped_column(BigInteger, index=True)


class AlertRow(Base):
    """One development: a rule firing in a story with a new evidence sentence."""

    __tablename__ = "alerts"
    __table_args__ = (UniqueConstraint("rule_id", "story_id", "evidence_hash"),)
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    rule_id: Mapped[str] = mapped_column(String(200), index=True)
    story_id: Mapped[int] = mapped_column(BigInteger, index=True)
    evidence_hash: Mapped[str] = mapped_column(String(64))
    group_key: Mapped[str] = mapped_column(String(300), index=True)
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[str] = mapped_column(Text)
    document_id: Mapped[int] = mapped_column(BigInteger)
    source_count: Mapped[int] = mapped_column(Integer, default=1)
    corroborations: Mapped[int] = mapped_column(Integer, default=0)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # spans, captures, labels, status
    origin: Mapped[str] = mapped_column(String(16), default="live")  # live | backfill | rescan
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # the rule's develops_on captures ("vendor=Huawei"): later matches with the same key within
    # the rule's window corroborate this alert, whatever their story or language
    development_key: Mapped[str | None] = mapped_column(String(300), index=True)


class DeliveryRow(Base):
    """The transactional outbox: one row per (alert or notice) x channel x revision."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    channel: Mapped[str] = mapped_column(String(100), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # alert | update | digest | notice
    alert_id: Mapped[int | None] = mapped_column(BigInteger, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    # pending | sending | sent | failed (permanent) | dead (tries exhausted) | held (digest/quiet)
    # | silenced (a silence matched; sent only on `alerts retry`) | digested (folded into a digest)
    tries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(100))
    last_error: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # per-recipient results etc.
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]


class SilenceRow(Base):
    __tablename__ = "silences"
    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    matcher: Mapped[dict[str, Any]] = mapped_column(JSON)  # {"rule": glob, "story": id, "label": {...}}
    starts_at: Mapped[datetime] = mapped_column(default=utcnow)
    ends_at: Mapped[datetime] = mapped_column(index=True)
    comment: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(100), default="")


class CheckpointRow(Base):
    """Backfill progress per source and method, so an interrupted run resumes."""

    __tablename__ = "backfill_checkpoints"
    source_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    method: Mapped[str] = mapped_column(String(32), primary_key=True)
    window: Mapped[str] = mapped_column(String(80), primary_key=True)
    cursor: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class DaemonRow(Base):
    __tablename__ = "daemon_instances"
    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    heartbeat_at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(16), default="running")
    loop_lag_p99: Mapped[float | None] = mapped_column(Float)  # seconds, the last 5 minutes
    loop_lag_max: Mapped[float | None] = mapped_column(Float)


class ConfigVersionRow(Base):
    """One row: the version and digest of the config and rule files the workers must run."""

    __tablename__ = "config_version"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    digest: Mapped[str] = mapped_column(String(64))
    updated_at: Mapped[datetime]


Index("ix_deliveries_due", DeliveryRow.state, DeliveryRow.next_attempt_at)
Index("ix_sources_next_due", SourceRow.next_due_at)
