"""Evaluating a customer's alert rules against Postgres, and recording what fires.

Both paths run this: the fast one (ingest → debounce → `evaluate_alerts`) and the
scheduled sweep. Usage and spend are read from Postgres, never from Redis (DESIGN
invariant 1). A firing and its pending deliveries are written in the caller's
transaction; the unique index on (rule, period, level, kind) makes a second evaluation,
on any process, fire nothing new (invariant 7). Sending starts after commit. Anomaly rules
are judged here too, at most once per settled hour (portal/alerting/anomaly_rules.py). The SQL
is in `portal.alerting.repository`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from alerts.messages import Notice
from alerts.thresholds import Due, Level, notices_due, thresholds
from portal.alerting import repository
from portal.alerting.anomaly_rules import evaluate_anomalies
from portal.alerting.firings import fan_out, notice_from_json, notice_json
from portal.alerting.schemas import RuleRow
from portal.billing.invoices import period_to_rate, rate_periods
from portal.billing.rating import Rating
from portal.billing.schemas import Plan
from portal.billing.subscriptions import list_subscriptions
from portal.catalog.schemas import Customer, Meter
from portal.catalog.service import get_customer, list_meters
from portal.entitlements.service import limits_for, record_crossings
from portal.infrastructure import metrics
from portal.infrastructure.periods import BillingPeriod, period_for, previous_period
from portal.infrastructure.settings import Settings
from portal.usage.service import billed_usage


@dataclass(frozen=True, slots=True)
class PeriodState:
    """What one period of the customer looks like now, read once for all its rules."""

    period: BillingPeriod
    rating: Rating | None  # None: no plan covers the period
    plan: Plan | None  # the plan in force now (or at the period's end)
    usage: dict[str, Decimal]


__all__ = ["evaluate_customer", "notice_from_json", "notice_json"]


async def active_rules(session: AsyncSession, customer_id: str) -> list[RuleRow]:
    return await repository.threshold_rules(session, customer_id)


def _periods(customer: Customer, anchor: int, now: datetime, grace: timedelta) -> list[BillingPeriod]:
    """The current period, and the previous one while late events may still change it."""
    current = period_for(now, customer.timezone, anchor)
    previous = previous_period(current, customer.timezone, anchor)
    return [current, previous] if now < previous.end + grace else [current]


async def _period_state(
    session: AsyncSession,
    customer: Customer,
    period: BillingPeriod,
    meters: dict[str, Meter],
    metrics: set[str],
    now: datetime,
    future_tolerance: timedelta,
) -> PeriodState:
    rating: Rating | None = None
    plan: Plan | None = None
    item = await period_to_rate(session, customer, period)
    if item is not None:
        rating = (await rate_periods(session, [item]))[0]
        in_force = [s for s in item.segments if s.start <= min(now, period.end)]
        plan = (in_force or list(item.segments))[-1].plan
    end = min(period.end, now + future_tolerance)
    usage = {}
    for metric in sorted(metrics):
        if metric in meters:
            found = await billed_usage(
                session,
                customer_id=customer.id,
                tz_name=customer.timezone,
                meter=meters[metric],
                start=period.start,
                end=end,
                granularity="day",
            )
            usage[metric] = found.total
    return PeriodState(period, rating, plan, usage)


def _base(rule: RuleRow, state: PeriodState, limits: dict[str, Decimal]) -> Decimal | None:
    """What a percentage level is a percentage of (None: nothing to measure against)."""
    if rule.basis == "budget":
        return rule.budget
    if rule.basis == "limit":  # the meter's entitlement limit in force
        return limits.get(rule.metric_name or "")
    if state.plan is None:
        return None
    if rule.basis == "commitment":
        return state.plan.minimum_commitment
    if rule.basis == "included":
        included = [c.included_quantity for c in state.plan.charges if c.meter == rule.metric_name]
        return sum(included, Decimal(0)) if included else None
    return None


def _spend(rating: Rating | None) -> Decimal:
    """A period's spend for alerts: what the customer owes for it so far, after discounts
    and prepaid credit (so a credit can bring it back below a level: a recovery)."""
    return Decimal(0) if rating is None else rating.total


def _label(level: Level, rule: RuleRow, unit: str) -> str:
    amount = format(level.level.normalize(), "f")
    return f"{amount}%" if rule.basis != "absolute" else f"{amount} {unit}"


async def evaluate_customer(
    session: AsyncSession, customer_id: str, *, now: datetime, settings: Settings
) -> list[int]:
    """Fire what the customer's rules owe now; the ids of the deliveries to send."""
    customer = await get_customer(session, customer_id)
    if customer is None:
        return []
    deliveries = await evaluate_anomalies(session, customer, now=now, settings=settings)
    await record_crossings(session, customer_id, now=now)
    rules = await active_rules(session, customer_id)
    if not rules:
        return deliveries
    limits = {m: limit.quantity for m, limit in (await limits_for(session, customer_id, now)).limits.items()}
    subs = await list_subscriptions(session, customer_id)
    anchor = subs[-1].anchor_day if subs else 1
    meters = {m.metric_name: m for m in await list_meters(session)}
    metrics = {r.metric_name for r in rules if r.metric_name is not None}
    for period in _periods(customer, anchor, now, settings.invoice_grace):
        state = await _period_state(
            session, customer, period, meters, metrics, now, settings.future_tolerance
        )
        fired = await repository.fired_levels(session, [r.id for r in rules], period.start)
        for rule in rules:
            meter = meters.get(rule.metric_name or "")
            if rule.metric_name is not None and meter is None:
                continue
            value = state.usage.get(meter.metric_name, Decimal(0)) if meter else _spend(state.rating)
            unit = meter.unit if meter else customer.currency
            grows = meter is None or meter.aggregation in ("sum", "count")
            levels = thresholds(rule.levels, rule.basis, _base(rule, state, limits))
            due = notices_due(
                value,
                levels,
                fired=fired.get(rule.id, set()),
                notify_recovery=rule.notify_recovery,
                notify_forecast=rule.notify_forecast,
                grows=grows,
                start=period.start,
                end=period.end,
                now=min(now, period.end),
                min_forecast_elapsed_s=settings.forecast_min_elapsed.total_seconds(),
            )
            for notice_due in due:
                notice = _notice(customer, rule, meter, unit, notice_due, value, state, now, settings)
                deliveries += await _fire(session, customer, rule, period, notice_due, value, notice, now)
    return deliveries


