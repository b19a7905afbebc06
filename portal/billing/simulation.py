"""Pricing simulation: what chosen customers' ended periods would have cost on another plan.

Each (customer, period) is rated exactly as an invoice run rates it (`invoices.rate_periods`
on the stored hourly usage), once on its real plans and once with the candidate plan in
place of every segment's plan: the period's segment bounds and proration, the
subscriptions' own discounts and the customer's currency stay. Nothing is written: the
transaction is made read-only before the first read, so Postgres itself refuses any write.

What is compared is the amount before prepaid credit: credit is a way of paying, not a
price, and how much of it a period would have drawn depends on every other invoice. For a
finalized invoice that is its total plus the credit it drew plus its credit and debit
notes (what is true now); for a draft, a void invoice or a period never invoiced, the
period rated now on its real plans (what opening the draft would show).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.invoices import PeriodToRate, line_views, planned, rate_periods
from portal.billing.plans import check_meters, definition_of
from portal.billing.rating import EXACT, Rating
from portal.billing.repository import credits as credit_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository import plans as plan_store
from portal.billing.schemas import InvoiceRow, Plan, PlannedSegment, plan_from_definition
from portal.billing.simulation_schemas import (
    MAX_CUSTOMERS,
    MAX_ROWS,
    ActualInvoice,
    ActualStatus,
    CurrencySummary,
    Outcome,
    SimulatedInvoice,
    SimulatedPlan,
    SimulationRequest,
    SimulationRow,
    SimulationView,
    SkippedPeriod,
)
from portal.billing.subscriptions import month_period, segments_in, subscriptions_by_customer
from portal.billing.views import money_text
from portal.infrastructure.db import read_only
from portal.infrastructure.domain_errors import Invalid
from portal.infrastructure.periods import BillingPeriod, local_date, local_midnight, period_for
from portal.reports import repository as reports

ZERO = Decimal(0)
# The earliest and latest zones: a month starts there first and ends there last.
EARLIEST_ZONE, LATEST_ZONE = "Pacific/Kiritimati", "Etc/GMT+12"
_CreditLookup = Callable[[str, datetime], Decimal]  # (customer id, usable at) -> credit left


@dataclass(frozen=True, slots=True)
class _Customer:
    id: str
    name: str
    timezone: str
    currency: str
    anchor_day: int | None


@dataclass(frozen=True, slots=True)
class _Period:
    customer: _Customer
    month: str
    period: BillingPeriod
    actual: PeriodToRate
    simulated: PeriodToRate
    invoice: tuple[InvoiceRow, Decimal] | None


async def simulate(
    session: AsyncSession,
    request: SimulationRequest,
    *,
    now: datetime,
    customers_sql: str = "",
    customers_params: dict[str, object] | None = None,
) -> SimulationView:
    """Rate the request's customers' ended periods on the candidate plan beside what they
    really have; writes nothing (the transaction becomes read-only) and never commits.

    `customers_sql` limits the customers to a scope subquery of ids (a page's viewer):
    customers outside it are unknown. Raises Invalid (422) for an unknown customer, plan or
    meter, a month that has not started anywhere, or more work than one request may ask."""
    await read_only(session)
    plan, edited = await _candidate(session, request)
    low, high = _range(request, now)
    found = await reports.simulation_customers(
        session,
        customer_ids=request.customer_ids,
        subscribed_from=low,
        subscribed_to=high,
        # "Every customer" means every customer the plan could bill; named ones in another
        # currency are answered with the reason.
        currency=plan.currency,
        customers_sql=customers_sql,
        customers_params=dict(customers_params or {}),
        limit=MAX_CUSTOMERS + 1,
    )
    customers = [_Customer(*row) for row in found]
    if request.customer_ids is None and len(customers) > MAX_CUSTOMERS:
        raise Invalid(
            f"customerIds: more than {MAX_CUSTOMERS} customers billed in {plan.currency} have a "
            f"subscription in these periods; name at most {MAX_CUSTOMERS} of them"
        )
    if request.customer_ids is not None:
        missing = sorted(set(request.customer_ids) - {c.id for c in customers})
        if missing:
            raise Invalid("customerIds: no customer " + ", ".join(repr(m) for m in missing[:5]))
    periods, skipped = await _periods(session, request, customers, plan, now)
    actual = await _rate_actual(session, periods)
    simulated = await rate_periods(session, [p.simulated for p in periods])
    rows = [_row(p, a, s) for p, a, s in zip(periods, actual, simulated, strict=True)]
    skipped.sort(key=lambda s: (s.customer_id, s.month or ""))
    return SimulationView(
        SimulatedPlan(plan.id, plan.name, plan.currency, edited),
        now,
        rows,
        skipped,
        _summary(rows),
    )


async def _candidate(session: AsyncSession, request: SimulationRequest) -> tuple[Plan, bool]:
    """The plan to simulate and whether it is an edited copy (validated, never stored)."""
    if request.plan is not None:
        await check_meters(session, request.plan)
        return plan_from_definition(definition_of(request.plan)), True
    assert request.plan_id is not None
    plan = await plan_store.plan_by_id(session, request.plan_id)
    if plan is None:
        raise Invalid(f"planId: no plan {request.plan_id!r}")
    return plan, False


def _range(request: SimulationRequest, now: datetime) -> tuple[datetime, datetime]:
    """[low, high): every period the request may name lies inside it, in any zone and on
    any anchor day. Raises Invalid for periods that have not started anywhere yet."""
    if request.periods is not None:
        months = sorted(request.periods)
        for month in months:
            if month_period(EARLIEST_ZONE, 1, month).start > now:
                raise Invalid(f"periods: {month} has not started yet")
        last = date.fromisoformat(f"{months[-1]}-01")
        after = date(last.year + (last.month + 1) // 12, (last.month + 1) % 12 + 1, 1)
        return local_midnight(date.fromisoformat(f"{months[0]}-01"), EARLIEST_ZONE), local_midnight(
            after, LATEST_ZONE
        )
    assert request.from_ is not None and request.to is not None
    if local_midnight(request.from_, EARLIEST_ZONE) > now:
        raise Invalid(f"from: {request.from_} has not started yet")
    if local_midnight(request.to, EARLIEST_ZONE) > now:
        raise Invalid(f"to: {request.to} is in the future")
    return local_midnight(request.from_, EARLIEST_ZONE), local_midnight(
        request.to + timedelta(days=33), LATEST_ZONE
    )


def _customer_periods(customer: _Customer, request: SimulationRequest) -> list[tuple[str, BillingPeriod]]:
    """The customer's periods the request names, labelled by the month each starts in."""
    tz, anchor = customer.timezone, customer.anchor_day
    assert anchor is not None
    if request.periods is not None:
        return [(m, month_period(tz, anchor, m)) for m in sorted(request.periods)]
    assert request.from_ is not None and request.to is not None
    first, last = local_midnight(request.from_, tz), local_midnight(request.to, tz)
    period = period_for(first, tz, anchor)
    if period.start < first:
        period = period_for(period.end, tz, anchor)
    out = []
    while period.start <= last:
        start = local_date(period.start.timestamp(), tz)
        out.append((f"{start.year:04d}-{start.month:02d}", period))
        period = period_for(period.end, tz, anchor)
    return out


async def _periods(
    session: AsyncSession,
    request: SimulationRequest,
    customers: list[_Customer],
    plan: Plan,
    now: datetime,
) -> tuple[list[_Period], list[SkippedPeriod]]:
    """Every (customer, period) to rate, and those left out with the reason."""
    named = request.customer_ids is not None
    skipped: list[SkippedPeriod] = []
    wanted: list[tuple[_Customer, str, BillingPeriod]] = []
    for customer in customers:
        if customer.anchor_day is None:
            skipped.append(SkippedPeriod(customer.id, None, "the customer has never had a subscription"))
            continue
        if customer.currency != plan.currency:
            skipped.append(
                SkippedPeriod(
                    customer.id,
                    None,
                    f"the customer is billed in {customer.currency}; the plan is priced in {plan.currency}",
                )
            )
            continue
        for month, period in _customer_periods(customer, request):
            if period.end > now:
                skipped.append(SkippedPeriod(customer.id, month, "the period has not ended yet"))
            else:
                wanted.append((customer, month, period))
    if len(wanted) > MAX_ROWS:
        raise Invalid(
            f"periods: {len(wanted)} customer periods asked for; at most {MAX_ROWS} per simulation "
            "(fewer customers or fewer months)"
        )
    if not wanted:
        return [], skipped
    low = min(p.start for _, _, p in wanted)
    high = max(p.end for _, _, p in wanted)
    ids = sorted({c.id for c, _, _ in wanted})
    subs = await subscriptions_by_customer(session, ids, low, high)
    bounds = {(c.id, p.start): segments_in(subs.get(c.id, []), p) for c, _, p in wanted}
    plans = await plan_store.plans_by_id(
        session, {b.subscription.plan_id for bs in bounds.values() for b in bs}
    )
    invoices: dict[tuple[str, datetime], tuple[InvoiceRow, Decimal]] = {}
    for invoice, adjusted in await invoice_store.invoices_starting(session, ids, low, high):
        key = (invoice.customer_id, invoice.period_start)
        # The live invoice of a period wins over the void ones it replaces.
        if key not in invoices or invoices[key][0].status == "void":
            invoices[key] = (invoice, adjusted)
    credit = await _credit_usable(session, ids)
    out: list[_Period] = []
    for customer, month, period in wanted:
        mine = bounds[(customer.id, period.start)]
        if not mine:
            if named:
                skipped.append(SkippedPeriod(customer.id, month, "no subscription in this period"))
            continue
        real = planned(mine, plans)
        candidate = tuple(PlannedSegment(plan, s.start, s.end, s.fraction, s.discounts) for s in real)
        cur = customer.currency
        out.append(
            _Period(
                customer,
                month,
                period,
                PeriodToRate(customer.id, cur, period, real, credit(customer.id, period.end)),
                PeriodToRate(customer.id, cur, period, candidate, ZERO),
                invoices.get((customer.id, period.start)),
            )
        )
    return out, skipped


async def _credit_usable(session: AsyncSession, customer_ids: Sequence[str]) -> _CreditLookup:
    """Prepaid credit left per customer, usable at a given instant (`credits.available_credit`
    for many customers and periods, in one query)."""
    grants: dict[str, list[tuple[datetime | None, Decimal]]] = defaultdict(list)
    for customer_id, expires_at, remaining in await credit_store.credit_left_by_grant(session, customer_ids):
        grants[customer_id].append((expires_at, remaining))

    def usable(customer_id: str, at: datetime) -> Decimal:
        return sum((r for e, r in grants.get(customer_id, []) if e is None or e >= at), ZERO)

    return usable


async def _rate_actual(session: AsyncSession, periods: list[_Period]) -> list[Rating | None]:
    """The period on its real plans, except where a finalized invoice says what it is."""
    fresh = [p for p in periods if p.invoice is None or p.invoice[0].status != "finalized"]
    ratings = dict(
        zip((id(p) for p in fresh), await rate_periods(session, [p.actual for p in fresh]), strict=True)
    )
    return [ratings.get(id(p)) for p in periods]


def _actual(period: _Period, rating: Rating | None) -> tuple[ActualInvoice, Decimal]:
    cur = period.customer.currency
    if period.invoice is not None and period.invoice[0].status == "finalized":
        invoice, adjusted = period.invoice
        amount = adjusted + invoice.credits_applied
        return ActualInvoice(
            "finalized", invoice.id, invoice.number, money_text(invoice.total, cur), money_text(amount, cur)
        ), amount
    assert rating is not None
    amount = rating.subtotal - rating.discount_total
    if period.invoice is None:
        return ActualInvoice("not_invoiced", None, None, None, money_text(amount, cur)), amount
    invoice = period.invoice[0]
    # A draft shows what opening it would: rated now, prepaid credit drawn.
    total = rating.total if invoice.status == "draft" else invoice.total
    status: ActualStatus = "draft" if invoice.status == "draft" else "void"
    return ActualInvoice(
        status, invoice.id, invoice.number, money_text(total, cur), money_text(amount, cur)
    ), amount


def _percent(difference: Decimal, base: Decimal) -> str | None:
    if base == 0:
        return None
    return format(
        (difference * 100 / base).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP, context=EXACT), "f"
    )


