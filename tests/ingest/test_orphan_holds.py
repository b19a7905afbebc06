"""A batch's in-flight hold that no broker message will release (Redis ran the check after
the web had answered 503; a web killed between hold and hand-off) is released by the
reconcile's sweep once the broker holds no ingest message, so freshness and `status` move
on (portal/operations/orphan_holds.py)."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from portal.infrastructure.broker import INGEST_QUEUE, redis_queue_keys
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.live.redis_keys import INFLIGHT_KEY
from portal.operations.orphan_holds import release_orphan_holds
from portal.operations.status import gather_status


async def test_a_hold_no_message_will_release_is_released_once_the_broker_is_empty(
    settings: Settings, redis: Redis
) -> None:
    now_ms = int(time.time() * 1000)
    await redis.zadd(INFLIGHT_KEY, {"orphan": now_ms - 120_000, "fresh": now_ms})
    before = await gather_status(settings)
    assert before.persist_stall is not None and before.persist_stall.startswith("stalled")
    broker = async_client(settings.broker_url or "")
    dead = redis_queue_keys(INGEST_QUEUE).dead
    try:
        # A dead-lettered ingest message holds accepted events: its hold is no orphan
        await broker.hset(dead, "m1", "{}")
        assert await release_orphan_holds(redis, settings) == 0
        await broker.delete(dead)
        # Nothing in the broker: the old hold is released, the one a hand-off may be making is not
        assert await release_orphan_holds(redis, settings) == 1
    finally:
        await broker.aclose()
    assert await redis.zrange(INFLIGHT_KEY, 0, -1) == ["fresh"]
    await redis.delete(INFLIGHT_KEY)
    assert (await gather_status(settings)).persist_stall is None
