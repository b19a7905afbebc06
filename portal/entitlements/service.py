"""Entitlements: the limits in force, the answers to "may this customer use more?", and the
editing of limits by staff and by customers. Never commits.

A check reads no Postgres: `EntitlementBook` keeps, per web process, each customer's zone,
billing period, plan and limits for `entitlement_cache_seconds`, and the value so far comes
from the live view's period accumulators (one Redis read per customer and meter,
`LiveStore.period_values`). While the live view is being rebuilt after a Redis loss, the
answer comes from Postgres instead and says how far it trails (`lagMs`).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.accounts import audit
from portal.billing import plans as billing_plans
from portal.billing.subscriptions import subscriptions_by_customer
from portal.catalog import repository as catalog_store
from portal.catalog.service import get_meter
from portal.entitlements import repository
from portal.entitlements.limits import (
    CustomerRule,
    Limit,
    PlanRule,
    SetBy,
    answer,
    customer_limit_error,
    limits_in_force,
    staff_limit_error,
)
from portal.entitlements.schemas import CheckIn, CustomerLimits, EntitlementOut, PlanLimits
from portal.infrastructure.domain_errors import Invalid, NotFound
from portal.infrastructure.periods import BillingPeriod, hour_buckets, period_for
from portal.live import redis_keys as keys
from portal.live.store import LiveStore, PeriodAsk
from portal.usage.combine import exact
from portal.usage.service import billed_usage
from portal.webhooks.service import announce

# How often a web process asks whether the live view is built (a flushed Redis is not).
_BUILT_CHECK_S = 1.0
# Every change of limits or subscriptions bumps this counter (`EntitlementBook.changed`);
# each web process reads it at most every `_VERSION_CHECK_S` and then forgets its profiles.
VERSION_KEY = "ent:version"
_VERSION_CHECK_S = 0.5
# A profile loaded within this long of a change may have been read before the change
# committed: it is kept only this long, then read again.
_SETTLING_S = 1.0


@dataclass(slots=True)
class Profile:
    """What a check needs of one customer, as of `loaded_at` (monotonic seconds)."""

    customer_id: str
    timezone: str
    anchor_day: int
    plan_id: str | None
    limits: dict[str, Limit]
    loaded_at: float
    period: BillingPeriod | None = None
    buckets: list[int] = field(default_factory=list)
    # What a check asks the live view per meter, for `period` (built once per period).
    asks: dict[str, PeriodAsk] = field(default_factory=dict)

    def period_at(self, now: datetime) -> BillingPeriod:
        """The billing period containing `now` (kept until it ends)."""
        if self.period is None or not self.period.start <= now < self.period.end:
            self.period = period_for(now, self.timezone, self.anchor_day)
            self.buckets = list(period_buckets(self.period, self.timezone))
            self.asks = {}
        return self.period

    def period_ask(self, metric_name: str, aggregation: str, now: datetime) -> PeriodAsk:
        """The live view's question for the meter's value in the period containing `now`."""
        period = self.period_at(now)
        ask = self.asks.get(metric_name)
        if ask is None:
            start, end = int(period.start.timestamp()), int(period.end.timestamp())
            ask = self.asks[metric_name] = PeriodAsk(metric_name, aggregation, start, end, self.buckets)
        return ask


@functools.lru_cache(maxsize=1024)
def period_buckets(period: BillingPeriod, tz_name: str) -> tuple[int, ...]:
    """A period's local hours (shared by every customer of that zone and period)."""
    return tuple(hour_buckets(period.start, period.end, tz_name))


