"""CSV cells: text a spreadsheet would run gets a leading quote; numbers stay numbers (pure)."""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest

from portal.http.csv_cells import Cell, cell_text, csv_text

# Text a customer may send as a dimension value, and what the exports write for it.
FORMULAS = [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    ("@SUM(1)", "'@SUM(1)"),
    ("+1", "'+1"),
    ("-1+2", "'-1+2"),
    ("\t=1", "'\t=1"),
    ("\r=1", "'\r=1"),
]


@pytest.mark.parametrize(
    ("value", "written"),
    [
        *FORMULAS,
        ("-1", "'-1"),  # text that looks like a number is still text
        ("eu-west", "eu-west"),
        ("a=b", "a=b"),  # only the first character matters
        (" =1", " =1"),
        ("", ""),
        (None, ""),
        (Decimal("-12.50"), "-12.50"),  # a credit stays a number a spreadsheet adds up
        (Decimal("0.000001"), "0.000001"),
        (Decimal("1E+3"), "1000"),  # never an exponent
        (-3, "-3"),
    ],
)
def test_a_cell_is_written_as(value: Cell, written: str) -> None:
    assert cell_text(value) == written


@pytest.mark.parametrize("value", [1.5, True, Decimal("NaN"), Decimal("-Infinity")])
def test_floats_bools_and_non_finite_decimals_are_refused(value: object) -> None:
    with pytest.raises(TypeError):
        cell_text(value)  # type: ignore[arg-type]


def test_a_file_reads_back_as_the_neutralised_text_and_the_numbers() -> None:
    rows: list[list[Cell]] = [[value, Decimal("-12.50"), 7] for value, _ in FORMULAS]
    text = csv_text(["dimension", "amount", "count"], rows)
    assert list(csv.reader(io.StringIO(text))) == [
        ["dimension", "amount", "count"],
        *([written, "-12.50", "7"] for _, written in FORMULAS),
    ]
