"""What the limits pages show: each limit in force with this period's use of it, the staff
form's rows (every meter, the plan's limit beside the customer's own) and the plan form's
rows, and how a typed quantity is read. Reads only; the changes go through
`portal.entitlements.service`.

The used value comes from the entitlement check (the live period accumulators, as the API
answers); the limit, its source and the remaining quantity from the limits read now in the
request's transaction, so a page shown right after a change says the new number even where
another web process still holds the previous limit for a few seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Literal, TypeVar

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog.schemas import Customer, Meter
from portal.catalog.service import list_meters
from portal.entitlements import repository as entitlement_store
from portal.entitlements import service as entitlements
from portal.entitlements.limits import CustomerRule, Enforcement, Limit, PlanRule, SetBy, answer
from portal.entitlements.schemas import CheckIn, LimitIn, check_quantity
from portal.infrastructure.typed_numbers import number_hint, typed_decimal
from portal.pages.formatting import measure
from portal.usage.combine import exact

LimitBody = TypeVar("LimitBody", bound=LimitIn)

ENFORCEMENT_TEXT = {
    "hard": "Hard limit: usage beyond it is refused",
    "soft": "Soft limit: you are told, nothing is refused",
}
# Staff see the same rule in their words (it is about the customer, not to it).
ENFORCEMENT_STAFF_TEXT = {
    "hard": "Hard: usage beyond it is refused",
    "soft": "Soft: the customer is told, nothing is refused",
}
# What "used" is for each aggregation (a peak, not a sum, for a max meter).
USED_WORDS = {
    "sum": "Used this period",
    "count": "Used this period",
    "max": "Peak this period",
    "latest": "Latest value",
    "unique_count": "Distinct values this period",
}


@dataclass(frozen=True, slots=True)
class LimitView:
    """One limit in force for a customer, and this period's use of it."""

    metric_name: str
    unit: str
    aggregation: str
    limit: Decimal
    enforcement: Enforcement
    source: Literal["plan", "customer"]
    set_by: SetBy | None  # who set the customer's own limit (None: the plan's applies)
    plan_quantity: Decimal | None
    customer_may_lower: bool
    used: Decimal
    remaining: Decimal
    reached: bool
    period_start: datetime | None
    period_end: datetime | None

    @property
    def percent(self) -> int:
        """Used as a whole percentage of the limit, rounded down (never 100 before it is
        reached); 100 for a limit of 0."""
        if self.limit <= 0:
            return 100
        return int((self.used * 100 / self.limit).to_integral_value(rounding=ROUND_FLOOR))

    # The <meter> bar's attributes (plain decimals): full at the limit (a limit of 0 shows
    # full), amber from 80 %, red at it.
    @property
    def bar(self) -> dict[str, str]:
        top = self.limit if self.limit > 0 else Decimal(1)
        value = min(self.used, self.limit) if self.limit > 0 else top
        return {
            "max": format(top, "f"),
            "value": format(value, "f"),
            "low": format(top * Decimal("0.8"), "f"),
            "high": format(top * Decimal("0.999"), "f"),
        }

    @property
    def customer_may_change(self) -> bool:
        """A customer's own user may lower it (or go back to the plan's): the plan allows it,
        and the limit is not one the customer's account manager set."""
        return self.customer_may_lower and self.plan_quantity is not None and self.set_by != "staff"

    @property
    def used_words(self) -> str:
        return USED_WORDS.get(self.aggregation, "Used this period")


@dataclass(frozen=True, slots=True)
class StaffRow:
    """One meter on the staff form: its plan's limit, the customer's own, the one in force."""

    meter: Meter
    plan: PlanRule | None
    own: CustomerRule | None
    in_force: LimitView | None


@dataclass(frozen=True, slots=True)
class CustomerLimits:
    customer: Customer
    plan_id: str | None
    views: list[LimitView]
    meters: list[Meter]
    plan_rules: dict[str, PlanRule]
    own_rules: dict[str, CustomerRule]

    def view(self, metric_name: str) -> LimitView | None:
        return next((v for v in self.views if v.metric_name == metric_name), None)

    @property
    def staff_rows(self) -> list[StaffRow]:
        return [
            StaffRow(
                meter,
                self.plan_rules.get(meter.metric_name),
                self.own_rules.get(meter.metric_name),
                self.view(meter.metric_name),
            )
            for meter in self.meters
        ]

    @property
    def period(self) -> tuple[datetime, datetime] | None:
        """This billing period, as the checks count it (None: no limit to count against)."""
        for v in self.views:
            if v.period_start is not None and v.period_end is not None:
                return v.period_start, v.period_end
        return None


