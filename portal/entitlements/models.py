"""Table models of entitlements: the limits plans and customers set per meter and billing
period, and the crossings of them (migration 0010)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import CheckConstraint, Column, DateTime, Numeric, Text, text
from sqlmodel import Field, SQLModel


class PlanEntitlement(SQLModel, table=True):
    """A plan's limit on one meter per billing period, for every customer on the plan."""

    __tablename__ = "plan_entitlements"
    __table_args__ = (
        CheckConstraint("limit_quantity >= 0", name="plan_entitlements_limit_quantity_check"),
        CheckConstraint("enforcement IN ('hard', 'soft')", name="plan_entitlements_enforcement_check"),
    )

    plan_id: str = Field(primary_key=True, foreign_key="plans.id", sa_type=Text)
    metric_name: str = Field(primary_key=True, foreign_key="meters.metric_name", sa_type=Text)
    limit_quantity: Decimal = Field(sa_type=Numeric())
    enforcement: str = Field(sa_type=Text)  # 'hard' denies past the limit, 'soft' flags
    customer_may_lower: bool = Field(default=False, sa_column_kwargs={"server_default": text("false")})
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class CustomerEntitlement(SQLModel, table=True):
    """One customer's own limit on a meter, never above its plan's."""

    __tablename__ = "customer_entitlements"
    __table_args__ = (
        CheckConstraint("limit_quantity >= 0", name="customer_entitlements_limit_quantity_check"),
        CheckConstraint("enforcement IN ('hard', 'soft')", name="customer_entitlements_enforcement_check"),
        CheckConstraint("set_by IN ('staff', 'customer')", name="customer_entitlements_set_by_check"),
    )

    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    metric_name: str = Field(primary_key=True, foreign_key="meters.metric_name", sa_type=Text)
    limit_quantity: Decimal = Field(sa_type=Numeric())
    enforcement: str = Field(sa_type=Text)
    set_by: str = Field(sa_type=Text)  # 'staff' or 'customer'
    updated_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )


class EntitlementCrossing(SQLModel, table=True):
    """A limit a customer reached in one period: recorded once, announced once."""

    __tablename__ = "entitlement_crossings"
    __table_args__ = (
        CheckConstraint("enforcement IN ('hard', 'soft')", name="entitlement_crossings_enforcement_check"),
    )

    customer_id: str = Field(primary_key=True, foreign_key="customers.id", sa_type=Text)
    metric_name: str = Field(primary_key=True, sa_type=Text)
    period_start: datetime = Field(primary_key=True, sa_type=DateTime(timezone=True))
    limit_quantity: Decimal = Field(primary_key=True, sa_type=Numeric())
    period_end: datetime = Field(sa_type=DateTime(timezone=True))
    enforcement: str = Field(sa_type=Text)
    used: Decimal = Field(sa_type=Numeric())
    crossed_at: datetime | None = Field(
        default=None,
        sa_column=Column(DateTime(timezone=True), nullable=False, server_default=text("now()")),
    )