async def load_profiles(
    session: AsyncSession, customer_ids: Sequence[str], now: datetime
) -> dict[str, Profile]:
    """The profiles of those of `customer_ids` that exist: zone, the anchor day and plan of
    the subscription in force at `now` (none: calendar months, no plan limits), limits."""
    zones = await catalog_store.names_and_zones(session, customer_ids)
    subs = await subscriptions_by_customer(session, list(zones), now, now + timedelta(microseconds=1))
    current = {cid: max(mine, key=lambda s: s.starts_at) for cid, mine in subs.items() if mine}
    plan_rules = await repository.plan_rules(session, {s.plan_id for s in current.values()})
    own_rules = await repository.customer_rules(session, zones)
    loaded = time.monotonic()
    out: dict[str, Profile] = {}
    for cid, (_, tz) in zones.items():
        sub = current.get(cid)
        plan_id = sub.plan_id if sub else None
        limits = limits_in_force(plan_rules.get(plan_id or "", []), own_rules.get(cid, []))
        out[cid] = Profile(cid, tz, sub.anchor_day if sub else 1, plan_id, limits, loaded)
    return out


class EntitlementBook:
    """Customers' profiles and the meters' aggregations, cached per web process."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], live: LiveStore, ttl_s: float) -> None:
        self.sessions = sessions
        self.live = live
        self._ttl_s = ttl_s
        self._profiles: dict[str, Profile] = {}
        self._aggregations: dict[str, str] = {}
        self._meters_loaded_at = float("-inf")
        self._built_checked_at = float("-inf")
        self._built = False
        self._version: Any = None
        self._version_checked_at = float("-inf")
        self._changed_at = float("-inf")

    def invalidate(self, customer_id: str | None = None) -> None:
        """Forget one customer's profile (None: every profile) in this process only."""
        self._changed_at = time.monotonic()
        if customer_id is None:
            self._profiles.clear()
        else:
            self._profiles.pop(customer_id, None)

    async def changed(self, customer_id: str | None = None) -> None:
        """After a change of limits, plans' limits or subscriptions (before or after its
        commit): forget the profiles here at once, and in every other web process within
        `_VERSION_CHECK_S`. A profile read around the change is read again a second later."""
        self.invalidate(customer_id)
        with contextlib.suppress(RedisError, OSError):  # then the other processes' TTL applies
            await self.live.redis.incr(VERSION_KEY)

    async def _follow_changes(self) -> None:
        if time.monotonic() - self._version_checked_at < _VERSION_CHECK_S:
            return
        self._version_checked_at = time.monotonic()
        try:
            version = await self.live.redis.get(VERSION_KEY)
        except (RedisError, OSError):
            return
        if version != self._version:
            self._version = version
            self.invalidate()

    def _stale(self, profile: Profile | None, now: datetime, clock: float) -> bool:
        if profile is None:
            return True
        if profile.period is not None and now >= profile.period.end:
            return True  # a new period: its subscription (plan, anchor) may be another
        settling = profile.loaded_at < self._changed_at + _SETTLING_S
        return clock - profile.loaded_at > (min(_SETTLING_S, self._ttl_s) if settling else self._ttl_s)

    async def profiles(self, customer_ids: set[str], now: datetime) -> dict[str, Profile]:
        """Profiles of the known customers among `customer_ids`, loading the stale ones in one go."""
        await self._follow_changes()
        clock = time.monotonic()
        stale = [c for c in customer_ids if self._stale(self._profiles.get(c), now, clock)]
        if stale:
            async with self.sessions() as session:
                loaded = await load_profiles(session, stale, now)
            for cid in stale:
                if cid in loaded:
                    self._profiles[cid] = loaded[cid]
                else:
                    self._profiles.pop(cid, None)
        return {c: self._profiles[c] for c in customer_ids if c in self._profiles}

    async def aggregations(
        self, metric_names: set[str] | None = None, *, fresh: bool = False
    ) -> dict[str, str]:
        """Aggregation of each known meter among `metric_names` (None: every meter; meters
        never change once created, so a name not known yet is what makes a check read them
        again). `fresh` reads them now: a listing of every meter must show one created a
        moment ago, and names none to miss."""
        stale = fresh or time.monotonic() - self._meters_loaded_at > self._ttl_s
        if stale or not (metric_names or set()) <= self._aggregations.keys():
            async with self.sessions() as session:
                self._aggregations = await catalog_store.meter_aggregations(session)
            self._meters_loaded_at = time.monotonic()
        if metric_names is None:
            return dict(self._aggregations)
        return {m: self._aggregations[m] for m in metric_names if m in self._aggregations}

    async def live_view_built(self) -> bool:
        if time.monotonic() - self._built_checked_at > _BUILT_CHECK_S:
            self._built = bool(await self.live.redis.exists(keys.BUILT_KEY))
            self._built_checked_at = time.monotonic()
        return self._built


