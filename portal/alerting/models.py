"""Table models of alerting: channels, plan and customer rules, firings, deliveries and their
attempts. A firing and its pending deliveries are written in one transaction, sent later."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    PrimaryKeyConstraint,
    Text,
    UniqueConstraint,
    desc,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

# Both kinds of rule share this shape: an anomaly rule has no levels, basis or budget.
_KIND_SHAPE = (
    "(kind = 'anomaly') = (cardinality(levels) = 0) AND (kind = 'threshold' OR (basis = 'absolute' "
    "AND budget IS NULL AND NOT notify_recovery AND NOT notify_forecast))"
)
_BASES = "basis IN ('absolute', 'included', 'commitment', 'budget', 'limit')"
_KINDS = "kind IN ('threshold', 'anomaly')"


class AlertChannel(SQLModel, table=True):
    """Where a customer's alert notices go: an Apprise URL encrypted at rest, shown masked."""

    __tablename__ = "alert_channels"
    __table_args__ = (
        CheckConstraint("kind IN ('email', 'slack', 'webhook', 'other')", name="alert_channels_kind_check"),
        UniqueConstraint("customer_id", "name", name="alert_channels_customer_id_name_key"),
        PrimaryKeyConstraint("id", "customer_id", name="alert_channels_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    name: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    destination_encrypted: bytes = Field(sa_type=LargeBinary)
    destination_masked: str = Field(sa_type=Text)
    # Webhooks only.
    signing_secret_encrypted: bytes | None = Field(default=None, sa_type=LargeBinary)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    disabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class PlanAlertRule(SQLModel, table=True):
    """An alert rule a plan gives every subscriber, copied to the customer when it subscribes."""

    __tablename__ = "plan_alert_rules"
    __table_args__ = (
        CheckConstraint(_BASES, name="plan_alert_rules_basis_check"),
        CheckConstraint(_KINDS, name="plan_alert_rules_kind_check"),
        CheckConstraint(_KIND_SHAPE, name="plan_alert_rules_kind_shape"),
        UniqueConstraint("plan_id", "name", name="plan_alert_rules_plan_id_name_key"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    plan_id: str = Field(foreign_key="plans.id", sa_type=Text)
    name: str = Field(sa_type=Text)
    # NULL: the period's spend rather than a meter's usage.
    metric_name: str | None = Field(default=None, foreign_key="meters.metric_name", sa_type=Text)
    basis: str = Field(sa_type=Text)
    budget: Decimal | None = Field(default=None, sa_type=Numeric())
    levels: list[Decimal] = Field(sa_column=Column(ARRAY(Numeric()), nullable=False))
    notify_recovery: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    notify_forecast: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    kind: str = Field(
        default="threshold", sa_column=Column(Text, nullable=False, server_default=text("'threshold'"))
    )


class AlertRule(SQLModel, table=True):
    """A customer's alert rule: levels of a meter's usage or the period's spend, or anomalies."""

    __tablename__ = "alert_rules"
    __table_args__ = (
        CheckConstraint(_BASES, name="alert_rules_basis_check"),
        CheckConstraint("(basis = 'budget') = (budget IS NOT NULL)", name="alert_rules_check"),
        CheckConstraint(_KINDS, name="alert_rules_kind_check"),
        CheckConstraint(_KIND_SHAPE, name="alert_rules_kind_shape"),
        # Alembic compares these indexes' columns and uniqueness, not their WHERE clauses.
        Index("alert_rules_active", "customer_id", postgresql_where=text("disabled_at IS NULL")),
        Index(
            "alert_rules_from_plan",
            "customer_id",
            "from_plan_rule_id",
            unique=True,
            postgresql_where=text("from_plan_rule_id IS NOT NULL"),
        ),
        PrimaryKeyConstraint("id", "customer_id", name="alert_rules_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    name: str = Field(sa_type=Text)
    # NULL: the period's spend rather than a meter's usage (or, for anomalies, every meter).
    metric_name: str | None = Field(default=None, foreign_key="meters.metric_name", sa_type=Text)
    basis: str = Field(sa_type=Text)
    budget: Decimal | None = Field(default=None, sa_type=Numeric())
    levels: list[Decimal] = Field(sa_column=Column(ARRAY(Numeric()), nullable=False))
    notify_recovery: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    notify_forecast: bool = Field(
        default=False, sa_column=Column(Boolean, nullable=False, server_default=text("false"))
    )
    # Empty: every channel the customer has.
    channel_ids: list[int] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(BigInteger), nullable=False, server_default=text("'{}'")),
    )
    from_plan_rule_id: int | None = Field(default=None, foreign_key="plan_alert_rules.id", sa_type=BigInteger)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    disabled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    kind: str = Field(
        default="threshold", sa_column=Column(Text, nullable=False, server_default=text("'threshold'"))
    )
    # The sweep runs every minute; settled hours change once an hour.
    anomalies_judged_through: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AlertFiring(SQLModel, table=True):
    """A rule that fired: a level crossed, recovered or forecast in a billing period, or an anomaly."""

    __tablename__ = "alert_firings"
    __table_args__ = (
        CheckConstraint(
            "kind IN ('crossing', 'recovery', 'forecast', 'anomaly')", name="alert_firings_kind_check"
        ),
        CheckConstraint(
            "anomaly_kind IN ('spike', 'drop_to_zero', 'silence')", name="alert_firings_anomaly_kind_check"
        ),
        CheckConstraint("granularity IN ('hour', 'day')", name="alert_firings_granularity_check"),
        CheckConstraint(
            "(kind = 'anomaly') = (metric_name IS NOT NULL AND anomaly_kind IS NOT NULL "
            "AND granularity IS NOT NULL)",
            name="alert_firings_anomaly_shape",
        ),
        # These two unique indexes are the fire-once guarantee; Alembic compares their columns
        # and uniqueness, not their WHERE clauses.
        Index(
            "alert_firings_threshold_once",
            "rule_id",
            "period_start",
            "level",
            "kind",
            "customer_id",
            unique=True,
            postgresql_where=text("kind <> 'anomaly'"),
        ),
        Index(
            "alert_firings_anomaly_once",
            "rule_id",
            "metric_name",
            "anomaly_kind",
            "granularity",
            "period_start",
            "customer_id",
            unique=True,
            postgresql_where=text("kind = 'anomaly'"),
        ),
        Index("alert_firings_customer", "customer_id", desc("fired_at")),
        PrimaryKeyConstraint("id", "customer_id", name="alert_firings_pkey"),
        ForeignKeyConstraint(
            ["rule_id", "customer_id"],
            ["alert_rules.id", "alert_rules.customer_id"],
            name="alert_firings_rule_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    rule_id: int = Field(sa_type=BigInteger)
    customer_id: str = Field(primary_key=True, sa_type=Text)
    # The billing period, or for an anomaly its span (an hour, silent hours, a local day).
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    # 0 for an anomaly.
    level: Decimal = Field(sa_type=Numeric())
    kind: str = Field(sa_type=Text)
    # For an anomaly: what was expected.
    threshold: Decimal = Field(sa_type=Numeric())
    value: Decimal = Field(sa_type=Numeric())
    forecast_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    notice: dict[str, Any] = Field(sa_type=JSONB)
    fired_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    metric_name: str | None = Field(default=None, sa_type=Text)
    anomaly_kind: str | None = Field(default=None, sa_type=Text)
    granularity: str | None = Field(default=None, sa_type=Text)


class AlertDelivery(SQLModel, table=True):
    """A notice to send to one channel, for a firing or as a test: pending, sent or failed."""

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'failed')", name="alert_deliveries_status_check"),
        UniqueConstraint(
            "firing_id", "channel_id", "customer_id", name="alert_deliveries_firing_id_channel_id_key"
        ),
        # Alembic compares the index's columns, not its WHERE clause.
        Index("alert_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        Index("alert_deliveries_customer", "customer_id", desc("created_at")),
        PrimaryKeyConstraint("id", "customer_id", name="alert_deliveries_pkey"),
        ForeignKeyConstraint(
            ["firing_id", "customer_id"],
            ["alert_firings.id", "alert_firings.customer_id"],
            name="alert_deliveries_firing_id_fkey",
        ),
        ForeignKeyConstraint(
            ["channel_id", "customer_id"],
            ["alert_channels.id", "alert_channels.customer_id"],
            name="alert_deliveries_channel_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    # NULL: a test notice.
    firing_id: int | None = Field(default=None, sa_type=BigInteger)
    channel_id: int = Field(sa_type=BigInteger)
    customer_id: str = Field(primary_key=True, sa_type=Text)
    notice: dict[str, Any] = Field(sa_type=JSONB)
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
    masked_destination: str = Field(sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    failed_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class AlertDeliveryAttempt(SQLModel, table=True):
    """One try at sending a delivery, and how it went."""

    __tablename__ = "alert_delivery_attempts"
    __table_args__ = (
        Index("alert_delivery_attempts_delivery", "delivery_id"),
        PrimaryKeyConstraint("id", "customer_id", name="alert_delivery_attempts_pkey"),
        ForeignKeyConstraint(
            ["delivery_id", "customer_id"],
            ["alert_deliveries.id", "alert_deliveries.customer_id"],
            name="alert_delivery_attempts_delivery_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    # The delivery's customer, copied so the table can be distributed by customer.
    customer_id: str = Field(primary_key=True, sa_type=Text)
    delivery_id: int = Field(sa_type=BigInteger)
    attempt: int = Field(sa_type=Integer)
    ok: bool
    error: str | None = Field(default=None, sa_type=Text)
    masked_destination: str = Field(sa_type=Text)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
