"""The rules of entitlements, pure: which limit applies to a customer, what a customer may set,
and the answer to "may this customer use more?"."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Context, Decimal
from typing import Literal

Enforcement = Literal["hard", "soft"]
SetBy = Literal["staff", "customer"]


@dataclass(frozen=True, slots=True)
class Limit:
    """The limit in force on one meter for one customer, and where it comes from."""

    metric_name: str
    quantity: Decimal
    enforcement: Enforcement
    source: Literal["plan", "customer"]
    # The plan's limit (None: the plan sets none) and whether customers may lower it.
    plan_quantity: Decimal | None = None
    customer_may_lower: bool = False


@dataclass(frozen=True, slots=True)
class PlanRule:
    metric_name: str
    quantity: Decimal
    enforcement: Enforcement
    customer_may_lower: bool


@dataclass(frozen=True, slots=True)
class CustomerRule:
    metric_name: str
    quantity: Decimal
    enforcement: Enforcement
    set_by: SetBy


def limits_in_force(plan: list[PlanRule], own: list[CustomerRule]) -> dict[str, Limit]:
    """Per meter, the customer's own limit where it set one, else its plan's. A customer's limit
    is kept within the plan's (a plan lowered later lowers it too); a plan's hard limit stays hard."""
    by_plan = {r.metric_name: r for r in plan}
    out = {
        r.metric_name: Limit(
            r.metric_name, r.quantity, r.enforcement, "plan", r.quantity, r.customer_may_lower
        )
        for r in plan
    }
    for rule in own:
        ceiling = by_plan.get(rule.metric_name)
        quantity, enforcement = rule.quantity, rule.enforcement
        if ceiling is not None:
            quantity = min(quantity, ceiling.quantity)
            if ceiling.enforcement == "hard":
                enforcement = "hard"
        out[rule.metric_name] = Limit(
            rule.metric_name,
            quantity,
            enforcement,
            "customer",
            ceiling.quantity if ceiling else None,
            ceiling.customer_may_lower if ceiling else False,
        )
    return out


def staff_limit_error(plan_rule: PlanRule | None, quantity: Decimal, enforcement: Enforcement) -> str | None:
    """Why staff may not give a customer this limit (None: they may): within the plan's limit,
    and not soft where the plan's is hard."""
    if plan_rule is None:
        return None
    if quantity > plan_rule.quantity:
        return f"above the plan's limit of {plan_rule.quantity}"
    if plan_rule.enforcement == "hard" and enforcement == "soft":
        return "the plan's limit is hard: a customer's own limit on it is hard too"
    return None


def customer_limit_error(plan_rule: PlanRule | None, quantity: Decimal) -> str | None:
    """Why a customer's own user may not set this limit (None: they may): only on a meter whose
    plan limit lets customers lower it, and only down to or below it."""
    if plan_rule is None or not plan_rule.customer_may_lower:
        return "your plan does not let you change this limit"
    if quantity > plan_rule.quantity:
        return f"your limit cannot be above your plan's limit of {plan_rule.quantity.normalize():f}"
    return None


@dataclass(slots=True)  # not frozen: a batch builds thousands, and frozen init is slower
class Answer:
    allowed: bool
    used: Decimal
    limit: Decimal | None
    remaining: Decimal | None
    enforcement: Enforcement | None
    exceeded: bool


# Limits, quantities and usage have up to 20 + 12 digits, past the default context's 28: sums
# and differences are computed exactly in a wider one (a hard limit of 99999999999999999999
# let a quantity with a 12th decimal through, rounded to fit).
_EXACT = Context(prec=64)


def after_use(aggregation: str, used: Decimal, quantity: Decimal) -> Decimal:
    """The period's value once `quantity` more is used: added for sums, counts (events) and
    distinct counts (new values), the larger for a max, the new value for a latest."""
    if aggregation == "max":
        return max(used, quantity)
    if aggregation == "latest":
        return quantity
    return _EXACT.add(used, quantity)


def answer(aggregation: str, used: Decimal, limit: Limit | None, quantity: Decimal | None) -> Answer:
    """May the customer use more? Without `quantity`: while the period's value is below the
    limit. With it: if using it keeps the value within the limit. A soft limit always allows
    and only says `exceeded`; no limit allows everything."""
    if limit is None:
        return Answer(True, used, None, None, None, False)
    exceeded = used >= limit.quantity
    fits = not exceeded if quantity is None else after_use(aggregation, used, quantity) <= limit.quantity
    remaining = max(_EXACT.subtract(limit.quantity, used), Decimal(0))
    return Answer(
        allowed=fits or limit.enforcement == "soft",
        used=used,
        limit=limit.quantity,
        remaining=remaining,
        enforcement=limit.enforcement,
        exceeded=exceeded,
    )
