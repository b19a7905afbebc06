"""A customer's recent usage anomalies, read from the authoritative hourly aggregates."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.anomalies import Anomaly, Sensitivity, hourly_anomalies
from portal.catalog.schemas import Customer, Meter
from portal.db import values
from portal.periods import hour_bucket, hour_buckets, to_datetime
from portal.schemas import CamelStruct
from portal.usage.combine import exact


class AnomalyOut(CamelStruct):
    metric_name: str
    kind: str
    start: datetime
    end: datetime
    value: str
    expected: str


async def recent_anomalies(session: AsyncSession, customer: Customer, meters: list[Meter], *,
                           now: datetime, lookback: timedelta = timedelta(hours=48)) -> list[AnomalyOut]:
    """Anomalies in the customer's settled hours of the last `lookback`, per sum or count
    meter (other aggregations have no hourly volume to compare), judged against up to six
    weeks of history."""
    sensitivity = Sensitivity()
    # Hours that have ended are settled (late events aside): judge up to the current hour.
    settled_end = to_datetime(hour_bucket(now.timestamp(), customer.timezone))
    judged = [to_datetime(b) for b in hour_buckets(settled_end - lookback, settled_end, customer.timezone)]
    since = settled_end - lookback - timedelta(weeks=sensitivity.max_weeks)
    out: list[AnomalyOut] = []
    for meter in meters:
        if meter.aggregation not in ("sum", "count"):
            continue
        rows = await session.execute(text(
            "SELECT hour, sum(value) FROM hourly_usage WHERE customer_id = :c AND metric_name = :m "
            "AND hour >= :since AND hour < :end GROUP BY hour"),
            {"c": customer.id, "m": meter.metric_name, "since": since, "end": settled_end})
        series: dict[datetime, Decimal] = {hour: total for hour, total in (values(r) for r in rows)}
        first = await session.execute(text(
            "SELECT min(hour) FROM hourly_usage WHERE customer_id = :c AND metric_name = :m"),
            {"c": customer.id, "m": meter.metric_name})
        started = values(first.one())[0]
        if started is None:
            continue
        # History begins with the meter's first usage: hours before it are unknown, not zero.
        series.setdefault(max(started, since), series.get(max(started, since), Decimal(0)))
        found: list[Anomaly] = hourly_anomalies(series, judged, sensitivity)
        out += [AnomalyOut(meter.metric_name, a.kind, a.start, a.end, exact(a.value), exact(a.expected))
                for a in found]
    return out
