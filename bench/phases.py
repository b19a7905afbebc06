"""The load phases (warm-up, batch, single, lag), each measured from the client, the
ledger, /proc and the servers' counters into a `PhaseResult`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench import serverstats
from bench.config import BATCH_PATH, SINGLE_PATH, TARGET_LAG_RATE, Options, log
from bench.load import EventFactory, LoadStats, closed_loop, open_connections, open_loop, send
from bench.measure import Persisted, measure_persisted, wait_drained
from bench.procstat import CpuUsage, Roles, snapshot, usage_between
from bench.stack import Catalog, Environment, check_alive


@dataclass(slots=True)
class PhaseResult:
    name: str
    load: LoadStats
    persisted: Persisted
    cpu: CpuUsage
    valkey: list[serverstats.Stat] = field(default_factory=list)
    statements: list[serverstats.Stat] = field(default_factory=list)
    counters: tuple[dict[str, float], dict[str, float]] = ({}, {})
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted_eps(self) -> float:
        return self.load.accepted / self.load.elapsed if self.load.elapsed else 0.0

    @property
    def persisted_eps(self) -> float:
        """Events whose persist transaction started within the load window, per second."""
        return self.persisted.in_window / self.load.elapsed if self.load.elapsed else 0.0

    @property
    def drain_s(self) -> float | None:
        if self.persisted.last_at is None:
            return None
        return max(0.0, self.persisted.last_at - self.load.ended_wall)

    @property
    def end_to_end_eps(self) -> float | None:
        if self.persisted.last_at is None:
            return None
        span = max(self.persisted.last_at, self.load.ended_wall) - self.load.started_wall
        return self.persisted.total / span if span > 0 else None


@dataclass(slots=True)
class Bench:
    opts: Options
    env: Environment
    catalog: Catalog
    roles: Roles
    pg: asyncpg.Connection
    redis: Redis
    factory: EventFactory
    pg_stats: bool = False
    results: dict[str, PhaseResult] = field(default_factory=dict)

    async def _measured(
        self, name: str, tag: str, body: Callable[[LoadStats], Awaitable[None]]
    ) -> PhaseResult:
        stats = LoadStats()
        valkey_before = await serverstats.valkey_commands(self.redis)
        pg_before = await serverstats.pg_statements(self.pg) if self.pg_stats else {}
        counters_before = await serverstats.counters(self.pg, self.redis)
        before = snapshot(self.roles)
        await body(stats)
        after = snapshot(self.roles)
        valkey_after = await serverstats.valkey_commands(self.redis)
        pg_after = await serverstats.pg_statements(self.pg) if self.pg_stats else {}
        counters_after = await serverstats.counters(self.pg, self.redis)
        check_alive(self.env)
        prefix = self.factory.prefix(tag)
        # Every event a 202 counted as accepted must reach the ledger.
        expected = stats.accepted
        log(
            f"{name}: load done ({stats.accepted:,} accepted in {stats.elapsed:.1f} s); "
            f"waiting for the backlog to be persisted"
        )
        drained = await wait_drained(
            self.pg, self.redis, self.catalog, prefix, expected, self.opts.drain_timeout
        )
        if not drained:
            log(f"{name}: backlog NOT drained within {self.opts.drain_timeout:.0f} s")
        persisted = await measure_persisted(self.pg, self.catalog, prefix, stats, drained)
        result = PhaseResult(
            name,
            stats,
            persisted,
            usage_between(before, after),
            valkey=serverstats.delta(valkey_before, valkey_after),
            statements=serverstats.delta(pg_before, pg_after),
            counters=(counters_before, counters_after),
        )
        self.results[name] = result
        return result

    async def warm_up(self) -> None:
        """A few batches and single events, persisted, so pools and caches are warm."""
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, 2)
        stats = LoadStats()
        await closed_loop(
            conns,
            BATCH_PATH,
            lambda: self.factory.batch("W", self.opts.batch_size),
            self.opts.batch_size,
            3.0,
            stats,
        )
        for _ in range(50):
            await send(conns[0], SINGLE_PATH, self.factory.single("W"), 1, stats, time.monotonic() + 10)
        await asyncio.gather(*(c.close() for c in conns))
        if stats.accepted == 0:
            raise RuntimeError(f"warm-up: nothing accepted: {stats.statuses} {stats.sample_errors}")
        await wait_drained(
            self.pg,
            self.redis,
            self.catalog,
            self.factory.prefix("W"),
            stats.accepted,
            self.opts.drain_timeout,
        )
        log(f"warm-up: {stats.accepted:,} events accepted and persisted")

    async def batch_phase(self) -> PhaseResult:
        opts = self.opts
        log(
            f"batch: {opts.batch_size}-event batches on {opts.concurrency} connections "
            f"for {opts.duration:.0f} s"
        )
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, opts.concurrency)

        async def body(stats: LoadStats) -> None:
            await closed_loop(
                conns,
                BATCH_PATH,
                lambda: self.factory.batch("B", opts.batch_size),
                opts.batch_size,
                opts.duration,
                stats,
            )

        result = await self._measured("batch", "B", body)
        await asyncio.gather(*(c.close() for c in conns))
        result.settings = {
            "batch_size": opts.batch_size,
            "connections": opts.concurrency,
            "duration_s": opts.duration,
        }
        return result

    async def single_phase(self) -> PhaseResult:
        opts = self.opts
        log(
            f"single: one event per request on {opts.single_concurrency} connections "
            f"for {opts.single_duration:.0f} s"
        )
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, opts.single_concurrency)

        async def body(stats: LoadStats) -> None:
            await closed_loop(
                conns, SINGLE_PATH, lambda: self.factory.single("S"), 1, opts.single_duration, stats
            )

        result = await self._measured("single", "S", body)
        await asyncio.gather(*(c.close() for c in conns))
        result.settings = {"connections": opts.single_concurrency, "duration_s": opts.single_duration}
        return result

    async def lag_phases(self) -> None:
        """At half the batch phase's sustained rate (or --lag-rate); when that is below
        the rate the target names, once more at that rate, so the target is judged."""
        opts = self.opts
        rate = opts.lag_rate
        if rate is None:
            batch = self.results.get("batch")
            rate = min(batch.accepted_eps, batch.persisted_eps) / 2 if batch else float(TARGET_LAG_RATE)
        await self.lag_phase("lag", "L", max(rate, 100.0))
        if opts.lag_rate is None and rate < TARGET_LAG_RATE * 0.99:
            await self.lag_phase("lag@target", "T", float(TARGET_LAG_RATE))

    async def lag_phase(self, name: str, tag: str, rate: float) -> PhaseResult:
        opts = self.opts
        log(
            f"{name}: {opts.batch_size}-event batches at {rate:,.0f} events/s (open loop) "
            f"for {opts.lag_duration:.0f} s"
        )

        async def body(stats: LoadStats) -> None:
            await open_loop(
                self.env.ports,
                self.catalog.ingest_key,
                lambda: self.factory.batch(tag, opts.batch_size),
                opts.batch_size,
                rate,
                opts.lag_duration,
                stats,
            )

        result = await self._measured(name, tag, body)
        result.settings = {"rate_eps": rate, "batch_size": opts.batch_size, "duration_s": opts.lag_duration}
        return result
