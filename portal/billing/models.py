"""Table models of billing: plans, subscriptions, prepaid credit, invoices and their lines,
adjustments, and the late events that lead to them.

Money columns are unbounded numerics (migration 0006): amounts are rounded to the
currency's minor unit by the rating code before they are stored."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    CHAR,
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, ExcludeConstraint
from sqlmodel import Field, SQLModel


class Plan(SQLModel, table=True):
    """A price plan, immutable once created: a price change is a new plan."""

    __tablename__ = "plans"

    id: str = Field(primary_key=True, sa_type=Text)
    name: str = Field(sa_type=Text)
    currency: str = Field(sa_type=CHAR(3))
    definition: dict[str, Any] = Field(sa_type=JSONB)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class Subscription(SQLModel, table=True):
    """A customer's plan over [starts_at, ends_at); a customer's subscriptions never overlap."""

    __tablename__ = "subscriptions"
    __table_args__ = (
        CheckConstraint("anchor_day BETWEEN 1 AND 31", name="subscriptions_anchor_day_check"),
        CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="subscriptions_check"),
        # Alembic compares no exclusion constraint (and skips the gist index behind it), so
        # this one is declared for the record only.
        ExcludeConstraint(
            ("customer_id", "="),
            (func.tstzrange(literal_column("starts_at"), literal_column("ends_at")), "&&"),
            using="gist",
            name="subscriptions_customer_id_tstzrange_excl",
        ),
        PrimaryKeyConstraint("id", "customer_id", name="subscriptions_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    plan_id: str = Field(foreign_key="plans.id", sa_type=Text)
    anchor_day: int = Field(sa_type=SmallInteger)
    starts_at: datetime = Field(sa_type=DateTime(timezone=True))
    ends_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    discounts: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'"))
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class CreditGrant(SQLModel, table=True):
    """Prepaid credit granted to a customer, drawn by its finalized invoices until it expires."""

    __tablename__ = "credit_grants"
    __table_args__ = (
        CheckConstraint("amount > 0", name="credit_grants_amount_check"),
        Index("credit_grants_customer", "customer_id"),
        PrimaryKeyConstraint("id", "customer_id", name="credit_grants_pkey"),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    amount: Decimal = Field(sa_type=Numeric())
    currency: str = Field(sa_type=CHAR(3))
    description: str = Field(default="", sa_column=Column(Text, nullable=False, server_default=text("''")))
    expires_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    granted_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class DocumentNumber(SQLModel, table=True):
    """The last number issued in a gapless series of invoices, credit notes or debit notes."""

    __tablename__ = "document_numbers"

    series: str = Field(primary_key=True, sa_type=Text)
    last: int = Field(sa_type=BigInteger)


class Invoice(SQLModel, table=True):
    """A customer's invoice for one billing period: a draft, finalized (numbered) or void."""

    __tablename__ = "invoices"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'finalized', 'void')", name="invoices_status_check"),
        CheckConstraint("period_end > period_start", name="invoices_check"),
        CheckConstraint("(status = 'draft') = (number IS NULL) OR status = 'void'", name="invoices_check1"),
        # Numbers are unique because the gapless series issues each once (document_numbers);
        # the constraint includes the customer so the table can be distributed by it.
        UniqueConstraint("number", "customer_id", name="invoices_number_key"),
        # Alembic compares these indexes' columns and uniqueness, not their WHERE clauses.
        Index(
            "invoices_one_per_period",
            "customer_id",
            "period_start",
            unique=True,
            postgresql_where=text("status <> 'void'"),
        ),
        Index(
            "invoices_finalized", "customer_id", "period_end", postgresql_where=text("status = 'finalized'")
        ),
        Index("invoices_status", "status", "period_end"),
        PrimaryKeyConstraint("id", "customer_id", name="invoices_pkey"),
        ForeignKeyConstraint(
            ["replaces_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="invoices_replaces_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    period_start: datetime = Field(sa_type=DateTime(timezone=True))
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    currency: str = Field(sa_type=CHAR(3))
    status: str = Field(
        default="draft", sa_column=Column(Text, nullable=False, server_default=text("'draft'"))
    )
    number: str | None = Field(default=None, sa_type=Text)
    subtotal: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(), nullable=False, server_default=text("0"))
    )
    discount_total: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(), nullable=False, server_default=text("0"))
    )
    credits_applied: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(), nullable=False, server_default=text("0"))
    )
    total: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(), nullable=False, server_default=text("0"))
    )
    # What it was rated on: each segment's plan definition, bounds and fraction.
    segments: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'"))
    )
    computed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    complete_through: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    finalized_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    approved_by: str | None = Field(default=None, sa_type=Text)
    voided_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    void_reason: str | None = Field(default=None, sa_type=Text)
    replaces_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    # Issuer, bill-to and payment terms as they were when it was finalized (migration 0009;
    # None for a draft and for invoices finalized before it): portal/billing/pdf/parties.py.
    parties: dict[str, Any] | None = Field(default=None, sa_type=JSONB)


