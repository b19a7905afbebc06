"""Time buckets and billing periods: pure functions of their inputs.

Inside the system every instant is UTC. A usage "hour" is the customer's local hour,
stored as the UTC instant it starts at, so that local days and billing periods are whole
sums of hours, including zones with :30 and :45 offsets and across DST changes.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

HOUR_S = 3600
# Every UTC offset and transition in the tz database falls on a quarter hour, so an
# offset looked up once is valid for its whole 15-minute slot.
_SLOT_S = 900
_offset_cache: dict[tuple[str, int], int] = {}


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; raises ValueError naming it when it does not exist."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone {name!r}") from exc


# Names ZoneInfo opens that are no place a customer lives: "localtime" is this machine's own
# zone (Postgres does not know it, so SQL in the customer's zone would fail), "Factory" a
# placeholder; "posix/…" and "right/…" are copies of the database Postgres has not either.
_NOT_CUSTOMER_ZONES = frozenset({"localtime", "Factory"})


@lru_cache(maxsize=1)
def customer_zones() -> frozenset[str]:
    """The IANA zones a customer may be billed in: the tz database's names, less the above."""
    return frozenset(available_timezones()) - _NOT_CUSTOMER_ZONES


def customer_zone(name: str) -> ZoneInfo:
    """`zone(name)` for a zone a customer is created in; raises ValueError naming it when
    it is no IANA zone a customer can be in."""
    if name not in customer_zones():
        raise ValueError(f"unknown IANA time zone {name!r} (such as Europe/Berlin or America/New_York)")
    return zone(name)


def utc_offset_s(epoch_s: float, tz_name: str) -> int:
    """The customer's UTC offset in seconds at instant `epoch_s`."""
    slot = int(epoch_s // _SLOT_S)
    key = (tz_name, slot)
    offset = _offset_cache.get(key)
    if offset is None:
        if len(_offset_cache) > 200_000:
            _offset_cache.clear()
        moment = datetime.fromtimestamp(slot * _SLOT_S, UTC).astimezone(zone(tz_name))
        delta = moment.utcoffset()
        offset = int(delta.total_seconds()) if delta is not None else 0
        _offset_cache[key] = offset
    return offset


def hour_bucket(epoch_s: float, tz_name: str) -> int:
    """Start (epoch seconds, UTC) of the customer's local hour that contains `epoch_s`."""
    offset = utc_offset_s(epoch_s, tz_name)
    local = int(epoch_s // 1) + offset
    return local - local % HOUR_S - offset


def hour_buckets(start: datetime, end: datetime, tz_name: str) -> list[int]:
    """Every local-hour bucket start in [start, end), in order (epoch seconds, UTC)."""
    buckets: list[int] = []
    cursor = hour_bucket(start.timestamp(), tz_name)
    stop = end.timestamp()
    while cursor < stop:
        buckets.append(cursor)
        following = hour_bucket(cursor + HOUR_S, tz_name)
        # A backwards DST shift revisits a local hour: step past it rather than loop.
        cursor = following if following > cursor else cursor + HOUR_S
    return buckets


def local_date(epoch_s: float, tz_name: str) -> date:
    """The customer's calendar date at instant `epoch_s`."""
    return datetime.fromtimestamp(epoch_s, UTC).astimezone(zone(tz_name)).date()


def local_midnight(day: date, tz_name: str) -> datetime:
    """The UTC instant at which `day` starts in the customer's zone."""
    return datetime(day.year, day.month, day.day, tzinfo=zone(tz_name)).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class BillingPeriod:
    """[start, end) in UTC, aligned to local midnight on the anchor day."""

    start: datetime
    end: datetime


def anchor_date(year: int, month: int, anchor_day: int) -> date:
    """The anchor day in a month; days 29-31 fall back to the month's last day."""
    last = calendar.monthrange(year, month)[1]
    return date(year, month, min(anchor_day, last))


def _shift_month(year: int, month: int, by: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + by
    return index // 12, index % 12 + 1


def period_for(at: datetime, tz_name: str, anchor_day: int = 1) -> BillingPeriod:
    """The monthly billing period containing instant `at` (timezone-aware).

    Raises ValueError for a naive datetime, an unknown zone or an anchor outside 1-31.
    """
    if at.tzinfo is None:
        raise ValueError("period_for needs a timezone-aware instant")
    if not 1 <= anchor_day <= 31:
        raise ValueError(f"billing anchor day must be 1-31, got {anchor_day}")
    local = at.astimezone(zone(tz_name))
    year, month = local.year, local.month
    start = local_midnight(anchor_date(year, month, anchor_day), tz_name)
    if start > at:
        year, month = _shift_month(year, month, -1)
        start = local_midnight(anchor_date(year, month, anchor_day), tz_name)
    next_year, next_month = _shift_month(year, month, 1)
    end = local_midnight(anchor_date(next_year, next_month, anchor_day), tz_name)
    return BillingPeriod(start=start, end=end)


def previous_period(period: BillingPeriod, tz_name: str, anchor_day: int = 1) -> BillingPeriod:
    return period_for(period.start - timedelta(microseconds=1), tz_name, anchor_day)


def to_datetime(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)
