"""Redis failing after a persist message's commit (the live Valkey restarting): the message is
retried quietly (Dramatiq's Retry, one warning line, not an unhandled exception with its
traceback per delivery), and its redelivery finishes the job counting nothing twice."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
import dramatiq
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from portal.live import redis_keys as live_keys
from tests.ingest.test_poison_batches import billed, catalog, wire
from tests.operations.test_reconcile_lock import ctx
from workers import ingest as worker_ingest
from workers.context import WorkerContext

# The actor's own coroutine (Dramatiq's wrapper runs it on the worker's loop thread).
persist = worker_ingest.persist_events.fn.__wrapped__  # type: ignore[attr-defined]

__all__ = ["catalog", "ctx"]  # the fixtures, used by name


async def test_redis_failing_after_the_commit_is_retried_quietly_and_counts_nothing_twice(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    ctx: WorkerContext,
    redis: Redis,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def context() -> WorkerContext:
        return ctx

    monkeypatch.setattr(worker_ingest, "get_context", context)
    # Given a persist message of two events holding `completeThrough`
    hold = uuid.uuid4().hex
    accepted_ms = int(time.time() * 1000)
    await redis.zadd(live_keys.INFLIGHT_KEY, {hold: accepted_ms})
    message = {
        "id": uuid.uuid4().hex,
        "holds": [hold],
        "heldEvents": [2],
        "acceptedAt": accepted_ms,
        "events": [wire(customer="acme", quantity="7"), wire(customer="acme", quantity="5")],
        "conflicts": [],
    }
    # When Redis is unreachable just after the commit
    release = ctx.live.release

    async def unreachable(*holds: str) -> None:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6390. Connection refused.")

    monkeypatch.setattr(ctx.live, "release", unreachable)
    # Then the message is retried (Dramatiq's Retry, logged as one line), not failed
    with pytest.raises(dramatiq.Retry, match="outage: ConnectionError"):
        await persist(message)
    assert await pg.fetchval("SELECT count(*) FROM event_ledger") == 2  # committed
    assert await redis.zscore(live_keys.INFLIGHT_KEY, hold) is not None  # still held
    # And its redelivery, with Redis back, releases the hold and bills each event once
    monkeypatch.setattr(ctx.live, "release", release)
    await persist(message)
    assert await redis.zscore(live_keys.INFLIGHT_KEY, hold) is None
    assert await pg.fetchval("SELECT sum(event_count) FROM hourly_usage") == 2
    assert await billed(client, admin_key, "acme") == "12"