async def customer_limits(
    db: AsyncSession, book: entitlements.EntitlementBook, customer: Customer, *, now: datetime
) -> CustomerLimits:
    """The customer's limits in force at `now` (UTC), each with this period's use (one
    entitlement check for them all), and the rules behind them."""
    profile = await entitlements.limits_for(db, customer.id, now)
    own = (await entitlement_store.customer_rules(db, [customer.id])).get(customer.id, [])
    plan: list[PlanRule] = []
    if profile.plan_id is not None:
        plan = (await entitlement_store.plan_rules(db, [profile.plan_id])).get(profile.plan_id, [])
    meters = await list_meters(db)
    by_name = {m.metric_name: m for m in meters}
    names = sorted(n for n in profile.limits if n in by_name)
    answers = (
        await entitlements.check(book, [CheckIn(customer_id=customer.id, meter=n) for n in names], now=now)
        if names
        else []
    )
    own_by_name = {r.metric_name: r for r in own}
    views = []
    for name, out in zip(names, answers, strict=True):
        limit = profile.limits[name]
        meter = by_name[name]
        own_rule = own_by_name.get(name) if limit.source == "customer" else None
        used = Decimal(out.used)
        given = answer(meter.aggregation, used, limit, None)
        views.append(
            LimitView(
                metric_name=name,
                unit=meter.unit,
                aggregation=meter.aggregation,
                limit=limit.quantity,
                enforcement=limit.enforcement,
                source=limit.source,
                set_by=own_rule.set_by if own_rule is not None else None,
                plan_quantity=limit.plan_quantity,
                customer_may_lower=limit.customer_may_lower,
                used=used,
                remaining=given.remaining if given.remaining is not None else Decimal(0),
                reached=given.exceeded,
                period_start=out.period_start,
                period_end=out.period_end,
            )
        )
    return CustomerLimits(
        customer=customer,
        plan_id=profile.plan_id,
        views=views,
        meters=meters,
        plan_rules={r.metric_name: r for r in plan},
        own_rules=own_by_name,
    )


@dataclass(frozen=True, slots=True)
class PlanRow:
    meter: Meter
    rule: PlanRule | None


async def plan_rows(db: AsyncSession, plan_id: str) -> list[PlanRow]:
    """Every meter with the plan's limit on it (None: none); NotFound for no plan."""
    rules = {r.metric_name: r for r in await entitlements.plan_limits(db, plan_id)}
    return [PlanRow(m, rules.get(m.metric_name)) for m in await list_meters(db)]


def read_quantity(text: str, unit: str) -> tuple[Decimal | None, str | None]:
    """A limit as typed ("10000", "10,000", "2.5"): the quantity, or the problem in words."""
    cleaned = text.strip().replace(" ", "")
    example = measure(Decimal(5000), unit)
    if not cleaned:
        return None, f"Enter a number, such as {example}."
    if cleaned.startswith("-"):
        return None, "A limit cannot be below 0."
    quantity = typed_decimal(cleaned)
    if quantity is None:
        if (hint := number_hint(cleaned)) is not None:
            return None, f"{hint[0].upper()}{hint[1:]}."
        return None, f"Enter a number, such as {example} (digits, and a point for decimals)."
    try:
        check_quantity("limit", quantity)
    except ValueError as exc:
        said = str(exc).removeprefix("limit: ")
        if "10^20" in said:
            return None, "That number is too large for a limit."
        if "decimal places" in said:
            return None, "Use at most 12 decimal places."
        return None, f"The limit {said}."
    return quantity, None


def limit_body(
    kind: type[LimitBody],
    meter: str,
    quantity: Decimal,
    enforcement: Enforcement,
    *,
    customer_may_lower: bool | None = None,
) -> LimitBody:
    """One limit as the API takes it (`LimitIn` or `PlanLimitIn`), the quantity as its exact
    text: built the way a request body is, so the schema's own checks run on it."""
    fields: dict[str, object] = {"meter": meter, "limit": exact(quantity), "enforcement": enforcement}
    if customer_may_lower is not None:
        fields["customerMayLower"] = customer_may_lower
    return msgspec.convert(fields, kind)


@dataclass(frozen=True, slots=True)
class MeterLimit:
    """The limit line on the overview's meter card: '72% of the 10,000 calls limit (hard)'."""

    quantity: Decimal
    enforcement: Enforcement
    percent: int
    reached: bool


def meter_limit(total: str, limit: Limit | None) -> MeterLimit | None:
    """The card's limit line for a meter whose period value is `total` (None: no limit)."""
    if limit is None:
        return None
    used = Decimal(total)
    percent = (
        100
        if limit.quantity <= 0
        else int((used * 100 / limit.quantity).to_integral_value(rounding=ROUND_FLOOR))
    )
    return MeterLimit(limit.quantity, limit.enforcement, percent, used >= limit.quantity)