def _notice(
    customer: Customer,
    rule: RuleRow,
    meter: Meter | None,
    unit: str,
    due: Due,
    value: Decimal,
    state: PeriodState,
    now: datetime,
    settings: Settings,
) -> Notice:
    cost = None if state.rating is None else state.rating.total
    return Notice(
        kind=due.kind,
        firing_id=None,
        customer_id=customer.id,
        customer_name=customer.name,
        rule_id=rule.id,
        rule_name=rule.name,
        metric_name=rule.metric_name,
        unit=unit,
        level_label=_label(due.level, rule, unit),
        base_word="limit" if rule.basis == "limit" else "budget",
        threshold=due.level.threshold,
        value=value,
        currency=customer.currency,
        cost_so_far=cost,
        period_start=state.period.start,
        period_end=state.period.end,
        forecast_at=due.forecast_at,
        dashboard_url=f"{settings.public_url}/portal/customers/{customer.id}",
        occurred_at=now,
        time_zone=customer.timezone,
    )


async def _fire(
    session: AsyncSession,
    customer: Customer,
    rule: RuleRow,
    period: BillingPeriod,
    due: Due,
    value: Decimal,
    notice: Notice,
    now: datetime,
) -> list[int]:
    """Record one firing at `now`, the evaluation's instant (if no other evaluation did),
    and a pending delivery per channel."""
    firing_id = await repository.insert_threshold_firing(
        session,
        rule_id=rule.id,
        customer_id=customer.id,
        period_start=period.start,
        period_end=period.end,
        level=due.level.level,
        kind=due.kind,
        threshold=due.level.threshold,
        value=value,
        forecast_at=due.forecast_at,
        notice_json=notice_json(notice),
        fired_at=now,
    )
    if firing_id is None:
        return []
    metrics.ALERT_FIRINGS.labels(due.kind).inc()
    return await fan_out(
        session, customer.id, rule.channel_ids, firing_id, dataclasses.replace(notice, firing_id=firing_id)
    )
