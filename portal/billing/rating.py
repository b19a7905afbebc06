"""Rating: usage quantities and a plan in, priced line items out. Pure functions.

The documented rounding rule (DESIGN invariant 5): every amount is computed exactly
with Decimal, then rounded once, half-up, to the currency's minor unit, at exactly these
steps and nowhere else:
1. each line item (a usage charge, a prorated flat fee, a minimum-commitment true-up);
2. each discount;
3. nothing else: subtotal, discounts, credits and total are sums of rounded amounts.

Order of operations within a segment (the part of a period spent on one plan):
usage and flat lines → true-up to the prorated minimum commitment → percentage discounts
(each on the segment subtotal, not compounded) → fixed discounts (prorated) → the
discounts together never exceed the segment subtotal. Then, over the whole invoice,
prepaid credit is drawn down from what is left, and the rest is the total.
Included quantities and tiers are not prorated: each segment gets its plan's whole tiers.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_HALF_UP,
    Context,
    Decimal,
    DivisionByZero,
    InvalidOperation,
    Overflow,
    localcontext,
)
from typing import Literal, ParamSpec, TypeVar

from portal.billing.currencies import minor_units
from portal.billing.pdf.text import money_text
from portal.billing.schemas import Charge, Discount, Plan

ZERO = Decimal(0)
# Rating arithmetic runs in this context: 28 digits (Python's default) would silently
# round a 12-decimal price times a large quantity. Nothing in rating may be inexact.
P = ParamSpec("P")
R = TypeVar("R")
EXACT = Context(prec=120, traps=[InvalidOperation, DivisionByZero, Overflow])
LineKind = Literal["usage", "flat", "minimum"]


def exact(function: Callable[P, R]) -> Callable[P, R]:
    """Run `function` with the EXACT decimal context."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with localcontext(EXACT):
            return function(*args, **kwargs)

    return wrapper


def round_money(amount: Decimal, currency: str) -> Decimal:
    """`amount` rounded half-up to the currency's minor unit (2.345 USD → 2.35)."""
    return amount.quantize(Decimal(1).scaleb(-minor_units(currency)), rounding=ROUND_HALF_UP, context=EXACT)


@dataclass(frozen=True, slots=True)
class Segment:
    """Part of a billing period spent on one plan, with the usage metered in it.

    `fraction` is the segment's share of the whole period's length (1 when the plan
    covered the whole period); `quantities` maps each usage charge's key to its metered
    quantity in the segment (missing means 0)."""

    plan: Plan
    start: datetime
    end: datetime
    fraction: Decimal
    quantities: Mapping[str, Decimal]
    discounts: tuple[Discount, ...] = ()


@dataclass(frozen=True, slots=True)
class TierLine:
    """The part of a quantity priced by one tier: units in (lower, upper]."""

    lower: Decimal
    upper: Decimal | None
    quantity: Decimal
    unit_price: Decimal
    flat_fee: Decimal
    amount: Decimal  # exact, before the line is rounded


@dataclass(frozen=True, slots=True)
class LineItem:
    kind: LineKind
    charge_key: str | None
    meter: str | None
    description: str
    quantity: Decimal  # metered quantity (usage), 1 (flat, minimum)
    included_quantity: Decimal
    billable_quantity: Decimal
    unit_price: Decimal | None  # None when tiers explain the amount (graduated)
    tiers: tuple[TierLine, ...]
    proration: Decimal
    exact_amount: Decimal
    amount: Decimal  # rounded to the minor unit
    plan_id: str
    segment_start: datetime
    segment_end: datetime


@dataclass(frozen=True, slots=True)
class DiscountLine:
    description: str
    kind: Literal["percentage", "fixed"]
    percent: Decimal | None
    amount: Decimal  # rounded, positive: what is taken off
    plan_id: str
    segment_start: datetime
    segment_end: datetime
    # The share of the period a fixed discount was prorated to (a percentage is of charges
    # already prorated: 1), printed beside it as a prorated fee's is.
    proration: Decimal = Decimal(1)


@dataclass(frozen=True, slots=True)
class Rating:
    currency: str
    lines: tuple[LineItem, ...]
    discounts: tuple[DiscountLine, ...]
    subtotal: Decimal
    discount_total: Decimal
    credits_applied: Decimal
    total: Decimal
    quantities: Mapping[str, Decimal] = field(default_factory=dict)


