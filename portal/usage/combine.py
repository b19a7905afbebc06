"""How hourly values combine into days and totals, per aggregation. Pure functions.

`unique_count` is absent on purpose: distinct counts do not add up, so callers count the
union of distinct values instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, localcontext


def exact_sum(values: Iterable[Decimal]) -> Decimal:
    """The exact sum: the default context keeps 28 digits, and sums of quantities up to
    10^20 with 12 decimal places need more."""
    with localcontext(prec=80):
        return sum(values, Decimal(0))


def combine(aggregation: str, values: Iterable[Decimal | None]) -> Decimal:
    """Combine time-ordered hourly values (None = no usage that hour)."""
    present = [v for v in values if v is not None]
    if not present:
        return Decimal(0)
    if aggregation in ("sum", "count"):
        return exact_sum(present)
    if aggregation == "max":
        return max(present)
    if aggregation == "latest":
        return present[-1]  # hours are in time order; the last hour holds the latest event
    raise ValueError(f"{aggregation} values do not combine by hour")


def exact(value: Decimal) -> str:
    """A decimal as the API shows it: no exponent, no trailing zeros ("1000", "0.5").

    Exact at any size: normalize() would round to the context's 28 digits."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def trimmed(value: Decimal) -> Decimal:
    """`value` as a Decimal whose plain text is `exact(value)` (for writers that format
    numbers themselves, such as the CSV exports)."""
    return Decimal(exact(value))
