"""Table models of ingest: the dedup ledger, the raw events, and the events that failed."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel


class EventLedgerEntry(SQLModel, table=True):
    """An accepted event, remembered for the lateness window so it is counted once."""

    __tablename__ = "event_ledger"
    __table_args__ = (Index("event_ledger_event_time", "event_time"),)

    customer_id: str = Field(primary_key=True, sa_type=Text)
    event_id: str = Field(primary_key=True, sa_type=Text)
    fingerprint: bytes = Field(sa_type=LargeBinary)
    event_time: datetime = Field(sa_type=DateTime(timezone=True))
    received_at: datetime = Field(sa_type=DateTime(timezone=True))
    persisted_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # The persist message that admitted it (a 64-bit hash of the message id; 0 before this
    # was recorded): a redelivered message recognizes its own entries, so only copies of
    # events another message admitted are taken out of the live view again.
    message_key: int = Field(
        default=0, sa_column=Column(BigInteger, nullable=False, server_default=text("0"))
    )


class UsageEvent(SQLModel, table=True):
    """A raw usage event as persisted, with the local hour and group it is counted in."""

    __tablename__ = "usage_events"
    # Monthly partitions (portal/ingest/partitions.py) are created at run time and not modelled.
    __table_args__ = (
        Index("usage_events_customer_time", "customer_id", "event_time"),
        {"postgresql_partition_by": "RANGE (event_time)"},
    )
    # A partitioned table cannot hold a primary key that leaves out the partition key, and
    # uniqueness lives in event_ledger: (customer_id, event_id) is the ORM's identity only.
    __mapper_args__ = {"primary_key": ["customer_id", "event_id"]}

    customer_id: str = Field(sa_type=Text)
    event_id: str = Field(sa_type=Text)
    metric_name: str = Field(sa_type=Text)
    product_id: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=text("''")))
    quantity: Decimal = Field(sa_type=Numeric(32, 12))
    event_time: datetime = Field(sa_type=DateTime(timezone=True))
    hour: datetime = Field(sa_type=DateTime(timezone=True))
    group_key: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=text("''")))
    dimensions: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(JSONB, nullable=False, server_default=text("'{}'"))
    )
    # `metadata` is the declarative class's own attribute (the MetaData), hence the underscore.
    metadata_: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=Column("metadata", JSONB, nullable=False, server_default=text("'{}'")),
    )
    received_at: datetime = Field(sa_type=DateTime(timezone=True))
    persisted_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    message_id: str = Field(sa_type=Text)
    # Set when the event was cancelled (migration 0012): kept, counted nowhere.
    cancelled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class EventCorrection(SQLModel, table=True):
    """A cancel or amend of an accepted event: who, when, why, and what it changed."""

    __tablename__ = "event_corrections"
    __table_args__ = (
        CheckConstraint("kind IN ('cancel', 'amend')", name="event_corrections_kind_check"),
        CheckConstraint("source IN ('api', 'stripe', 'portal')", name="event_corrections_source_check"),
        CheckConstraint("(kind = 'cancel') = (quantity_after IS NULL)", name="event_corrections_shape"),
        Index("event_corrections_event", "customer_id", "event_id"),
        # Alembic compares the index's columns, not its WHERE clause.
        Index(
            "event_corrections_unsettled",
            "invoice_id",
            postgresql_where=text("invoice_id IS NOT NULL AND settled_at IS NULL"),
        ),
        PrimaryKeyConstraint("id", "customer_id", name="event_corrections_pkey"),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="event_corrections_invoice_id_fkey",
        ),
        ForeignKeyConstraint(
            ["adjustment_id", "customer_id"],
            ["adjustments.id", "adjustments.customer_id"],
            name="event_corrections_adjustment_id_fkey",
        ),
    )

    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    event_id: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    metric_name: str = Field(sa_type=Text)
    event_time: datetime = Field(sa_type=DateTime(timezone=True))
    hour: datetime = Field(sa_type=DateTime(timezone=True))
    group_key: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=text("''")))
    quantity_before: Decimal = Field(sa_type=Numeric())
    quantity_after: Decimal | None = Field(default=None, sa_type=Numeric())
    reason: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)
    user_id: int | None = Field(default=None, sa_type=BigInteger)
    source: str = Field(sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    invoice_id: int | None = Field(default=None, sa_type=BigInteger)
    adjustment_id: int | None = Field(default=None, sa_type=BigInteger)
    settled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class FailedEvent(SQLModel, table=True):
    """An event the worker could not persist, kept for an operator to replay or discard."""

    __tablename__ = "failed_events"
    __table_args__ = (
        CheckConstraint("status IN ('failed', 'replayed', 'discarded')", name="failed_events_status_check"),
        UniqueConstraint(
            "message_id", "customer_id", "event_id", name="failed_events_message_id_customer_id_event_id_key"
        ),
        # Alembic compares the index's columns, not its WHERE clause.
        Index("failed_events_open", "failed_at", postgresql_where=text("status = 'failed'")),
        PrimaryKeyConstraint("id", "customer_id", name="failed_events_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    message_id: str = Field(sa_type=Text)
    customer_id: str = Field(primary_key=True, sa_type=Text)
    event_id: str = Field(sa_type=Text)
    event: dict[str, Any] = Field(sa_type=JSONB)
    received_at: datetime = Field(sa_type=DateTime(timezone=True))
    reason: str = Field(sa_type=Text)
    failed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    status: str = Field(
        default="failed", sa_column=Column(Text, nullable=False, server_default=text("'failed'"))
    )
    resolved_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class EventConflict(SQLModel, table=True):
    """A re-use of an event id with different content: refused, and recorded here."""

    __tablename__ = "event_conflicts"
    __table_args__ = (
        CheckConstraint("detected_by IN ('ingest', 'worker')", name="event_conflicts_detected_by_check"),
        Index("event_conflicts_event", "customer_id", "event_id"),
        PrimaryKeyConstraint("id", "customer_id", name="event_conflicts_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, sa_type=Text)
    event_id: str = Field(sa_type=Text)
    event: dict[str, Any] = Field(sa_type=JSONB)
    detected_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    detected_by: str = Field(sa_type=Text)


class ArchivedPartition(SQLModel, table=True):
    """A monthly partition of `usage_events` exported to the archive dir, verified and
    dropped (portal/ingest/archive.py): its events are read from the files from then on."""

    __tablename__ = "archived_partitions"

    name: str = Field(primary_key=True, sa_type=Text)
    range_start: datetime = Field(sa_type=DateTime(timezone=True))
    range_end: datetime = Field(sa_type=DateTime(timezone=True))
    rows: int = Field(sa_type=BigInteger)
    bytes: int = Field(sa_type=BigInteger)
    # Relative to the archive dir, so the dir can move with its files.
    path: str = Field(sa_type=Text)
    manifest_sha256: str = Field(sa_type=Text)
    archived_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