@exact
def graduated(tiers: Sequence[TierLineSpec], billable: Decimal) -> tuple[TierLine, ...]:
    """Each tier prices the units inside it; a tier's flat fee applies once it is reached."""
    lines: list[TierLine] = []
    lower = ZERO
    for up_to, unit_price, flat_fee in tiers:
        if billable <= lower and lines:
            break
        upper = billable if up_to is None else min(billable, up_to)
        quantity = max(upper - lower, ZERO)
        reached = billable > lower
        fee = flat_fee if reached else ZERO
        lines.append(TierLine(lower, up_to, quantity, unit_price, fee, quantity * unit_price + fee))
        if up_to is None or billable <= up_to:
            break
        lower = up_to
    return tuple(lines)


@exact
def volume(tiers: Sequence[TierLineSpec], billable: Decimal) -> TierLine:
    """The whole quantity at the price of the tier it falls in (upper bounds inclusive)."""
    lower = ZERO
    for up_to, unit_price, flat_fee in tiers:
        if up_to is None or billable <= up_to:
            fee = flat_fee if billable > 0 else ZERO
            return TierLine(lower, up_to, billable, unit_price, fee, billable * unit_price + fee)
        lower = up_to
    raise AssertionError("tiers end open-ended")  # checked when the plan was created


TierLineSpec = tuple[Decimal | None, Decimal, Decimal]


@exact
def rate_usage(
    charge: Charge, quantity: Decimal, *, currency: str, plan_id: str, start: datetime, end: datetime
) -> LineItem:
    """One usage charge's line for a metered quantity (negative quantities bill nothing)."""
    billable = max(quantity - charge.included_quantity, ZERO)
    specs: list[TierLineSpec] = [(t.up_to, t.unit_price, t.flat_fee) for t in charge.tiers]
    tiers: tuple[TierLine, ...] = ()
    unit_price: Decimal | None
    if charge.model == "per_unit":
        assert charge.unit_price is not None
        unit_price = charge.unit_price
        exact = billable * unit_price
    elif charge.model == "package":
        assert charge.package_size is not None and charge.package_price is not None
        packages = (billable / charge.package_size).to_integral_value(rounding=ROUND_CEILING)
        unit_price = charge.package_price
        exact = packages * charge.package_price
    elif charge.model == "graduated":
        tiers = graduated(specs, billable)
        unit_price = None
        exact = sum((t.amount for t in tiers), ZERO)
    elif charge.model == "volume":
        tier = volume(specs, billable)
        tiers = (tier,)
        unit_price = tier.unit_price
        exact = tier.amount
    else:
        raise ValueError(f"charge {charge.key}: {charge.model} is not a usage charge")
    return LineItem(
        kind="usage",
        charge_key=charge.key,
        meter=charge.meter,
        description=charge.description or charge.meter or charge.key,
        quantity=quantity,
        included_quantity=charge.included_quantity,
        billable_quantity=billable,
        unit_price=unit_price,
        tiers=tiers,
        proration=Decimal(1),
        exact_amount=exact,
        amount=round_money(exact, currency),
        plan_id=plan_id,
        segment_start=start,
        segment_end=end,
    )


@exact
def rate_flat(
    charge: Charge, *, fraction: Decimal, currency: str, plan_id: str, start: datetime, end: datetime
) -> LineItem:
    """A recurring fee, prorated by the segment's share of the period."""
    assert charge.amount is not None
    exact = charge.amount * fraction
    return LineItem(
        kind="flat",
        charge_key=charge.key,
        meter=None,
        description=charge.description or charge.key,
        quantity=Decimal(1),
        included_quantity=ZERO,
        billable_quantity=Decimal(1),
        unit_price=charge.amount,
        tiers=(),
        proration=fraction,
        exact_amount=exact,
        amount=round_money(exact, currency),
        plan_id=plan_id,
        segment_start=start,
        segment_end=end,
    )


def minimum_description(full: Decimal, minimum: Decimal, fraction: Decimal, currency: str) -> str:
    """The true-up line's words, amounts as the invoice writes them ("JPY 14,000"): the
    minimum it tops up to, and for part of a period, the plan's minimum it is prorated from
    (the line's share of the period is printed beside it, from its dates)."""
    if fraction == 1:
        return f"Minimum commitment true-up (minimum {money_text(minimum, currency)})"
    return (
        f"Minimum commitment true-up (minimum {money_text(minimum, currency)}, "
        f"prorated from {money_text(full, currency)})"
    )


