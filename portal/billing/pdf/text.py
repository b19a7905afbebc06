"""How a document writes dates, periods and amounts: the same text as the invoice page
(exact amounts with the currency's decimals, never rounded; dates in the customer's zone)."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal

from portal.billing.currencies import minor_units
from portal.infrastructure.periods import zone

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def local_date(at: datetime, tz_name: str) -> date:
    """The calendar day of instant `at` in the zone `tz_name`."""
    return at.astimezone(zone(tz_name)).date()


def day_text(day: date) -> str:
    """'31 Dec 2026'."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def period_text(start: datetime, end: datetime, tz_name: str) -> str:
    """'1-31 Dec 2026', '15 Nov - 14 Dec 2026', '15 Dec 2026 - 14 Jan 2027' (en dashes): the
    local days of the half-open period [start, end) (its last day is the one before `end`)."""
    first = local_date(start, tz_name)
    last = local_date(end - timedelta(microseconds=1), tz_name)
    if first.year != last.year:
        return f"{day_text(first)} – {day_text(last)}"
    if first.month != last.month:
        return f"{first.day} {_MONTHS[first.month - 1]} – {day_text(last)}"
    if first.day == last.day:
        return day_text(first)
    return f"{first.day}–{day_text(last)}"


def grouped(value: object) -> str:
    """'12,345.5': an exact decimal (or its text) with thousands separators, never rounded."""
    text = format(value, "f") if isinstance(value, Decimal) else str(value)
    sign, digits = ("-", text[1:]) if text.startswith("-") else ("", text)
    whole, dot, fraction = digits.partition(".")
    if not (whole.isascii() and whole.isdigit()):
        return text
    return f"{sign}{int(whole):,}{dot}{fraction}"


def amount_text(amount: object, currency: str) -> str:
    """'1,234.50' for EUR, '1,200' for JPY: the currency's decimals at least, more only where
    they are not zero (a unit price of 0.000125), so nothing is ever rounded."""
    try:
        value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    except ArithmeticError:
        return str(amount)
    if not value.is_finite():
        return str(amount)
    try:
        places = minor_units(currency)
    except ValueError:
        places = 2
    whole, _, fraction = format(value, "f").partition(".")
    fraction = fraction.rstrip("0").ljust(places, "0")
    return grouped(f"{whole}.{fraction}" if fraction else whole)


def deduction(amount: object) -> Decimal:
    """A deduction (stored positive) as it reads on the bill: -64.40 (0.00 stays 0.00), the
    same on the invoice page and its PDF."""
    value = amount if isinstance(amount, Decimal) else Decimal(str(amount))
    return -value if value else value


def money_text(amount: object, currency: str) -> str:
    """'EUR 1,234.50': the code first, on every page, PDF, email and export (a sign such as
    '$' is ambiguous: USD, CAD and AUD all print it)."""
    return f"{currency} {amount_text(amount, currency)}"


def settlement_text(owed: object, currency: str, due: str) -> str:
    """What an issued invoice asks of its customer once its notes are counted: 'Amount due:
    EUR 12.00 by 7 Jan 2027'. Credit notes may give back its prepaid credit as well as what
    it charged (that credit was paid for too), so what is owed can fall to nothing or below:
    then nothing is due by any date, and a balance in the customer's favour is named as
    such, never as a negative amount to pay."""
    try:
        value = owed if isinstance(owed, Decimal) else Decimal(str(owed))
    except ArithmeticError:
        return f"Amount due: {money_text(owed, currency)} by {due}"
    if value > 0:
        return f"Amount due: {money_text(value, currency)} by {due}"
    if value == 0:
        return "Nothing is due: its credit notes give back all it charged."
    return (
        f"Nothing is due: {money_text(-value, currency)} is owed to the customer, since its credit "
        "notes give back more than it charged after prepaid credit."
    )
