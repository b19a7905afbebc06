"""Daily rollups (issue 15, target 7): bills read whole local days from `daily_usage` and only
a window's edge hours from `hourly_usage`, and come to exactly what summing the hours does,
for any window, in zones with :30 and :45 offsets and across DST changes (a 30-minute one
on Lord Howe Island), after corrections, and after a rebuild from the hours."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncSession

from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.periods import hour_buckets, local_midnight
from portal.infrastructure.settings import Settings
from portal.usage import repository as usage_repository
from portal.usage.repository import AggKey, HourDelta
from tests.factories import make_customer, make_meter

ZONES = {
    "utc": "UTC",
    "ny": "America/New_York",  # DST ends 2026-11-01: a 25-hour day
    "kolkata": "Asia/Kolkata",  # +05:30
    "kathmandu": "Asia/Kathmandu",  # +05:45
    "lord-howe": "Australia/Lord_Howe",  # +10:30 → +11:00 on 2026-10-04: a 23.5-hour day
}
METERS = {"calls": "sum", "peak": "max"}
GROUPS = ("", '{"region":"eu"}')
NEW_YORK = ZoneInfo("America/New_York")
FIRST = datetime(2026, 9, 27, tzinfo=UTC)
LAST = datetime(2026, 11, 6, tzinfo=UTC)


@pytest.fixture
async def usage_hours(
    client: AsyncTestClient[Any], admin_key: str, settings: Settings
) -> dict[AggKey, tuple[str, Decimal]]:
    """Random usage in most local hours of 40 days for each zone's customer, meter and group,
    written as the persist worker writes it (hours, then days, batch after batch)."""
    for customer, zone in ZONES.items():
        await make_customer(client, admin_key, id=customer, timezone=zone)
    for metric, aggregation in METERS.items():
        await make_meter(client, admin_key, metric=metric, aggregation=aggregation, group_by=["region"])
    rng = random.Random(15)
    written: dict[AggKey, tuple[str, Decimal]] = {}
    batches: list[dict[str, dict[AggKey, HourDelta]]] = [{"sum": {}, "max": {}} for _ in range(7)]
    for customer, zone in ZONES.items():
        for bucket in hour_buckets(FIRST, LAST, zone):
            for metric, aggregation in METERS.items():
                for group in GROUPS:
                    if rng.random() < 0.15:  # an hour without usage
                        continue
                    value = Decimal(rng.randrange(1, 10**15)) / 10**12
                    key = (customer, metric, bucket, group)
                    written[key] = (aggregation, value)
                    batches[rng.randrange(len(batches))][aggregation][key] = HourDelta(value, 1)
    conn = await asyncpg.connect(settings.database_url)
    try:
        for batch in batches:
            async with conn.transaction():
                for aggregation, deltas in batch.items():
                    await usage_repository.upsert_hours(conn, aggregation, deltas)
                await usage_repository.upsert_days(conn, batch)
    finally:
        await conn.close()
    return written


@pytest.fixture
async def session(settings: Settings) -> AsyncIterator[AsyncSession]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    async with transaction(session_factory(engine)) as opened:
        yield opened
    await engine.dispose()


def expected(
    written: dict[AggKey, tuple[str, Decimal]], start: datetime, end: datetime
) -> dict[tuple[str, str, str], Decimal]:
    """Each customer, meter and group's usage in [start, end), from the hours alone."""
    out: dict[tuple[str, str, str], Decimal] = {}
    lo, hi = start.timestamp(), end.timestamp()
    for (customer, metric, bucket, group), (aggregation, value) in written.items():
        if lo <= bucket < hi:
            key = (customer, metric, group)
            out[key] = (
                max(out[key], value) if aggregation == "max" and key in out else out.get(key, 0) + value
            )
    return out


async def billed(
    session: AsyncSession, start: datetime, end: datetime
) -> dict[tuple[str, str, str], Decimal]:
    rows = await usage_repository.window_sums(
        session, customer_ids=list(ZONES), metric_names=list(METERS), start=start, end=end
    )
    return {(c, m, g): (peak if METERS[m] == "max" else total) for c, m, g, total, peak in rows}


def windows(rng: random.Random) -> list[tuple[datetime, datetime]]:
    """Local months and days of every zone (aligned, across the DST changes), and windows
    that start and end anywhere, down to the second."""
    out = []
    for zone in ZONES.values():
        october = local_midnight(datetime(2026, 10, 1).date(), zone)
        november = local_midnight(datetime(2026, 11, 1).date(), zone)
        out += [(october, november), (november, local_midnight(datetime(2026, 11, 3).date(), zone))]
        out.append(
            (
                local_midnight(datetime(2026, 10, 4).date(), zone),
                local_midnight(datetime(2026, 10, 5).date(), zone),
            )
        )
    # Windows that start in the last hours of a 25-hour day (New York, 2026-11-01) and of
    # Lord Howe's 23.5-hour one, and end in the last hours of the next days
    for zone, day in (("America/New_York", 1), ("Australia/Lord_Howe", 4)):
        month = 11 if zone == "America/New_York" else 10
        start = local_midnight(datetime(2026, month, day).date(), zone)
        following = local_midnight(datetime(2026, month, day + 1).date(), zone)
        for back in (3600, 1800, 1, 0):
            for edge in (following - timedelta(seconds=back), following - timedelta(seconds=back + 3600)):
                out.append((edge, edge + timedelta(days=1)))
                out.append((start - timedelta(days=1), edge))
    span = int((LAST - FIRST).total_seconds())
    for _ in range(40):
        a, b = sorted(rng.randrange(-3600, span + 3600) for _ in range(2))
        out.append((FIRST + timedelta(seconds=a), FIRST + timedelta(seconds=b)))
    out.append((FIRST - timedelta(days=1), LAST + timedelta(days=1)))  # everything
    return out


