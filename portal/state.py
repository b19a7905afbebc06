"""What a web process holds for its lifetime: pools, caches, the live store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import BlockingConnectionPool, Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.catalog.service import CatalogCache
from portal.clock import Clock, checked_now, system_clock
from portal.db import create_engine, session_factory
from portal.ingest.service import Ingestor
from portal.keys.service import KeyCache
from portal.live.store import LiveStore
from portal.settings import Settings


@dataclass(slots=True)
class PortalState:
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    redis: Redis
    live: LiveStore
    catalog: CatalogCache
    keys: KeyCache
    ingestor: Ingestor
    # Only to check the broker is reachable (/readyz); Dramatiq has its own connections.
    broker_redis: Redis
    # What handlers take as "now" (portal/clock.py); tests set it to run at a given instant.
    clock: Clock = system_clock

    def now(self) -> datetime:
        """The current instant in UTC, by this process's clock."""
        return checked_now(self.clock)

    @classmethod
    def open(cls, settings: Settings) -> PortalState:
        if not settings.database_url or not settings.redis_url:
            raise RuntimeError("DATABASE_URL and REDIS_URL must be set (or run `usage-portal up`)")
        engine = create_engine(settings.database_url)
        sessions = session_factory(engine)
        # A bounded pool that waits for a free connection: a burst of requests queues
        # for Redis instead of failing with "too many connections".
        redis = Redis(connection_pool=BlockingConnectionPool.from_url(
            settings.redis_url, max_connections=64, timeout=10))
        live = LiveStore(redis, accepted_lateness=settings.accepted_lateness,
                         marker_ttl=settings.dedup_marker_ttl)
        catalog = CatalogCache(sessions, settings.catalog_cache_seconds)
        return cls(
            settings=settings, engine=engine, sessions=sessions, redis=redis, live=live,
            catalog=catalog, keys=KeyCache(sessions),
            ingestor=Ingestor(settings=settings, catalog=catalog, live=live),
            broker_redis=Redis.from_url(settings.effective_broker_url or settings.redis_url,
                                        max_connections=2),
        )

    async def close(self) -> None:
        await self.redis.aclose()
        await self.broker_redis.aclose()
        await self.engine.dispose()
