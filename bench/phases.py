"""The load phases (warm-up, batch, single, single at a fixed rate, lag), each measured
from the client, the ledger, /proc and the servers' counters into a `PhaseResult`; and the
measurements around them: the raw COPY floor, Valkey memory around the batch phase, and
the history preload.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench import serverstats, valkeymem
from bench.config import BATCH_PATH, DEFAULT_LAG_RATE, SINGLE_PATH, Options, log
from bench.copyfloor import CopyFloor, measure_copy_floor
from bench.load import EventFactory, LoadStats, closed_loop, open_connections, open_loop, send
from bench.measure import Persisted, measure_persisted, wait_drained
from bench.preload import Preload, preload
from bench.procstat import CpuUsage, Roles, snapshot, usage_between
from bench.stack import Catalog, Environment, check_alive


@dataclass(slots=True)
class EdgeMinute:
    """One minute of a long run: CPU per role and the events accepted in it."""

    cpu: CpuUsage
    accepted: int


# A phase this long also measures its first and last minute on their own.
EDGE_MINUTES_FROM_S = 120.0


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
    # In runs of EDGE_MINUTES_FROM_S or longer: the CPU and accepted events of the first and
    # the last minute, to show what grew between them (target 4).
    edges: tuple[EdgeMinute, EdgeMinute] | None = None

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
    copy_floor: CopyFloor | None = None
    memory: valkeymem.Projection | None = None
    history: Preload | None = None

    async def _measured(
        self, name: str, tag: str, body: Callable[[LoadStats], Awaitable[None]]
    ) -> PhaseResult:
        stats = LoadStats()
        valkey_before = await serverstats.valkey_commands(self.redis)
        pg_before = await serverstats.pg_statements(self.pg) if self.pg_stats else {}
        counters_before = await serverstats.counters(self.pg, self.redis)
        before = snapshot(self.roles)
        edges = (
            asyncio.ensure_future(_edge_minutes(self.roles, stats, self.opts.duration))
            if tag == "B" and self.opts.duration >= EDGE_MINUTES_FROM_S
            else None
        )
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
            edges=await edges if edges is not None else None,
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

    async def batch_phase(self, name: str = "batch", tag: str = "B", *, memory: bool = True) -> PhaseResult:
        """Closed loop for --duration s; with `memory`, Valkey's memory and keys are read
        before and after (each time with the backlog persisted) for the projection."""
        opts = self.opts
        log(
            f"{name}: {opts.batch_size}-event batches on {opts.concurrency} connections "
            f"for {opts.duration:.0f} s"
        )
        memory_before = await valkeymem.snapshot(self.redis) if memory else None
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, opts.concurrency)

        async def body(stats: LoadStats) -> None:
            await closed_loop(
                conns,
                BATCH_PATH,
                lambda: self.factory.batch(tag, opts.batch_size),
                opts.batch_size,
                opts.duration,
                stats,
            )

        result = await self._measured(name, tag, body)
        await asyncio.gather(*(c.close() for c in conns))
        result.settings = {
            "batch_size": opts.batch_size,
            "connections": opts.concurrency,
            "duration_s": opts.duration,
        }
        if memory_before is not None:
            log(f"{name}: reading Valkey's memory and keys")
            hold, source = valkeymem.marker_lifetime()
            self.memory = valkeymem.Projection(
                memory_before,
                await valkeymem.snapshot(self.redis),
                result.load.accepted,
                result.load.elapsed,
                hold,
                source,
                customer_meters=len(self.catalog.customers) * 3,
            )
        return result

    async def measure_copy_floor(self) -> CopyFloor:
        catalog = self.catalog
        self.copy_floor = await measure_copy_floor(
            self.env.database_url,
            seconds=self.opts.copy_seconds,
            connections=self.opts.copy_connections,
            customers=catalog.customers,
            metrics=[catalog.sum_meter, catalog.count_meter, catalog.max_meter],
            run=catalog.run,
        )
        return self.copy_floor

    async def preload_history(self) -> Preload:
        log(f"preload: {self.opts.preload_millions:g} million events of history")
        self.history = await preload(self.env.database_url, self.catalog, self.opts.preload_millions)
        return self.history

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

    async def single_open_phase(self) -> PhaseResult:
        """Single events on a fixed schedule (open loop) at --single-rate requests/s: the
        latency a client sees at that load, not at saturation."""
        opts = self.opts
        name = f"single@{opts.single_rate:g}"
        log(
            f"{name}: one event per request at {opts.single_rate:,.0f} requests/s "
            f"for {opts.single_duration:.0f} s"
        )

        async def body(stats: LoadStats) -> None:
            await open_loop(
                self.env.ports,
                self.catalog.ingest_key,
                lambda: self.factory.single("O"),
                1,
                opts.single_rate,
                opts.single_duration,
                stats,
                path=SINGLE_PATH,
            )

        result = await self._measured(name, "O", body)
        result.settings = {"rate_rps": opts.single_rate, "duration_s": opts.single_duration}
        return result

    async def lag_phases(self) -> None:
        """At half the batch phase's sustained rate, as the target says (or --lag-rate;
        without a batch phase, half the batch target)."""
        opts = self.opts
        rate = opts.lag_rate
        if rate is None:
            batch = self.results.get("batch")
            rate = min(batch.accepted_eps, batch.persisted_eps) / 2 if batch else float(DEFAULT_LAG_RATE)
        await self.lag_phase("lag", "L", max(rate, 100.0))

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


async def _edge_minutes(roles: Roles, stats: LoadStats, duration: float) -> tuple[EdgeMinute, EdgeMinute]:
    """CPU per role and events accepted in the first minute of a closed loop of `duration`
    seconds and in its last (sampled on this process's clock from the loop's start)."""
    started = time.monotonic()

    async def minute(start_s: float) -> EdgeMinute:
        await asyncio.sleep(max(0.0, started + start_s - time.monotonic()))
        first, accepted = snapshot(roles), stats.accepted
        await asyncio.sleep(max(0.0, started + start_s + 60.0 - time.monotonic()))
        return EdgeMinute(usage_between(first, snapshot(roles)), stats.accepted - accepted)

    return await minute(0.0), await minute(duration - 60.0)