class InvoiceLine(SQLModel, table=True):
    """A line item of an invoice: a meter's usage, a flat fee, a minimum or a discount."""

    __tablename__ = "invoice_lines"
    __table_args__ = (
        CheckConstraint("kind IN ('usage', 'flat', 'minimum', 'discount')", name="invoice_lines_kind_check"),
        PrimaryKeyConstraint("invoice_id", "position", "customer_id", name="invoice_lines_pkey"),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            ondelete="CASCADE",
            name="invoice_lines_invoice_id_fkey",
        ),
    )

    invoice_id: int = Field(primary_key=True, sa_type=BigInteger)
    position: int = Field(primary_key=True, sa_type=Integer)
    # The invoice's customer, copied so the table can be distributed by customer.
    customer_id: str = Field(primary_key=True, sa_type=Text)
    kind: str = Field(sa_type=Text)
    charge_key: str | None = Field(default=None, sa_type=Text)
    meter: str | None = Field(default=None, sa_type=Text)
    description: str = Field(sa_type=Text)
    quantity: Decimal = Field(sa_type=Numeric())
    included_quantity: Decimal = Field(
        default=Decimal(0), sa_column=Column(Numeric(), nullable=False, server_default=text("0"))
    )
    billable_quantity: Decimal = Field(sa_type=Numeric())
    unit_price: Decimal | None = Field(default=None, sa_type=Numeric())
    tiers: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSONB, nullable=False, server_default=text("'[]'"))
    )
    proration: Decimal = Field(
        default=Decimal(1), sa_column=Column(Numeric(), nullable=False, server_default=text("1"))
    )
    amount: Decimal = Field(sa_type=Numeric())
    plan_id: str = Field(sa_type=Text)
    segment_start: datetime = Field(sa_type=DateTime(timezone=True))
    segment_end: datetime = Field(sa_type=DateTime(timezone=True))


