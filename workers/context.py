"""Per-process resources of a worker, created lazily inside the worker's event loop
(Dramatiq's AsyncIO middleware runs async actors on one loop thread per process).

Creating them connects to nothing: a worker that starts while Postgres is down or Redis is
loading its data gets its context all the same, and each actor's first query meets the
outage, which the actor treats as one (waits, retries or skips a tick)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings, get_settings
from portal.live.store import LiveStore


@dataclass(slots=True)
class WorkerContext:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    live: LiveStore

    pool: Any  # asyncpg.Pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """The actor's unit of work: an asyncpg connection inside one transaction,
        committed when the block exits normally, rolled back otherwise.

        Workers use asyncpg directly (not through a SQLAlchemy session): SQLAlchemy
        begins its transaction lazily, so statements sent on the raw connection of a
        fresh session would run in autocommit mode.
        """
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn


_context: WorkerContext | None = None


async def get_context() -> WorkerContext:
    global _context
    if _context is None:
        settings = get_settings()
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL must be set for a worker")
        engine = create_engine(settings.database_url, pool_size=4)
        redis = async_client(settings.redis_url)  # a cluster's client when it names one
        # min_size=0: the pool opens connections when they are first needed (a pool with a
        # minimum connects at creation, and failed there while Postgres was down).
        pool = await asyncpg.create_pool(settings.database_url, min_size=0, max_size=4)
        if _context is not None:  # another actor of this loop made one meanwhile
            await pool.close()
            await redis.aclose()
            await engine.dispose()
            return _context
        _context = WorkerContext(
            settings=settings,
            engine=engine,
            sessions=session_factory(engine),
            redis=redis,
            pool=pool,
            live=LiveStore(
                redis,
                accepted_lateness=settings.accepted_lateness,
                marker_window=settings.dedup_marker_window,
            ),
        )
    return _context
