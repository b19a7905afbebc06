"""A meter's usage split by one of its group-by dimensions, from the Postgres hourly
aggregates (the live view keeps per-group hours too, but not per single dimension, and
Postgres holds every range the page may ask for).

Hours are combined per dimension value exactly as `portal.usage.service.billed_usage`
combines them over all groups: sums add, max takes the largest, latest takes the latest
event, and unique counts count the union of distinct values.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

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
    series: list[UsagePoint]


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
) -> list[GroupUsage]:
    """One series per value of `dimension` seen in [start, end), largest total first."""
    buckets = hour_buckets(start, end, tz_name)
    if not buckets:
        return []
    points = points_of(buckets, tz_name, granularity)
    low, high = to_datetime(buckets[0]), to_datetime(buckets[-1] + 1)
    names: dict[str, str] = {}
    groups: list[GroupUsage] = []
    if meter.aggregation == "unique_count":
        seen: dict[str, dict[int, set[str]]] = {}
        for hour, group_key, member in await usage_repository.group_unique_values(
            session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
        ):
            by_bucket = seen.setdefault(_dimension(group_key, dimension, names), {})
            by_bucket.setdefault(int(hour.timestamp()), set()).add(member)
        for name, by_bucket in seen.items():
            series = [
                UsagePoint(p, Decimal(len(set().union(*(by_bucket.get(b, set()) for b in bs)))))
                for p, bs in points.items()
            ]
            groups.append(GroupUsage(name, Decimal(len(set().union(*by_bucket.values()))), series))
    else:
        per_hour: dict[str, dict[int, Decimal]] = {}
        latest: dict[tuple[str, int], tuple[datetime | None, str | None]] = {}
        for hour, group_key, value, latest_at, event_id in await usage_repository.hour_values(
            session, customer_id=customer_id, metric_name=meter.metric_name, start=low, end=high
        ):
            name, b = _dimension(group_key, dimension, names), int(hour.timestamp())
            hours = per_hour.setdefault(name, {})
            if meter.aggregation in ("sum", "count"):
                hours[b] = hours.get(b, Decimal(0)) + value
            elif meter.aggregation == "max":
                hours[b] = max(hours.get(b, value), value)
            elif meter.aggregation == "latest":
                candidate = (latest_at, event_id)
                if (name, b) not in latest or candidate > latest[(name, b)]:
                    latest[(name, b)] = candidate
                    hours[b] = value
        for name, hours in per_hour.items():
            series = [
                UsagePoint(p, combine(meter.aggregation, (hours.get(b) for b in bs)))
                for p, bs in points.items()
            ]
            groups.append(
                GroupUsage(name, combine(meter.aggregation, (hours.get(b) for b in buckets)), series)
            )
    return sorted(groups, key=lambda g: (-g.total, g.value))
