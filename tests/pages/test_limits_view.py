"""How a typed limit is read, and how far along a limit is: pure, table-driven."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.entitlements.limits import Limit
from portal.pages.limits_view import meter_limit, read_quantity


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("10000", Decimal(10000)),
        ("10,000", Decimal(10000)),
        (" 1,234,567.5 ", Decimal("1234567.5")),
        ("0", Decimal(0)),
        ("2.5", Decimal("2.5")),
    ],
)
def test_a_typed_limit_is_read_exactly(typed: str, read: Decimal) -> None:
    assert read_quantity(typed, "call") == (read, None)


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "Enter a number, such as 5,000 calls."),
        ("1,00", "Write decimals with a point and thousands with a comma or nothing, such as 1,000.50."),
        (
            "5.000",
            "A point before three digits may mean thousands: "
            "write 5,000 for five thousand, 5 or 5.0 for five.",
        ),
        ("1e3", "Enter a number, such as 5,000 calls (digits, and a point for decimals)."),
        ("NaN", "Enter a number, such as 5,000 calls (digits, and a point for decimals)."),
        ("\u0663", "Enter a number, such as 5,000 calls (digits, and a point for decimals)."),  # Arabic 3
        ("-1", "A limit cannot be below 0."),
        ("1" + "0" * 20, "That number is too large for a limit."),
        ("0.0000000000001", "Use at most 12 decimal places."),
    ],
)
def test_a_limit_that_is_no_quantity_is_refused_in_words(typed: str, problem: str) -> None:
    assert read_quantity(typed, "call") == (None, problem)


@pytest.mark.parametrize(
    ("total", "quantity", "percent", "reached"),
    [
        ("7250", "10000", 72, False),  # 72.5 % reads 72 %: never 100 % before it is reached
        ("9999.99", "10000", 99, False),
        ("10000", "10000", 100, True),
        ("14500", "10000", 145, True),
        ("0", "0", 100, True),
    ],
)
def test_the_share_of_a_limit_is_rounded_down(total: str, quantity: str, percent: int, reached: bool) -> None:
    limit = Limit("api_calls", Decimal(quantity), "hard", "plan", Decimal(quantity), True)
    shown = meter_limit(total, limit)
    assert shown is not None and (shown.percent, shown.reached) == (percent, reached)
    assert meter_limit(total, None) is None
