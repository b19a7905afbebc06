"""Invoices: rating a customer's period from Postgres, keeping drafts current, reading them.

A draft is re-rated from the authoritative hourly aggregates whenever it is asked for;
it is "awaiting review" once its period has ended plus the grace period. Lifecycle
changes (approve, void) live in `lifecycle.py`; corrections after finalization in
`adjustments.py`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements
from portal.billing.credits import available_credit
from portal.billing.quantities import UsageWindow, charge_quantities, meter_aggregations
from portal.billing.rating import Rating, Segment, rate_invoice
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository import plans as plan_store
from portal.billing.schemas import InvoiceRow, Plan, PlannedSegment
from portal.billing.subscriptions import SegmentBounds, segments_in, subscriptions_by_customer
from portal.billing.views import (
    AdjustmentLineView,
    AdjustmentView,
    InvoiceState,
    InvoiceSummary,
    InvoiceView,
    LineView,
    TierView,
    money_text,
)
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import BillingPeriod
from portal.usage.combine import exact


@dataclass(frozen=True, slots=True)
class PeriodToRate:
    customer_id: str
    currency: str
    period: BillingPeriod
    segments: tuple[PlannedSegment, ...]
    credit_available: Decimal


def planned(bounds: Sequence[SegmentBounds], plans: dict[str, Plan]) -> tuple[PlannedSegment, ...]:
    return tuple(
        PlannedSegment(plans[b.subscription.plan_id], b.start, b.end, b.fraction, b.subscription.discounts)
        for b in bounds
    )


async def rate_periods(session: AsyncSession, items: Sequence[PeriodToRate]) -> list[Rating]:
    """Rate many customers' periods with a few bulk reads (see quantities.py)."""
    aggregations = await meter_aggregations(session)
    windows = [
        UsageWindow((i, j), item.customer_id, seg.start, seg.end, seg.plan)
        for i, item in enumerate(items)
        for j, seg in enumerate(item.segments)
    ]
    quantities: dict[Hashable, dict[str, Decimal]] = await charge_quantities(session, windows, aggregations)
    ratings = []
    for i, item in enumerate(items):
        segments = [
            Segment(seg.plan, seg.start, seg.end, seg.fraction, quantities.get((i, j), {}), seg.discounts)
            for j, seg in enumerate(item.segments)
        ]
        ratings.append(rate_invoice(segments, currency=item.currency, credit_available=item.credit_available))
    return ratings


async def period_to_rate(
    session: AsyncSession,
    customer: Customer,
    period: BillingPeriod,
) -> PeriodToRate | None:
    """What a customer's period is rated on now (None: no subscription covers it)."""
    found = await subscriptions_by_customer(session, [customer.id], period.start, period.end)
    subs = found.get(customer.id)
    if not subs:
        return None
    bounds = segments_in(subs, period)
    plans = await plan_store.plans_by_id(session, {b.subscription.plan_id for b in bounds})
    credit = await available_credit(session, customer.id, usable_at=period.end)
    return PeriodToRate(customer.id, customer.currency, period, planned(bounds, plans), credit)


# --- storing drafts -----------------------------------------------------------------


def line_rows(invoice_id: int, rating: Rating) -> list[tuple[Any, ...]]:
    """Invoice lines as stored (`invoice_store.LINE_COLUMNS`): charges first, then discounts
    (negative amounts)."""
    rows: list[tuple[Any, ...]] = []
    for line in rating.lines:
        rows.append(
            (
                invoice_id,
                len(rows),
                line.kind,
                line.charge_key,
                line.meter,
                line.description,
                line.quantity,
                line.included_quantity,
                line.billable_quantity,
                line.unit_price,
                msgspec.json.encode([_tier(t) for t in line.tiers]).decode(),
                line.proration,
                line.amount,
                line.plan_id,
                line.segment_start,
                line.segment_end,
            )
        )
    for index, discount in enumerate(rating.discounts):
        rows.append(
            (
                invoice_id,
                len(rows),
                "discount",
                f"discount-{index}",
                None,
                discount.description,
                Decimal(1),
                Decimal(0),
                Decimal(1),
                discount.percent,
                "[]",
                discount.proration,
                -discount.amount,
                discount.plan_id,
                discount.segment_start,
                discount.segment_end,
            )
        )
    return rows


