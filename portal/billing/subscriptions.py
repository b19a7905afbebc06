"""Subscriptions: which plan a customer is on, over time, and how that splits a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.plans import get_plan
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository import plans as plan_store
from portal.billing.repository.locks import lock_customer
from portal.billing.schemas import Discount, Subscription, SubscriptionCreate, SubscriptionEnd
from portal.catalog.schemas import Customer
from portal.catalog.service import get_customer
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound
from portal.infrastructure.periods import (
    BillingPeriod,
    anchor_date,
    hour_bucket,
    local_date,
    local_midnight,
    period_for,
    to_datetime,
)


@dataclass(frozen=True, slots=True)
class SegmentBounds:
    """The part [start, end) of a period that one subscription covers."""

    subscription: Subscription
    start: datetime
    end: datetime
    fraction: Decimal


def segments_in(subscriptions: list[Subscription], period: BillingPeriod) -> list[SegmentBounds]:
    """The subscriptions' overlaps with `period`, in time order, each with its share of
    the period's length (exact: seconds over seconds)."""
    length = Decimal(int((period.end - period.start).total_seconds()))
    out: list[SegmentBounds] = []
    for sub in sorted(subscriptions, key=lambda s: s.starts_at):
        start = max(sub.starts_at, period.start)
        end = min(sub.ends_at or period.end, period.end)
        if end > start:
            seconds = Decimal(int((end - start).total_seconds()))
            out.append(SegmentBounds(sub, start, end, seconds / length))
    return out


async def list_subscriptions(session: AsyncSession, customer_id: str) -> list[Subscription]:
    return await plan_store.customer_subscriptions(session, customer_id)


async def subscriptions_by_customer(
    session: AsyncSession,
    customer_ids: list[str] | None,
    start: datetime,
    end: datetime,
) -> dict[str, list[Subscription]]:
    """Subscriptions overlapping [start, end), per customer (all customers if None)."""
    rows = await plan_store.subscriptions_overlapping(session, customer_ids, start, end)
    out: dict[str, list[Subscription]] = {}
    for sub in rows:
        out.setdefault(sub.customer_id, []).append(sub)
    return out


def period_of(customer: Customer, anchor_day: int, at: datetime) -> BillingPeriod:
    return period_for(at, customer.timezone, anchor_day)


def _effective_at(
    customer: Customer,
    current: Subscription,
    *,
    immediate: bool,
    now: datetime,
    effective_at: datetime | None,
) -> datetime:
    """When a change or an end takes effect: `effective_at` (checked to start one of the
    customer's hours), else the customer's next hour (`immediate`), else the end of the
    current period."""
    if effective_at is not None:
        if effective_at.tzinfo is None:
            raise Invalid("effectiveAt: needs a time zone offset (e.g. Z)")
        if hour_bucket(effective_at.timestamp(), customer.timezone) != effective_at.timestamp():
            raise Invalid(
                "effectiveAt: must start one of the customer's hours (usage is metered "
                "hourly, so a plan change happens between hours)"
            )
        return effective_at.astimezone(UTC)
    if immediate:
        # From the next hour: every hour of usage then belongs to exactly one plan.
        return to_datetime(hour_bucket(now.timestamp() + 3600, customer.timezone))
    return period_for(now, customer.timezone, current.anchor_day).end