@exact
def rate_segment(segment: Segment, currency: str) -> tuple[list[LineItem], list[DiscountLine]]:
    """The lines and discounts of one segment (see the module docstring for the order)."""
    plan, start, end = segment.plan, segment.start, segment.end
    lines: list[LineItem] = []
    for charge in plan.charges:
        if charge.model == "flat":
            lines.append(
                rate_flat(
                    charge,
                    fraction=segment.fraction,
                    currency=currency,
                    plan_id=plan.id,
                    start=start,
                    end=end,
                )
            )
        else:
            lines.append(
                rate_usage(
                    charge,
                    segment.quantities.get(charge.key, ZERO),
                    currency=currency,
                    plan_id=plan.id,
                    start=start,
                    end=end,
                )
            )
    charged = sum((line.amount for line in lines), ZERO)
    if plan.minimum_commitment is not None:
        minimum = round_money(plan.minimum_commitment * segment.fraction, currency)
        if charged < minimum:
            true_up = minimum - charged
            lines.append(
                LineItem(
                    kind="minimum",
                    charge_key=None,
                    meter=None,
                    description=minimum_description(
                        plan.minimum_commitment, minimum, segment.fraction, currency
                    ),
                    quantity=Decimal(1),
                    included_quantity=ZERO,
                    billable_quantity=Decimal(1),
                    unit_price=minimum,
                    tiers=(),
                    proration=segment.fraction,
                    exact_amount=true_up,
                    amount=true_up,
                    plan_id=plan.id,
                    segment_start=start,
                    segment_end=end,
                )
            )
            charged = minimum
    discounts: list[DiscountLine] = []
    remaining = charged
    every = (*plan.discounts, *segment.discounts)
    ordered = [d for d in every if d.kind == "percentage"] + [d for d in every if d.kind == "fixed"]
    for discount in ordered:
        share = Decimal(1)
        if discount.kind == "percentage":
            assert discount.percent is not None
            wanted = round_money(charged * discount.percent / 100, currency)
            description = discount.description or f"{discount.percent.normalize():f}% discount"
        else:
            assert discount.amount is not None
            share = segment.fraction
            wanted = round_money(discount.amount * share, currency)
            description = discount.description or f"{discount.amount} {currency} discount"
            if share != 1:
                description += f" (prorated from {money_text(discount.amount, currency)})"
        taken = min(wanted, remaining)
        remaining -= taken
        discounts.append(
            DiscountLine(description, discount.kind, discount.percent, taken, plan.id, start, end, share)
        )
    return lines, discounts


@exact
def rate_invoice(segments: Sequence[Segment], *, currency: str, credit_available: Decimal = ZERO) -> Rating:
    """Rate every segment of a period and total the invoice.

    Prepaid credit (`credit_available`, in `currency`) is drawn down from the total after
    discounts, never below zero; credit finer than the minor unit is not drawn."""
    lines: list[LineItem] = []
    discounts: list[DiscountLine] = []
    quantities: dict[str, Decimal] = {}
    for segment in segments:
        segment_lines, segment_discounts = rate_segment(segment, currency)
        lines += segment_lines
        discounts += segment_discounts
        for key, quantity in segment.quantities.items():
            quantities[key] = quantities.get(key, ZERO) + quantity
    subtotal = sum((line.amount for line in lines), ZERO)
    discount_total = sum((d.amount for d in discounts), ZERO)
    due = subtotal - discount_total
    minor = Decimal(1).scaleb(-minor_units(currency))
    usable = max(credit_available, ZERO).quantize(minor, rounding=ROUND_DOWN)
    credits = min(usable, due)
    return Rating(
        currency=currency,
        lines=tuple(lines),
        discounts=tuple(discounts),
        subtotal=subtotal,
        discount_total=discount_total,
        credits_applied=credits,
        total=due - credits,
        quantities=quantities,
    )


def charge_for_group(charges: Sequence[Charge], meter: str, dimensions: Mapping[str, str]) -> Charge | None:
    """The usage charge that prices one group of a meter's usage, or None if none does.

    A charge whose dimensions all equal the group's values wins over the meter's charge
    without dimensions; among several matching charges, the first in the plan wins."""
    fallback: Charge | None = None
    for charge in charges:
        if charge.meter != meter or charge.model == "flat":
            continue
        if not charge.dimensions:
            fallback = fallback or charge
        elif all(dimensions.get(k) == v for k, v in charge.dimensions.items()):
            return charge
    return fallback


@exact
def projected_quantity(aggregation: str, so_far: Decimal, *, elapsed_s: float, period_s: float) -> Decimal:
    """Usage expected by the period's end if it goes on at the pace seen so far.

    Only sums and counts grow with time; max, latest and unique counts are projected
    as what they are now."""
    if aggregation not in ("sum", "count") or elapsed_s <= 0 or elapsed_s >= period_s:
        return so_far
    return so_far * Decimal(period_s) / Decimal(elapsed_s)