def line_views(rating: Rating) -> list[LineView]:
    """The rating's lines and discounts as the invoice API shows them."""
    return [
        LineView(
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            exact(r[6]),
            exact(r[7]),
            exact(r[8]),
            None if r[9] is None else exact(r[9]),
            msgspec.json.decode(r[10], type=list[TierView]),
            exact(r[11]),
            money_text(r[12], rating.currency),
            r[13],
            r[14],
            r[15],
        )
        for r in line_rows(0, rating)
    ]


def _tier(t: Any) -> dict[str, Any]:
    return {
        "lower": str(t.lower),
        "upper": None if t.upper is None else str(t.upper),
        "quantity": str(t.quantity),
        "unitPrice": str(t.unit_price),
        "flatFee": str(t.flat_fee),
        "amount": str(t.amount),
    }


def _snapshot(item: PeriodToRate) -> str:
    return msgspec.json.encode([s.snapshot() for s in item.segments]).decode()


async def save_drafts(
    session: AsyncSession,
    items: Sequence[PeriodToRate],
    ratings: Sequence[Rating],
    *,
    complete_through: datetime | None,
    replaces: dict[str, int] | None = None,
) -> tuple[dict[str, int], int]:
    """Create or refresh the drafts of these periods; finalized invoices are left alone.

    Returns ({customer id: invoice id} of the drafts written, how many were created)."""
    if not items:
        return {}, 0
    replaces = replaces or {}
    drafts = [
        invoice_store.Draft(
            item.customer_id,
            item.period.start,
            item.period.end,
            item.currency,
            rating.subtotal,
            rating.discount_total,
            rating.credits_applied,
            rating.total,
            _snapshot(item),
            replaces.get(item.customer_id),
        )
        for item, rating in zip(items, ratings, strict=True)
    ]
    rows = await invoice_store.upsert_drafts(session, drafts, complete_through=complete_through)
    written: dict[str, int] = {}
    created = 0
    for invoice_id, customer_id, was_created in rows:
        written[customer_id] = invoice_id
        created += was_created
    by_customer = {item.customer_id: rating for item, rating in zip(items, ratings, strict=True)}
    items_by_customer = {item.customer_id: item for item in items}
    await announcements.invoices_drafted(
        session,
        [
            (invoice_id, items_by_customer[customer_id], by_customer[customer_id].total)
            for invoice_id, customer_id, was_created in rows
            if was_created
        ],
    )
    line_data = [row for cid, iid in written.items() for row in line_rows(iid, by_customer[cid])]
    await invoice_store.replace_lines(session, list(written.values()), line_data)
    return written, created


async def refresh_draft(
    session: AsyncSession, customer: Customer, period: BillingPeriod, *, complete_through: datetime | None
) -> int | None:
    """Create or re-rate the customer's draft for `period`; its id (None: no subscription
    covers the period). A finalized invoice for the period is returned untouched."""
    item = await period_to_rate(session, customer, period)
    if item is None:
        return None
    ratings = await rate_periods(session, [item])
    written, _ = await save_drafts(session, [item], ratings, complete_through=complete_through)
    if customer.id in written:
        return written[customer.id]
    return await invoice_store.live_invoice_id(session, customer.id, period.start)


# --- reading ------------------------------------------------------------------------


def state_of(status: str, period_end: datetime, now: datetime, grace: timedelta) -> InvoiceState:
    if status == "draft":
        return "awaiting_review" if now >= period_end + grace else "draft"
    return "finalized" if status == "finalized" else "void"


async def load_invoice(session: AsyncSession, invoice_id: int, *, for_update: bool = False) -> InvoiceRow:
    invoice = await invoice_store.invoice_by_id(session, invoice_id, for_update=for_update)
    if invoice is None:
        raise NotFound(f"no invoice {invoice_id}")
    return invoice


async def _lines(session: AsyncSession, invoice: InvoiceRow) -> list[LineView]:
    rows = await invoice_store.invoice_lines(session, invoice.id)
    out = []
    for (
        position,
        kind,
        charge_key,
        meter,
        description,
        quantity,
        included,
        billable,
        unit_price,
        tiers,
        proration,
        amount,
        plan_id,
        seg_start,
        seg_end,
    ) in rows:
        out.append(
            LineView(
                position,
                kind,
                charge_key,
                meter,
                description,
                exact(quantity),
                exact(included),
                exact(billable),
                None if unit_price is None else exact(unit_price),
                [msgspec.convert(t, TierView) for t in tiers],
                exact(proration),
                money_text(amount, invoice.currency),
                plan_id,
                seg_start,
                seg_end,
            )
        )
    return out


