"""The rows the reports answer (plain tuples, named; amounts exact as Postgres holds them)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import NamedTuple


class CustomerSpend(NamedTuple):
    """One row of the account managers' customers table: the customer, its current period's
    start, the draft's total and when it was rated, the change against the previous
    period's adjusted total (percent, one place), and alerts fired since the period began."""

    id: str
    name: str
    timezone: str
    currency: str  # char(3) as stored (padded)
    created_at: datetime
    period_start: datetime
    spend: Decimal | None
    spend_as_of: datetime | None
    change_pct: Decimal | None
    alerts: int
    previous: Decimal | None = None  # the previous period's adjusted total


class MeterPeriodTotal(NamedTuple):
    """A customer's total of one meter since its period began (sum, or max for max meters)."""

    customer_id: str
    metric_name: str
    unit: str
    total: Decimal


class DriftLine(NamedTuple):
    """One customer and meter of a reconcile run: live (Redis), billed (Postgres), and live
    minus billed."""

    customer_id: str
    metric_name: str
    live_value: Decimal
    billed_value: Decimal
    drift: Decimal


class CustomerAnchor(NamedTuple):
    """A customer with the anchor day of its latest subscription (None: never subscribed)."""

    id: str
    timezone: str
    currency: str  # char(3) as stored (padded)
    anchor_day: int | None