def _ms(delta: timedelta) -> int:
    return max(0, int(delta.total_seconds() * 1000))


async def check(book: EntitlementBook, asks: Sequence[CheckIn], *, now: datetime) -> list[EntitlementOut]:
    """The answer to each ask, in order: one Redis round trip for them all (two for meters
    whose period accumulator is not filled yet). Unknown customers and meters are answered
    with `error` and `allowed: false`."""
    profiles = await book.profiles({a.customer_id for a in asks}, now)
    aggregations = await book.aggregations({a.meter for a in asks})
    wanted: list[tuple[str, PeriodAsk]] = []
    slots: list[int | str] = []
    for ask in asks:
        profile = profiles.get(ask.customer_id)
        aggregation = aggregations.get(ask.meter)
        if profile is None:
            slots.append(f"unknown customer {ask.customer_id!r}")
            continue
        if aggregation is None:
            slots.append(f"unknown meter {ask.meter!r}")
            continue
        slots.append(len(wanted))
        wanted.append((ask.customer_id, profile.period_ask(ask.meter, aggregation, now)))
    as_of = now
    lag_ms = 0
    if await book.live_view_built():
        values = await book.live.period_values(wanted)
    else:
        values, through = await _billed_values(book, wanted, profiles, now)
        as_of, lag_ms = through, _ms(now - through)
    out: list[EntitlementOut] = []
    for ask, slot in zip(asks, slots, strict=True):
        if isinstance(slot, str):
            out.append(_unanswered(ask, slot, as_of))
            continue
        profile = profiles[ask.customer_id]
        period = profile.period_at(now)
        given = answer(wanted[slot][1].aggregation, values[slot], profile.limits.get(ask.meter), ask.amount)
        out.append(
            EntitlementOut(
                customer_id=ask.customer_id,
                meter=ask.meter,
                allowed=given.allowed,
                used=exact(given.used),
                limit=None if given.limit is None else exact(given.limit),
                remaining=None if given.remaining is None else exact(given.remaining),
                enforcement=given.enforcement,
                exceeded=given.exceeded,
                period_start=period.start,
                period_end=period.end,
                as_of=as_of,
                lag_ms=lag_ms,
            )
        )
    return out


def _unanswered(ask: CheckIn, problem: str, as_of: datetime) -> EntitlementOut:
    return EntitlementOut(
        customer_id=ask.customer_id,
        meter=ask.meter,
        allowed=False,
        used="0",
        limit=None,
        remaining=None,
        enforcement=None,
        exceeded=False,
        period_start=None,
        period_end=None,
        as_of=as_of,
        lag_ms=0,
        error=problem,
    )


async def _billed_values(
    book: EntitlementBook, wanted: list[tuple[str, PeriodAsk]], profiles: dict[str, Profile], now: datetime
) -> tuple[list[Decimal], datetime]:
    """The values from Postgres (the live view is being rebuilt), and the instant they are
    complete through."""
    through = datetime.fromtimestamp(await book.live.watermark_ms() / 1000, tz=now.tzinfo)
    values: list[Decimal] = []
    async with book.sessions() as session:
        for customer_id, ask in wanted:
            period = profiles[customer_id].period_at(now)
            meter = await get_meter(session, ask.metric_name)
            assert meter is not None  # meters are never deleted
            usage = await billed_usage(
                session,
                customer_id=customer_id,
                tz_name=profiles[customer_id].timezone,
                meter=meter,
                start=period.start,
                end=period.end,
                granularity="day",
            )
            values.append(usage.total)
    return values, min(through, now)


# --- editing limits


