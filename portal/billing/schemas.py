"""Plan definitions and billing request bodies (validated at the edge, camelCase).

A plan is data: a currency and a list of charges. Each charge prices one meter's usage
(or is a flat recurring fee). Bounds on Decimals are checked in `__post_init__`:
msgspec's `Meta(ge=...)` on a Decimal fails at request time (DESIGN, known traps).
Every error message starts with the field path it is about.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec

from portal.billing.currencies import is_currency
from portal.http.schemas import ID_PATTERN, NO_NUL, CamelStruct, check_time
from portal.infrastructure.periods import BillingPeriod

PlanId = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
ChargeKey = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=ID_PATTERN)]
Text = Annotated[str, msgspec.Meta(max_length=200, pattern=NO_NUL)]
# A meter name or a dimension key or value a charge matches: never longer than what ingest
# accepts (a dimension value has at most 256 characters by default), so one that could never
# match an event is refused rather than stored and shown.
Label = Annotated[str, msgspec.Meta(max_length=256, pattern=NO_NUL)]
ChargeModel = Literal["per_unit", "graduated", "volume", "package", "flat"]
# Prices carry up to 12 decimal places (a fraction of a cent per API call is common).
MAX_PRICE_PLACES = 12


# Larger prices or quantities are refused: no real price is that big, and it keeps every
# product well inside the exact arithmetic rating uses.
MAX_AMOUNT = Decimal(10) ** 15


def decimal_places(value: Decimal) -> int:
    """Places after the point, ignoring trailing zeros (exact: no context rounding)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    trailing = len(digits) - len("".join(map(str, digits)).rstrip("0"))
    return max(0, -(exponent + trailing)) if any(digits) else 0


def _check_amount(path: str, value: Decimal | None, *, positive: bool = False) -> None:
    if value is None:
        return
    if not value.is_finite():
        raise ValueError(f"{path}: must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{path}: must be {'greater than' if positive else 'at least'} 0")
    if value >= MAX_AMOUNT:
        raise ValueError(f"{path}: must be below {MAX_AMOUNT:f}")
    if decimal_places(value) > MAX_PRICE_PLACES:
        raise ValueError(f"{path}: at most {MAX_PRICE_PLACES} decimal places")


class Tier(CamelStruct):
    """One price tier. `up_to` is the tier's inclusive upper bound in billable units;
    the last tier has none. `flat_fee` is charged once when usage reaches the tier."""

    up_to: Decimal | None = None
    unit_price: Decimal = Decimal(0)
    flat_fee: Decimal = Decimal(0)


