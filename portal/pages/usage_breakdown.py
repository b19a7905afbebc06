"""A meter's usage split by one of its group-by dimensions, from the Postgres hourly
aggregates (the live view keeps per-group hours too, but not per single dimension, and
Postgres holds every range the page may ask for).

Hours are combined per dimension value exactly as `portal.usage.service.billed_usage`
combines them over all groups: sums add, max takes the largest, latest takes the latest
event, and unique counts count the union of distinct values.

A dimension may have thousands of values (an end-user id, an endpoint): the work is kept
proportional to the stored hours, never to the values times the points of the range. Totals are
worked out for every value; a series only for the values that are drawn (the largest few),
or, for the CSV, only at the points where a value had usage. It runs in a thread, so the
web process's event loop answers other requests meanwhile.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog.schemas import Meter
from portal.infrastructure.periods import hour_buckets, to_datetime
from portal.usage import repository as usage_repository
from portal.usage.combine import combine

# The usage API's own grouping of hours into points, so both split days the same way.
from portal.usage.service import Granularity, UsagePoint
from portal.usage.service import _points as points_of

# Shown for events that did not carry the dimension.
NO_VALUE = "(none)"


@dataclass(frozen=True, slots=True)
class GroupUsage:
    value: str
    total: Decimal
    # Every point of the range (a chart's), only the points with usage (sparse, the CSV's),
    # or none (a value listed with its total only).
    series: list[UsagePoint]


@dataclass(frozen=True, slots=True)
class _Range:
    aggregation: str
    dimension: str
    buckets: list[int]
    points: dict[datetime, list[int]]
    point_of: dict[int, datetime]


def _dimension(group_key: str, dimension: str, cache: dict[str, str]) -> str:
    found = cache.get(group_key)
    if found is None:
        dims = json.loads(group_key) if group_key else {}
        found = cache[group_key] = str(dims.get(dimension, NO_VALUE))
    return found


async def usage_by_dimension(
    session: AsyncSession,
    *,
    customer_id: str,
    tz_name: str,
    meter: Meter,
    dimension: str,
    start: datetime,
    end: datetime,
    granularity: Granularity,
    series_for: int | None = None,
    sparse: bool = False,
) -> list[GroupUsage]:
    """One entry per value of `dimension` seen in [start, end), largest total first.
    `series_for`: how many of the largest get a series (None: every value); `sparse`: a
    series holds only the points where its value had usage, not every point of the range."""
    buckets = hour_buckets(start, end, tz_name)
    if not buckets:
        return []
    points = points_of(buckets, tz_name, granularity)
    span = _Range(
        meter.aggregation,
        dimension,
        buckets,
        points,
        {b: p for p, bs in points.items() for b in bs},
    )
    low, high = to_datetime(buckets[0]), to_datetime(buckets[-1] + 1)
    rows: Sequence[Any]
    if meter.aggregation == "unique_count":
        rows = await usage_repository.group_unique_values(
            session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
        )
        return await asyncio.to_thread(_unique_groups, rows, span, series_for, sparse)
    rows = await usage_repository.hour_values(
        session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
    )
    return await asyncio.to_thread(_value_groups, rows, span, series_for, sparse)


def _largest(totals: dict[str, Decimal]) -> list[tuple[str, Decimal]]:
    return sorted(totals.items(), key=lambda item: (-item[1], item[0]))


def _value_groups(
    rows: Sequence[Any], span: _Range, series_for: int | None, sparse: bool
) -> list[GroupUsage]:
    aggregation = span.aggregation
    names: dict[str, str] = {}
    per_hour: dict[str, dict[int, Decimal]] = {}
    latest: dict[tuple[str, int], tuple[datetime | None, str | None]] = {}
    for hour, group_key, value, latest_at, event_id in rows:
        name, b = _dimension(group_key, span.dimension, names), int(hour.timestamp())
        hours = per_hour.setdefault(name, {})
        if aggregation in ("sum", "count"):
            hours[b] = hours.get(b, Decimal(0)) + value
        elif aggregation == "max":
            hours[b] = max(hours.get(b, value), value)
        elif aggregation == "latest":
            candidate = (latest_at, event_id)
            if (name, b) not in latest or candidate > latest[(name, b)]:
                latest[(name, b)] = candidate
                hours[b] = value
    # In time order: "latest" takes the last hour's value.
    totals = {
        name: combine(aggregation, (hours[b] for b in sorted(hours))) for name, hours in per_hour.items()
    }

    def series(hours: dict[int, Decimal]) -> list[UsagePoint]:
        if not sparse:
            return [
                UsagePoint(p, combine(aggregation, (hours.get(b) for b in bs)))
                for p, bs in span.points.items()
            ]
        by_point: dict[datetime, list[Decimal]] = {}
        for b in sorted(hours):
            if (point := span.point_of.get(b)) is not None:
                by_point.setdefault(point, []).append(hours[b])
        return [UsagePoint(p, combine(aggregation, values)) for p, values in sorted(by_point.items())]

    return [
        GroupUsage(name, total, series(per_hour[name]) if series_for is None or rank < series_for else [])
        for rank, (name, total) in enumerate(_largest(totals))
    ]


def _unique_groups(
    rows: Sequence[Any], span: _Range, series_for: int | None, sparse: bool
) -> list[GroupUsage]:
    names: dict[str, str] = {}
    seen: dict[str, dict[int, set[str]]] = {}
    for hour, group_key, member in rows:
        by_bucket = seen.setdefault(_dimension(group_key, span.dimension, names), {})
        by_bucket.setdefault(int(hour.timestamp()), set()).add(member)
    totals = {name: Decimal(len(set().union(*by_bucket.values()))) for name, by_bucket in seen.items()}

    def series(by_bucket: dict[int, set[str]]) -> list[UsagePoint]:
        if not sparse:
            return [
                UsagePoint(p, Decimal(len(set().union(*(by_bucket.get(b, set()) for b in bs)))))
                for p, bs in span.points.items()
            ]
        by_point: dict[datetime, set[str]] = {}
        for b, members in by_bucket.items():
            if (point := span.point_of.get(b)) is not None:
                by_point.setdefault(point, set()).update(members)
        return [UsagePoint(p, Decimal(len(members))) for p, members in sorted(by_point.items())]

    return [
        GroupUsage(name, total, series(seen[name]) if series_for is None or rank < series_for else [])
        for rank, (name, total) in enumerate(_largest(totals))
    ]
