"""Table models of the catalog: customers and the meters their events are counted on."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CHAR, CheckConstraint, Column, DateTime, Text, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel


class Customer(SQLModel, table=True):
    """A billed customer: its local time zone (hours and periods) and invoice currency."""

    __tablename__ = "customers"

    id: str = Field(primary_key=True, sa_type=Text)
    name: str = Field(sa_type=Text)
    timezone: str = Field(sa_type=Text)
    currency: str = Field(sa_type=CHAR(3))
    # Who the invoices are addressed to (migration 0009): the legal name (None: `name`),
    # the billing address's lines, the tax id (VAT/GST) and the billing contacts' addresses.
    legal_name: str | None = Field(default=None, sa_type=Text)
    billing_address: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    tax_id: str | None = Field(default=None, sa_type=Text)
    billing_emails: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class Meter(SQLModel, table=True):
    """A meter: how the events of one metric name add up to billable usage."""

    __tablename__ = "meters"
    __table_args__ = (
        CheckConstraint(
            "aggregation IN ('sum', 'count', 'max', 'unique_count', 'latest')",
            name="meters_aggregation_check",
        ),
        CheckConstraint("(aggregation = 'unique_count') = (unique_by IS NOT NULL)", name="meters_check"),
    )

    metric_name: str = Field(primary_key=True, sa_type=Text)
    aggregation: str = Field(sa_type=Text)
    unit: str = Field(sa_type=Text)
    group_by: list[str] = Field(
        default_factory=list,
        sa_column=Column(ARRAY(Text), nullable=False, server_default=text("'{}'")),
    )
    unique_by: str | None = Field(default=None, sa_type=Text)
    created_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
