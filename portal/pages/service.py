"""What the customer page shows: live usage from the Redis view, cost from Postgres."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from functools import partial

from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import repository as alerting_repository
from portal.alerting import rules as rule_service
from portal.alerting.deliveries import list_firings
from portal.billing.pdf.text import period_text
from portal.billing.preview import RatingSetup, preview, rating_setup
from portal.billing.views import PreviewView, money_text
from portal.catalog import service as catalog
from portal.catalog.schemas import Customer, Meter
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.periods import BillingPeriod, period_for, to_datetime
from portal.pages.alerts_view import firing_view, meter_units
from portal.pages.charts import BarChart, hourly_bars
from portal.pages.formatting import HOUR, day_of, hour_range, instant, measure, metric_label, money
from portal.pages.limits_view import MeterLimit, meter_limit
from portal.pages.upcoming import ChargeProgress, UpcomingInvoice, charge_progress, upcoming_invoice
from portal.state import PortalState
from portal.usage.anomaly_detection import recent_anomalies
from portal.usage.combine import exact
from portal.usage.completeness import complete_through_ms
from portal.usage.schemas import AnomalyOut
from portal.usage.service import live_usage

CHART_HEIGHT = 160  # px; the width is the panel's

# What the period number of a meter means, by aggregation.
TOTAL_LABELS = {
    "sum": "Total this period",
    "count": "Events this period",
    "max": "Peak this period",
    "latest": "Latest value",
    "unique_count": "Distinct values this period",
}


@dataclass(frozen=True, slots=True)
class MeterUsage:
    metric_name: str
    unit: str
    total_label: str
    total: str
    chart: BarChart
    on_plan: bool = True  # False: staff see it, labelled; customers never do
    limit: MeterLimit | None = None  # the customer's limit on it this period (limits page)


@dataclass(frozen=True, slots=True)
class CostSummary:
    """What the period costs so far and where it is heading (from Postgres, not Redis)."""

    currency: str
    so_far: str
    projected: str


@dataclass(frozen=True, slots=True)
class BudgetProgress:
    """A budget the customer set (an alert rule on a budget): how much of it is used."""

    name: str
    percent: int  # rounded down
    meter_value: str  # what the <progress> bar shows: the use, capped at the budget
    budget: str
    label: str  # "EUR 312.40 of the EUR 500.00 budget — 62%"
    # Set when the period's projection exceeds the budget:
    # "Projected EUR 1,180.52 — 236% of the EUR 500.00 budget".
    warning: str | None = None

    @property
    def over(self) -> bool:
        return Decimal(self.meter_value) >= Decimal(self.budget) and self.percent >= 100


def _percent_of(used: Decimal, budget: Decimal) -> int:
    # Rounded down, so that 100% is never shown before the budget is reached.
    return int((used * 100 / budget).to_integral_value(rounding=ROUND_FLOOR)) if budget > 0 else 100


def budget_progress(
    name: str,
    used: Decimal,
    budget: Decimal,
    show: Callable[[Decimal], str],
    *,
    projected: Decimal | None = None,
) -> BudgetProgress:
    """Use against a budget (pure); `show` writes an amount (money or a meter's unit). A
    `projected` use above the budget is worded as a warning."""
    percent = _percent_of(used, budget)
    warning = None
    if projected is not None and projected > budget:
        warning = (
            f"Projected {show(projected)} — {_percent_of(projected, budget)}% of the {show(budget)} budget"
        )
    return BudgetProgress(
        name,
        percent,
        exact(min(used, budget)),
        exact(budget),
        f"{show(used)} of the {show(budget)} budget — {percent}%",
        warning,
    )


@dataclass(frozen=True, slots=True)
class AlertRow:
    """One recent notice, as the customer page lists it."""

    fired_at: str
    kind: str
    rule: str
    level: str
    value: str
    delivered: str


@dataclass(frozen=True, slots=True)
class AnomalyRow:
    """An unusual settled hour of a meter, for account managers."""

    metric_name: str
    kind: str
    when: str
    value: str
    expected: str


@dataclass(frozen=True, slots=True)
class UsagePanel:
    customer_id: str
    tz_name: str
    period_start: str
    period_end: str
    complete_through: str
    meters: tuple[MeterUsage, ...]
    cost: CostSummary | None = None
    charges: tuple[ChargeProgress, ...] = ()
    invoice: UpcomingInvoice | None = None
    staff: bool = False  # the viewer is staff: meters off the plan are shown, labelled
    budgets: tuple[BudgetProgress, ...] = ()
    alerts: tuple[AlertRow, ...] = ()
    anomalies: tuple[AnomalyRow, ...] = ()
    # When the plan starts after the period does (a subscription begun mid-period): the
    # usage shown counts from the period's start, the bill from this instant.
    billed_from: str | None = None

    @property
    def version(self) -> str:
        """Changes whenever anything the panel shows changes (the poll skips equal ones)."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:20]


async def _meter_usage(
    portal: PortalState,
    customer: Customer,
    meter: Meter,
    period: BillingPeriod,
    end: datetime,
    *,
    on_plan: bool = True,
) -> MeterUsage:
    usage = await live_usage(
        portal.live,
        customer_id=customer.id,
        tz_name=customer.timezone,
        meter=meter,
        start=period.start,
        end=end,
        granularity="hour",
    )
    chart = hourly_bars(
        [(p.start, p.value) for p in usage.series],
        height=CHART_HEIGHT,
        tz_name=customer.timezone,
        unit=meter.unit,
        name=metric_label(meter.metric_name),
        start=period.start,
        end=period.end,  # the whole period on the axis, what is still to come shaded
    )
    return MeterUsage(
        metric_name=meter.metric_name,
        unit=meter.unit,
        total_label=TOTAL_LABELS.get(meter.aggregation, "This period"),
        total=exact(usage.total),
        chart=chart,
        on_plan=on_plan,
    )


def plan_meters(setup: RatingSetup | None) -> frozenset[str] | None:
    """The meters the customer's plans in its current period charge for; None without a
    plan (usage without a price: every meter is the customer's to watch)."""
    if setup is None:
        return None
    return frozenset(c.meter for seg in setup.item.segments for c in seg.plan.charges if c.meter)


async def usage_panel(
    portal: PortalState, db: AsyncSession, customer: Customer, *, now: datetime, staff: bool = False
) -> UsagePanel:
    """Period-to-date live usage of the meters on the customer's plan at instant `now` (UTC)
    (of every meter while it has no plan); `staff` viewers also see the other meters,
    marked as not on the plan. With a plan: the cost, the upcoming invoice's lines and a
    card per metered charge, all from one preview (the same rating as the bill).

    The period runs to `now` plus the ingest's future tolerance (no accepted event lies
    later), so the totals equal the usage API's for the whole period. "Complete through" is
    shown to the minute, rounded down: every event accepted before it is in Postgres, and
    in what `db` reads (a replica: in what it has replayed).
    """
    ttl = portal.settings.catalog_cache_seconds
    setup = await _rating_setup(db, customer, now, ttl)
    period = (
        BillingPeriod(setup.item.period.start, setup.item.period.end)
        if setup is not None
        else period_for(now, customer.timezone)
    )
    end = min(period.end, now + portal.settings.future_tolerance)
    priced = plan_meters(setup)
    every_meter = await _meters(db, ttl)
    on_plan = {m.metric_name: priced is None or m.metric_name in priced for m in every_meter}
    meters = [m for m in every_meter if staff or on_plan[m.metric_name]]
    # Redis (the watermark, live usage) runs while Postgres answers the cost and the alerts.
    watermark_ms = asyncio.ensure_future(complete_through_ms(portal.live, db))
    live = asyncio.gather(
        *(
            _meter_usage(portal, customer, meter, period, end, on_plan=on_plan[meter.metric_name])
            for meter in meters
        )
    )
    try:
        estimate = (
            await preview(db, customer.id, now=now, complete_through=None, setup=setup)
            if setup is not None
            else None
        )
        alerts = await recent_alerts(db, customer, every_meter)
        anomalies = await _anomalies(db, customer, meters, now)
        budget_rules = await _budget_rules(db, customer.id)
    finally:
        usages = await live
        watermark = to_datetime(await watermark_ms / 1000)
    profile = (await portal.entitlements.profiles({customer.id}, now)).get(customer.id)
    if profile is not None and profile.limits:
        usages = [replace(u, limit=meter_limit(u.total, profile.limits.get(u.metric_name))) for u in usages]
    cost = None
    charges: tuple[ChargeProgress, ...] = ()
    invoice = None
    if estimate is not None and setup is not None:
        cost = CostSummary(estimate.currency, estimate.so_far.total, estimate.projected.total)
        units = {meter.metric_name: meter.unit for meter in meters}
        # The preview already rated the plan's charges once: its lines are the upcoming
        # invoice, and its usage lines carry the quantities the cards show, at no further query.
        plan_charges = {(seg.plan.id, c.key): c for seg in setup.item.segments for c in seg.plan.charges}
        invoice = upcoming_invoice(estimate, units, plan_charges)
        # A period split by a plan change has a card per plan for a meter: each says which.
        plan_names = {seg.plan.id: seg.plan.name for seg in setup.item.segments}
        split = len(setup.item.segments) > 1
        charges = tuple(
            charge_progress(
                line,
                units.get(line.meter, ""),
                estimate.currency,
                segment=(
                    f"{plan_names.get(line.plan_id, line.plan_id)}, "
                    f"{period_text(line.segment_start, line.segment_end, customer.timezone)}"
                    if split
                    else ""
                ),
            )
            for line in estimate.lines
            if line.kind == "usage" and line.meter is not None
        )
    billed_from = None
    if setup is not None and setup.item.segments and setup.item.segments[0].start > period.start:
        billed_from = instant(setup.item.segments[0].start, customer.timezone)
    return UsagePanel(
        billed_from=billed_from,
        customer_id=customer.id,
        tz_name=customer.timezone,
        period_start=instant(period.start, customer.timezone),
        period_end=instant(period.end, customer.timezone),
        complete_through=instant(watermark, customer.timezone),
        meters=tuple(usages),
        cost=cost,
        charges=charges,
        invoice=invoice,
        staff=staff,
        budgets=_budgets(budget_rules, estimate, usages),
        alerts=alerts,
        anomalies=anomalies,
    )


async def _budget_rules(db: AsyncSession, customer_id: str) -> list[tuple[str, str | None, Decimal]]:
    """The customer's budgets: (rule name, meter or None for spend, amount)."""
    return await alerting_repository.budget_rules(db, customer_id)


def _as_money(value: Decimal, *, currency: str) -> str:
    return money(money_text(value, currency), currency)


def _in_unit(value: Decimal, *, unit: str) -> str:
    return measure(exact(value), unit)


def _budgets(
    rules: list[tuple[str, str | None, Decimal]], estimate: PreviewView | None, usages: list[MeterUsage]
) -> tuple[BudgetProgress, ...]:
    """Spend budgets against the cost so far, meter budgets against the period's usage."""
    totals = {u.metric_name: (Decimal(u.total), u.unit) for u in usages}
    rows = []
    for name, metric, budget in rules:
        if metric is None:
            if estimate is None:
                continue  # no plan, no spend
            rows.append(
                budget_progress(
                    name,
                    Decimal(estimate.so_far.total),
                    budget,
                    partial(_as_money, currency=estimate.currency),
                    projected=Decimal(estimate.projected.total),
                )
            )
        elif metric in totals:
            total, unit = totals[metric]
            rows.append(budget_progress(name, total, budget, partial(_in_unit, unit=unit)))
    return tuple(rows)


# The panel is polled every 2 s by every viewer; what it is rated on (subscription, plans,
# credit, meter aggregations) and the meter list change only with the catalog. Each web
# process keeps them as long as it keeps the catalog (settings.catalog_cache_seconds): a
# plan change or a new meter shows within that time, while the usage and the cost are read
# fresh at every poll. Keyed by the customer's creation too: an id reused is a new customer.
_setup_cache: dict[tuple[str, datetime], tuple[float, RatingSetup | None]] = {}
_meters_cache: list[tuple[float, list[Meter]]] = []


async def _rating_setup(
    db: AsyncSession, customer: Customer, now: datetime, ttl_s: float
) -> RatingSetup | None:
    """The customer's rating setup for the period containing `now`; None without a plan."""
    key = (customer.id, customer.created_at)
    hit = _setup_cache.get(key)
    clock = time.monotonic()
    if (
        hit is not None
        and clock - hit[0] < ttl_s
        and (hit[1] is None or hit[1].item.period.start <= now < hit[1].item.period.end)
    ):
        return hit[1]
    try:
        setup: RatingSetup | None = await rating_setup(db, customer.id, now=now)
    except NotFound:  # no plan yet: usage without a price
        setup = None
    if len(_setup_cache) > 10_000:
        _setup_cache.clear()
    _setup_cache[key] = (clock, setup)
    return setup


async def _meters(db: AsyncSession, ttl_s: float) -> list[Meter]:
    clock = time.monotonic()
    if _meters_cache and clock - _meters_cache[0][0] < ttl_s:
        return _meters_cache[0][1]
    meters = await catalog.list_meters(db)
    _meters_cache[:] = [(clock, meters)]
    return meters


# Settled hours change at the hour (late events aside): the panel refreshes every few
# seconds, so each web process judges a customer's hours once an hour, not at every poll.
_anomaly_cache: dict[tuple[str, float, int], tuple[AnomalyRow, ...]] = {}


async def _anomalies(
    db: AsyncSession, customer: Customer, meters: list[Meter], now: datetime
) -> tuple[AnomalyRow, ...]:
    key = (customer.id, customer.created_at.timestamp(), int(now.timestamp()) // 3600)
    if key not in _anomaly_cache:
        if len(_anomaly_cache) > 10_000:
            _anomaly_cache.clear()
        _anomaly_cache[key] = tuple(
            AnomalyRow(
                a.metric_name, ANOMALY_LABELS[a.kind], _when(a, customer.timezone), a.value, a.expected
            )
            for a in await recent_anomalies(db, customer, meters, now=now)
        )
    return _anomaly_cache[key]


def _when(anomaly: AnomalyOut, tz_name: str) -> str:
    """An hour as `hour_range` shows it; 'Tue 24 Nov 2026 (whole day)' for a day."""
    if anomaly.granularity == "day":
        return f"{day_of(anomaly.start, tz_name)} (whole day)"
    if anomaly.end - anomaly.start > HOUR:  # a silence spans several hours
        return f"{instant(anomaly.start, tz_name)} to {instant(anomaly.end, tz_name)}"
    return hour_range(anomaly.start, tz_name)


ANOMALY_LABELS = {"spike": "Spike", "drop_to_zero": "Dropped to zero", "silence": "Unusual silence"}


KIND_LABELS = {
    "crossing": "Reached",
    "recovery": "Back below",
    "forecast": "Forecast to reach",
    "anomaly": "Unusual usage",
}


async def recent_alerts(
    db: AsyncSession, customer: Customer, every_meter: list[Meter], limit: int = 10
) -> tuple[AlertRow, ...]:
    """The customer's latest notices with how their deliveries went, their level and value
    in the rule's terms, as the Alerts tab words them ("50% (EUR 150.00)", "EUR 186.96").
    `every_meter` is the panel's cached catalog (their units)."""
    firings = await list_firings(db, customer.id, limit=limit)
    if not firings:  # most polls: no rules read
        return ()
    rules = await rule_service.rules_of(db, customer.id, firings)
    meters = meter_units(every_meter)
    rows = []
    for firing in firings:
        view = firing_view(firing, rules.get(firing.rule_id), meters, customer.currency)
        sent = sum(1 for d in firing.deliveries if d.status == "sent")
        failed = sum(1 for d in firing.deliveries if d.status == "failed")
        delivered = f"{sent} of {len(firing.deliveries)} sent" + (f", {failed} failed" if failed else "")
        rows.append(
            AlertRow(
                instant(firing.fired_at, customer.timezone),
                KIND_LABELS[firing.kind],
                firing.rule_name,
                view.level,
                view.value,
                delivered,
            )
        )
    return tuple(rows)
