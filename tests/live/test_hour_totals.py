"""A period's series reads each hour's total alone, exactly, and only the hours with usage."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

import msgspec
from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.live.store import LiveStore

HOUR_US = 3_600_000_000


def _event(quantity: str, event_time_us: int, region: str) -> AcceptedEvent:
    return AcceptedEvent(
        customer_id="acme",
        event_id=uuid.uuid4().hex,
        metric_name="api_calls",
        product_id="",
        quantity=Decimal(quantity),
        event_time_us=event_time_us,
        dimensions={"region": region},
        metadata={},
        fingerprint=uuid.uuid4().hex,
        aggregation="sum",
        bucket=event_time_us // HOUR_US * 3600,
        group_key=msgspec.json.encode({"region": region}).decode(),
        unique_value=None,
    )


async def test_hour_totals_are_exact_and_leave_out_hours_without_usage(
    redis: Redis, settings: Settings
) -> None:
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    now_us = int(time.time() * 1_000_000)
    earlier_us = now_us - 2 * HOUR_US
    # Given two hours with usage in two groups, one of them past 10^12 and with a fraction
    # (the total's three limbs), and empty hours around them,
    events = [
        _event("99999999999999999999.999999999999", earlier_us, "eu"),
        _event("0.000000000001", earlier_us, "us"),
        _event("7", now_us, "eu"),
        _event("0.5", now_us, "us"),
    ]
    await live.apply(events, "batch-1", now_us // 1000)
    earlier, current = earlier_us // HOUR_US * 3600, now_us // HOUR_US * 3600
    buckets = [earlier - 3600, earlier, earlier + 3600, current, current + 3600]

    # then the hours' totals are exact, over every group, and only hours with usage appear.
    assert await live.hour_totals("acme", "api_calls", buckets) == {
        earlier: Decimal("100000000000000000000.000000000000"),
        current: Decimal("7.5"),
    }
    # also over a 400-day range, read a month of hours per call: the last hour of one call
    # and an hour of the next are both found, in the right buckets.
    long_range = [earlier + (i - 743) * 3600 for i in range(400 * 24)]
    assert long_range.index(earlier) == 743 and long_range.index(current) == 745
    assert await live.hour_totals("acme", "api_calls", long_range) == {
        earlier: Decimal("100000000000000000000.000000000000"),
        current: Decimal("7.5"),
    }
    assert await live.hour_totals("acme", "api_calls", []) == {}
    assert await live.hour_totals("nobody", "api_calls", buckets) == {}
