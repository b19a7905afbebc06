"""How instants and numbers read on a page: the customer's zone, named. Pure functions.

Inside the system every instant is UTC; pages convert at the last moment and always show
the zone's abbreviation next to a time, so that the repeated hour of a DST change
(02:00 CEST, then 02:00 CET) reads as two different hours.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from jinja2 import Environment

from portal.billing.pdf.text import deduction, money_text, settlement_text

# One wording for pages, notices and PDFs: numbers and money are never rounded, money shows
# the currency's decimals ('USD 19.54' for a stored 19.540000, 'USD 0.000125', 'JPY 1,200').
from portal.billing.pdf.text import grouped as grouped
from portal.billing.pdf.text import period_text as period_text
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


def money(amount: object, currency: str) -> str:
    """'USD 1,234.50' (`money_text`): the name pages, notices and templates use."""
    return money_text(amount, currency)


def deducted(amount: object, currency: str) -> str:
    """'EUR -64.40': a discount or credit drawn, stored positive, written as the PDF does."""
    try:
        return money_text(deduction(amount), currency)
    except ArithmeticError:
        return money_text(amount, currency)


def measure(quantity: object, unit: str) -> str:
    """'1,657 calls', '1 call', '42 GB': a quantity with its meter's unit, the unit in the
    plural when it is a word (a lower-case unit such as 'call' or 'user') and the quantity
    is not exactly one. Abbreviations ('GB', 'vCPU-h') are never inflected."""
    text = grouped(quantity)
    return f"{text} {unit_for(quantity, unit)}" if unit else text


def unit_for(quantity: object, unit: str) -> str:
    """The unit as `measure` writes it after `quantity` ('calls', 'call', 'GB')."""
    if not unit or not unit.isalpha() or not unit.islower():
        return unit
    try:
        one = Decimal(str(quantity)) == 1
    except ArithmeticError:
        one = False
    # A unit already in the plural ('calls', 'requests') is written as it was given.
    if one or (unit.endswith("s") and not unit.endswith("ss")):
        return unit
    if unit.endswith(("ss", "x", "z", "ch", "sh")):
        return unit + "es"
    if unit.endswith("y") and unit[-2:-1] not in ("a", "e", "i", "o", "u"):
        return unit[:-1] + "ies"
    return unit + "s"


def dimensions_text(dimensions: object) -> str:
    """'region: apac, plan: pro' for an event's dimensions; '—' for none."""
    if not isinstance(dimensions, dict) or not dimensions:
        return "—"
    return ", ".join(f"{key}: {value}" for key, value in sorted(dimensions.items()))


def metric_label(metric_name: str) -> str:
    """'API calls' for 'api_calls', 'Storage GB' for 'storage_gb': a readable fallback for a
    meter that has no charge description to show."""
    words = metric_name.replace("-", "_").split("_")
    known = {"api": "API", "gb": "GB", "mb": "MB", "tb": "TB", "cpu": "CPU", "id": "ID", "url": "URL"}
    shown = [known.get(word.lower(), word.lower()) for word in words if word]
    if not shown:
        return metric_name
    first = shown[0]
    shown[0] = first if first.isupper() else first[:1].upper() + first[1:]
    return " ".join(shown)


def invoice_label(number: str | None, period_start: datetime, tz_name: str) -> str:
    """'INV-000001', or 'Draft, Dec 2026' for an invoice not numbered yet (by the month its
    period starts in, in the customer's zone)."""
    if number:
        return number
    local = to_local(period_start, tz_name)
    return f"Draft, {_MONTHS[local.month - 1]} {local.year}"


def percent(share: object) -> str:
    """A share as people read it: "0.5" -> "50%", "0.9953" -> "99.53%", exactly (None: a dash)."""
    if share is None:
        return "–"
    try:
        value = Decimal(str(share)) * 100
    except ArithmeticError:
        return str(share)
    if not value.is_finite():
        return str(share)
    text = format(value.normalize(), "f") if value != value.to_integral_value() else str(int(value))
    return f"{grouped(text)}%"


def register_filters(environment: Environment) -> None:
    """Jinja filters the templates use: `at | instant(tz)`, `n | grouped`, `x | money(cur)`,
    `x | deducted(cur)`, `n | measure(unit)`, `unit | unit_for(n)`, `dims | dimensions_text`,
    `name | metric_label`, `share | percent`, `owed | settlement(cur, due)`."""
    environment.filters["instant"] = lambda at, tz: instant(at, tz) if at is not None else "—"
    environment.filters["grouped"] = grouped
    environment.filters["percent"] = percent
    environment.filters["money"] = money
    environment.filters["deducted"] = deducted
    environment.filters["measure"] = measure
    environment.filters["unit_for"] = lambda unit, quantity: unit_for(quantity, unit)
    environment.filters["dimensions_text"] = dimensions_text
    environment.filters["metric_label"] = metric_label
    environment.filters["period_text"] = period_text
    environment.filters["invoice_label"] = invoice_label
    environment.filters["settlement"] = settlement_text