async def subscribe(
    session: AsyncSession, customer_id: str, data: SubscriptionCreate, *, now: datetime
) -> Subscription:
    """Start a customer's first subscription, or change its plan (see SubscriptionCreate).

    Raises NotFound (customer, plan), Invalid (currency, anchor, instant) or Conflict
    (a change reaching into a finalized period, the same plan again)."""
    customer = await get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    plan = await get_plan(session, data.plan_id)
    if plan.currency != customer.currency:
        raise Invalid(
            f"planId: plan {plan.id} is priced in {plan.currency}, but customer "
            f"{customer.id} is billed in {customer.currency}"
        )
    await lock_customer(session, customer_id)
    existing = await list_subscriptions(session, customer_id)
    if not existing:
        day = data.start_date or local_date(now.timestamp(), customer.timezone)
        anchor = data.anchor_day or day.day
        return await _insert(
            session, customer_id, plan.id, anchor, local_midnight(day, customer.timezone), data.discounts
        )
    if data.start_date is not None:
        raise Invalid(
            "startDate: the customer is subscribed already; a plan change takes "
            "effect at the next period, or use effective=immediate or effectiveAt"
        )
    current = next(
        (s for s in existing if s.starts_at <= now and (s.ends_at is None or s.ends_at > now)), existing[-1]
    )
    if data.anchor_day is not None and data.anchor_day != current.anchor_day:
        raise Invalid(f"anchorDay: the billing anchor stays {current.anchor_day} across plan changes")
    at = _effective_at(
        customer, current, immediate=data.effective == "immediate", now=now, effective_at=data.effective_at
    )
    if at <= existing[0].starts_at:
        raise Invalid(f"effectiveAt: before the first subscription starts ({existing[0].starts_at})")
    finalized = await invoice_store.finalized_number_after(session, customer_id, at)
    if finalized is not None:
        raise Conflict(
            f"the change at {at.isoformat()} falls in a period already invoiced "
            f"({finalized}); void that invoice first"
        )
    on_plan = next((s for s in existing if s.starts_at <= at and (s.ends_at is None or s.ends_at > at)), None)
    if on_plan is not None and on_plan.plan_id == plan.id and not data.discounts:
        raise Conflict(f"customer {customer_id} is already on plan {plan.id} at {at.isoformat()}")
    # A later change replaces changes scheduled after it.
    await plan_store.cut_subscriptions_at(session, customer_id, at)
    return await _insert(session, customer_id, plan.id, current.anchor_day, at, data.discounts)


async def end_subscription(
    session: AsyncSession, customer_id: str, data: SubscriptionEnd, *, now: datetime
) -> Subscription:
    """End the customer's subscription (see SubscriptionEnd); the subscription as it now
    ends. Raises NotFound (customer), Invalid (instant) or Conflict (nothing running or
    scheduled to end, or an end reaching into a finalized period)."""
    customer = await get_customer(session, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    await lock_customer(session, customer_id)
    existing = await list_subscriptions(session, customer_id)
    if not existing:
        raise Conflict(f"customer {customer_id} has no subscription to end")
    current = next(
        (s for s in existing if s.starts_at <= now and (s.ends_at is None or s.ends_at > now)), existing[-1]
    )
    at = _effective_at(
        customer, current, immediate=data.effective == "immediate", now=now, effective_at=data.effective_at
    )
    if at <= existing[0].starts_at:
        raise Invalid(f"effectiveAt: before the first subscription starts ({existing[0].starts_at})")
    if not any(s.ends_at is None or s.ends_at > at for s in existing):
        ended = max(s.ends_at for s in existing if s.ends_at is not None)
        raise Conflict(f"customer {customer_id}'s subscription ends at {ended.isoformat()} already")
    finalized = await invoice_store.finalized_number_after(session, customer_id, at)
    if finalized is not None:
        raise Conflict(
            f"the end at {at.isoformat()} falls in a period already invoiced ({finalized}); "
            "void that invoice first"
        )
    await plan_store.cut_subscriptions_at(session, customer_id, at)
    ending = [s for s in await list_subscriptions(session, customer_id) if s.ends_at == at]
    if not ending:  # nothing ran at `at`: only changes scheduled after it, now dropped
        raise Conflict(f"customer {customer_id} has no subscription running at {at.isoformat()}")
    return ending[0]


async def _insert(
    session: AsyncSession,
    customer_id: str,
    plan_id: str,
    anchor_day: int,
    starts_at: datetime,
    discounts: tuple[Discount, ...],
) -> Subscription:
    subscription = await plan_store.insert_subscription(
        session,
        customer_id=customer_id,
        plan_id=plan_id,
        anchor_day=anchor_day,
        starts_at=starts_at,
        discounts=discounts,
    )
    # A plan's default alert rules become the subscriber's own.
    from portal.alerting.rules import copy_plan_rules

    await copy_plan_rules(session, customer_id, plan_id)
    return subscription


def month_period(customer_tz: str, anchor_day: int, month: str) -> BillingPeriod:
    """The period that starts in calendar month `month` ("YYYY-MM") in the customer's zone
    (on its anchor day). Raises Invalid when `month` is not YYYY-MM."""
    try:
        first = date.fromisoformat(f"{month}-01")
    except ValueError as exc:
        raise Invalid(f"period: expected YYYY-MM, got {month!r}") from exc
    # A period of 9999-12 would end in year 10000, which no date holds.
    if not 1971 <= first.year <= 9998:
        raise Invalid(f"period: expected a month from 1971-01 to 9998-12, got {month!r}")
    start = local_midnight(anchor_date(first.year, first.month, anchor_day), customer_tz)
    return period_for(start, customer_tz, anchor_day)
