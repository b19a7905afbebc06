"""Plan bodies: invalid plans are refused at the edge with a message naming the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from portal.billing.currencies import is_currency, minor_units
from portal.billing.schemas import Plan, PlanCreate

PER_UNIT = {"key": "api", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.001"}
TIERS = [{"upTo": "1000", "unitPrice": "0.01"}, {"unitPrice": "0.005"}]
GRADUATED = {"key": "api", "model": "graduated", "meter": "api_calls", "tiers": TIERS}


def plan_body(*, charges: list[dict[str, Any]] | None = None, **fields: Any) -> dict[str, Any]:
    """A valid plan body; `fields` replace or add top-level fields."""
    return {
        "id": "pro",
        "name": "Pro",
        "currency": "USD",
        "charges": [PER_UNIT] if charges is None else charges,
        **fields,
    }


def charge(base: dict[str, Any] = PER_UNIT, **fields: Any) -> dict[str, Any]:
    """`base` with `fields` replaced (None removes the field)."""
    merged = {**base, **fields}
    return {k: v for k, v in merged.items() if v is not None}


def decode(body: dict[str, Any] | bytes) -> PlanCreate:
    raw = body if isinstance(body, bytes) else msgspec.json.encode(body)
    return msgspec.json.decode(raw, type=PlanCreate)


INVALID: list[tuple[str, dict[str, Any] | bytes, list[str]]] = [
    ("unknown-currency", plan_body(currency="XYZ"), ["currency", "'XYZ'", "ISO 4217"]),
    ("lowercase-currency", plan_body(currency="usd"), ["$.currency"]),
    ("no-charges", plan_body(charges=[]), ["charges", "at least one charge"]),
    ("charges-missing", {"id": "pro", "name": "Pro", "currency": "USD"}, ["charges"]),
    (
        "duplicate-charge-key",
        plan_body(charges=[PER_UNIT, charge(meter="storage_gb")]),
        ["charges", "'api'", "twice"],
    ),
    (
        "flat-with-meter",
        plan_body(charges=[{"key": "base", "model": "flat", "amount": "10", "meter": "m"}]),
        ["charge base.meter", "flat charge has no meter"],
    ),
    (
        "flat-without-amount",
        plan_body(charges=[{"key": "base", "model": "flat"}]),
        ["charge base.amount", "required"],
    ),
    (
        "flat-with-unit-price",
        plan_body(charges=[{"key": "base", "model": "flat", "amount": "10", "unitPrice": "1"}]),
        ["charge base.unitPrice", "not used by a flat charge"],
    ),
    ("usage-without-meter", plan_body(charges=[charge(meter=None)]), ["charge api.meter", "required"]),
    ("usage-with-amount", plan_body(charges=[charge(amount="10")]), ["charge api.amount", "only for flat"]),
    (
        "per-unit-without-unit-price",
        plan_body(charges=[charge(unitPrice=None)]),
        ["charge api.unitPrice", "required for a per_unit charge"],
    ),
    (
        "package-without-package-size",
        plan_body(charges=[charge(model="package", unitPrice=None, packagePrice="5")]),
        ["charge api.packageSize", "required for a package charge"],
    ),
    (
        "package-without-package-price",
        plan_body(charges=[charge(model="package", unitPrice=None, packageSize="1000")]),
        ["charge api.packagePrice", "required for a package charge"],
    ),
    (
        "package-size-zero",
        plan_body(charges=[charge(model="package", unitPrice=None, packageSize="0", packagePrice="5")]),
        ["charge api.packageSize", "greater than 0"],
    ),
    (
        "package-with-unit-price",
        plan_body(charges=[charge(model="package", packageSize="1000", packagePrice="5")]),
        ["charge api.unitPrice", "not used by a package charge"],
    ),
    (
        "negative-unit-price",
        plan_body(charges=[charge(unitPrice="-0.01")]),
        ["charge api.unitPrice", "at least 0"],
    ),
    (
        "negative-included-quantity",
        plan_body(charges=[charge(includedQuantity="-1")]),
        ["charge api.includedQuantity", "at least 0"],
    ),
    (
        "graduated-without-tiers",
        plan_body(charges=[charge(GRADUATED, tiers=[])]),
        ["charge api.tiers", "at least one tier"],
    ),
    (
        "tiers-not-rising",
        plan_body(
            charges=[
                charge(
                    GRADUATED,
                    tiers=[
                        {"upTo": "1000", "unitPrice": "0.01"},
                        {"upTo": "1000", "unitPrice": "0.005"},
                        {"unitPrice": "0"},
                    ],
                )
            ]
        ),
        ["charge api.tiers[1].upTo", "tiers must rise"],
    ),
    (
        "tiers-falling",
        plan_body(
            charges=[
                charge(
                    GRADUATED,
                    tiers=[
                        {"upTo": "1000", "unitPrice": "0.01"},
                        {"upTo": "500", "unitPrice": "0.005"},
                        {"unitPrice": "0"},
                    ],
                )
            ]
        ),
        ["charge api.tiers[1].upTo", "tiers must rise"],
    ),
    (
        "first-tier-up-to-zero",
        plan_body(
            charges=[charge(GRADUATED, tiers=[{"upTo": "0", "unitPrice": "0.01"}, {"unitPrice": "0"}])]
        ),
        ["charge api.tiers[0].upTo", "greater than 0"],
    ),
    (
        "last-tier-not-open-ended",
        plan_body(
            charges=[
                charge(
                    GRADUATED,
                    model="volume",
                    tiers=[{"upTo": "1000", "unitPrice": "0.01"}, {"upTo": "5000", "unitPrice": "0.005"}],
                )
            ]
        ),
        ["charge api.tiers[1].upTo", "last tier must be open-ended"],
    ),
    (
        "open-ended-tier-not-last",
        plan_body(
            charges=[
                charge(
                    GRADUATED,
                    tiers=[{"unitPrice": "0.01"}, {"upTo": "5000", "unitPrice": "0.005"}, {"unitPrice": "0"}],
                )
            ]
        ),
        ["charge api.tiers[0].upTo", "only the last tier may be open-ended"],
    ),
    (
        "negative-tier-price",
        plan_body(
            charges=[
                charge(GRADUATED, tiers=[{"upTo": "1000", "unitPrice": "0.01"}, {"unitPrice": "-0.005"}])
            ]
        ),
        ["charge api.tiers[1].unitPrice", "at least 0"],
    ),
    (
        "negative-tier-fee",
        plan_body(
            charges=[
                charge(
                    GRADUATED,
                    tiers=[{"upTo": "1000", "unitPrice": "0.01", "flatFee": "-1"}, {"unitPrice": "0.005"}],
                )
            ]
        ),
        ["charge api.tiers[0].flatFee", "at least 0"],
    ),
    (
        "tiers-on-per-unit",
        plan_body(charges=[charge(tiers=TIERS)]),
        ["charge api.tiers", "only graduated and volume charges have tiers"],
    ),
    (
        "unit-price-on-graduated",
        plan_body(charges=[charge(GRADUATED, unitPrice="0.01")]),
        ["charge api.unitPrice", "not used by a graduated charge"],
    ),
    (
        "thirteen-decimal-places",
        plan_body(charges=[charge(unitPrice="0.0000000000001")]),
        ["charge api.unitPrice", "at most 12 decimal places"],
    ),
    (
        "thirteen-decimal-places-tier",
        plan_body(
            charges=[
                charge(
                    GRADUATED, tiers=[{"upTo": "1000", "unitPrice": "0.0000000000001"}, {"unitPrice": "0"}]
                )
            ]
        ),
        ["charge api.tiers[0].unitPrice", "at most 12 decimal places"],
    ),
    # 29 decimal places: more significant digits than Decimal's default context keeps
    (
        "twenty-nine-decimal-places",
        plan_body(charges=[charge(unitPrice="1.00000000000000000000000000001")]),
        ["charge api.unitPrice", "at most 12 decimal places"],
    ),
    (
        "percentage-over-100",
        plan_body(discounts=[{"kind": "percentage", "percent": "100.01"}]),
        ["discount.percent", "at most 100"],
    ),
    (
        "percentage-zero",
        plan_body(discounts=[{"kind": "percentage", "percent": "0"}]),
        ["discount.percent", "greater than 0"],
    ),
    (
        "percentage-with-amount",
        plan_body(discounts=[{"kind": "percentage", "percent": "10", "amount": "5"}]),
        ["discount.percent"],
    ),
    (
        "fixed-with-percent",
        plan_body(discounts=[{"kind": "fixed", "amount": "5", "percent": "10"}]),
        ["discount.amount", "no percent"],
    ),
    ("fixed-without-amount", plan_body(discounts=[{"kind": "fixed"}]), ["discount.amount"]),
    (
        "fixed-negative",
        plan_body(discounts=[{"kind": "fixed", "amount": "-5"}]),
        ["discount.amount", "greater than 0"],
    ),
    ("unknown-discount-kind", plan_body(discounts=[{"kind": "bogo"}]), ["$.discounts[0].kind"]),
    (
        "same-meter-same-dimensions",
        plan_body(
            charges=[charge(dimensions={"region": "eu"}), charge(key="api-2", dimensions={"region": "eu"})]
        ),
        ["charge api-2.dimensions", "charge api already prices meter api_calls"],
    ),
    (
        "same-meter-no-dimensions",
        plan_body(charges=[PER_UNIT, charge(key="api-2")]),
        ["charge api-2.dimensions", "charge api already prices meter api_calls"],
    ),
    (
        "dimension-value-longer-than-any-event-has",
        plan_body(charges=[PER_UNIT, charge(key="api-eu", dimensions={"region": "v" * 257})]),
        ["Expected `str` of length <= 256", "dimensions"],
    ),
    (
        "flat-with-dimensions",
        plan_body(charges=[{"key": "base", "model": "flat", "amount": "10", "dimensions": {"region": "eu"}}]),
        ["charge base.dimensions"],
    ),
    (
        "unknown-field-typo",
        plan_body(charges=[{**PER_UNIT, "unitprice": "0.1"}]),
        ["unknown field `unitprice`", "$.charges[0]"],
    ),
    ("unknown-top-level-field", plan_body(minimumCommitmnet="10"), ["unknown field `minimumCommitmnet`"]),
    ("unknown-model", plan_body(charges=[charge(model="stairstep")]), ["$.charges[0].model"]),
    ("nan-price", plan_body(charges=[charge(unitPrice="NaN")]), ["charge api.unitPrice", "finite"]),
    ("infinity-price", plan_body(charges=[charge(unitPrice="Infinity")]), ["charge api.unitPrice", "finite"]),
    (
        "minus-infinity-price",
        plan_body(charges=[charge(unitPrice="-Infinity")]),
        ["charge api.unitPrice", "finite"],
    ),
    (
        "nan-tier-bound",
        plan_body(
            charges=[charge(GRADUATED, tiers=[{"upTo": "NaN", "unitPrice": "0.01"}, {"unitPrice": "0"}])]
        ),
        ["charge api.tiers[0].upTo", "finite"],
    ),
    (
        "nan-percent",
        plan_body(discounts=[{"kind": "percentage", "percent": "NaN"}]),
        ["discount.percent", "finite"],
    ),
    ("infinite-minimum", plan_body(minimumCommitment="Infinity"), ["minimumCommitment", "finite"]),
    ("minimum-zero", plan_body(minimumCommitment="0"), ["minimumCommitment", "greater than 0"]),
    ("price-not-a-number", plan_body(charges=[charge(unitPrice="cheap")]), ["$.charges[0].unitPrice"]),
    ("bad-charge-key", plan_body(charges=[charge(key="has space")]), ["$.charges[0].key"]),
    ("empty-name", plan_body(name=""), ["$.name"]),
    ("bad-id", plan_body(id="pro plan"), ["$.id"]),
]


@pytest.mark.parametrize(
    ("body", "expected"), [(b, e) for _, b, e in INVALID], ids=[i for i, _, _ in INVALID]
)
def test_invalid_plan_refused(body: dict[str, Any] | bytes, expected: list[str]) -> None:
    with pytest.raises(msgspec.ValidationError) as refused:
        decode(body)
    message = str(refused.value)
    for words in expected:
        assert words in message, f"{words!r} not in {message!r}"


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_number_is_not_json(literal: str) -> None:
    body = msgspec.json.encode(plan_body()).replace(b'"0.001"', literal.encode())
    with pytest.raises(msgspec.DecodeError):
        decode(body)


VALID: list[tuple[str, dict[str, Any]]] = [
    ("per-unit", plan_body()),
    ("json-number-price", plan_body(charges=[charge(unitPrice=0.001)])),
    (
        "every-model",
        plan_body(
            currency="EUR",
            minimumCommitment="49.99",
            description="All of them",
            charges=[
                {"key": "base", "model": "flat", "amount": "29.00", "description": "Platform fee"},
                charge(key="calls", includedQuantity="10000"),
                charge(GRADUATED, key="storage", meter="storage_gb"),
                {
                    "key": "compute",
                    "model": "volume",
                    "meter": "compute_s",
                    "tiers": [
                        {"upTo": "3600", "unitPrice": "0.0001", "flatFee": "1"},
                        {"unitPrice": "0.00005", "flatFee": "2"},
                    ],
                },
                {
                    "key": "egress",
                    "model": "package",
                    "meter": "egress_gb",
                    "packageSize": "100",
                    "packagePrice": "9",
                },
            ],
            discounts=[{"kind": "percentage", "percent": "100"}, {"kind": "fixed", "amount": "5"}],
        ),
    ),
    (
        "dimensions",
        plan_body(
            charges=[
                PER_UNIT,
                charge(key="api-eu", dimensions={"region": "eu"}),
                charge(key="api-eu-gpu", dimensions={"region": "eu", "tier": "gpu"}),
                charge(key="storage", meter="storage_gb"),
            ]
        ),
    ),
    ("twelve-decimal-places", plan_body(charges=[charge(unitPrice="0.000000000001")])),
    ("trailing-zeros", plan_body(charges=[charge(unitPrice="0.1000000000000000")])),
    ("jpy", plan_body(currency="JPY", charges=[charge(unitPrice="0.5")])),
    ("kwd", plan_body(currency="KWD", charges=[{"key": "base", "model": "flat", "amount": "1.250"}])),
    ("single-open-tier", plan_body(charges=[charge(GRADUATED, tiers=[{"unitPrice": "0.01"}])])),
    ("free-tier", plan_body(charges=[charge(GRADUATED, tiers=[{"upTo": "100"}, {"unitPrice": "0.01"}])])),
]


@pytest.mark.parametrize("body", [b for _, b in VALID], ids=[i for i, _ in VALID])
def test_valid_plan_decodes(body: dict[str, Any]) -> None:
    plan = decode(body)
    assert plan.id == body["id"]
    assert [c.key for c in plan.charges] == [c["key"] for c in body["charges"]]
    stored = msgspec.convert(msgspec.to_builtins(plan), Plan)
    assert stored.charges == plan.charges
    assert msgspec.json.decode(msgspec.json.encode(stored), type=PlanCreate) == plan


def test_valid_plan_fields() -> None:
    plan = decode(VALID[2][1])
    base, calls, storage, compute, egress = plan.charges
    assert plan.minimum_commitment == Decimal("49.99")
    assert (base.model, base.amount, base.meter) == ("flat", Decimal("29.00"), None)
    assert (calls.unit_price, calls.included_quantity) == (Decimal("0.001"), Decimal(10000))
    assert [(t.up_to, t.unit_price, t.flat_fee) for t in storage.tiers] == [
        (Decimal(1000), Decimal("0.01"), Decimal(0)),
        (None, Decimal("0.005"), Decimal(0)),
    ]
    assert compute.tiers[1].flat_fee == Decimal(2)
    assert (egress.package_size, egress.package_price) == (Decimal(100), Decimal(9))
    assert [d.kind for d in plan.discounts] == ["percentage", "fixed"]


def test_json_number_price_is_exact() -> None:
    plan = decode(
        b'{"id":"p","name":"P","currency":"USD","charges":[{"key":"a","model":"per_unit",'
        b'"meter":"m","unitPrice":0.1}]}'
    )
    assert str(plan.charges[0].unit_price) == "0.1"


# --- currencies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "places"),
    [
        ("USD", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("KWD", 3),
        ("BHD", 3),
        ("TND", 3),
        ("CLF", 4),
    ],
)
def test_minor_units(code: str, places: int) -> None:
    assert minor_units(code) == places
    assert is_currency(code)


@pytest.mark.parametrize("code", ["XYZ", "usd", "", "US", "USDT"])
def test_unknown_currency(code: str) -> None:
    assert not is_currency(code)
    with pytest.raises(ValueError, match=repr(code)):
        minor_units(code)
