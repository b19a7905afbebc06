"""The customer overview's upcoming invoice and metered-charge cards, worded from the live
preview's lines (pure functions: the preview is rated once per panel, by `portal.billing.
preview`, the same rating as the bill; nothing here computes an amount the bill does not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal

from portal.billing.schemas import Charge
from portal.billing.views import LineView, PreviewView, TierView
from portal.pages.formatting import grouped, measure, metric_label, money

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class InvoiceLine:
    """One line of the upcoming invoice as the customer reads it."""

    kind: str  # usage, flat, minimum, discount, credit
    description: str
    quantity: str  # "2,968 calls"; "" where a quantity says nothing (fees, discounts)
    details: tuple[str, ...]  # how the amount comes about: tiers, included units, proration
    amount: str  # exact decimal text in the currency's minor unit, negative for deductions


@dataclass(frozen=True, slots=True)
class UpcomingInvoice:
    """The invoice the current period would produce if it ended now: its charges, then its
    deductions (discounts, prepaid credit), whose amounts add up to `total`."""

    currency: str
    charges: tuple[InvoiceLine, ...]
    deductions: tuple[InvoiceLine, ...]
    subtotal: str
    total: str


@dataclass(frozen=True, slots=True)
class ChargeProgress:
    """One metered charge of the plan: usage so far against what is free (the plan's
    included quantity plus a free first tier), and what it costs so far."""

    metric_name: str
    description: str
    amount: str  # the line's amount, as on the upcoming invoice
    allowance: str | None  # units free before anything is charged; None: nothing free
    percent: int | None  # of the allowance, rounded down (100% only once it is used up)
    meter_value: str  # what the <progress> bar shows: the quantity, capped at the allowance
    label: str  # "First 10,000 calls free; 2,968 so far — 29%"
    over: bool


def _d(text: str | None) -> Decimal:
    return ZERO if text is None else Decimal(text)


def _free_tier(line: LineView) -> Decimal | None:
    """Units of the first tier when it is free (no unit price, no fee): 0 when it is not
    free or not reached as the first tier; None when that free tier never ends."""
    if not line.tiers:
        return ZERO
    first = line.tiers[0]
    if _d(first.lower) != 0 or _d(first.unit_price) != 0 or _d(first.flat_fee) != 0:
        return ZERO
    return None if first.upper is None else _d(first.upper)


def charge_progress(line: LineView, unit: str, currency: str, segment: str = "") -> ChargeProgress:
    """A usage line of the live preview as a card (pure): the words agree with the amount,
    so "all charged" never stands beside a free quantity. `segment` names the plan and days
    of a period split by a plan change ("Pro, 12-31 Dec 2026"), so that two cards of one
    meter say which is which."""
    quantity, included = _d(line.quantity), _d(line.included_quantity)
    free = _free_tier(line)
    amount = _d(line.amount)
    word = "included" if free == 0 else "free"
    name = metric_label(line.meter) if line.meter and line.description == line.meter else line.description
    if segment:
        name = f"{name} ({segment})"
    card = (line.meter or "", name, line.amount)
    if free is None:  # the whole quantity is free
        return ChargeProgress(
            *card, None, None, line.quantity, f"{measure(quantity, unit)} so far, free", False
        )
    allowance = included + free
    if allowance > 0:
        # Rounded down, so that 100% is never shown before the allowance is used up.
        percent = int((quantity * 100 / allowance).to_integral_value(rounding=ROUND_FLOOR))
        over = quantity > allowance
        label = f"First {measure(allowance, unit)} {word}; {grouped(quantity)} so far — {percent}%"
        if over:
            label += f"; {measure(quantity - allowance, unit)} charged"
        shown = format(min(quantity, allowance), "f")
        return ChargeProgress(*card, format(allowance, "f"), percent, shown, label, over)
    label = f"{measure(quantity, unit)} so far" + (", all charged" if amount > 0 else "")
    return ChargeProgress(*card, None, None, line.quantity, label, False)


def _range(tier: TierView, unit: str) -> str:
    lower = _d(tier.lower)
    if tier.upper is None:
        return f"above {measure(lower, unit)}" if lower > 0 else f"every {unit}" if unit else "every unit"
    upper = _d(tier.upper)
    return f"first {measure(upper, unit)}" if lower == 0 else f"next {measure(upper - lower, unit)}"


def tier_text(tier: TierView, unit: str, currency: str, *, volume: bool = False) -> str:
    """'first 10,000 calls free: 2,968 calls'; 'next 40,000 calls at EUR 0.0004 each:
    2,968 calls = EUR 1.1872' (the tier's exact amount, before the line is rounded)."""
    price, fee = _d(tier.unit_price), _d(tier.flat_fee)
    quantity = measure(_d(tier.quantity), unit)
    span = _range(tier, unit)
    if price == 0 and fee == 0:
        return f"all {quantity}, free ({span} tier)" if volume else f"{span} free: {quantity}"
    fee_text = f" plus {money(fee, currency)} for the tier" if fee else ""
    priced = f"at {money(price, currency)} each{fee_text}"
    if volume:
        return f"all {quantity} {priced} ({span} tier) = {money(_d(tier.amount), currency)}"
    return f"{span} {priced}: {quantity} = {money(_d(tier.amount), currency)}"


def _usage_details(line: LineView, charge: Charge | None, unit: str, currency: str) -> tuple[str, ...]:
    included, billable = _d(line.included_quantity), _d(line.billable_quantity)
    details: list[str] = []
    if included > 0:
        details.append(f"{measure(included, unit)} included in the plan; {measure(billable, unit)} beyond")
    model = charge.model if charge is not None else ("graduated" if line.unit_price is None else "per_unit")
    if model in ("graduated", "volume"):
        details += [tier_text(t, unit, currency, volume=model == "volume") for t in line.tiers]
    elif model == "package" and charge is not None and charge.package_size is not None:
        price = _d(line.unit_price)
        packages = (_d(line.amount) / price).to_integral_value(rounding=ROUND_HALF_UP) if price else ZERO
        details.append(
            f"in packages of {measure(charge.package_size, unit)} at {money(price, currency)} each: "
            f"{grouped(packages)} {'package' if packages == 1 else 'packages'}"
        )
    elif line.unit_price is not None and billable > 0:
        details.append(f"{measure(billable, unit)} at {money(_d(line.unit_price), currency)} each")
    return tuple(details)


def _flat_details(line: LineView, currency: str) -> tuple[str, ...]:
    proration = _d(line.proration)
    if proration == 1 or line.unit_price is None:
        return ()
    days = Decimal((line.segment_end - line.segment_start).total_seconds()) / 86400
    shown = days.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP).normalize()
    share = (proration * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP).normalize()
    return (
        f"{money(_d(line.unit_price), currency)} a period, prorated: {format(shown, 'f')} days on this plan "
        f"({format(share, 'f')}% of the period)",
    )


def invoice_line(line: LineView, charge: Charge | None, unit: str, currency: str) -> InvoiceLine:
    """One preview line in the customer's words (pure)."""
    if line.kind == "usage":
        quantity = measure(_d(line.quantity), unit)
        # A charge without a description is named by its meter ("api_calls"): say it in words.
        name = metric_label(line.meter) if line.meter and line.description == line.meter else line.description
        return InvoiceLine("usage", name, quantity, _usage_details(line, charge, unit, currency), line.amount)
    if line.kind == "flat":
        return InvoiceLine("flat", line.description, "", _flat_details(line, currency), line.amount)
    if line.kind == "minimum":
        minimum = _d(line.unit_price)
        below = minimum - _d(line.amount)
        description = (
            f"Minimum commitment {money(minimum, currency)}: {money(_d(line.amount), currency)} added"
        )
        detail = f"Charges came to {money(below, currency)}, below the plan's minimum commitment"
        return InvoiceLine("minimum", description, "", (detail,), line.amount)
    return InvoiceLine(line.kind, line.description, "", (), line.amount)


def upcoming_invoice(
    view: PreviewView, units: Mapping[str, str], charges: Mapping[tuple[str, str], Charge]
) -> UpcomingInvoice:
    """The preview's lines, so far, as the upcoming invoice (pure). `units` maps a metric
    name to its unit, `charges` a (plan id, charge key) to the plan's charge."""
    cur = view.currency
    shown = [
        invoice_line(
            line,
            charges.get((line.plan_id, line.charge_key or "")),
            units.get(line.meter or "", ""),
            cur,
        )
        for line in view.lines
    ]
    return UpcomingInvoice(
        cur,
        tuple(line for line in shown if line.kind in ("usage", "flat", "minimum")),
        tuple(line for line in shown if line.kind not in ("usage", "flat", "minimum")),
        view.so_far.subtotal,
        view.so_far.total,
    )
