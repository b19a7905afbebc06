"""Table-driven tests of the pure rating functions, with exact Decimal amounts.

Plans are written as the camelCase JSON a client would send, validated by `PlanCreate`
and turned into the stored `Plan`, so that every plan here is one the API would accept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import pytest

from portal.billing.invoices import line_views
from portal.billing.rating import (
    Rating,
    Segment,
    charge_for_group,
    projected_quantity,
    rate_invoice,
    rate_usage,
    round_money,
)
from portal.billing.schemas import Charge, Discount, Plan, PlanCreate

D = Decimal
START = datetime(2026, 1, 1, tzinfo=UTC)
MIDDLE = datetime(2026, 1, 11, tzinfo=UTC)
END = datetime(2026, 2, 1, tzinfo=UTC)
ONE = D(1)
THIRD = D(1) / D(3)
TWO_THIRDS = D(2) / D(3)


# --- factories --------------------------------------------------------------------------------


def make_plan(
    *,
    charges: Sequence[Mapping[str, Any]],
    currency: str = "USD",
    discounts: Sequence[Mapping[str, Any]] = (),
    minimum: str | None = None,
    plan_id: str = "plan-1",
) -> Plan:
    """A stored plan from the camelCase body a client would POST (validated on the way)."""
    body: dict[str, Any] = {
        "id": plan_id,
        "name": plan_id,
        "currency": currency,
        "charges": list(charges),
        "discounts": list(discounts),
    }
    if minimum is not None:
        body["minimumCommitment"] = minimum
    created = msgspec.convert(body, PlanCreate)
    return msgspec.convert(msgspec.to_builtins(created), Plan)


def per_unit(
    price: str, *, key: str = "api", meter: str = "api_calls", included: str = "0"
) -> dict[str, Any]:
    return {"key": key, "model": "per_unit", "meter": meter, "unitPrice": price, "includedQuantity": included}


def tiered(
    model: str,
    tiers: Sequence[tuple[str | None, str, str]],
    *,
    key: str = "api",
    meter: str = "api_calls",
    included: str = "0",
) -> dict[str, Any]:
    return {
        "key": key,
        "model": model,
        "meter": meter,
        "includedQuantity": included,
        "tiers": [{"upTo": up_to, "unitPrice": price, "flatFee": fee} for up_to, price, fee in tiers],
    }


def package(size: str, price: str, *, key: str = "api", included: str = "0") -> dict[str, Any]:
    return {
        "key": key,
        "model": "package",
        "meter": "api_calls",
        "packageSize": size,
        "packagePrice": price,
        "includedQuantity": included,
    }


def flat(amount: str, *, key: str = "base") -> dict[str, Any]:
    return {"key": key, "model": "flat", "amount": amount}


def percent_off(percent: str) -> dict[str, Any]:
    return {"kind": "percentage", "percent": percent}


def amount_off(amount: str) -> dict[str, Any]:
    return {"kind": "fixed", "amount": amount}


def segment(
    plan: Plan,
    *,
    quantities: Mapping[str, Decimal | int | str] | None = None,
    fraction: Decimal = ONE,
    discounts: Sequence[Mapping[str, Any]] = (),
    start: datetime = START,
    end: datetime = END,
) -> Segment:
    return Segment(
        plan=plan,
        start=start,
        end=end,
        fraction=fraction,
        quantities={key: D(value) for key, value in (quantities or {}).items()},
        discounts=tuple(msgspec.convert(d, Discount) for d in discounts),
    )


def rate(
    plan: Plan,
    *,
    quantities: Mapping[str, Decimal | int | str] | None = None,
    fraction: Decimal = ONE,
    discounts: Sequence[Mapping[str, Any]] = (),
    credit: str = "0",
) -> Rating:
    """Rate one segment covering (a `fraction` of) the period on `plan`."""
    return rate_invoice(
        [segment(plan, quantities=quantities, fraction=fraction, discounts=discounts)],
        currency=plan.currency,
        credit_available=D(credit),
    )


def assert_consistent(rating: Rating) -> None:
    """The documented sums: subtotal, discounts, credits and total add up."""
    assert rating.subtotal == sum((line.amount for line in rating.lines), D(0))
    assert rating.discount_total == sum((d.amount for d in rating.discounts), D(0))
    assert rating.total == rating.subtotal - rating.discount_total - rating.credits_applied
    assert rating.total >= 0


# --- rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "expected"),
    [
        ("2.345", "USD", "2.35"),
        ("2.344999", "USD", "2.34"),
        ("0.005", "USD", "0.01"),  # half-up, not half-even (which gives 0.00)
        ("0.025", "USD", "0.03"),  # half-up, not half-even (which gives 0.02)
        ("0.015", "USD", "0.02"),
        ("0.0049999999", "USD", "0.00"),
        ("7", "USD", "7.00"),
        ("0.5", "JPY", "1"),
        ("2.5", "JPY", "3"),
        ("1234.4999", "JPY", "1234"),
        ("1.0005", "KWD", "1.001"),
        ("3.7005", "KWD", "3.701"),
        ("3.70049", "KWD", "3.700"),
    ],
    ids=[
        "usd-up",
        "usd-down",
        "usd-half-cent",
        "usd-half-even-trap",
        "usd-0.015",
        "usd-just-below-half",
        "usd-integer",
        "jpy-half",
        "jpy-2.5",
        "jpy-down",
        "kwd-half",
        "kwd-half-even-trap",
        "kwd-down",
    ],
)
def test_round_money(amount: str, currency: str, expected: str) -> None:
    rounded = round_money(D(amount), currency)
    assert rounded == D(expected)
    assert str(rounded) == expected  # exactly the currency's decimals


# --- usage charges, one line each --------------------------------------------------------------

GRADUATED = [("100", "0.10", "0"), ("1000", "0.05", "0"), (None, "0.01", "0")]
GRADUATED_FEES = [("100", "0", "5"), (None, "0.10", "20")]
VOLUME = [("100", "0.10", "0"), ("1000", "0.05", "0"), (None, "0.01", "0")]
VOLUME_FEES = [("100", "0.10", "1"), (None, "0.05", "3")]


@pytest.mark.parametrize(
    ("charge", "currency", "quantity", "billable", "exact", "amount"),
    [
        # per_unit
        (per_unit("0.002"), "USD", "1000", "1000", "2.000", "2.00"),
        (per_unit("0.10"), "USD", "0", "0", "0", "0.00"),
        (per_unit("0.10"), "USD", "2.5", "2.5", "0.250", "0.25"),
        (per_unit("0.005"), "USD", "3", "3", "0.015", "0.02"),
        (per_unit("0.005"), "USD", "1", "1", "0.005", "0.01"),
        (per_unit("0.004"), "USD", "1", "1", "0.004", "0.00"),
        (per_unit("0.000001"), "USD", "1234567", "1234567", "1.234567", "1.23"),
        (per_unit("0.5"), "JPY", "3", "3", "1.5", "2"),
        (per_unit("0.1"), "JPY", "4", "4", "0.4", "0"),
        (per_unit("1.2335"), "KWD", "3", "3", "3.7005", "3.701"),
        (per_unit("0.0005"), "KWD", "1", "1", "0.0005", "0.001"),
        # included quantity: billable = quantity - included, never below 0
        (per_unit("0.10", included="100"), "USD", "150", "50", "5.00", "5.00"),
        (per_unit("0.10", included="100"), "USD", "100", "0", "0", "0.00"),
        (per_unit("0.10", included="100"), "USD", "60", "0", "0", "0.00"),
        (per_unit("0.10"), "USD", "-5", "0", "0", "0.00"),
        # graduated: each tier prices the units inside it
        (tiered("graduated", GRADUATED), "USD", "0", "0", "0", "0.00"),
        (tiered("graduated", GRADUATED), "USD", "50", "50", "5.00", "5.00"),
        (tiered("graduated", GRADUATED), "USD", "100", "100", "10.00", "10.00"),
        (tiered("graduated", GRADUATED), "USD", "101", "101", "10.05", "10.05"),
        (tiered("graduated", GRADUATED), "USD", "1000", "1000", "55.00", "55.00"),
        (tiered("graduated", GRADUATED), "USD", "1500", "1500", "60.00", "60.00"),
        (tiered("graduated", GRADUATED, included="100"), "USD", "250", "150", "12.50", "12.50"),
        # graduated with tier flat fees: a tier's fee once usage reaches it
        (tiered("graduated", GRADUATED_FEES), "USD", "0", "0", "0", "0.00"),
        (tiered("graduated", GRADUATED_FEES), "USD", "1", "1", "5", "5.00"),
        (tiered("graduated", GRADUATED_FEES), "USD", "100", "100", "5", "5.00"),
        (tiered("graduated", GRADUATED_FEES), "USD", "101", "101", "25.10", "25.10"),
        # graduated, exact tier amounts 0.004 + 0.001 = 0.005: rounded once (per tier would be 0.00)
        (tiered("graduated", [("1", "0.004", "0"), (None, "0.001", "0")]), "USD", "2", "2", "0.005", "0.01"),
        (
            tiered("graduated", [("10", "0.0125", "0"), (None, "0.001", "0")]),
            "USD",
            "15",
            "15",
            "0.130",
            "0.13",
        ),
        # volume: the whole quantity at the price of its tier, upper bounds inclusive
        (tiered("volume", VOLUME), "USD", "0", "0", "0", "0.00"),
        (tiered("volume", VOLUME), "USD", "50", "50", "5.00", "5.00"),
        (tiered("volume", VOLUME), "USD", "100", "100", "10.00", "10.00"),
        (tiered("volume", VOLUME), "USD", "101", "101", "5.05", "5.05"),
        (tiered("volume", VOLUME), "USD", "1000", "1000", "50.00", "50.00"),
        (tiered("volume", VOLUME), "USD", "1001", "1001", "10.01", "10.01"),
        (tiered("volume", VOLUME_FEES), "USD", "0", "0", "0", "0.00"),
        (tiered("volume", VOLUME_FEES), "USD", "100", "100", "11.00", "11.00"),
        (tiered("volume", VOLUME_FEES), "USD", "101", "101", "8.05", "8.05"),
        (tiered("volume", VOLUME, included="50"), "USD", "150", "100", "10.00", "10.00"),
        # package: partial packages round up
        (package("1000", "5"), "USD", "0", "0", "0", "0.00"),
        (package("1000", "5"), "USD", "1", "1", "5", "5.00"),
        (package("1000", "5"), "USD", "1000", "1000", "5", "5.00"),
        (package("1000", "5"), "USD", "1001", "1001", "10", "10.00"),
        (package("1000", "5"), "USD", "1000.5", "1000.5", "10", "10.00"),
        (package("1000", "5"), "USD", "2500", "2500", "15", "15.00"),
        (package("1000", "5", included="500"), "USD", "1500", "1000", "5", "5.00"),
        (package("1000", "5", included="500"), "USD", "400", "0", "0", "0.00"),
        (package("0.5", "0.125"), "USD", "1.2", "1.2", "0.375", "0.38"),
    ],
    ids=[
        "per-unit",
        "per-unit-zero",
        "per-unit-fractional-quantity",
        "per-unit-3x0.005-rounds-up",
        "per-unit-half-cent",
        "per-unit-below-half-cent",
        "per-unit-micro-price",
        "per-unit-jpy",
        "per-unit-jpy-below-half",
        "per-unit-kwd",
        "per-unit-kwd-half",
        "included-partly-used",
        "included-exactly-used",
        "included-not-used",
        "negative-quantity",
        "graduated-zero",
        "graduated-first-tier",
        "graduated-at-boundary",
        "graduated-past-boundary",
        "graduated-at-second-boundary",
        "graduated-open-tier",
        "graduated-included",
        "graduated-fees-zero",
        "graduated-fees-first-unit",
        "graduated-fees-at-boundary",
        "graduated-fees-second-tier",
        "graduated-sum-rounded-once",
        "graduated-0.0125",
        "volume-zero",
        "volume-first-tier",
        "volume-at-boundary",
        "volume-past-boundary",
        "volume-at-second-boundary",
        "volume-open-tier",
        "volume-fees-zero",
        "volume-fees-at-boundary",
        "volume-fees-past-boundary",
        "volume-included",
        "package-zero",
        "package-one-unit",
        "package-exactly-one",
        "package-one-past",
        "package-fraction-past",
        "package-two-and-a-half",
        "package-included",
        "package-included-not-used",
        "package-fractional-size",
    ],
)
def test_usage_line(
    charge: dict[str, Any], currency: str, quantity: str, billable: str, exact: str, amount: str
) -> None:
    plan = make_plan(charges=[charge], currency=currency)
    rating = rate(plan, quantities={"api": quantity})
    (line,) = rating.lines
    assert line.kind == "usage"
    assert line.charge_key == "api"
    assert line.meter == "api_calls"
    assert line.quantity == D(quantity)
    assert line.billable_quantity == D(billable)
    assert line.exact_amount == D(exact)
    assert line.amount == D(amount)
    assert str(line.amount) == amount  # exactly the currency's decimals
    assert line.proration == 1
    assert rating.subtotal == rating.total == D(amount)
    assert rating.quantities == {"api": D(quantity)}


@pytest.mark.parametrize(
    ("quantity", "expected"),
    [
        ("0", [("0", "0")]),
        ("50", [("50", "5.00")]),
        ("100", [("100", "10.00")]),
        ("101", [("100", "10.00"), ("1", "0.05")]),
        ("1000", [("100", "10.00"), ("900", "45.00")]),
        ("1500", [("100", "10.00"), ("900", "45.00"), ("500", "5.00")]),
    ],
    ids=["zero", "inside-first", "at-first-boundary", "one-past-boundary", "at-second-boundary", "open-tier"],
)
def test_graduated_tier_lines(quantity: str, expected: list[tuple[str, str]]) -> None:
    plan = make_plan(charges=[tiered("graduated", GRADUATED)])
    (line,) = rate(plan, quantities={"api": quantity}).lines
    assert [(t.quantity, t.amount) for t in line.tiers] == [(D(q), D(a)) for q, a in expected]
    assert line.unit_price is None
    assert sum((t.quantity for t in line.tiers), D(0)) == line.billable_quantity
    bounds = [(t.lower, t.upper) for t in line.tiers]
    assert bounds == [(D(0), D(100)), (D(100), D(1000)), (D(1000), None)][: len(expected)]


@pytest.mark.parametrize(
    ("quantity", "fees"),
    [
        ("0", ["0"]),
        ("1", ["5"]),
        ("100", ["5"]),
        ("101", ["5", "20"]),
    ],
    ids=["zero-no-fee", "first-unit-first-fee", "boundary-no-second-fee", "past-boundary-both-fees"],
)
def test_graduated_tier_fees(quantity: str, fees: list[str]) -> None:
    plan = make_plan(charges=[tiered("graduated", GRADUATED_FEES)])
    (line,) = rate(plan, quantities={"api": quantity}).lines
    assert [t.flat_fee for t in line.tiers] == [D(f) for f in fees]


@pytest.mark.parametrize(
    ("quantity", "unit_price", "fee", "lower", "upper"),
    [
        ("0", "0.10", "0", "0", "100"),
        ("100", "0.10", "1", "0", "100"),
        ("100.001", "0.05", "3", "100", None),
        ("5000", "0.05", "3", "100", None),
    ],
    ids=["zero-no-fee", "at-boundary-first-tier", "just-past-boundary", "open-tier"],
)
def test_volume_tier_line(quantity: str, unit_price: str, fee: str, lower: str, upper: str | None) -> None:
    plan = make_plan(charges=[tiered("volume", VOLUME_FEES)])
    (line,) = rate(plan, quantities={"api": quantity}).lines
    (tier,) = line.tiers
    assert line.unit_price == tier.unit_price == D(unit_price)
    assert tier.flat_fee == D(fee)
    assert (tier.lower, tier.upper) == (D(lower), None if upper is None else D(upper))
    assert tier.quantity == D(quantity)
    assert line.exact_amount == tier.amount == D(quantity) * D(unit_price) + D(fee)


def test_missing_quantity_bills_nothing() -> None:
    plan = make_plan(charges=[per_unit("0.10"), flat("10")])
    rating = rate(plan, quantities={})
    usage = next(line for line in rating.lines if line.kind == "usage")
    assert (usage.quantity, usage.amount) == (D(0), D("0.00"))
    assert rating.total == D("10.00")


def test_rate_usage_refuses_a_flat_charge() -> None:
    charge = Charge(key="base", model="flat", amount=D(10))
    with pytest.raises(ValueError, match="base"):
        rate_usage(charge, D(1), currency="USD", plan_id="p", start=START, end=END)


# --- flat fees ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "currency", "fraction", "expected"),
    [
        ("100.00", "USD", D(1), "100.00"),
        ("100.00", "USD", THIRD, "33.33"),
        ("100.00", "USD", TWO_THIRDS, "66.67"),
        ("100.00", "USD", D("0.5"), "50.00"),
        ("0.01", "USD", D("0.5"), "0.01"),  # 0.005 rounds half-up
        ("1000", "JPY", THIRD, "333"),
        ("1000", "JPY", TWO_THIRDS, "667"),
        ("10", "KWD", THIRD, "3.333"),
        ("10", "KWD", TWO_THIRDS, "6.667"),
    ],
    ids=[
        "whole-period",
        "third",
        "two-thirds",
        "half",
        "half-cent",
        "jpy-third",
        "jpy-two-thirds",
        "kwd-third",
        "kwd-two-thirds",
    ],
)
def test_flat_fee_prorated(amount: str, currency: str, fraction: Decimal, expected: str) -> None:
    plan = make_plan(charges=[flat(amount)], currency=currency)
    rating = rate(plan, fraction=fraction)
    (line,) = rating.lines
    assert line.kind == "flat"
    assert (line.charge_key, line.meter) == ("base", None)
    assert line.proration == fraction
    assert line.unit_price == D(amount)
    assert line.exact_amount == D(amount) * fraction
    assert line.amount == D(expected)
    assert str(line.amount) == expected
    assert rating.total == D(expected)


# --- minimum commitment ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("minimum", "fraction", "calls", "true_up", "subtotal"),
    [
        ("50", D(1), "100", "40.00", "50.00"),
        ("50", D(1), "0", "50.00", "50.00"),
        ("50", D(1), "500", None, "50.00"),  # exactly the minimum: no true-up
        ("50", D(1), "600", None, "60.00"),
        ("50", D("0.5"), "100", "15.00", "25.00"),
        ("100", THIRD, "100", "23.33", "33.33"),
        ("100", THIRD, "400", None, "40.00"),
        ("0.01", D("0.5"), "0", "0.01", "0.01"),  # the prorated minimum 0.005 is rounded half-up
    ],
    ids=[
        "below",
        "no-usage",
        "exactly-at",
        "above",
        "prorated-half",
        "prorated-third",
        "prorated-third-above",
        "prorated-rounded",
    ],
)
def test_minimum_commitment(
    minimum: str, fraction: Decimal, calls: str, true_up: str | None, subtotal: str
) -> None:
    plan = make_plan(charges=[per_unit("0.10")], minimum=minimum)
    rating = rate(plan, quantities={"api": calls}, fraction=fraction)
    minimums = [line for line in rating.lines if line.kind == "minimum"]
    if true_up is None:
        assert minimums == []
    else:
        (line,) = minimums
        assert line.amount == line.exact_amount == D(true_up)
        assert line.charge_key is None
        assert line.proration == fraction
        assert line.description.startswith("Minimum commitment")
        assert rating.lines[-1] is line
    assert rating.subtotal == rating.total == D(subtotal)
    assert_consistent(rating)


def test_minimum_commitment_counts_flat_fees() -> None:
    plan = make_plan(charges=[flat("30"), per_unit("0.10")], minimum="50")
    rating = rate(plan, quantities={"api": "100"})
    assert [(line.kind, line.amount) for line in rating.lines] == [
        ("flat", D("30.00")),
        ("usage", D("10.00")),
        ("minimum", D("10.00")),
    ]


# --- discounts ----------------------------------------------------------------------------------

# A plan whose subtotal is 200.00 USD with 2000 calls.
SUBTOTAL_200 = [per_unit("0.10")]


@pytest.mark.parametrize(
    ("plan_discounts", "segment_discounts", "expected"),
    [
        ([percent_off("10")], [], [("percentage", "20.00")]),
        ([percent_off("10"), percent_off("5")], [], [("percentage", "20.00"), ("percentage", "10.00")]),
        ([amount_off("30"), percent_off("10")], [], [("percentage", "20.00"), ("fixed", "30.00")]),
        ([amount_off("500")], [], [("fixed", "200.00")]),
        ([percent_off("100"), amount_off("10")], [], [("percentage", "200.00"), ("fixed", "0.00")]),
        ([percent_off("60"), percent_off("60")], [], [("percentage", "120.00"), ("percentage", "80.00")]),
        ([amount_off("150"), percent_off("50")], [], [("percentage", "100.00"), ("fixed", "100.00")]),
        ([percent_off("10")], [amount_off("5")], [("percentage", "20.00"), ("fixed", "5.00")]),
        ([amount_off("5")], [percent_off("25")], [("percentage", "50.00"), ("fixed", "5.00")]),
        ([], [percent_off("12.5")], [("percentage", "25.00")]),
        ([percent_off("10")], [percent_off("10")], [("percentage", "20.00"), ("percentage", "20.00")]),
    ],
    ids=[
        "one-percentage",
        "two-percentages-not-compounded",
        "fixed-after-percentage",
        "fixed-capped",
        "full-percentage-then-fixed-capped",
        "percentages-capped",
        "fixed-capped-after-percentage",
        "plan-percentage-subscription-fixed",
        "subscription-percentage-before-plan-fixed",
        "subscription-only",
        "plan-and-subscription-percentages",
    ],
)
def test_discounts(
    plan_discounts: list[dict[str, Any]],
    segment_discounts: list[dict[str, Any]],
    expected: list[tuple[str, str]],
) -> None:
    plan = make_plan(charges=SUBTOTAL_200, discounts=plan_discounts)
    rating = rate(plan, quantities={"api": "2000"}, discounts=segment_discounts)
    assert rating.subtotal == D("200.00")
    assert [(d.kind, d.amount) for d in rating.discounts] == [(k, D(a)) for k, a in expected]
    discount_total = sum((D(a) for _, a in expected), D(0))
    assert rating.discount_total == discount_total
    assert rating.total == D("200.00") - discount_total
    assert_consistent(rating)


@pytest.mark.parametrize(
    ("calls", "discounts", "amounts"),
    [
        ("15", [percent_off("10")], ["0.02"]),  # 0.015 → 0.02
        ("15", [percent_off("10"), percent_off("10")], ["0.02", "0.02"]),  # not round(0.03) = 0.03 once
        ("1", [percent_off("50")], ["0.01"]),  # 0.005 → 0.01, half-up
        ("1", [percent_off("33.333333")], ["0.00"]),
        ("333", [percent_off("50")], ["1.67"]),  # 1.665 → 1.67 (half-even would give 1.66)
    ],
    ids=["0.015", "rounded-per-discount", "half-cent-up", "below-half-cent", "half-up"],
)
def test_discounts_rounded_per_discount(
    calls: str, discounts: list[dict[str, Any]], amounts: list[str]
) -> None:
    plan = make_plan(charges=[per_unit("0.01")], discounts=discounts)
    rating = rate(plan, quantities={"api": calls})
    assert [d.amount for d in rating.discounts] == [D(a) for a in amounts]
    assert all(str(d.amount) == a for d, a in zip(rating.discounts, amounts, strict=True))
    assert_consistent(rating)


@pytest.mark.parametrize(
    ("currency", "amount", "percent", "expected"),
    [
        ("JPY", "1005", "10", "101"),  # 100.5 → 101
        ("KWD", "1.005", "50", "0.503"),  # 0.5025 → 0.503
    ],
    ids=["jpy", "kwd"],
)
def test_percentage_discount_minor_units(currency: str, amount: str, percent: str, expected: str) -> None:
    plan = make_plan(charges=[flat(amount)], currency=currency, discounts=[percent_off(percent)])
    (discount,) = rate(plan).discounts
    assert str(discount.amount) == expected


@pytest.mark.parametrize(
    ("fraction", "expected"),
    [
        (D(1), "30.00"),
        (D("0.5"), "15.00"),
        (THIRD, "10.00"),
        (TWO_THIRDS, "20.00"),
    ],
    ids=["whole", "half", "third", "two-thirds"],
)
def test_fixed_discount_prorated(fraction: Decimal, expected: str) -> None:
    plan = make_plan(charges=[flat("300")], discounts=[amount_off("30")])
    (discount,) = rate(plan, fraction=fraction).discounts
    assert discount.amount == D(expected)


def test_a_prorated_fixed_discount_says_so_on_its_line() -> None:
    """A segment of half the period takes off USD 15.00 of a USD 30 discount: its line says
    what it was prorated from and carries the share, printed beside it as a fee's is (the
    line had read "30 USD discount" with -15.00 and a share of 1)."""
    plan = make_plan(charges=[flat("300"), per_unit("0.10")], discounts=[amount_off("30"), percent_off("10")])
    rating = rate(plan, fraction=D("0.5"), quantities={"api": "100"})
    fixed, percentage = sorted(rating.discounts, key=lambda d: d.kind)
    assert (fixed.description, fixed.amount, fixed.proration) == (
        "30 USD discount (prorated from USD 30.00)",
        D("15.00"),
        D("0.5"),
    )
    # A percentage is of charges already prorated: not prorated itself
    assert (percentage.description, percentage.proration) == ("10% discount", D(1))
    [line] = [v for v in line_views(rating) if v.kind == "discount" and v.amount == "-15.00"]
    assert line.proration == "0.5"


def test_fixed_discount_prorated_is_rounded() -> None:
    plan = make_plan(charges=[flat("300")], discounts=[amount_off("10")])
    (discount,) = rate(plan, fraction=THIRD).discounts
    assert str(discount.amount) == "3.33"


def test_percentage_discount_applies_to_the_minimum_true_up() -> None:
    plan = make_plan(charges=[per_unit("0.10")], minimum="50", discounts=[percent_off("10")])
    rating = rate(plan, quantities={"api": "100"})
    assert rating.subtotal == D("50.00")
    assert [d.amount for d in rating.discounts] == [D("5.00")]
    assert rating.total == D("45.00")


@pytest.mark.parametrize(
    ("discount", "description"),
    [
        (percent_off("12.50"), "12.5% discount"),
        (percent_off("10"), "10% discount"),
        ({"kind": "percentage", "percent": "10", "description": "Launch offer"}, "Launch offer"),
        (amount_off("5"), "5 USD discount"),
    ],
    ids=["percentage-normalized", "percentage", "own-description", "fixed"],
)
def test_discount_description(discount: dict[str, Any], description: str) -> None:
    plan = make_plan(charges=SUBTOTAL_200, discounts=[discount])
    (line,) = rate(plan, quantities={"api": "2000"}).discounts
    assert line.description == description
    assert (line.plan_id, line.segment_start, line.segment_end) == ("plan-1", START, END)


# --- credits --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("credit", "applied", "total"),
    [
        ("50", "50", "130.00"),
        ("180", "180", "0.00"),
        ("500", "180.00", "0.00"),
        ("0", "0", "180.00"),
        ("-10", "0", "180.00"),
        ("0.01", "0.01", "179.99"),
    ],
    ids=["partial", "exactly-due", "more-than-due", "zero", "negative-ignored", "one-cent"],
)
def test_credits_after_discounts(credit: str, applied: str, total: str) -> None:
    plan = make_plan(charges=SUBTOTAL_200, discounts=[percent_off("10")])
    rating = rate(plan, quantities={"api": "2000"}, credit=credit)
    assert (rating.subtotal, rating.discount_total) == (D("200.00"), D("20.00"))
    assert rating.credits_applied == D(applied)
    assert rating.total == D(total)
    assert_consistent(rating)


def test_credits_on_a_free_invoice() -> None:
    plan = make_plan(charges=[per_unit("0.10")])
    rating = rate(plan, quantities={"api": "0"}, credit="25")
    assert (rating.subtotal, rating.credits_applied, rating.total) == (D(0), D(0), D(0))


@pytest.mark.parametrize(
    ("credit", "currency"),
    [
        ("0.005", "USD"),
        ("0.5", "JPY"),
        ("10.0001", "KWD"),
    ],
    ids=["usd-half-cent", "jpy-half-yen", "kwd-fourth-decimal"],
)
def test_credits_and_total_keep_the_currency_minor_unit(credit: str, currency: str) -> None:
    """Invariant 5: credits and total are sums of rounded amounts, so they never carry more
    decimals than the currency has, even when the credit available does (a credit grant
    may have up to 12 decimal places)."""
    plan = make_plan(charges=[flat("100")], currency=currency)
    rating = rate(plan, credit=credit)
    assert rating.credits_applied == round_money(rating.credits_applied, currency)
    assert rating.total == round_money(rating.total, currency)
    assert_consistent(rating)


def test_credits_drawn_over_the_whole_invoice() -> None:
    first = make_plan(charges=[flat("30")], plan_id="small")
    second = make_plan(charges=[flat("90")], plan_id="large")
    rating = rate_invoice(
        [segment(first, fraction=THIRD, end=MIDDLE), segment(second, fraction=TWO_THIRDS, start=MIDDLE)],
        currency="USD",
        credit_available=D("65"),
    )
    assert rating.subtotal == D("70.00")
    assert rating.credits_applied == D("65")
    assert rating.total == D("5.00")


# --- two segments (plan change mid-period) ----------------------------------------------------------


def test_two_segments_each_rated_on_its_own_plan() -> None:
    old = make_plan(plan_id="old", charges=[flat("30"), per_unit("0.10")])
    new = make_plan(plan_id="new", charges=[flat("90"), per_unit("0.05")], discounts=[percent_off("10")])
    rating = rate_invoice(
        [
            segment(old, quantities={"api": "100"}, fraction=THIRD, end=MIDDLE),
            segment(new, quantities={"api": "400"}, fraction=TWO_THIRDS, start=MIDDLE),
        ],
        currency="USD",
    )
    assert [(line.plan_id, line.kind, line.amount) for line in rating.lines] == [
        ("old", "flat", D("10.00")),
        ("old", "usage", D("10.00")),
        ("new", "flat", D("60.00")),
        ("new", "usage", D("20.00")),
    ]
    assert [(line.segment_start, line.segment_end) for line in rating.lines] == [
        (START, MIDDLE),
        (START, MIDDLE),
        (MIDDLE, END),
        (MIDDLE, END),
    ]
    assert [line.proration for line in rating.lines] == [THIRD, D(1), TWO_THIRDS, D(1)]
    # the new plan's discount is on the new plan's segment subtotal (80.00) only
    assert [(d.plan_id, d.amount) for d in rating.discounts] == [("new", D("8.00"))]
    assert (rating.subtotal, rating.discount_total, rating.total) == (D("100.00"), D("8.00"), D("92.00"))
    assert rating.quantities == {"api": D(500)}
    assert_consistent(rating)


def test_two_segments_of_the_same_flat_fee_add_up() -> None:
    plan = make_plan(charges=[flat("100")])
    rating = rate_invoice(
        [segment(plan, fraction=THIRD, end=MIDDLE), segment(plan, fraction=TWO_THIRDS, start=MIDDLE)],
        currency="USD",
    )
    assert [line.amount for line in rating.lines] == [D("33.33"), D("66.67")]
    assert rating.total == D("100.00")


def test_each_segment_gets_the_whole_tiers_and_included_quantity() -> None:
    plan = make_plan(charges=[tiered("graduated", [("100", "0", "0"), (None, "0.10", "0")], included="10")])
    split = rate_invoice(
        [
            segment(plan, quantities={"api": "110"}, fraction=D("0.5"), end=MIDDLE),
            segment(plan, quantities={"api": "110"}, fraction=D("0.5"), start=MIDDLE),
        ],
        currency="USD",
    )
    assert [line.billable_quantity for line in split.lines] == [D(100), D(100)]
    assert split.total == D("0.00")
    whole = rate(plan, quantities={"api": "220"})
    assert whole.total == D("11.00")


def test_two_segments_minimum_per_segment() -> None:
    plan = make_plan(charges=[per_unit("0.10")], minimum="60")
    rating = rate_invoice(
        [
            segment(plan, quantities={"api": "300"}, fraction=THIRD, end=MIDDLE),
            segment(plan, quantities={"api": "100"}, fraction=TWO_THIRDS, start=MIDDLE),
        ],
        currency="USD",
    )
    # minimum 20.00 in the first third (30.00 charged: none), 40.00 in the rest (10.00 charged)
    assert [(line.kind, line.amount) for line in rating.lines] == [
        ("usage", D("30.00")),
        ("usage", D("10.00")),
        ("minimum", D("30.00")),
    ]
    assert rating.total == D("70.00")


# --- robustness ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("price", "quantity"),
    [
        ("1e30", "1"),
        ("1e24", "1000"),
    ],
    ids=["price-1e30", "price-1e24-times-1000"],
)
def test_a_plan_the_schema_accepts_can_be_rated(price: str, quantity: str) -> None:
    """Either the plan is refused at the edge, or rating it gives an invoice (not an exception)."""
    body = msgspec.json.encode({"id": "p", "name": "P", "currency": "USD", "charges": [per_unit(price)]})
    try:
        created = msgspec.json.decode(body, type=PlanCreate)
    except msgspec.ValidationError:
        return
    plan = msgspec.convert(msgspec.to_builtins(created), Plan)
    rating = rate(plan, quantities={"api": quantity})
    assert rating.total == D(price) * D(quantity)


# --- charge_for_group -------------------------------------------------------------------------------

GROUP_CHARGES = tuple(
    msgspec.convert(c, Charge)
    for c in [
        flat("10"),
        {**per_unit("0.10", key="api-all")},
        {**per_unit("0.20", key="api-eu"), "dimensions": {"region": "eu"}},
        {**per_unit("0.30", key="api-eu-gpu"), "dimensions": {"region": "eu", "tier": "gpu"}},
        {**per_unit("0.40", key="api-us-gpu"), "dimensions": {"region": "us", "tier": "gpu"}},
        {**per_unit("0.01", key="storage", meter="storage_gb")},
    ]
)


@pytest.mark.parametrize(
    ("charges", "meter", "dimensions", "expected"),
    [
        (GROUP_CHARGES, "api_calls", {"region": "eu"}, "api-eu"),
        (GROUP_CHARGES, "api_calls", {"region": "us"}, "api-all"),
        (GROUP_CHARGES, "api_calls", {}, "api-all"),
        (GROUP_CHARGES, "api_calls", {"region": "eu", "tier": "gpu"}, "api-eu"),  # first match in the plan
        (GROUP_CHARGES, "api_calls", {"region": "us", "tier": "gpu"}, "api-us-gpu"),
        (GROUP_CHARGES, "api_calls", {"tier": "gpu"}, "api-all"),
        (GROUP_CHARGES, "storage_gb", {"region": "eu"}, "storage"),
        (GROUP_CHARGES, "compute_s", {"region": "eu"}, None),
        (GROUP_CHARGES[2:], "api_calls", {"region": "ap"}, None),
        (GROUP_CHARGES[2:], "api_calls", {"region": "eu"}, "api-eu"),
        ((GROUP_CHARGES[2], GROUP_CHARGES[1]), "api_calls", {"region": "eu"}, "api-eu"),
        ((GROUP_CHARGES[2], GROUP_CHARGES[1]), "api_calls", {"region": "us"}, "api-all"),
        ((), "api_calls", {}, None),
    ],
    ids=[
        "dimension-wins",
        "catch-all",
        "no-dimensions",
        "first-match-wins",
        "two-dimensions",
        "partial-dimensions-catch-all",
        "other-meter-charge",
        "unknown-meter",
        "no-catch-all",
        "no-catch-all-match",
        "catch-all-after-specific",
        "catch-all-after-specific-fallback",
        "no-charges",
    ],
)
def test_charge_for_group(
    charges: tuple[Charge, ...], meter: str, dimensions: dict[str, str], expected: str | None
) -> None:
    charge = charge_for_group(charges, meter, dimensions)
    assert (charge.key if charge is not None else None) == expected


# --- projected_quantity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("aggregation", "so_far", "elapsed", "period", "expected"),
    [
        ("sum", "10", 10.0, 30.0, "30"),
        ("count", "10", 10.0, 30.0, "30"),
        ("sum", "10", 7.5, 30.0, "40"),
        ("sum", "2.5", 86400.0, 2592000.0, "75"),
        ("sum", "0", 10.0, 30.0, "0"),
        ("max", "10", 10.0, 30.0, "10"),
        ("latest", "10", 10.0, 30.0, "10"),
        ("unique_count", "10", 10.0, 30.0, "10"),
        ("sum", "10", 0.0, 30.0, "10"),
        ("sum", "10", -5.0, 30.0, "10"),
        ("count", "10", 30.0, 30.0, "10"),
        ("count", "10", 45.0, 30.0, "10"),
    ],
    ids=[
        "sum",
        "count",
        "sum-fractional-elapsed",
        "sum-one-day-of-thirty",
        "sum-zero",
        "max",
        "latest",
        "unique-count",
        "not-started",
        "negative-elapsed",
        "period-over",
        "past-period",
    ],
)
def test_projected_quantity(
    aggregation: str, so_far: str, elapsed: float, period: float, expected: str
) -> None:
    projected = projected_quantity(aggregation, D(so_far), elapsed_s=elapsed, period_s=period)
    assert projected == D(expected)
