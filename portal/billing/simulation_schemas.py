"""Pricing simulation: the request body (validated at the edge) and the answer.

A simulation rates recorded usage of ended periods on a candidate plan (an existing one,
or an edited copy that is never stored) beside what was really invoiced. Amounts are
exact strings in the currency's minor unit, like every other billing answer.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

import msgspec

from portal.billing.schemas import PlanCreate, PlanId
from portal.billing.views import LineView
from portal.http.schemas import ID_PATTERN, CamelStruct, check_time

# Bounded work per request: customers times periods, rated twice each (actual and simulated).
MAX_CUSTOMERS = 500
MAX_MONTHS = 24
MAX_ROWS = 5000

CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
Month = Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")]
Outcome = Literal["more", "less", "same"]
ActualStatus = Literal["finalized", "draft", "void", "not_invoiced"]


class SimulationRequest(CamelStruct):
    """Which customers, which ended periods, and the candidate plan.

    - `customerIds` (1-500) or omitted: every customer with a subscription in the periods.
    - `periods`: months ("2026-10"), each customer's period starting in that month in its
      own zone on its anchor day (like the invoice API's `period`); or `from`/`to`
      (dates): every period of each customer starting on a day between them (inclusive,
      the customer's local dates). Periods that have not ended yet are left out with a
      reason.
    - `planId` (an existing plan) or `plan` (an edited copy, validated like a new plan and
      never stored), exactly one of them.
    """

    customer_ids: Annotated[list[CustomerId], msgspec.Meta(min_length=1, max_length=MAX_CUSTOMERS)] | None = (
        None
    )
    periods: Annotated[list[Month], msgspec.Meta(min_length=1, max_length=MAX_MONTHS)] | None = None
    from_: date | None = msgspec.field(default=None, name="from")
    to: date | None = None
    plan_id: PlanId | None = None
    plan: PlanCreate | None = None

    def __post_init__(self) -> None:
        if (self.plan_id is None) == (self.plan is None):
            raise ValueError("planId: give either planId (an existing plan) or plan (an edited copy)")
        if self.periods is not None:
            if self.from_ is not None or self.to is not None:
                raise ValueError("periods: give either periods (months) or from and to (dates), not both")
            if len(set(self.periods)) != len(self.periods):
                raise ValueError("periods: a month is named twice")
            for month in self.periods:
                check_time("periods", date(int(month[:4]), int(month[5:]), 1))
        else:
            if self.from_ is None or self.to is None:
                raise ValueError("periods: give the months (periods) or both from and to (dates)")
            check_time("from", self.from_)
            check_time("to", self.to)
            if self.from_ > self.to:
                raise ValueError(f"to: {self.to} is before from ({self.from_})")
            if (self.to - self.from_).days > 31 * MAX_MONTHS:
                raise ValueError(f"to: at most {MAX_MONTHS} months after from")
        if self.customer_ids is not None and len(set(self.customer_ids)) != len(self.customer_ids):
            raise ValueError("customerIds: a customer is named twice")


class SimulatedPlan(CamelStruct):
    id: str
    name: str
    currency: str
    edited: bool  # an edited copy, never stored


class ActualInvoice(CamelStruct):
    """What the customer really has for the period. `amount` is what the comparison uses:
    before prepaid credit, with any credit or debit notes of a finalized invoice; for a
    draft, a void invoice or no invoice, the period rated now on its real plans."""

    status: ActualStatus
    invoice_id: int | None
    invoice_number: str | None
    invoiced_total: str | None  # the invoice's own total (after prepaid credit), if any
    amount: str


class SimulatedInvoice(CamelStruct):
    subtotal: str
    discount_total: str
    amount: str  # subtotal - discounts (prepaid credit is not drawn in a simulation)
    lines: list[LineView]


class SimulationRow(CamelStruct):
    customer_id: str
    customer_name: str
    currency: str
    month: str  # "YYYY-MM": the month the period starts in, in the customer's zone
    period_start: datetime
    period_end: datetime
    actual: ActualInvoice
    simulated: SimulatedInvoice
    difference: str  # simulated - actual
    difference_percent: str | None  # of actual, 2 decimals; None when actual is 0
    outcome: Outcome


class SkippedPeriod(CamelStruct):
    customer_id: str
    month: str | None
    reason: str


class CurrencySummary(CamelStruct):
    """Totals of one currency, and its customers by the sum of their periods' differences."""

    currency: str
    periods: int
    customers: int
    actual: str
    simulated: str
    difference: str
    difference_percent: str | None
    customers_paying_more: int
    customers_paying_less: int
    customers_paying_same: int


class SimulationView(CamelStruct):
    plan: SimulatedPlan
    computed_at: datetime
    rows: list[SimulationRow]
    skipped: list[SkippedPeriod]
    summary: list[CurrencySummary]