def _actor_detail(rules: Sequence[object]) -> list[dict[str, str]]:
    return [
        {k: str(getattr(r, k)) for k in ("metric_name", "quantity", "enforcement") if hasattr(r, k)}
        for r in rules
    ]


# Meters whose value is a number of events or of distinct values: a limit on them is whole.
WHOLE_AGGREGATIONS = frozenset({"count", "unique_count"})


async def _limited_meter(session: AsyncSession, name: str, quantity: Decimal | None, *, prefix: str) -> None:
    """Invalid unless `name` is a meter, and a limit on a counting meter is a whole number
    (12.5 calls would silently mean 12)."""
    meter = await get_meter(session, name)
    if meter is None:
        raise Invalid(f"{prefix}unknown meter {name!r}")
    if (
        quantity is not None
        and meter.aggregation in WHOLE_AGGREGATIONS
        and quantity != quantity.to_integral_value()
    ):
        raise Invalid(f"{prefix}{name} is a count: give a whole number")


async def plan_limits(session: AsyncSession, plan_id: str) -> list[PlanRule]:
    await billing_plans.get_plan(session, plan_id)  # NotFound
    return (await repository.plan_rules(session, [plan_id])).get(plan_id, [])


async def set_plan_limits(
    session: AsyncSession, plan_id: str, data: PlanLimits, *, actor: str
) -> list[PlanRule]:
    """Replace the plan's limits. Customers' own limits above a lowered plan limit are held to
    it when checked (`limits_in_force`)."""
    await billing_plans.get_plan(session, plan_id)
    names = [item.meter for item in data.limits]
    if len(set(names)) != len(names):
        raise Invalid("limits: a meter appears twice")
    for item in data.limits:
        await _limited_meter(session, item.meter, item.quantity, prefix="limits: ")
    before = (await repository.plan_rules(session, [plan_id])).get(plan_id, [])
    rules = [PlanRule(i.meter, i.quantity, i.enforcement, i.customer_may_lower) for i in data.limits]
    await repository.replace_plan_rules(session, plan_id, rules)
    await audit.record(
        session,
        user_id=None,
        actor=actor,
        action="plan.entitlements",
        object_type="plan",
        object_id=plan_id,
        detail={"before": _actor_detail(before), "after": _actor_detail(rules)},
    )
    return rules


async def limits_for(session: AsyncSession, customer_id: str, now: datetime) -> Profile:
    """The customer's profile read now (pages and the API's GET), NotFound for no customer."""
    profile = (await load_profiles(session, [customer_id], now)).get(customer_id)
    if profile is None:
        raise NotFound(f"no customer {customer_id!r}")
    return profile


async def _plan_rule(session: AsyncSession, profile: Profile, metric_name: str) -> PlanRule | None:
    if profile.plan_id is None:
        return None
    rules = (await repository.plan_rules(session, [profile.plan_id])).get(profile.plan_id, [])
    return next((r for r in rules if r.metric_name == metric_name), None)


async def set_customer_limits(
    session: AsyncSession, customer_id: str, data: CustomerLimits, *, actor: str, now: datetime
) -> list[CustomerRule]:
    """Staff replace a customer's own limits: each within its plan's limit (and hard where the
    plan's is hard)."""
    profile = await limits_for(session, customer_id, now)
    names = [item.meter for item in data.limits]
    if len(set(names)) != len(names):
        raise Invalid("limits: a meter appears twice")
    before = (await repository.customer_rules(session, [customer_id])).get(customer_id, [])
    # A limit staff leave as the customer's users set it stays theirs.
    theirs = {(r.metric_name, r.quantity, r.enforcement) for r in before if r.set_by == "customer"}
    rules: list[CustomerRule] = []
    for item in data.limits:
        await _limited_meter(session, item.meter, item.quantity, prefix="limits: ")
        problem = staff_limit_error(
            await _plan_rule(session, profile, item.meter), item.quantity, item.enforcement
        )
        if problem:
            raise Invalid(f"limits: {item.meter}: {problem}")
        set_by: SetBy = "customer" if (item.meter, item.quantity, item.enforcement) in theirs else "staff"
        rules.append(CustomerRule(item.meter, item.quantity, item.enforcement, set_by))
    await repository.replace_customer_rules(session, customer_id, rules)
    await audit.record(
        session,
        user_id=None,
        actor=actor,
        action="customer.entitlements",
        object_type="customer",
        object_id=customer_id,
        customer_id=customer_id,
        detail={"before": _actor_detail(before), "after": _actor_detail(rules)},
    )
    return rules


