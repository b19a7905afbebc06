"""How instants and numbers read on a page: the customer's zone, named. Pure functions.

Inside the system every instant is UTC; pages convert at the last moment and always show
the zone's abbreviation next to a time, so that the repeated hour of a DST change
(02:00 CEST, then 02:00 CET) reads as two different hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from jinja2 import Environment

from portal.infrastructure.periods import zone

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HOUR = timedelta(hours=1)


def to_local(at: datetime, tz_name: str) -> datetime:
    """`at` (timezone-aware) in the zone `tz_name`; raises ValueError for an unknown zone."""
    return at.astimezone(zone(tz_name))


def abbreviation(local: datetime) -> str:
    """The zone's abbreviation at that moment ("CET", "IST"; "+0545" where it has none)."""
    return local.tzname() or local.strftime("%z")


def instant(at: datetime, tz_name: str) -> str:
    """'24 Nov 2026 14:03 CET': a minute-precision instant in the customer's zone."""
    local = to_local(at, tz_name)
    return f"{local.day} {_MONTHS[local.month - 1]} {local.year} {local:%H:%M} {abbreviation(local)}"


def day_of(start: datetime, tz_name: str) -> str:
    """'Tue 24 Nov 2026': the local day starting at `start`."""
    local = to_local(start, tz_name)
    return f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local.year}"


def hour_range(start: datetime, tz_name: str) -> str:
    """'Tue 24 Nov 14:00-15:00 CET' (with an en dash): the local hour starting at `start`.

    Both ends carry the abbreviation when a DST change falls inside the hour
    ('Sun 29 Mar 01:00 CET-03:00 CEST').
    """
    local = to_local(start, tz_name)
    local_end = to_local(start + HOUR, tz_name)
    head = f"{_WEEKDAYS[local.weekday()]} {local.day} {_MONTHS[local.month - 1]} {local:%H:%M}"
    if abbreviation(local) == abbreviation(local_end):
        return f"{head}–{local_end:%H:%M} {abbreviation(local)}"
    return f"{head} {abbreviation(local)}–{local_end:%H:%M} {abbreviation(local_end)}"


def grouped(value: object) -> str:
    """'12,345.5': an exact decimal (or its text) with thousands separators, never rounded
    and never in exponent notation (a normalized 10^19 is Decimal('1E+19'))."""
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, dot, fraction = digits.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        return text
    return f"{sign}{int(whole):,}{dot}{fraction}"


def money(amount: object, currency: str) -> str:
    """'USD 1,234.50': the exact amount as stored (already in the currency's minor unit)."""
    return f"{currency} {grouped(amount)}"


def register_filters(environment: Environment) -> None:
    """Jinja filters the templates use: `at | instant(tz)`, `n | grouped`, `x | money(cur)`."""
    environment.filters["instant"] = lambda at, tz: instant(at, tz) if at is not None else "—"
    environment.filters["grouped"] = grouped
    environment.filters["money"] = money
