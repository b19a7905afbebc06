"""The answer to "may this customer use more?" at the edges of what a quantity can be
(20 whole digits and 12 decimals): exact, never rounded to the default 28 digits."""

from __future__ import annotations

from decimal import Decimal

import pytest

from portal.entitlements.limits import Limit, answer

BIG = Decimal("99999999999999999999")  # the largest whole limit there is


@pytest.mark.parametrize(
    ("used", "quantity", "allowed"),
    [
        (Decimal(140253), Decimal("99999999999999859746"), True),  # exactly to the limit
        (Decimal(140253), Decimal("99999999999999859746.000000000001"), False),  # 10^-12 past it
        (Decimal(140253), Decimal("99999999999999859747"), False),
        (Decimal("0.000000000001"), BIG, False),
    ],
)
def test_a_hard_limit_is_kept_to_the_last_decimal(used: Decimal, quantity: Decimal, allowed: bool) -> None:
    assert answer("sum", used, Limit("api_calls", BIG, "hard", "plan"), quantity).allowed is allowed


def test_what_remains_is_exact() -> None:
    limit = Limit("api_calls", Decimal("99999999999999999999.999999999999"), "hard", "plan")
    assert answer("sum", Decimal(140253), limit, None).remaining == Decimal(
        "99999999999999859746.999999999999"
    )
    assert answer("count", Decimal(0), limit, Decimal(1)).remaining == limit.quantity