async def test_whole_days_and_edge_hours_come_to_the_hours_sum_for_any_window(
    usage_hours: dict[AggKey, tuple[str, Decimal]], session: AsyncSession
) -> None:
    for start, end in windows(random.Random(7)):
        assert await billed(session, start, end) == expected(usage_hours, start, end), (start, end)


async def test_a_month_reads_whole_days_from_the_rollup(
    usage_hours: dict[AggKey, tuple[str, Decimal]], settings: Settings
) -> None:
    # A local month of each zone is its local days: one daily row per day, meter and group
    conn = await asyncpg.connect(settings.database_url)
    try:
        days = await conn.fetch(
            "SELECT customer_id, count(*) AS days, min(day_end - day) AS shortest, "
            "max(day_end - day) AS longest FROM daily_usage WHERE metric_name = 'calls' AND group_key = '' "
            "AND day >= '2026-09-28' AND day_end <= '2026-11-05' GROUP BY 1"
        )
    finally:
        await conn.close()
    lengths = {r["customer_id"]: (r["shortest"], r["longest"]) for r in days}
    assert lengths["utc"] == (timedelta(hours=24), timedelta(hours=24))
    assert lengths["ny"] == (timedelta(hours=24), timedelta(hours=25))
    assert lengths["lord-howe"] == (timedelta(hours=23, minutes=30), timedelta(hours=24))
    assert lengths["kathmandu"] == (timedelta(hours=24), timedelta(hours=24))


async def test_a_corrected_hour_and_a_rebuild_keep_the_days_exact(
    usage_hours: dict[AggKey, tuple[str, Decimal]], session: AsyncSession, settings: Settings
) -> None:
    # Given hours changed the way event corrections change them (a sum lowered, a max hour's
    # last event cancelled), each followed by its day's refresh
    rng = random.Random(3)
    keys = sorted(usage_hours)
    for key in rng.sample(keys, 12):
        customer, metric, bucket, group = key
        aggregation, value = usage_hours[key]
        hour = datetime.fromtimestamp(bucket, UTC)
        if rng.random() < 0.5:
            await usage_repository.set_hour(session, customer, metric, hour, group, value=None, events=0)
            del usage_hours[key]
        else:
            lower = value / 4  # exact in Decimal
            await usage_repository.set_hour(session, customer, metric, hour, group, value=lower, events=1)
            usage_hours[key] = (aggregation, lower)
        await usage_repository.refresh_day(session, customer, metric, hour, group, aggregation)
    # Then any window still comes to the hours' sum
    for start, end in windows(random.Random(8)):
        assert await billed(session, start, end) == expected(usage_hours, start, end), (start, end)
    # And a rebuild from the hours (the migration's backfill, the bench's loader) writes the
    # very rows the persist transactions and corrections kept
    before = await daily_rows(session)
    conn = await session.connection()
    raw = (await conn.get_raw_connection()).driver_connection
    await usage_repository.rebuild_days(raw, list(ZONES))
    assert await daily_rows(session) == before


async def daily_rows(session: AsyncSession) -> list[Any]:
    from sqlalchemy import text

    result = await session.execute(
        text(
            "SELECT customer_id, metric_name, day, group_key, day_end, value, event_count FROM daily_usage "
            "ORDER BY 1, 2, 3, 4"
        )
    )
    return [tuple(r) for r in result]


async def test_hours_changed_by_hand_are_billed_after_rebuild_days(
    usage_hours: dict[AggKey, tuple[str, Decimal]], session: AsyncSession, settings: Settings
) -> None:
    from portal.operations.operator_tasks import rebuild_daily_usage

    # Given an operator who changed an hour of New York's usage by hand (not through a
    # correction, which keeps the day in step)
    key = next(k for k in sorted(usage_hours) if k[0] == "ny" and k[1] == "calls")
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(
            "UPDATE hourly_usage SET value = 7 WHERE customer_id = $1 AND metric_name = $2 "
            "AND hour = $3 AND group_key = $4",
            key[0],
            key[1],
            datetime.fromtimestamp(key[2], UTC),
            key[3],
        )
    finally:
        await conn.close()
    usage_hours[key] = ("sum", Decimal(7))
    # When `usage-portal rebuild-days --customer ny` runs
    written = await rebuild_daily_usage(settings, customer_ids=["ny"])
    # Then it rewrote New York's days (2 meters x 2 groups x the days of 40 local dates),
    # and every window is billed as the hours say
    assert written == len(
        {
            (c, m, g, datetime.fromtimestamp(b, UTC).astimezone(NEW_YORK).date())
            for c, m, b, g in usage_hours
            if c == "ny"
        }
    )
    for start, end in windows(random.Random(9)):
        assert await billed(session, start, end) == expected(usage_hours, start, end), (start, end)
