"""Usage series for one customer and meter, from the live view or from Postgres (read
through `portal.usage.repository`)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog.schemas import Meter
from portal.infrastructure.periods import hour_buckets, local_date, local_midnight, to_datetime
from portal.live.store import LiveStore
from portal.usage import repository
from portal.usage.combine import combine, exact_sum

Source = Literal["live", "billed"]
Granularity = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class UsagePoint:
    start: datetime
    value: Decimal


@dataclass(frozen=True, slots=True)
class Usage:
    total: Decimal
    series: list[UsagePoint]


def _points(buckets: list[int], tz_name: str, granularity: Granularity) -> OrderedDict[datetime, list[int]]:
    """Buckets grouped into the series' points (each hour alone, or the local day)."""
    points: OrderedDict[datetime, list[int]] = OrderedDict()
    for bucket in buckets:
        if granularity == "hour":
            start = to_datetime(bucket)
        else:
            start = local_midnight(local_date(bucket, tz_name), tz_name)
        points.setdefault(start, []).append(bucket)
    return points


async def live_usage(
    live: LiveStore,
    *,
    customer_id: str,
    tz_name: str,
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: Granularity,
) -> Usage:
    buckets = hour_buckets(start, end, tz_name)
    points = _points(buckets, tz_name, granularity)
    if meter.aggregation == "unique_count":
        series = [
            UsagePoint(p, Decimal(await live.unique_count(customer_id, meter.metric_name, bs)))
            for p, bs in points.items()
        ]
        total = Decimal(await live.unique_count(customer_id, meter.metric_name, buckets))
        return Usage(total=total, series=series)
    totals = await live.hour_totals(customer_id, meter.metric_name, buckets)
    by_bucket = {b: totals.get(b) for b in buckets}
    series = [
        UsagePoint(p, combine(meter.aggregation, (by_bucket[b] for b in bs))) for p, bs in points.items()
    ]
    return Usage(total=combine(meter.aggregation, by_bucket.values()), series=series)


async def billed_usage(
    session: AsyncSession,
    *,
    customer_id: str,
    tz_name: str,
    meter: Meter,
    start: datetime,
    end: datetime,
    granularity: Granularity,
) -> Usage:
    buckets = hour_buckets(start, end, tz_name)
    points = _points(buckets, tz_name, granularity)
    if not buckets:
        return Usage(total=Decimal(0), series=[])
    low, high = to_datetime(buckets[0]), to_datetime(buckets[-1] + 1)
    if meter.aggregation == "unique_count":
        values_by_bucket: dict[int, set[str]] = {}
        for hour, seen in await repository.unique_values(
            session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
        ):
            values_by_bucket.setdefault(int(hour.timestamp()), set()).add(seen)
        series = [
            UsagePoint(p, Decimal(len(set().union(*(values_by_bucket.get(b, set()) for b in bs)))))
            for p, bs in points.items()
        ]
        everything: set[str] = set().union(*values_by_bucket.values()) if values_by_bucket else set()
        return Usage(total=Decimal(len(everything)), series=series)
    per_hour: dict[int, Decimal] = {}
    latest_key: dict[int, tuple[datetime | None, str | None]] = {}
    for hour, _group_key, value, latest_at, latest_event_id in await repository.hour_values(
        session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
    ):
        b = int(hour.timestamp())
        if meter.aggregation in ("sum", "count"):
            per_hour[b] = exact_sum((per_hour.get(b, Decimal(0)), value))
        elif meter.aggregation == "max":
            per_hour[b] = max(per_hour.get(b, value), value)
        elif meter.aggregation == "latest":
            candidate = (latest_at, latest_event_id)
            if b not in latest_key or candidate > latest_key[b]:
                latest_key[b] = candidate
                per_hour[b] = value
    by_bucket = {b: per_hour.get(b) for b in buckets}
    series = [
        UsagePoint(p, combine(meter.aggregation, (by_bucket[b] for b in bs))) for p, bs in points.items()
    ]
    return Usage(total=combine(meter.aggregation, by_bucket.values()), series=series)
