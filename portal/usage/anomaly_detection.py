"""Customers' recent usage anomalies, read from the authoritative hourly aggregates.

`detect` reads the hourly usage of a page of customers in one query and judges, per
customer and sum or count meter (other aggregations have no volume to compare), the last
settled hours and the last settled local days (portal/usage/anomaly_rule.py, pure). The API and the
customer page, the account managers' customers table (`flagged_customers`) and anomaly
alert rules (portal/alerting/anomaly_rules.py) all go through it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.catalog import service as catalog
from portal.catalog.schemas import Customer, Meter
from portal.infrastructure.periods import hour_bucket, hour_buckets, local_date, local_midnight, to_datetime
from portal.usage import repository
from portal.usage.anomaly_rule import Anomaly, Sensitivity, daily_anomalies, hourly_anomalies
from portal.usage.combine import exact
from portal.usage.schemas import AnomalyOut

# At most this many customers per query: the account managers' table shows pages of 100.
PAGE = 100


@dataclass(frozen=True, slots=True)
class Flagged:
    customer_id: str
    metric_name: str
    anomaly: Anomaly


@dataclass(frozen=True, slots=True)
class Window:
    """What is judged for one customer at one instant."""

    settled_end: datetime  # end of the last settled (ended) local hour
    hours: list[datetime]  # settled hour starts judged, in order
    days: list[date]  # settled local days judged, in order
    since: datetime  # a local midnight: the earliest hour any judgement reads


def window(tz_name: str, now: datetime, *, hours: timedelta, days: int, s: Sensitivity) -> Window:
    """The settled hours of the last `hours` and the last `days` settled local days.

    An hour is settled once it has ended, a day once its local midnight has passed (late
    events aside). History reaches `max_weeks` weeks back from the earliest judged point,
    and `since` is rounded down to a local midnight so that every day from it on is whole."""
    settled_end = to_datetime(hour_bucket(now.timestamp(), tz_name))
    judged = [to_datetime(b) for b in hour_buckets(settled_end - hours, settled_end, tz_name)]
    today = local_date(now.timestamp(), tz_name)
    judged_days = [today - timedelta(days=d) for d in range(days, 0, -1)]
    starts = [settled_end - hours]
    if judged_days:
        starts.append(local_midnight(judged_days[0], tz_name))
    earliest = min(starts) - timedelta(weeks=s.max_weeks)
    return Window(
        settled_end, judged, judged_days, local_midnight(local_date(earliest.timestamp(), tz_name), tz_name)
    )


def judge(
    series: dict[datetime, Decimal], started: datetime, tz_name: str, w: Window, s: Sensitivity
) -> list[Anomaly]:
    """Hourly then daily anomalies of one meter's hourly series (read from `w.since`),
    whose first usage ever was at `started`: before it the history is unknown, not zero."""
    known_hour = max(started, w.since)
    found = hourly_anomalies(series, w.hours, s, known_from=known_hour)
    by_day: dict[date, Decimal] = {}
    for hour, value in series.items():
        day = local_date(hour.timestamp(), tz_name)
        by_day[day] = by_day.get(day, Decimal(0)) + value
    known_day = local_date(known_hour.timestamp(), tz_name)
    found += daily_anomalies(by_day, w.days, tz_name, s, known_from=known_day)
    return found


async def detect(
    session: AsyncSession,
    customers: Sequence[Customer],
    meters: Sequence[Meter],
    *,
    now: datetime,
    hours: timedelta,
    days: int,
    sensitivity: Sensitivity | None = None,
) -> list[Flagged]:
    """Anomalies of each customer's sum and count meters in its settled hours of the last
    `hours` and its last `days` settled days; one query per page of up to 100 customers.
    In customer order, then meter order, hours before days."""
    s = sensitivity or Sensitivity()
    judged = sorted(m.metric_name for m in meters if m.aggregation in ("sum", "count"))
    out: list[Flagged] = []
    if not judged:
        return out
    for first in range(0, len(customers), PAGE):
        page = customers[first : first + PAGE]
        windows = {c.id: window(c.timezone, now, hours=hours, days=days, s=s) for c in page}
        # The first usage ever comes from the primary key's index (one short index scan per
        # customer and meter); the series only from the earliest `since` of the page.
        rows = await repository.hourly_totals_since(
            session,
            customer_ids=[c.id for c in page],
            metric_names=judged,
            since=min(w.since for w in windows.values()),
            end=now,
        )
        series: dict[tuple[str, str], tuple[datetime, dict[datetime, Decimal]]] = {}
        for customer_id, metric, started, hour, total in rows:
            _, points = series.setdefault((customer_id, metric), (started, {}))
            if hour is not None and total is not None and hour >= windows[customer_id].since:
                points[hour] = total
        for customer in page:
            for metric in judged:
                if (customer.id, metric) not in series:
                    continue  # no usage ever: nothing to judge
                started, points = series[(customer.id, metric)]
                out += [
                    Flagged(customer.id, metric, a)
                    for a in judge(points, started, customer.timezone, windows[customer.id], s)
                ]
    return out


async def recent_anomalies(
    session: AsyncSession,
    customer: Customer,
    meters: list[Meter],
    *,
    now: datetime,
    lookback: timedelta = timedelta(hours=48),
    days: int = 2,
) -> list[AnomalyOut]:
    """Anomalies in the customer's settled hours of the last `lookback` and its last
    `days` settled local days, per sum or count meter, judged against up to six weeks of
    history."""
    found = await detect(session, [customer], meters, now=now, hours=lookback, days=days)
    return [
        AnomalyOut(
            f.metric_name,
            f.anomaly.kind,
            f.anomaly.start,
            f.anomaly.end,
            exact(f.anomaly.value),
            exact(f.anomaly.expected),
            f.anomaly.granularity,
        )
        for f in found
    ]


async def flagged_customers(db: AsyncSession, customers: Sequence[Customer], now: datetime) -> dict[str, int]:
    """Customer id → how many anomalies were flagged in its last 24 settled hours and its
    last settled day (0 included), for the account managers' customers table: two queries
    (meters, then usage) per page of up to 100 customers, whatever the number of meters."""
    meters = await catalog.list_meters(db)
    unique = list({c.id: c for c in customers}.values())  # a customer listed twice counts once
    counts = Counter(
        f.customer_id for f in await detect(db, unique, meters, now=now, hours=timedelta(hours=24), days=1)
    )
    return {c.id: counts.get(c.id, 0) for c in customers}
