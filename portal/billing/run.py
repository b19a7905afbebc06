"""The invoice run: create or refresh every subscribed customer's draft for one month.

"Period YYYY-MM" is, for each customer, the billing period that starts in that calendar
month in its own zone on its anchor day. Customers are rated in chunks, each chunk in
its own transaction (a few bulk queries each), so progress is visible and a failure
loses one chunk, not the run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing.credits import credits_usable
from portal.billing.invoices import PeriodToRate, planned, rate_periods, save_drafts
from portal.billing.repository import plans as plan_store
from portal.billing.subscriptions import month_period, segments_in, subscriptions_by_customer
from portal.infrastructure.db import transaction
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.periods import BillingPeriod, period_for, previous_period
from portal.reports import repository as reports

CHUNK = 500
CONCURRENT_CHUNKS = 2


@dataclass(slots=True)
class RunSummary:
    period: str  # "YYYY-MM", or "last ended" for the scheduled run
    customers: int = 0
    created: int = 0
    refreshed: int = 0
    skipped_finalized: int = 0
    without_subscription: int = 0
    totals: dict[str, Decimal] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def add(self, part: RunSummary) -> None:
        """Count a committed chunk's work."""
        self.created += part.created
        self.refreshed += part.refreshed
        self.skipped_finalized += part.skipped_finalized
        self.without_subscription += part.without_subscription
        for currency, amount in part.totals.items():
            self.totals[currency] = self.totals.get(currency, Decimal(0)) + amount


@dataclass(frozen=True, slots=True)
class _Customer:
    id: str
    timezone: str
    currency: str
    anchor_day: int | None


async def _customers(session: AsyncSession) -> list[_Customer]:
    rows = await reports.customers_with_anchor_day(session)
    return [_Customer(str(i), str(tz), str(cur).strip(), a) for i, tz, cur, a in rows]


PeriodChoice = Callable[[str, int], BillingPeriod]  # (zone, anchor day) -> the period to bill


async def _run_chunk(
    session: AsyncSession,
    chunk: list[_Customer],
    choose: PeriodChoice,
    summary: RunSummary,
    complete_through: datetime | None,
) -> None:
    periods: dict[str, BillingPeriod] = {}
    for customer in chunk:
        assert customer.anchor_day is not None
        periods[customer.id] = choose(customer.timezone, customer.anchor_day)
    low = min(p.start for p in periods.values())
    high = max(p.end for p in periods.values())
    subs = await subscriptions_by_customer(session, list(periods), low, high)
    bounds = {cid: segments_in(subs.get(cid, []), period) for cid, period in periods.items()}
    summary.without_subscription += sum(1 for b in bounds.values() if not b)
    plans = await plan_store.plans_by_id(
        session, {b.subscription.plan_id for bs in bounds.values() for b in bs}
    )
    credits = await credits_usable(session, {cid: p.end for cid, p in periods.items()})
    items = [
        PeriodToRate(
            c.id, c.currency, periods[c.id], planned(bounds[c.id], plans), credits.get(c.id, Decimal(0))
        )
        for c in chunk
        if bounds[c.id]
    ]
    ratings = await rate_periods(session, items)
    written, created = await save_drafts(session, items, ratings, complete_through=complete_through)
    summary.created += created
    summary.refreshed += len(written) - created
    summary.skipped_finalized += len(items) - len(written)
    for item, rating in zip(items, ratings, strict=True):
        if item.customer_id in written:
            summary.totals[item.currency] = summary.totals.get(item.currency, Decimal(0)) + rating.total


async def run_invoices(
    sessions: async_sessionmaker[AsyncSession],
    *,
    month: str,
    now: datetime,
    complete_through: datetime | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Create or refresh the drafts of `month` for every customer with a subscription.

    Finalized invoices are left alone (late events adjust them). Raises Invalid for a
    malformed month; a failing chunk is recorded in `errors` and the run goes on."""
    earliest = month_period("Pacific/Kiritimati", 1, month)  # validates YYYY-MM first
    if earliest.start > now:
        raise Invalid(f"period: {month} has not started yet anywhere")
    return await _run(
        sessions, month, lambda tz, anchor: month_period(tz, anchor, month), complete_through, progress
    )


async def run_ended_periods(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    complete_through: datetime | None = None,
) -> RunSummary:
    """Create or refresh every customer's draft for its last period that has ended by
    `now`, so that it is ready for review when its grace period is over (the scheduler
    runs this hourly)."""

    def last_ended(tz: str, anchor: int) -> BillingPeriod:
        return previous_period(period_for(now, tz, anchor), tz, anchor)

    return await _run(sessions, "last ended", last_ended, complete_through, None)


async def run_current_periods(
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    complete_through: datetime | None = None,
) -> RunSummary:
    """Create or refresh every customer's draft of the period running at `now`: what the
    account managers' customers table shows as spend so far (the scheduler runs this every
    15 minutes; a draft is re-rated anyway whenever one invoice is opened)."""
    return await _run(
        sessions, "current", lambda tz, anchor: period_for(now, tz, anchor), complete_through, None
    )


async def _run(
    sessions: async_sessionmaker[AsyncSession],
    label: str,
    choose: PeriodChoice,
    complete_through: datetime | None,
    progress: Callable[[int, int], None] | None,
) -> RunSummary:
    summary = RunSummary(period=label)
    async with sessions() as session:
        customers = await _customers(session)
    subscribed = [c for c in customers if c.anchor_day is not None]
    summary.customers = len(customers)
    summary.without_subscription = len(customers) - len(subscribed)
    done = 0
    # Two chunks at a time: one rates in Python while the other's aggregate runs in
    # Postgres, and Postgres uses both cores (bench/invoices.py).
    limit = asyncio.Semaphore(CONCURRENT_CHUNKS)

    async def rate(chunk: list[_Customer]) -> None:
        """Rate `chunk` in one transaction; counted only once it has committed."""
        part = RunSummary(period=label)
        async with transaction(sessions) as session:
            await _run_chunk(session, chunk, choose, part, complete_through)
        summary.add(part)

    async def one(chunk: list[_Customer]) -> None:
        nonlocal done
        async with limit:
            try:
                await rate(chunk)
            except Exception:
                # One customer's failure must not hold the others' invoices hostage: the
                # chunk is rated again customer by customer, and only those that fail
                # again are reported.
                for customer in chunk:
                    try:
                        await rate([customer])
                    except Exception as exc:
                        summary.errors.append(f"customer {customer.id}: {type(exc).__name__}: {exc}"[:500])
            done += len(chunk)
            if progress is not None:
                progress(done, len(subscribed))

    await asyncio.gather(
        *(one(subscribed[offset : offset + CHUNK]) for offset in range(0, len(subscribed), CHUNK))
    )
    return summary
