"""Table models of billed usage: the authoritative hourly aggregates the invoices are rated on."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, DateTime, Numeric, Text, text
from sqlmodel import Field, SQLModel


class HourlyUsage(SQLModel, table=True):
    """A meter's usage by one customer in one local hour and group: what billing sums."""

    __tablename__ = "hourly_usage"

    customer_id: str = Field(primary_key=True, sa_type=Text)
    metric_name: str = Field(primary_key=True, sa_type=Text)
    # The start of the customer's local hour, as an instant.
    hour: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    group_key: str = Field(default="", sa_column=Column(Text, primary_key=True, server_default=text("''")))
    value: Decimal = Field(sa_type=Numeric())
    event_count: int = Field(sa_type=BigInteger)
    latest_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    latest_event_id: str | None = Field(default=None, sa_type=Text)
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class HourlyUniqueValue(SQLModel, table=True):
    """A distinct value seen in one local hour by a unique_count meter, for a customer and group."""

    __tablename__ = "hourly_unique_values"

    customer_id: str = Field(primary_key=True, sa_type=Text)
    metric_name: str = Field(primary_key=True, sa_type=Text)
    hour: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    group_key: str = Field(default="", sa_column=Column(Text, primary_key=True, server_default=text("''")))
    value: str = Field(primary_key=True, sa_type=Text)


class DailyUsage(SQLModel, table=True):
    """A sum, count or max meter's usage by one customer in one local day and group: its
    hourly_usage rows of that day combined (added, or the largest), kept in the same
    transaction as they are. Bills read whole days here, and from hourly_usage only the
    hours of a day a window's end cuts: a month is ~31 rows per meter and group, not ~744."""

    __tablename__ = "daily_usage"

    customer_id: str = Field(primary_key=True, sa_type=Text)
    metric_name: str = Field(primary_key=True, sa_type=Text)
    # The start of the customer's local day, as an instant; `day_end` the next day's start
    # (23 or 25 hours later across a DST change). Stored, so a read decides which days lie
    # whole inside a window without the customer's zone.
    day: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    group_key: str = Field(default="", sa_column=Column(Text, primary_key=True, server_default=text("''")))
    day_end: datetime = Field(sa_type=DateTime(timezone=True))
    value: Decimal = Field(sa_type=Numeric())
    event_count: int = Field(sa_type=BigInteger)
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