class Charge(CamelStruct):
    """How one meter's usage (or nothing, for `flat`) becomes money.

    - per_unit: billable * unit_price
    - graduated: each tier prices the units that fall inside it
    - volume: every unit at the price of the tier the whole quantity falls in
    - package: ceil(billable / package_size) * package_price
    - flat: `amount` per period, prorated when the period is split by a plan change
    `included_quantity` units are free (billable = quantity - included, never below 0).
    `dimensions` restricts the charge to usage whose group-by values equal these; a
    meter's charge without dimensions takes the usage no other charge of it matched.
    """

    key: ChargeKey
    model: ChargeModel
    meter: Label | None = None
    description: Text = ""
    unit_price: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    package_size: Decimal | None = None
    package_price: Decimal | None = None
    amount: Decimal | None = None
    included_quantity: Decimal = Decimal(0)
    dimensions: dict[Label, Label] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        path = f"charge {self.key}"
        if self.model == "flat":
            if self.meter is not None:
                raise ValueError(f"{path}.meter: a flat charge has no meter")
            if self.amount is None:
                raise ValueError(f"{path}.amount: required for a flat charge")
            if self.dimensions:
                raise ValueError(f"{path}.dimensions: a flat charge has no usage to match")
        else:
            if not self.meter:
                raise ValueError(f"{path}.meter: required for a {self.model} charge")
            if self.amount is not None:
                raise ValueError(f"{path}.amount: only for flat charges (use unitPrice or tiers)")
        needs = {
            "per_unit": ("unit_price",),
            "package": ("package_size", "package_price"),
            "flat": ("amount",),
            "graduated": (),
            "volume": (),
        }[self.model]
        for name in ("unit_price", "package_size", "package_price"):
            present = getattr(self, name) is not None
            camel = _camel(name)
            if name in needs and not present:
                raise ValueError(f"{path}.{camel}: required for a {self.model} charge")
            if name not in needs and present:
                raise ValueError(f"{path}.{camel}: not used by a {self.model} charge")
        if self.model in ("graduated", "volume"):
            _check_tiers(path, self.tiers)
        elif self.tiers:
            raise ValueError(f"{path}.tiers: only graduated and volume charges have tiers")
        _check_amount(f"{path}.unitPrice", self.unit_price)
        _check_amount(f"{path}.packageSize", self.package_size, positive=True)
        _check_amount(f"{path}.packagePrice", self.package_price)
        _check_amount(f"{path}.amount", self.amount)
        _check_amount(f"{path}.includedQuantity", self.included_quantity)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def _check_tiers(path: str, tiers: tuple[Tier, ...]) -> None:
    if not tiers:
        raise ValueError(f"{path}.tiers: at least one tier is required")
    previous = Decimal(0)
    for index, tier in enumerate(tiers):
        tier_path = f"{path}.tiers[{index}]"
        _check_amount(f"{tier_path}.unitPrice", tier.unit_price)
        _check_amount(f"{tier_path}.flatFee", tier.flat_fee)
        last = index == len(tiers) - 1
        if tier.up_to is None:
            if not last:
                raise ValueError(f"{tier_path}.upTo: only the last tier may be open-ended")
            continue
        _check_amount(f"{tier_path}.upTo", tier.up_to, positive=True)
        if tier.up_to <= previous:
            raise ValueError(f"{tier_path}.upTo: tiers must rise (got {tier.up_to} after {previous})")
        previous = tier.up_to
    if tiers[-1].up_to is not None:
        raise ValueError(f"{path}.tiers[{len(tiers) - 1}].upTo: the last tier must be open-ended")


class Discount(CamelStruct):
    """A percentage of the (segment) subtotal, or a fixed amount per period."""

    kind: Literal["percentage", "fixed"]
    percent: Decimal | None = None
    amount: Decimal | None = None
    description: Text = ""

    def __post_init__(self) -> None:
        if self.kind == "percentage":
            if self.percent is None or self.amount is not None:
                raise ValueError("discount.percent: a percentage discount has percent (and no amount)")
            _check_amount("discount.percent", self.percent, positive=True)
            if self.percent > 100:
                raise ValueError("discount.percent: at most 100")
        else:
            if self.amount is None or self.percent is not None:
                raise ValueError("discount.amount: a fixed discount has amount (and no percent)")
            _check_amount("discount.amount", self.amount, positive=True)


class PlanCreate(CamelStruct):
    """A plan: immutable once created (invoices keep a copy of what they were rated on)."""

    id: PlanId
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    charges: tuple[Charge, ...]
    discounts: tuple[Discount, ...] = ()
    minimum_commitment: Decimal | None = None
    description: Text = ""

    def __post_init__(self) -> None:
        if not is_currency(self.currency):
            raise ValueError(f"currency: {self.currency!r} is not an ISO 4217 currency code")
        if not self.charges:
            raise ValueError("charges: a plan needs at least one charge")
        keys = [c.key for c in self.charges]
        duplicate = next((k for k in keys if keys.count(k) > 1), None)
        if duplicate is not None:
            raise ValueError(f"charges: key {duplicate!r} is used twice")
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
        for charge in self.charges:
            if charge.meter is None:
                continue
            match = (charge.meter, tuple(sorted(charge.dimensions.items())))
            if match in seen:
                raise ValueError(
                    f"charge {charge.key}.dimensions: charge {seen[match]} already "
                    f"prices meter {charge.meter} for the same dimensions"
                )
            seen[match] = charge.key
        _check_amount("minimumCommitment", self.minimum_commitment, positive=True)


class Plan(CamelStruct):
    id: str
    name: str
    currency: str
    charges: tuple[Charge, ...]
    discounts: tuple[Discount, ...]
    minimum_commitment: Decimal | None
    description: str


def plan_from_definition(definition: Any) -> Plan:
    """A stored definition (JSON object) as a Plan."""
    if isinstance(definition, str | bytes):
        return msgspec.json.decode(definition, type=Plan)
    return msgspec.convert(definition, Plan)


