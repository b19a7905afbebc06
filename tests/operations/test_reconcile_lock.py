"""The reconcile lock is a lease: a worker killed mid-reconcile does not block the next
reconcile for longer than the lease, and a running reconcile keeps its lease renewed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as keys
from portal.live.store import LiveStore
from workers import reconcile
from workers.context import WorkerContext


@pytest.fixture
async def ctx(settings: Settings) -> AsyncIterator[WorkerContext]:
    assert settings.database_url and settings.redis_url
    engine = create_engine(settings.database_url, pool_size=2)
    redis = async_client(settings.redis_url)
    pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=2)
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    yield WorkerContext(
        settings=settings, engine=engine, sessions=session_factory(engine), redis=redis, pool=pool, live=live
    )
    await pool.close()
    await redis.aclose()
    await engine.dispose()


async def test_a_reconcile_killed_while_holding_the_lock_stops_the_next_only_for_its_lease(
    ctx: WorkerContext, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "LOCK_LEASE_S", 1.0)
    monkeypatch.setattr(reconcile, "LOCK_PATIENCE_S", 5.0)
    # A running reconcile holds the lock for a lease, not for minutes: were its worker killed
    # now, the lock would be free within the lease.
    held_for_ms: list[int] = []
    watermark_ms = ctx.live.watermark_ms

    async def watermark_seen_under_the_lock() -> int:
        held_for_ms.append(await ctx.redis.pttl(keys.RECONCILE_LOCK_KEY))
        return await watermark_ms()

    monkeypatch.setattr(ctx.live, "watermark_ms", watermark_seen_under_the_lock)
    assert await reconcile.reconcile(ctx) is not None
    assert len(held_for_ms) == 1 and 0 < held_for_ms[0] <= 1000
    # Given the lock as a reconcile takes it, left behind by a worker killed mid-run (no
    # renewal, no release),
    dead = ctx.redis.lock(keys.RECONCILE_LOCK_KEY, timeout=reconcile.LOCK_LEASE_S)
    assert await dead.acquire(blocking=False)
    # when the next reconcile is delivered, it runs once the lease lapses (a lock held for
    # minutes would have it give up after its patience, with no run).
    report = await reconcile.reconcile(ctx)
    assert report is not None
    assert await pg.fetchval("SELECT count(*) FROM reconcile_runs") == 2
    assert not await ctx.redis.exists(keys.RECONCILE_LOCK_KEY)  # released after the run


async def test_a_running_reconcile_keeps_its_lease_and_a_second_waits_for_it(
    ctx: WorkerContext, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reconcile, "LOCK_LEASE_S", 0.6)
    monkeypatch.setattr(reconcile, "LOCK_PATIENCE_S", 0.3)
    lock = ctx.redis.lock(keys.RECONCILE_LOCK_KEY, timeout=reconcile.LOCK_LEASE_S)
    assert await lock.acquire(blocking=False)
    renewal = asyncio.create_task(reconcile._renew(lock))
    try:
        # Three leases later the lock is still ours, never longer than a lease ahead,
        await asyncio.sleep(1.8)
        assert await lock.owned()
        assert 0 < await redis.pttl(keys.RECONCILE_LOCK_KEY) <= 600
        # and a reconcile delivered meanwhile waits, then gives up without a run.
        assert await reconcile.reconcile(ctx) is None
    finally:
        renewal.cancel()
        await lock.release()
