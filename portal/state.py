"""What a web process holds for its lifetime: pools, caches, the live store, its heartbeat.

Opening it connects to nothing, so a web process starts while Postgres is down or Redis is
loading its data: it answers /healthz at once and /readyz 503 naming the store until the
store is back (portal/operations/routes.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from portal.catalog.service import CatalogCache, CustomerCache
from portal.entitlements.service import EntitlementBook
from portal.http.foreground import Foreground
from portal.infrastructure import rabbitmq_admin
from portal.infrastructure.clock import Clock, checked_now, system_clock
from portal.infrastructure.db import create_engine, create_read_engine, session_factory
from portal.infrastructure.rabbitmq_broker import is_amqp_url
from portal.infrastructure.read_replica import ReplicaReads
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.ingest.backlog import PersistBacklog, rabbitmq_messages, redis_broker_messages
from portal.ingest.service import Ingestor
from portal.keys.service import KeyCache
from portal.live import quick_reads
from portal.live.quick_reads import QuickReads
from portal.live.store import LiveStore
from portal.operations.heartbeats import HeartbeatTask, Identity
from portal.operations.status import live_probe_client, probe_client


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
    # Customers' limits, plans and periods for entitlement checks (portal/entitlements/service.py).
    entitlements: EntitlementBook
    # Only to check the broker is reachable (/readyz) and read its queues (metrics); Dramatiq
    # has its own connections. None when the broker is RabbitMQ (`ping_broker`).
    broker_redis: Redis | None
    # For /readyz: answers "loading" or "down" at once, where `redis` retries for seconds.
    probe_redis: Redis
    # Customers for the usage panel's poll (portal/catalog/service.py).
    customers: CustomerCache
    # The pages this process is serving, ahead of batch ingest (portal/http/foreground.py).
    foreground: Foreground
    # What handlers take as "now" (portal/infrastructure/clock.py); tests set it to run at a given instant.
    clock: Clock = system_clock
    # This process's role heartbeat (portal/operations/heartbeats.py), when opened inside an event loop.
    heartbeat: HeartbeatTask | None = None
    # Reads that only display data, on DATABASE_READ_URL's replica (None: on the primary).
    replica: ReplicaReads | None = None

    async def ping_broker(self) -> None:
        """Raise when the broker does not answer (a Redis PING, or a RabbitMQ connection)."""
        if self.broker_redis is not None:
            await self.broker_redis.ping()
            return
        await asyncio.to_thread(rabbitmq_admin.ping, self.settings.effective_broker_url or "")

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
        # for Redis instead of failing with "too many connections" (on a cluster the bound
        # is per node: portal/infrastructure/redis_client.py).
        redis = async_client(settings.redis_url, max_connections=64, wait_for_connection_s=10)
        live = LiveStore(
            redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
        )
        catalog = CatalogCache(sessions, settings.catalog_cache_seconds)
        foreground = Foreground()
        # Checks sit in applications' request paths: their own connections, which give up in
        # about a second when Redis is down (a 503), where ingest's wait longer.
        check_redis = async_client(
            settings.redis_url,
            max_connections=32,
            wait_for_connection_s=1,
            socket_connect_timeout=0.5,
            socket_timeout=1.0,
        )
        broker_url = settings.effective_broker_url or settings.redis_url
        broker_redis = None if is_amqp_url(broker_url) else probe_client(broker_url, max_connections=2)
        backlog = PersistBacklog(
            rabbitmq_messages(broker_url) if broker_redis is None else redis_broker_messages(broker_redis),
            limit_events=settings.ingest_backlog_events,
            wait_s=settings.ingest_backlog_wait_s,
        )
        state = cls(
            settings=settings,
            engine=engine,
            sessions=sessions,
            redis=redis,
            live=live,
            catalog=catalog,
            customers=CustomerCache(settings.catalog_cache_seconds),
            foreground=foreground,
            keys=KeyCache(sessions, redis),
            ingestor=Ingestor(
                settings=settings, catalog=catalog, live=live, backlog=backlog, foreground=foreground
            ),
            entitlements=EntitlementBook(
                sessions,
                LiveStore(
                    check_redis,
                    accepted_lateness=settings.accepted_lateness,
                    marker_window=settings.dedup_marker_window,
                    quick=QuickReads(check_redis) if quick_reads.supported(check_redis) else None,
                ),
                settings.entitlement_cache_seconds,
            ),
            broker_redis=broker_redis,
            probe_redis=live_probe_client(settings.redis_url, max_connections=4),
        )
        if settings.database_read_url:
            state.replica = ReplicaReads(
                primary=engine,
                replica=create_read_engine(settings.database_read_url),
                watermark_ms=live.watermark_ms,
                max_lag_s=settings.read_replica_max_lag_s,
            )
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # opened outside a loop (a script): no heartbeat
            return state
        state.heartbeat = HeartbeatTask(redis, Identity.of_this_process("web"), settings.heartbeat_seconds)
        state.heartbeat.start()
        return state

    async def close(self) -> None:
        await self.keys.close()
        if self.ingestor.backlog is not None:
            await self.ingestor.backlog.close()
        if self.heartbeat is not None:
            await self.heartbeat.stop()
        await self.redis.aclose()
        if self.broker_redis is not None:
            await self.broker_redis.aclose()
        await self.probe_redis.aclose()
        if self.entitlements.live.quick is not None:
            self.entitlements.live.quick.close()
        await self.entitlements.live.redis.aclose()
        if self.replica is not None:
            await self.replica.close()
        await self.engine.dispose()