async def adjustments_of(session: AsyncSession, invoice: InvoiceRow) -> list[AdjustmentView]:
    rows = await adjustment_store.adjustments_with_events(session, invoice.id)
    out = []
    for (
        aid,
        iid,
        number,
        kind,
        amount,
        sub_delta,
        disc_delta,
        lines,
        reason,
        created_at,
        count,
        event_ids,
    ) in rows:
        out.append(
            AdjustmentView(
                aid,
                iid,
                number,
                kind,
                money_text(amount, invoice.currency),
                money_text(sub_delta, invoice.currency),
                money_text(disc_delta, invoice.currency),
                [msgspec.convert(line, AdjustmentLineView) for line in lines],
                reason,
                int(count),
                list(event_ids or []),
                created_at,
            )
        )
    return out


async def invoice_view(
    session: AsyncSession, invoice: InvoiceRow, *, now: datetime, grace: timedelta
) -> InvoiceView:
    adjustments = await adjustments_of(session, invoice)
    # A void invoice's notes are void with it: they add nothing (repository `_adjusted_total`).
    notes = (
        Decimal(0) if invoice.status == "void" else sum((Decimal(a.amount) for a in adjustments), Decimal(0))
    )
    adjusted = invoice.total + notes
    replaced_by = await invoice_store.replacement_id(session, invoice.id)
    cur = invoice.currency
    return InvoiceView(
        id=invoice.id,
        number=invoice.number,
        customer_id=invoice.customer_id,
        currency=cur,
        state=state_of(invoice.status, invoice.period_end, now, grace),
        period_start=invoice.period_start,
        period_end=invoice.period_end,
        review_after=invoice.period_end + grace,
        subtotal=money_text(invoice.subtotal, cur),
        discount_total=money_text(invoice.discount_total, cur),
        credits_applied=money_text(invoice.credits_applied, cur),
        total=money_text(invoice.total, cur),
        lines=await _lines(session, invoice),
        adjustments=adjustments,
        adjusted_total=money_text(adjusted, cur),
        computed_at=invoice.computed_at,
        complete_through=invoice.complete_through,
        finalized_at=invoice.finalized_at,
        approved_by=invoice.approved_by,
        voided_at=invoice.voided_at,
        void_reason=invoice.void_reason,
        replaces_id=invoice.replaces_id,
        replaced_by_id=replaced_by,
    )


async def get_invoice(
    session: AsyncSession,
    invoice_id: int,
    *,
    now: datetime,
    grace: timedelta,
    complete_through: datetime | None,
) -> InvoiceView:
    """An invoice with its lines and adjustments; a draft is re-rated first."""
    invoice = await load_invoice(session, invoice_id)
    if invoice.status == "draft":
        customer = await get_customer(session, invoice.customer_id)
        assert customer is not None
        await refresh_draft(session, customer, invoice.period, complete_through=complete_through)
        invoice = await load_invoice(session, invoice_id)
    return await invoice_view(session, invoice, now=now, grace=grace)


async def list_invoices(
    session: AsyncSession,
    *,
    now: datetime,
    grace: timedelta,
    customer_id: str | None = None,
    state: InvoiceState | None = None,
    period_start_from: datetime | None = None,
    period_start_to: datetime | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> list[InvoiceSummary]:
    """Invoices, newest first (ids below `before_id` when paging); `state` is evaluated at `now`."""
    status = {"draft": "draft", "awaiting_review": "draft", "finalized": "finalized", "void": "void"}
    rows = await invoice_store.invoices_page(
        session,
        customer_id=customer_id,
        status=status.get(state) if state else None,
        due_at=now,
        due={"draft": False, "awaiting_review": True}.get(state) if state else None,
        grace=grace,
        period_start_from=period_start_from,
        period_start_to=period_start_to,
        before_id=before_id,
        limit=limit,
    )
    out = [summary_of(invoice, adjusted, now=now, grace=grace) for invoice, adjusted in rows]
    return out


def summary_of(invoice: InvoiceRow, adjusted: Decimal, *, now: datetime, grace: timedelta) -> InvoiceSummary:
    cur = invoice.currency
    return InvoiceSummary(
        invoice.id,
        invoice.number,
        invoice.customer_id,
        cur,
        state_of(invoice.status, invoice.period_end, now, grace),
        invoice.period_start,
        invoice.period_end,
        money_text(invoice.total, cur),
        money_text(adjusted, cur),
        invoice.computed_at,
    )
