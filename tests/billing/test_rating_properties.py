"""Property tests of rating: monotone in usage, tiers that add up, and the rounding rule.

Every Decimal is built from integers, so values (and the expected amounts) are exact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from portal.billing.currencies import minor_units
from portal.billing.rating import Rating, Segment, rate_invoice, rate_usage, round_money
from portal.billing.schemas import Charge, Discount, Plan, Tier

D = Decimal
START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
ZERO, ONE = D(0), D(1)
FAST = settings(max_examples=200, deadline=None, database=None)

CURRENCIES = st.sampled_from(["USD", "EUR", "JPY", "KWD", "CLF"])


def decimals(high: int, places: int, low: int = 0) -> st.SearchStrategy[Decimal]:
    """Exact Decimals in [low, high] / 10**places."""
    return st.integers(low, high).map(lambda n: D(n) / D(10**places))


QUANTITIES = decimals(10**9, 3)  # 0 .. 1,000,000 with 3 decimals
PRICES = decimals(10**8, 6)  # 0 .. 100 with 6 decimals
FEES = decimals(10**5, 2)  # 0 .. 1000 with 2 decimals
INCLUDED = st.one_of(st.just(D(0)), decimals(10**7, 3))


@st.composite
def tier_lists(draw: st.DrawFn, *, rising_prices: bool = False) -> tuple[Tier, ...]:
    """1-4 tiers with rising upper bounds, the last one open-ended."""
    count = draw(st.integers(1, 4))
    widths = draw(st.lists(decimals(10**8, 3, low=1), min_size=count - 1, max_size=count - 1))
    prices = draw(st.lists(PRICES, min_size=count, max_size=count))
    fees = draw(st.lists(FEES, min_size=count, max_size=count))
    if rising_prices:  # a volume tier that is never cheaper than the one below it
        prices, fees = sorted(prices), sorted(fees)
    bounds: list[Decimal | None] = []
    upper = D(0)
    for width in widths:
        upper += width
        bounds.append(upper)
    bounds.append(None)
    return tuple(
        Tier(up_to=b, unit_price=p, flat_fee=f) for b, p, f in zip(bounds, prices, fees, strict=True)
    )


@st.composite
def usage_charges(draw: st.DrawFn, *, model: str | None = None, monotone: bool = False) -> Charge:
    """A valid usage charge of `model` (any model when None), with or without included units.

    `monotone`: volume tiers whose price and fee never fall, the only volume plans whose cost
    cannot drop when usage grows (by design, 101 units at a cheaper tier may cost less than 100)."""
    model = model or draw(st.sampled_from(["per_unit", "graduated", "volume", "package"]))
    included = draw(INCLUDED)
    if model == "per_unit":
        return Charge(
            key="api",
            model="per_unit",
            meter="api_calls",
            included_quantity=included,
            unit_price=draw(PRICES),
        )
    if model == "package":
        return Charge(
            key="api",
            model="package",
            meter="api_calls",
            included_quantity=included,
            package_size=draw(decimals(10**6, 2, low=1)),
            package_price=draw(FEES),
        )
    tiers = draw(tier_lists(rising_prices=monotone and model == "volume"))
    return Charge(
        key="api",
        model="graduated" if model == "graduated" else "volume",
        meter="api_calls",
        included_quantity=included,
        tiers=tiers,
    )


DISCOUNT_SETS = st.lists(
    st.one_of(
        decimals(10**6, 4, low=1).map(lambda p: Discount(kind="percentage", percent=p)),
        decimals(10**5, 2, low=1).map(lambda a: Discount(kind="fixed", amount=a)),
    ),
    max_size=2,
    unique_by=lambda d: d.kind,  # at most one percentage: see test_monotone_in_usage
)


def plan_of(
    *charges: Charge,
    currency: str = "USD",
    discounts: tuple[Discount, ...] = (),
    minimum: Decimal | None = None,
) -> Plan:
    return Plan(
        id="plan",
        name="plan",
        currency=currency,
        charges=charges,
        discounts=discounts,
        minimum_commitment=minimum,
        description="",
    )


def rate_one(plan: Plan, quantity: Decimal, *, fraction: Decimal = ONE, credit: Decimal = ZERO) -> Rating:
    segment = Segment(plan=plan, start=START, end=END, fraction=fraction, quantities={"api": quantity})
    return rate_invoice([segment], currency=plan.currency, credit_available=credit)


def rate_line(charge: Charge, quantity: Decimal, currency: str = "USD") -> tuple[Decimal, Decimal]:
    line = rate_usage(charge, quantity, currency=currency, plan_id="plan", start=START, end=END)
    return line.exact_amount, line.amount


# --- monotone in usage -----------------------------------------------------------------------------


@FAST
@given(charge=usage_charges(monotone=True), currency=CURRENCIES, quantity=QUANTITIES, more=QUANTITIES)
def test_usage_line_monotone(charge: Charge, currency: str, quantity: Decimal, more: Decimal) -> None:
    exact, amount = rate_line(charge, quantity, currency)
    exact_more, amount_more = rate_line(charge, quantity + more, currency)
    assert exact_more >= exact
    assert amount_more >= amount


@FAST
@given(
    charge=usage_charges(monotone=True),
    currency=CURRENCIES,
    quantity=QUANTITIES,
    more=QUANTITIES,
    discounts=DISCOUNT_SETS,
    minimum=st.one_of(st.none(), decimals(10**6, 2, low=1)),
    flat_fee=st.one_of(st.none(), FEES),
    fraction=st.sampled_from([D(1), D(1) / D(3), D("0.5")]),
    credit=st.one_of(st.just(D(0)), decimals(10**5, 0)),
)
def test_monotone_in_usage(
    charge: Charge,
    currency: str,
    quantity: Decimal,
    more: Decimal,
    discounts: list[Discount],
    minimum: Decimal | None,
    flat_fee: Decimal | None,
    fraction: Decimal,
    credit: Decimal,
) -> None:
    """More usage never costs less, with included units, a minimum, discounts and credit.

    At most one percentage discount: with two, each rounded on its own, 0.01 can be
    discounted 0.00 + 0.00 and 0.02 discounted 0.01 + 0.01 (40% twice)."""
    charges = (charge,) if flat_fee is None else (charge, Charge(key="base", model="flat", amount=flat_fee))
    plan = plan_of(*charges, currency=currency, discounts=tuple(discounts), minimum=minimum)
    less = rate_one(plan, quantity, fraction=fraction, credit=credit)
    more_usage = rate_one(plan, quantity + more, fraction=fraction, credit=credit)
    assert more_usage.subtotal >= less.subtotal
    assert more_usage.subtotal - more_usage.discount_total >= less.subtotal - less.discount_total
    assert more_usage.total >= less.total


@FAST
@given(tiers=tier_lists(), currency=CURRENCIES, data=st.data())
def test_volume_monotone_inside_a_tier(tiers: tuple[Tier, ...], currency: str, data: st.DataObject) -> None:
    """Any volume plan is monotone while the quantity stays in one tier."""
    charge = Charge(key="api", model="volume", meter="api_calls", tiers=tiers)
    index = data.draw(st.integers(0, len(tiers) - 1))
    lower = D(0) if index == 0 else tiers[index - 1].up_to
    assert lower is not None
    upper = tiers[index].up_to or lower + 10**6
    low, high = sorted(data.draw(st.lists(decimals(10**9, 3), min_size=2, max_size=2)))
    span = upper - lower
    q1, q2 = lower + span * low / 10**6, lower + span * high / 10**6
    if q1 == lower and index > 0:  # `lower` itself belongs to the tier below
        return
    exact, amount = rate_line(charge, q1, currency)
    exact_more, amount_more = rate_line(charge, q2, currency)
    assert exact_more >= exact
    assert amount_more >= amount


# --- tiers add up ------------------------------------------------------------------------------------


@FAST
@given(charge=usage_charges(model="graduated"), quantity=QUANTITIES)
def test_graduated_tiers_add_up(charge: Charge, quantity: Decimal) -> None:
    line = rate_usage(charge, quantity, currency="USD", plan_id="plan", start=START, end=END)
    assert line.billable_quantity == max(quantity - charge.included_quantity, D(0))
    assert sum((t.quantity for t in line.tiers), D(0)) == line.billable_quantity
    assert sum((t.amount for t in line.tiers), D(0)) == line.exact_amount
    previous_upper = D(0)
    for tier_line, tier in zip(line.tiers, charge.tiers, strict=False):
        assert tier_line.lower == previous_upper
        assert tier_line.upper == tier.up_to
        assert tier_line.quantity >= 0
        if tier.up_to is not None:
            assert tier_line.quantity <= tier.up_to - tier_line.lower
            previous_upper = tier.up_to
        assert tier_line.amount == tier_line.quantity * tier.unit_price + tier_line.flat_fee
        assert tier_line.flat_fee == (tier.flat_fee if line.billable_quantity > tier_line.lower else 0)
    # every tier but the last is full
    assert all(t.upper is not None and t.quantity == t.upper - t.lower for t in line.tiers[:-1])


@FAST
@given(charge=usage_charges(model="volume"), quantity=QUANTITIES)
def test_volume_prices_everything_at_its_tier(charge: Charge, quantity: Decimal) -> None:
    billable = max(quantity - charge.included_quantity, D(0))
    tier = next(t for t in charge.tiers if t.up_to is None or billable <= t.up_to)
    fee = tier.flat_fee if billable > 0 else D(0)
    line = rate_usage(charge, quantity, currency="USD", plan_id="plan", start=START, end=END)
    (tier_line,) = line.tiers
    assert line.exact_amount == billable * tier.unit_price + fee
    assert line.unit_price == tier_line.unit_price == tier.unit_price
    assert tier_line.quantity == billable


@FAST
@given(size=decimals(10**6, 2, low=1), price=FEES, quantity=QUANTITIES)
def test_package_counts_partial_packages(size: Decimal, price: Decimal, quantity: Decimal) -> None:
    charge = Charge(key="api", model="package", meter="api_calls", package_size=size, package_price=price)
    exact, _ = rate_line(charge, quantity)
    packages = exact / price if price else None
    if packages is not None:
        assert packages == packages.to_integral_value()
        assert (packages - 1) * size < quantity <= packages * size


# --- rounding ----------------------------------------------------------------------------------------


def assert_rounded(amount: Decimal, currency: str) -> None:
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)
    assert -exponent <= minor_units(currency), f"{amount} has more decimals than {currency}"


@FAST
@given(
    charge=usage_charges(),
    currency=CURRENCIES,
    quantity=QUANTITIES,
    discounts=DISCOUNT_SETS,
    flat_fee=st.one_of(st.none(), FEES),
    minimum=st.one_of(st.none(), decimals(10**6, 2, low=1)),
    fraction=st.integers(1, 30).map(lambda days: D(days) / D(31)),
    credit=st.one_of(st.just(D(0)), decimals(10**4, 0)),
)
def test_rounded_once_to_the_minor_unit(
    charge: Charge,
    currency: str,
    quantity: Decimal,
    discounts: list[Discount],
    flat_fee: Decimal | None,
    minimum: Decimal | None,
    fraction: Decimal,
    credit: Decimal,
) -> None:
    charges = (charge,) if flat_fee is None else (charge, Charge(key="base", model="flat", amount=flat_fee))
    plan = plan_of(*charges, currency=currency, discounts=tuple(discounts), minimum=minimum)
    rating = rate_one(plan, quantity, fraction=fraction, credit=credit)
    half_unit = D(1).scaleb(-minor_units(currency)) / 2
    for line in rating.lines:
        assert_rounded(line.amount, currency)
        assert abs(line.amount - line.exact_amount) <= half_unit
        assert line.amount == round_money(line.exact_amount, currency)
    for discount in rating.discounts:
        assert_rounded(discount.amount, currency)
        assert discount.amount >= 0
    for total in (rating.subtotal, rating.discount_total, rating.credits_applied, rating.total):
        assert_rounded(total, currency)
    assert rating.subtotal == sum((line.amount for line in rating.lines), D(0))
    assert rating.discount_total == sum((d.amount for d in rating.discounts), D(0))
    assert rating.discount_total <= rating.subtotal
    assert 0 <= rating.credits_applied <= credit
    assert rating.total == rating.subtotal - rating.discount_total - rating.credits_applied >= 0


@FAST
@given(amount=decimals(10**12, 6), currency=CURRENCIES)
def test_round_money_is_within_half_a_minor_unit(amount: Decimal, currency: str) -> None:
    rounded = round_money(amount, currency)
    half_unit = D(1).scaleb(-minor_units(currency)) / 2
    assert_rounded(rounded, currency)
    assert -half_unit < rounded - amount <= half_unit  # half-up: an exact half goes up
    assert round_money(rounded, currency) == rounded
