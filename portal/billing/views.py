"""What the billing API returns: amounts as exact decimal strings in the currency's
minor unit, quantities as exact decimal strings, instants in UTC."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Literal

from portal.billing.rating import round_money
from portal.http.schemas import CamelStruct

InvoiceState = Literal["draft", "awaiting_review", "finalized", "void"]


def money_text(value: Decimal, currency: str) -> str:
    return format(round_money(value, currency), "f")


class TierView(CamelStruct):
    lower: str
    upper: str | None
    quantity: str
    unit_price: str
    flat_fee: str
    amount: str


class LineView(CamelStruct):
    position: int
    kind: str
    charge_key: str | None
    meter: str | None
    description: str
    quantity: str
    included_quantity: str
    billable_quantity: str
    unit_price: str | None
    tiers: list[TierView]
    proration: str
    amount: str
    plan_id: str
    segment_start: datetime
    segment_end: datetime


class AdjustmentLineView(CamelStruct):
    kind: str
    charge_key: str | None
    meter: str | None
    description: str
    segment_start: datetime
    quantity_delta: str
    amount_delta: str


class AdjustmentView(CamelStruct):
    id: int
    invoice_id: int
    number: str
    kind: Literal["debit", "credit"]
    amount: str
    subtotal_delta: str
    discount_delta: str
    lines: list[AdjustmentLineView]
    reason: str
    event_count: int
    event_ids: list[str]
    created_at: datetime


class InvoiceView(CamelStruct):
    id: int
    number: str | None
    customer_id: str
    currency: str
    state: InvoiceState
    period_start: datetime
    period_end: datetime
    review_after: datetime
    subtotal: str
    discount_total: str
    credits_applied: str
    total: str
    lines: list[LineView]
    adjustments: list[AdjustmentView]
    adjusted_total: str
    computed_at: datetime
    complete_through: datetime | None
    finalized_at: datetime | None
    approved_by: str | None
    voided_at: datetime | None
    void_reason: str | None
    replaces_id: int | None
    replaced_by_id: int | None


class InvoiceSummary(CamelStruct):
    id: int
    number: str | None
    customer_id: str
    currency: str
    state: InvoiceState
    period_start: datetime
    period_end: datetime
    total: str
    adjusted_total: str
    computed_at: datetime


class PreviewView(CamelStruct):
    """The current period so far, and projected to its end at the pace seen so far."""

    customer_id: str
    currency: str
    period_start: datetime
    period_end: datetime
    complete_through: datetime | None
    so_far: InvoicePreviewTotals
    projected: InvoicePreviewTotals
    lines: list[LineView]


class InvoicePreviewTotals(CamelStruct):
    subtotal: str
    discount_total: str
    credits_applied: str
    total: str


class ReviewItem(CamelStruct):
    invoice: InvoiceSummary
    previous_total: str | None
    change_ratio: str | None
    flags: list[str]
    notes: list[str]
