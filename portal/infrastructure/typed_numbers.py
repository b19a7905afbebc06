"""Numbers as people type them into forms and amounts: digits, a point for decimals, and
commas only where they group thousands.

A comma inside a number separates thousands only ("1,000", "12,500.5"). "300,50" is a
decimal comma: 300.50 to a European reader, 30,050 to a parser that drops commas, so it is
refused with a hint (`DECIMAL_HINT`) rather than read either way. "5.000" is the same
ambiguity the other way round: five to an English reader, five thousand to a German one
(a point groups thousands there), so a point followed by exactly three digits after one to
three digits (not "0.125") is refused too (`POINT_HINT`). Exponents, underscores, other
scripts' digits and "NaN" are refused too: what is stored is what was typed.
`number_hint` says which hint a refused text needs.
"""

from __future__ import annotations

import re
from decimal import Decimal

_PLAIN = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$", re.ASCII)
_THOUSANDS_POINT = re.compile(r"^[+-]?[1-9]\d{0,2}\.\d{3}$", re.ASCII)
DECIMAL_HINT = "write decimals with a point and thousands with a comma or nothing, such as 1,000.50"
POINT_HINT = (
    "a point before three digits may mean thousands: write 5,000 for five thousand, 5 or 5.0 for five"
)


def typed_decimal(text: str, *, three_decimals: bool = False) -> Decimal | None:
    """The number `text` writes ("1,000.50", "12.5", "-3"), or None when it is not one in
    this grammar (also "300,50", "1e3", "1_000", "5.000"). `three_decimals`: an amount in a
    currency with three decimals (KWD, BHD…), where "1.250" can only mean 1.250."""
    cleaned = text.strip()
    if not _PLAIN.match(cleaned) or (not three_decimals and _THOUSANDS_POINT.match(cleaned)):
        return None
    return Decimal(cleaned.replace(",", ""))


def number_hint(text: str, *, three_decimals: bool = False) -> str | None:
    """Why `typed_decimal` refused `text` when it looks like a number written another
    country's way ("300,50", "5.000"): the hint to show; None otherwise."""
    cleaned = text.strip()
    if not three_decimals and _THOUSANDS_POINT.match(cleaned):
        return POINT_HINT
    if "," in cleaned:
        return DECIMAL_HINT
    return None
