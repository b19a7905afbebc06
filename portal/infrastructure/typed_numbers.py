"""Numbers as people type them into forms and amounts: digits, a point for decimals, and
commas only where they group thousands.

A comma inside a number separates thousands only ("1,000", "12,500.5"). "300,50" is a
decimal comma: 300.50 to a European reader, 30,050 to a parser that drops commas, so it is
refused with a hint (`DECIMAL_HINT`) rather than read either way. Exponents, underscores,
other scripts' digits and "NaN" are refused too: what is stored is what was typed.
"""

from __future__ import annotations

import re
from decimal import Decimal

_PLAIN = re.compile(r"^[+-]?(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d+)?$", re.ASCII)
DECIMAL_HINT = "write decimals with a point and thousands with a comma or nothing, such as 1,000.50"


def typed_decimal(text: str) -> Decimal | None:
    """The number `text` writes ("1,000.50", "12.5", "-3"), or None when it is not one in
    this grammar (also "300,50", "1e3", "1_000")."""
    cleaned = text.strip()
    if not _PLAIN.match(cleaned):
        return None
    return Decimal(cleaned.replace(",", ""))
