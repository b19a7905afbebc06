"""Table models of outgoing webhooks: endpoints, events, deliveries and their attempts
(migration 0011). An event and its pending deliveries are written in the transaction of the
change they announce, and sent after it commits."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    Text,
    desc,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel


class WebhookEndpoint(SQLModel, table=True):
    """Where the portal POSTs the events of the types it subscribes to."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    url: str = Field(sa_type=Text)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=text("''")))
    event_types: list[str] = Field(sa_column=Column(ARRAY(Text), nullable=False))
    signing_secret_encrypted: bytes = Field(sa_type=LargeBinary)
    enabled: bool = Field(default=True, sa_column_kwargs={"server_default": text("true")})
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # Kept, not removed: its deliveries and their attempts stay readable.
    deleted_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WebhookEvent(SQLModel, table=True):
    """Something that happened, as the exact JSON body every delivery of it sends."""

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index("webhook_events_created", desc("created_at")),
        Index("webhook_events_customer", "customer_id", desc("created_at")),
    )

    id: str = Field(primary_key=True, sa_type=Text)  # evt_…
    type: str = Field(sa_type=Text)
    api_version: str = Field(sa_type=Text)
    customer_id: str | None = Field(default=None, foreign_key="customers.id", sa_type=Text)
    body: str = Field(sa_type=Text)  # text, not jsonb: the bytes signed and sent, key order kept
    created_at: datetime = Field(sa_type=DateTime(timezone=True))


class WebhookDelivery(SQLModel, table=True):
    """An event to one endpoint: pending until a 2xx answer, failed after the last retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending', 'delivered', 'failed')", name="webhook_deliveries_status_check"
        ),
        # Alembic compares the index's columns, not its WHERE clause.
        Index("webhook_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("webhook_deliveries_event", "event_id"),
        Index("webhook_deliveries_endpoint", "endpoint_id", desc("created_at")),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    event_id: str = Field(foreign_key="webhook_events.id", sa_type=Text)
    endpoint_id: int = Field(foreign_key="webhook_endpoints.id", sa_type=BigInteger)
    # A replay: a new delivery of the same event, asked for from the API or the pages.
    replay_of_id: int | None = Field(default=None, foreign_key="webhook_deliveries.id", sa_type=BigInteger)
    status: str = Field(
        default="pending", sa_column=Column(Text, nullable=False, server_default=text("'pending'"))
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    next_attempt_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # Keeps two workers from sending the same delivery at once.
    leased_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    delivered_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    failed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class WebhookDeliveryAttempt(SQLModel, table=True):
    """One POST of a delivery: when, how long, and the HTTP status or why it failed."""

    __tablename__ = "webhook_delivery_attempts"
    __table_args__ = (Index("webhook_delivery_attempts_delivery", "delivery_id"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    delivery_id: int = Field(foreign_key="webhook_deliveries.id", sa_type=BigInteger)
    attempt: int = Field(sa_type=Integer)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    duration_ms: int = Field(sa_type=Integer)
    http_status: int | None = Field(default=None, sa_type=Integer)
    error: str | None = Field(default=None, sa_type=Text)
