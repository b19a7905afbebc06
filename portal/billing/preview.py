"""Live cost: the current period's invoice so far, and projected to the period's end.

Read from Postgres (the authoritative aggregates, a fraction of a second behind ingest),
never from the Redis live view: the number a customer sees must be the one they are billed.
The projection rates the projected quantities (so tiers apply to where usage is heading),
not a scaled amount.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.credits import credits_usable
from portal.billing.invoices import PeriodToRate, line_views, period_to_rate, planned, rate_periods
from portal.billing.quantities import UsageWindow, charge_quantities, meter_aggregations
from portal.billing.rating import Rating, Segment, projected_quantity, rate_invoice
from portal.billing.repository import plans as plan_store
from portal.billing.subscriptions import (
    SegmentBounds,
    list_subscriptions,
    period_of,
    segments_in,
    subscriptions_by_customer,
)
from portal.billing.views import (
    InvoicePreviewTotals,
    LineView,
    PreviewView,
    money_text,
)
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import BillingPeriod


def _totals(rating: Rating) -> InvoicePreviewTotals:
    cur = rating.currency
    return InvoicePreviewTotals(
        money_text(rating.subtotal, cur),
        money_text(rating.discount_total, cur),
        money_text(rating.credits_applied, cur),
        money_text(rating.total, cur),
    )


@dataclass(frozen=True, slots=True)
class RatingSetup:
    """What a customer's current period is rated on: everything but the usage. It changes
    only with the catalog (a plan change, a credit grant), so a dashboard polling every few
    seconds may keep it a little while (see portal.pages.service)."""

    customer: Customer
    item: PeriodToRate
    aggregations: dict[str, str]


async def rating_setup(session: AsyncSession, customer_id: str, *, now: datetime) -> RatingSetup:
    """Raises NotFound for an unknown customer or one without a current subscription."""
    customer = await get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    subs = await list_subscriptions(session, customer_id)
    if not subs:
        raise NotFound(f"customer {customer_id} has no subscription")
    period = period_of(customer, subs[-1].anchor_day, now)
    item = await period_to_rate(session, customer, period)
    if item is None:
        raise NotFound(f"customer {customer_id} has no subscription in the current period")
    return RatingSetup(customer, item, await meter_aggregations(session))


async def preview(
    session: AsyncSession,
    customer_id: str,
    *,
    now: datetime,
    complete_through: datetime | None,
    setup: RatingSetup | None = None,
) -> PreviewView:
    """The period so far and projected; one read of the aggregates when `setup` is given
    (it must be for the period containing `now`). Raises NotFound like `rating_setup`."""
    if setup is None:
        setup = await rating_setup(session, customer_id, now=now)
    customer, item = setup.customer, setup.item
    so_far, projected = await _rate(session, item, now, setup.aggregations)
    lines = line_views(so_far)
    lines += _credit_line(so_far, item, len(lines))
    return PreviewView(
        customer.id,
        customer.currency,
        item.period.start,
        item.period.end,
        complete_through,
        _totals(so_far),
        _totals(projected),
        lines,
    )


CREDIT_DESCRIPTION = "Prepaid credit applied"


def _credit_line(rating: Rating, item: PeriodToRate, position: int) -> list[LineView]:
    """The prepaid credit the period draws, as a last line (negative, like a discount), so
    the lines alone add up to the total; none when no credit is drawn."""
    if rating.credits_applied <= 0:
        return []
    amount = money_text(-rating.credits_applied, rating.currency)
    last = item.segments[-1]
    return [
        LineView(
            position,
            "credit",
            None,
            None,
            CREDIT_DESCRIPTION,
            "1",
            "0",
            "1",
            None,
            [],
            "1",
            amount,
            last.plan.id,
            item.period.start,
            item.period.end,
        )
    ]


async def current_periods(
    session: AsyncSession, customers: Sequence[Customer], *, now: datetime
) -> dict[str, PeriodToRate]:
    """What each customer's period containing `now` is rated on, as `rating_setup` finds it
    one customer at a time, in four queries for all of them; customers without a
    subscription in that period are left out."""
    if not customers:
        return {}
    # A period is at most 31 days long: every subscription overlapping a current period
    # overlaps this window, and a customer's anchor day is the same on all of its
    # subscriptions (a plan change keeps it).
    window_start, window_end = now - timedelta(days=32), now + timedelta(days=32)
    subs = await subscriptions_by_customer(session, [c.id for c in customers], window_start, window_end)
    periods: dict[str, tuple[Customer, BillingPeriod, list[SegmentBounds]]] = {}
    for customer in customers:
        mine = subs.get(customer.id)
        if not mine:
            continue
        latest = max(mine, key=lambda s: s.starts_at)
        period = period_of(customer, latest.anchor_day, now)
        bounds = segments_in(mine, period)
        if bounds:
            periods[customer.id] = (customer, period, bounds)
    plans = await plan_store.plans_by_id(
        session, {b.subscription.plan_id for _, _, bs in periods.values() for b in bs}
    )
    credits = await credits_usable(session, {cid: period.end for cid, (_, period, _) in periods.items()})
    return {
        cid: PeriodToRate(
            cid, customer.currency, period, planned(bounds, plans), credits.get(cid, Decimal(0))
        )
        for cid, (customer, period, bounds) in periods.items()
    }


async def spend_so_far(
    session: AsyncSession, customers: Sequence[Customer], *, now: datetime
) -> dict[str, Rating]:
    """Each customer's current period rated as metered so far: the same rating as
    `preview(...).so_far` (its total is the customer page's "Cost so far"), for many
    customers in a few bulk reads. Customers without a current subscription are left out."""
    items = await current_periods(session, customers, now=now)
    ratings = await rate_periods(session, list(items.values()))
    return dict(zip(items, ratings, strict=True))


async def _rate(
    session: AsyncSession, item: PeriodToRate, now: datetime, aggregations: dict[str, str]
) -> tuple[Rating, Rating]:
    """The period rated as metered so far, and as if usage goes on to its end at the pace
    seen so far, from one read of the aggregates (the dashboard asks every few seconds).

    Each segment keeps what it metered, plus, for sum and count meters, the rest of its
    time at the period's pace so far, measured with that segment's own charges (so a plan
    starting later in the period is projected too, not left at zero). Max, latest and
    unique counts are taken as they are (a segment that has not begun yet: the period's
    so far)."""
    period = item.period
    # The pace is measured over the time the period bills, from its first segment: usage
    # before a subscription that starts mid-period is not billed, and counting it (or the
    # days before the start) made a projection that cancelling such an event halved.
    billed_from = min((seg.start for seg in item.segments), default=period.start)
    observed_end = min(max(now, billed_from), period.end)
    elapsed = (observed_end - billed_from).total_seconds()
    windows = [
        UsageWindow(("segment", j), item.customer_id, seg.start, seg.end, seg.plan)
        for j, seg in enumerate(item.segments)
    ]
    windows += [
        UsageWindow(("pace", j), item.customer_id, billed_from, observed_end, seg.plan)
        for j, seg in enumerate(item.segments)
    ]
    quantities = await charge_quantities(session, windows, aggregations)
    segments, metered_segments = [], []
    for j, seg in enumerate(item.segments):
        metered = quantities.get(("segment", j), {})
        so_far = quantities.get(("pace", j), {})
        remaining = (seg.end - max(seg.start, observed_end)).total_seconds()
        projected: dict[str, Decimal] = {}
        for charge in seg.plan.charges:
            if charge.meter is None:
                continue
            aggregation = aggregations.get(charge.meter, "sum")
            mine = metered.get(charge.key, Decimal(0))
            if aggregation in ("sum", "count"):
                grows = projected_quantity(
                    aggregation,
                    so_far.get(charge.key, Decimal(0)),
                    elapsed_s=elapsed,
                    period_s=elapsed + max(remaining, 0.0),
                )
                projected[charge.key] = mine + grows - so_far.get(charge.key, Decimal(0))
            else:
                started = seg.start < observed_end
                projected[charge.key] = mine if started else so_far.get(charge.key, Decimal(0))
        segments.append(Segment(seg.plan, seg.start, seg.end, seg.fraction, projected, seg.discounts))
        metered_segments.append(Segment(seg.plan, seg.start, seg.end, seg.fraction, metered, seg.discounts))
    rate = functools.partial(rate_invoice, currency=item.currency, credit_available=item.credit_available)
    return rate(metered_segments), rate(segments)
