"""Shared pieces of the JSON API: camelCase structs and the error body."""

from __future__ import annotations

from datetime import UTC, date, datetime

import msgspec


class CamelStruct(msgspec.Struct, rename="camel", forbid_unknown_fields=True):
    """Request and response bodies: camelCase on the wire, like the event schema.

    Unknown fields are refused so that a typo ("metricname") is an error, not a default.
    """


ID_PATTERN = r"^(?!\.\.?$)[A-Za-z0-9._:@+\-]+$"
"""Customer ids and metric names: no braces (they would break Redis hash tags), no spaces,
and not "." or ".." (ids sit in URL paths, where browsers and proxies resolve those as dot
segments: such a customer or meter could never be opened)."""

NO_NUL = r"^[^\x00]*$"
"""Free text (names, descriptions, reasons): any character but NUL, which Postgres refuses
in text (and with it the whole row)."""

# Instants, dates and periods the API accepts: Unix time up to the start of year 9999, so
# that local times, period ends and day boundaries stay inside Python's datetime range in
# every zone (0001-01-01 or 9999-12-31 in a zone far from UTC is not).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 1, 1, tzinfo=UTC)
TIME_RANGE = "from 1970-01-01 to 9998-12-31"


def check_time(field: str, value: datetime | date | None) -> None:
    """ValueError naming `field` unless `value` is None or lies in [EARLIEST, LATEST).
    A naive datetime is compared as if in UTC (whoever needs an offset checks that)."""
    if value is None:
        return
    if isinstance(value, datetime):
        inside = (
            EARLIEST <= value < LATEST
            if value.tzinfo is not None
            else EARLIEST.replace(tzinfo=None) <= value < LATEST.replace(tzinfo=None)
        )
    else:
        inside = EARLIEST.date() <= value < LATEST.date()
    if not inside:
        raise ValueError(f"{field}: must lie {TIME_RANGE}")
