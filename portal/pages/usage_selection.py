"""Which usage a meter page shows: a range in the customer's zone, a granularity and an
optional group-by dimension, read from the query string. Pure functions, no I/O.

Ranges are whole local days (or the billing period) so that a day never straddles two
views; the end is capped at "now" plus the ingest's future tolerance, as on the overview,
so a view of the current period does not draw hours that cannot have usage yet.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from urllib.parse import urlencode

from portal.catalog.schemas import Meter
from portal.infrastructure.periods import BillingPeriod, local_midnight, period_for, previous_period
from portal.pages.formatting import to_local

Granularity = Literal["hour", "day"]
RANGES = {
    "this_period": "This billing period",
    "last_period": "Last billing period",
    "last_7_days": "Last 7 days",
    "last_30_days": "Last 30 days",
    "custom": "From–to dates",
}
GRANULARITIES = {"hour": "Hour", "day": "Day"}
MAX_DAYS = 366
# An hourly view of more than three months is thousands of bars: ask for days instead.
MAX_HOURLY_DAYS = 93


class SelectionError(ValueError):
    """A query parameter that cannot be shown; `field` names it as the form does."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class Selection:
    range: str
    granularity: Granularity
    group: str | None
    start: datetime  # UTC, a local midnight (or the period's start)
    end: datetime  # UTC, exclusive: the range's end capped at now + tolerance
    range_end: datetime  # UTC, exclusive: where the range ends on the calendar
    first_day: date  # the local dates the range covers, as the form shows them
    last_day: date
    # The range is still running at the selection's "now": its numbers change while the
    # page is open. Judged by now, not by `end`: in a range's last minutes `end` (now plus
    # the tolerance) already reaches `range_end`, and the range is still running.
    open: bool = False

    def query(self, **override: str) -> str:
        """The selection as a query string (links, the CSV export, the live refresh)."""
        params = {"range": self.range, "granularity": self.granularity}
        if self.range == "custom":
            params["from"] = self.first_day.isoformat()
            params["to"] = self.last_day.isoformat()
        if self.group:
            params["group"] = self.group
        params.update(override)
        return urlencode(params)


@dataclass(frozen=True, slots=True)
class RawSelection:
    """The form's values as sent, kept to show them again next to an error."""

    range: str = "this_period"
    granularity: str = "hour"
    group: str = ""
    from_: str = ""
    to: str = ""


def _date(field: str, text: str) -> date:
    if not text:
        raise SelectionError(field, "choose a date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise SelectionError(field, f"“{text}” is not a date (YYYY-MM-DD)") from None


def _days(first: date, last: date, tz_name: str) -> tuple[datetime, datetime]:
    return local_midnight(first, tz_name), local_midnight(last + timedelta(days=1), tz_name)


def select(
    raw: RawSelection,
    *,
    meter: Meter,
    tz_name: str,
    anchor_day: int,
    now: datetime,
    future_tolerance: timedelta,
) -> Selection:
    """The selection `raw` asks for; raises SelectionError naming the first bad field."""
    if raw.granularity not in GRANULARITIES:
        raise SelectionError("granularity", f"“{raw.granularity}” is not one of hour, day")
    granularity: Granularity = "hour" if raw.granularity == "hour" else "day"
    group = raw.group or None
    if group is not None and group not in meter.group_by:
        known = ", ".join(meter.group_by) or "none: this meter has no group-by dimensions"
        raise SelectionError(
            "group", f"“{group}” is not a dimension of {meter.metric_name} (its dimensions: {known})"
        )
    today = to_local(now, tz_name).date()
    if raw.range in ("this_period", "last_period"):
        period = period_for(now, tz_name, anchor_day)
        if raw.range == "last_period":
            period = previous_period(period, tz_name, anchor_day)
        start, range_end = period.start, period.end
        first, last = _local_days(period, tz_name)
    elif raw.range in ("last_7_days", "last_30_days"):
        last = today
        first = today - timedelta(days=6 if raw.range == "last_7_days" else 29)
        start, range_end = _days(first, last, tz_name)
    elif raw.range == "custom":
        first, last = _date("from", raw.from_), _date("to", raw.to)
        if first > last:
            raise SelectionError("to", f"must not be before “from” ({first.isoformat()})")
        if (last - first).days + 1 > MAX_DAYS:
            raise SelectionError("to", f"a range covers at most {MAX_DAYS} days")
        try:
            start, range_end = _days(first, last, tz_name)
        except (OverflowError, ValueError):  # 0001-01-01 east of UTC, the day after 9999-12-31
            raise SelectionError("from", "choose dates between the years 1 and 9999") from None
    else:
        raise SelectionError("range", f"“{raw.range}” is not one of {', '.join(RANGES)}")
    if granularity == "hour" and (last - first).days + 1 > MAX_HOURLY_DAYS:
        raise SelectionError(
            "granularity", f"an hourly view covers at most {MAX_HOURLY_DAYS} days: choose day"
        )
    end = max(start, min(range_end, now + future_tolerance))
    return Selection(raw.range, granularity, group, start, end, range_end, first, last, open=now < range_end)


def _local_days(period: BillingPeriod, tz_name: str) -> tuple[date, date]:
    first = to_local(period.start, tz_name).date()
    last = to_local(period.end - timedelta(microseconds=1), tz_name).date()
    return first, last
