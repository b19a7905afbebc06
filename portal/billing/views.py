"""What the billing API returns: amounts as exact decimal strings in the currency's
minor unit, quantities as exact decimal strings, instants in UTC."""

from __future__ import annotations

from datetime import datetime, time
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Literal

from portal.billing.pdf.text import period_text
from portal.billing.rating import round_money
from portal.http.schemas import CamelStruct
from portal.infrastructure.periods import zone

InvoiceState = Literal["draft", "awaiting_review", "finalized", "void"]


def money_text(value: Decimal, currency: str) -> str:
    return format(round_money(value, currency), "f")


def _whole_days(start: datetime, end: datetime, tz_name: str) -> int | None:
    """The local days in [start, end) when both are local midnights in `tz_name`, else None."""
    tz = zone(tz_name)
    first, last = start.astimezone(tz), end.astimezone(tz)
    if first.time() != time(0) or last.time() != time(0):
        return None
    return (last.date() - first.date()).days


def proration_text(
    proration: str,
    segment_start: datetime,
    segment_end: datetime,
    period_start: datetime,
    period_end: datetime,
    tz_name: str,
) -> str:
    """What part of the period a prorated line covers, as the invoice prints it (local days
    in the zone `tz_name`, joined by an en dash): "for 14-30 Nov 2026 (17 of 30 days)" when
    the segment and the period are whole local days and the share is exactly their ratio,
    else "for 14-30 Nov 2026 (53.26% of the period)" (the exact share, half up to at most
    two decimals). "" for a line that is not prorated (`proration` "1") or a share that is
    not a number. The amount was computed from the exact share; this is only its label."""
    try:
        share = Decimal(proration)
    except InvalidOperation:
        return ""
    if not share.is_finite() or share == 1:
        return ""
    days = period_text(segment_start, segment_end, tz_name)
    part = _whole_days(segment_start, segment_end, tz_name)
    whole = _whole_days(period_start, period_end, tz_name)
    # A DST month's share is of its real length in seconds (743 or 745 hours), not of its
    # days: then the days would not give the amount, and the percentage is shown.
    if part and whole and abs(share - Decimal(part) / Decimal(whole)) < Decimal("1e-12"):
        return f"for {days} ({part} of {whole} days)"
    percent = (share * 100).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    if percent == 0:
        return f"for {days} (under 0.01% of the period)"
    return f"for {days} ({format(percent.normalize(), 'f')}% of the period)"


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

    def proration_text(self, period_start: datetime, period_end: datetime, tz_name: str) -> str:
        """The part of the period [period_start, period_end) this line covers, or "" (see
        `proration_text`)."""
        return proration_text(
            self.proration, self.segment_start, self.segment_end, period_start, period_end, tz_name
        )


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
