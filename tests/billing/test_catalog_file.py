"""Parsing catalog files (pure): exact numbers from YAML, clear errors."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from portal.billing.catalog_file import CatalogFileError, parse_catalog
from portal.cli.demo import demo_catalog


def test_the_example_catalog_is_valid_and_its_numbers_exact() -> None:
    catalog = demo_catalog(date(2026, 11, 24))
    assert [p.id for p in catalog.plans] == [
        "growth-eur",
        "growth-usd",
        "starter-inr",
        "growth-gbp",
        "scale-jpy",
    ]
    calls_eu = catalog.plans[0].charges[1]
    assert calls_eu.unit_price == Decimal("0.0004") and calls_eu.dimensions == {"region": "eu"}
    assert catalog.plans[1].minimum_commitment == Decimal("100.00")
    # The demo's history has three whole ended periods before the running one.
    assert {s.start_date for s in catalog.subscriptions} == {date(2026, 8, 1)}


def test_yaml_floats_are_read_as_exact_decimals() -> None:
    catalog = parse_catalog(
        b"plans:\n  - id: p\n    name: P\n    currency: USD\n    charges:\n"
        b"      - {key: c, model: per_unit, meter: m, unitPrice: 0.1}\n",
        name="c.yaml",
    )
    assert catalog.plans[0].charges[0].unit_price == Decimal("0.1")


def test_json_catalogs_are_read_too() -> None:
    catalog = parse_catalog(
        b'{"meters": [{"metricName": "m", "aggregation": "sum", "unit": "u"}]}', name="c.json"
    )
    assert catalog.meters[0].metric_name == "m"


_PRICED = (
    b"plans:\n- id: p\n  name: P\n  currency: EUR\n  charges:\n"
    b"  - key: c\n    model: per_unit\n    meter: m\n    unitPrice: PRICE\n"
)


@pytest.mark.parametrize(
    ("content", "name", "message"),
    [
        (b"plans: [\n", "c.yaml", "c.yaml: not valid YAML"),
        (b"{", "c.json", "c.json: not valid JSON"),
        (b"meterz: []\n", "c.yaml", "Object contains unknown field `meterz`"),
        (
            b"plans:\n  - id: p\n    name: P\n    currency: usd\n    charges: []\n",
            "c.yaml",
            "$.plans[0].currency",
        ),
        (b"- just\n- a list\n", "c.yaml", "Expected `object`, got `array`"),
        # Hostile files (each was a 500 on the admin upload): nesting past the parser's
        # recursion, and YAML's non-numbers where an exact price goes
        (b"meters: " + b"[" * 20_000 + b"]" * 20_000, "c.yaml", "c.yaml: not valid YAML: nested too deeply"),
        (b"meters:\n" + b"- " * 5_000 + b"x\n", "c.yaml", "c.yaml: not valid YAML: nested too deeply"),
        (_PRICED.replace(b"PRICE", b".nan"), "c.yaml", "not valid YAML: .nan is not a finite number"),
        (_PRICED.replace(b"PRICE", b"-.Inf"), "c.yaml", "not valid YAML: -.Inf is not a finite number"),
    ],
)
def test_a_bad_file_names_the_problem(content: bytes, name: str, message: str) -> None:
    with pytest.raises(CatalogFileError) as caught:
        parse_catalog(content, name=name)
    assert message in str(caught.value)