class CreditApplication(SQLModel, table=True):
    """Prepaid credit drawn from a grant by a finalized invoice; released if it is voided."""

    __tablename__ = "credit_applications"
    __table_args__ = (
        CheckConstraint("amount > 0", name="credit_applications_amount_check"),
        Index("credit_applications_grant", "grant_id"),
        PrimaryKeyConstraint("id", "customer_id", name="credit_applications_pkey"),
        ForeignKeyConstraint(
            ["grant_id", "customer_id"],
            ["credit_grants.id", "credit_grants.customer_id"],
            name="credit_applications_grant_id_fkey",
        ),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="credit_applications_invoice_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    # The grant's and invoice's customer (the same one), so the table can be distributed by it.
    customer_id: str = Field(primary_key=True, sa_type=Text)
    grant_id: int = Field(sa_type=BigInteger)
    invoice_id: int = Field(sa_type=BigInteger)
    amount: Decimal = Field(sa_type=Numeric())
    applied_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    released_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class Adjustment(SQLModel, table=True):
    """A numbered debit or credit note: what changed on a finalized invoice after it was issued."""

    __tablename__ = "adjustments"
    __table_args__ = (
        CheckConstraint("kind IN ('debit', 'credit')", name="adjustments_kind_check"),
        CheckConstraint("amount <> 0", name="adjustments_amount_check"),
        # Unique by the gapless series (see invoices_number_key), the customer included.
        UniqueConstraint("number", "customer_id", name="adjustments_number_key"),
        Index("adjustments_invoice", "invoice_id"),
        PrimaryKeyConstraint("id", "customer_id", name="adjustments_pkey"),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="adjustments_invoice_id_fkey",
        ),
    )

    # A composite key: SQLAlchemy lets the bigserial fill it only when told so.
    id: int | None = Field(
        default=None, primary_key=True, sa_type=BigInteger, sa_column_kwargs={"autoincrement": True}
    )
    # The invoice's customer, copied so the table can be distributed by customer.
    customer_id: str = Field(primary_key=True, sa_type=Text)
    invoice_id: int = Field(sa_type=BigInteger)
    number: str = Field(sa_type=Text)
    kind: str = Field(sa_type=Text)
    subtotal_delta: Decimal = Field(sa_type=Numeric())
    discount_delta: Decimal = Field(sa_type=Numeric())
    amount: Decimal = Field(sa_type=Numeric())
    lines: list[dict[str, Any]] = Field(sa_type=JSONB)
    reason: str = Field(sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class LateEvent(SQLModel, table=True):
    """An event persisted after its period's invoice was finalized, until an adjustment settles it."""

    __tablename__ = "late_events"
    __table_args__ = (
        # Alembic compares the index's columns, not its WHERE clause.
        Index("late_events_unsettled", "recorded_at", postgresql_where=text("settled_at IS NULL")),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="late_events_invoice_id_fkey",
        ),
        ForeignKeyConstraint(
            ["adjustment_id", "customer_id"],
            ["adjustments.id", "adjustments.customer_id"],
            name="late_events_adjustment_id_fkey",
        ),
    )

    invoice_id: int = Field(primary_key=True, sa_type=BigInteger)
    customer_id: str = Field(primary_key=True, sa_type=Text)
    event_id: str = Field(primary_key=True, sa_type=Text)
    metric_name: str = Field(sa_type=Text)
    quantity: Decimal = Field(sa_type=Numeric())
    event_time: datetime = Field(sa_type=DateTime(timezone=True))
    recorded_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    adjustment_id: int | None = Field(default=None, sa_type=BigInteger)
    settled_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DocumentEmail(SQLModel, table=True):
    """An issued invoice or note owed (or sent) to the customer's billing contacts as a PDF."""

    __tablename__ = "document_emails"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'sent', 'not_sent')", name="document_emails_status_check"),
        PrimaryKeyConstraint("number", "customer_id", name="document_emails_pkey"),
        ForeignKeyConstraint(
            ["invoice_id", "customer_id"],
            ["invoices.id", "invoices.customer_id"],
            name="document_emails_invoice_id_fkey",
        ),
        ForeignKeyConstraint(
            ["adjustment_id", "customer_id"],
            ["adjustments.id", "adjustments.customer_id"],
            name="document_emails_adjustment_id_fkey",
        ),
        # Alembic compares the index's columns, not its WHERE clause.
        Index("document_emails_pending", "created_at", postgresql_where=text("status = 'pending'")),
    )

    # INV-000001, CN-000001, DN-000001: the document this email carries.
    number: str = Field(primary_key=True, sa_type=Text)
    customer_id: str = Field(primary_key=True, sa_type=Text)
    invoice_id: int = Field(sa_type=BigInteger)
    # Set for a note; None for the invoice itself.
    adjustment_id: int | None = Field(default=None, sa_type=BigInteger)
    status: str = Field(
        default="pending", sa_column=Column(Text, nullable=False, server_default=text("'pending'"))
    )
    recipients: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    attempts: int = Field(default=0, sa_column=Column(Integer, nullable=False, server_default=text("0")))
    error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
    sent_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