async def set_own_limit(
    session: AsyncSession,
    customer_id: str,
    metric_name: str,
    quantity: Decimal | None,
    *,
    user_id: int,
    actor: str,
    now: datetime,
) -> None:
    """A customer's user lowers its limit on a meter (None: back to the plan's), where the
    plan lets customers do so."""
    profile = await limits_for(session, customer_id, now)
    plan_rule = await _plan_rule(session, profile, metric_name)
    own = (await repository.customer_rules(session, [customer_id])).get(customer_id, [])
    if any(r.metric_name == metric_name and r.set_by == "staff" for r in own):
        # Staff's limit stays until staff change it: a customer lowers only its plan's.
        raise Invalid("your account manager set this limit: ask them to change it")
    if quantity is None:
        if plan_rule is None or not plan_rule.customer_may_lower:
            raise Invalid("your plan does not let you change this limit")
        await repository.clear_customer_rule(session, customer_id, metric_name)
    else:
        await _limited_meter(session, metric_name, quantity, prefix="")
        problem = customer_limit_error(plan_rule, quantity)
        if problem or plan_rule is None:
            raise Invalid(problem or "your plan does not let you change this limit")
        await repository.set_customer_rule(
            session, customer_id, CustomerRule(metric_name, quantity, plan_rule.enforcement, "customer")
        )
    await audit.record(
        session,
        user_id=user_id,
        actor=actor,
        action="customer.entitlement.own",
        object_type="customer",
        object_id=customer_id,
        customer_id=customer_id,
        detail={"meter": metric_name, "limit": None if quantity is None else str(quantity)},
    )


# --- crossings


@dataclass(frozen=True, slots=True)
class Crossing:
    """A limit the customer reached in its current period, recorded just now."""

    customer_id: str
    metric_name: str
    period: BillingPeriod
    limit: Limit
    used: Decimal


async def record_crossings(session: AsyncSession, customer_id: str, *, now: datetime) -> list[Crossing]:
    """Record each limit the customer's current period has reached, in Postgres' numbers
    (what the bill will say), once per limit and period: the crossings new in this call.
    Run by the alert evaluation after usage is persisted, in its transaction."""
    profile = (await load_profiles(session, [customer_id], now)).get(customer_id)
    if profile is None or not profile.limits:
        return []
    period = profile.period_at(now)
    out: list[Crossing] = []
    for metric_name, limit in sorted(profile.limits.items()):
        meter = await get_meter(session, metric_name)
        if meter is None:
            continue
        usage = await billed_usage(
            session,
            customer_id=customer_id,
            tz_name=profile.timezone,
            meter=meter,
            start=period.start,
            end=period.end,
            granularity="day",
        )
        if usage.total < limit.quantity:
            continue
        recorded = await repository.record_crossing(
            session,
            customer_id=customer_id,
            metric_name=metric_name,
            period_start=period.start,
            period_end=period.end,
            quantity=limit.quantity,
            enforcement=limit.enforcement,
            used=usage.total,
            crossed_at=now,
        )
        if recorded:
            out.append(Crossing(customer_id, metric_name, period, limit, usage.total))
            await announce(
                session,
                "entitlement.exceeded",
                {
                    "customerId": customer_id,
                    "meter": metric_name,
                    "periodStart": period.start,
                    "periodEnd": period.end,
                    "limit": limit.quantity,
                    "used": usage.total,
                    "enforcement": limit.enforcement,
                },
                customer_id=customer_id,
                now=now,
            )
    return out
