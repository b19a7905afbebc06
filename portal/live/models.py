"""Table models of reconciliation: each run over the live view and the drift it found."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, DateTime, Integer, Numeric, Text
from sqlmodel import Field, SQLModel


class ReconcileRun(SQLModel, table=True):
    """A reconcile of the live (Redis) counters against billed usage over a window of hours."""

    __tablename__ = "reconcile_runs"

    id: int | None = Field(default=None, primary_key=True, sa_type=BigInteger)
    started_at: datetime = Field(sa_type=DateTime(timezone=True))
    finished_at: datetime = Field(sa_type=DateTime(timezone=True))
    window_start: datetime = Field(sa_type=DateTime(timezone=True))
    window_end: datetime = Field(sa_type=DateTime(timezone=True))
    full_rebuild: bool
    keys_written: int = Field(sa_type=Integer)


class LiveDrift(SQLModel, table=True):
    """A customer's meter whose live value differed from its billed value in a reconcile run."""

    __tablename__ = "live_drift"

    run_id: int = Field(
        primary_key=True, foreign_key="reconcile_runs.id", ondelete="CASCADE", sa_type=BigInteger
    )
    customer_id: str = Field(primary_key=True, sa_type=Text)
    metric_name: str = Field(primary_key=True, sa_type=Text)
    live_value: Decimal = Field(sa_type=Numeric())
    billed_value: Decimal = Field(sa_type=Numeric())
    # Live minus billed.
    drift: Decimal = Field(sa_type=Numeric())
