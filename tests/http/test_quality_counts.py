"""The native API's data-quality counts are written for many requests at once, and each
request is answered only once its counts are in Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from redis.asyncio import Redis

from portal.ingest.routes import QualityCounts
from portal.live.redis_keys import quality_key

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
MIDNIGHT = datetime(2026, 12, 7, 0, 0, 1, tzinfo=UTC)


async def test_concurrent_requests_are_counted_together_and_exactly(redis: Redis) -> None:
    # Given the counts of fifty requests finishing at once
    counts = QualityCounts(redis)
    requests = [
        counts.record(2, ["quantity: must not be negative"] if i % 5 == 0 else [], NOW) for i in range(50)
    ]

    # When they are recorded
    await asyncio.gather(*requests)

    # Then Redis holds their sums under the day's key
    assert await redis.hgetall(quality_key("2026-12-06")) == {
        "native|accepted": "100",
        "native|rejected|quantity": "10",
    }


async def test_each_request_waits_for_its_own_counts(redis: Redis) -> None:
    # Given a write in flight
    counts = QualityCounts(redis)
    first = asyncio.create_task(counts.record(1, [], NOW))
    await asyncio.sleep(0)

    # When a second request finishes meanwhile, on the next day
    await counts.record(3, [], MIDNIGHT)

    # Then its count is in Redis when it returns, under its own day
    assert await redis.hget(quality_key("2026-12-07"), "native|accepted") == "3"
    await first
    assert await redis.hget(quality_key("2026-12-06"), "native|accepted") == "1"


async def test_nothing_to_count_writes_nothing(redis: Redis) -> None:
    await QualityCounts(redis).record(0, [], NOW)
    assert await redis.exists(quality_key("2026-12-06")) == 0