def _outcome(difference: Decimal) -> Outcome:
    return "more" if difference > 0 else "less" if difference < 0 else "same"


def _row(period: _Period, actual_rating: Rating | None, simulated: Rating) -> SimulationRow:
    cur = period.customer.currency
    actual, actual_amount = _actual(period, actual_rating)
    amount = simulated.subtotal - simulated.discount_total
    difference = amount - actual_amount
    return SimulationRow(
        period.customer.id,
        period.customer.name,
        cur,
        period.month,
        period.period.start,
        period.period.end,
        actual,
        SimulatedInvoice(
            money_text(simulated.subtotal, cur),
            money_text(simulated.discount_total, cur),
            money_text(amount, cur),
            line_views(simulated),
        ),
        money_text(difference, cur),
        _percent(difference, actual_amount),
        _outcome(difference),
    )


def _summary(rows: list[SimulationRow]) -> list[CurrencySummary]:
    """Per currency: totals, and customers by the sum of their periods' differences."""
    out = []
    for cur in sorted({r.currency for r in rows}):
        mine = [r for r in rows if r.currency == cur]
        actual = sum((Decimal(r.actual.amount) for r in mine), ZERO)
        simulated = sum((Decimal(r.simulated.amount) for r in mine), ZERO)
        by_customer: dict[str, Decimal] = defaultdict(Decimal)
        for r in mine:
            by_customer[r.customer_id] += Decimal(r.difference)
        outcomes = [_outcome(d) for d in by_customer.values()]
        out.append(
            CurrencySummary(
                cur,
                len(mine),
                len(by_customer),
                money_text(actual, cur),
                money_text(simulated, cur),
                money_text(simulated - actual, cur),
                _percent(simulated - actual, actual),
                outcomes.count("more"),
                outcomes.count("less"),
                outcomes.count("same"),
            )
        )
    return out