class Subscription(CamelStruct):
    """A customer's plan over [startsAt, endsAt), as stored."""

    id: int
    customer_id: str
    plan_id: str
    anchor_day: int
    starts_at: datetime
    ends_at: datetime | None
    discounts: tuple[Discount, ...]


@dataclass(frozen=True, slots=True)
class PlannedSegment:
    """A segment's plan and bounds, as an invoice keeps them (its rating basis)."""

    plan: Plan
    start: datetime
    end: datetime
    fraction: Decimal
    discounts: tuple[Discount, ...]

    def snapshot(self) -> dict[str, Any]:
        return {
            "plan": msgspec.to_builtins(self.plan),
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "fraction": str(self.fraction),
            "discounts": msgspec.to_builtins(self.discounts),
        }

    @classmethod
    def from_snapshot(cls, data: dict[str, Any]) -> PlannedSegment:
        return cls(
            plan_from_definition(data["plan"]),
            datetime.fromisoformat(data["start"]),
            datetime.fromisoformat(data["end"]),
            Decimal(data["fraction"]),
            msgspec.convert(data["discounts"], tuple[Discount, ...]),
        )


@dataclass(frozen=True, slots=True)
class InvoiceRow:
    """An invoice as stored (amounts exact, in the currency's units)."""

    id: int
    number: str | None
    customer_id: str
    currency: str
    status: str
    period_start: datetime
    period_end: datetime
    subtotal: Decimal
    discount_total: Decimal
    credits_applied: Decimal
    total: Decimal
    computed_at: datetime
    complete_through: datetime | None
    finalized_at: datetime | None
    approved_by: str | None
    voided_at: datetime | None
    void_reason: str | None
    replaces_id: int | None
    segments: list[dict[str, Any]]

    @property
    def period(self) -> BillingPeriod:
        return BillingPeriod(self.period_start, self.period_end)

    def planned_segments(self) -> tuple[PlannedSegment, ...]:
        return tuple(PlannedSegment.from_snapshot(s) for s in self.segments)


class SubscriptionCreate(CamelStruct):
    """Subscribe a customer to a plan, or change its plan.

    The first subscription starts at local midnight of `start_date` (default: today in the
    customer's zone). A change takes effect at the next period start (`effective:
    "next_period"`, the default) or now (`"immediate"`), which splits the current period.
    """

    plan_id: PlanId
    start_date: date | None = None
    anchor_day: Annotated[int, msgspec.Meta(ge=1, le=31)] | None = None
    effective: Literal["next_period", "immediate"] = "next_period"
    # An explicit instant for the change (a whole hour of the customer), e.g. to backdate
    # a change into the open period; overrides `effective`.
    effective_at: datetime | None = None
    discounts: tuple[Discount, ...] = ()

    def __post_init__(self) -> None:
        check_time("startDate", self.start_date)
        check_time("effectiveAt", self.effective_at)


class SubscriptionEnd(CamelStruct):
    """End a customer's subscription: when its current period ends (`effective:
    "period_end"`, the default), from the customer's next hour (`"immediate"`), or at
    `effective_at` (a whole hour of the customer, e.g. to backdate the end into the open
    period). Its last period is billed for the part it covered (a flat fee, a minimum and a
    fixed discount prorated); usage after the end is not billed; changes scheduled after it
    are dropped. A later subscription starts the customer again."""

    effective: Literal["period_end", "immediate"] = "period_end"
    effective_at: datetime | None = None

    def __post_init__(self) -> None:
        check_time("effectiveAt", self.effective_at)


class DraftRequest(CamelStruct):
    """Create or refresh a customer's draft for the period starting in `period`
    (YYYY-MM, in the customer's zone), or for the current period when omitted."""

    period: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] | None = None

    def __post_init__(self) -> None:
        if self.period is not None:
            check_time("period", date(int(self.period[:4]), int(self.period[5:]), 1))


class ApproveRequest(CamelStruct):
    """Who approves (defaults to the API key's name)."""

    approved_by: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)] | None = None


class VoidRequest(CamelStruct):
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500, pattern=NO_NUL)]


class CreditGrantCreate(CamelStruct):
    """Prepaid credit, drawn down by finalized invoices before anything is charged."""

    amount: Decimal
    description: Text = ""
    expires_on: date | None = None

    def __post_init__(self) -> None:
        _check_amount("amount", self.amount, positive=True)
        check_time("expiresOn", self.expires_on)
