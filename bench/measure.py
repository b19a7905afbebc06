"""The persisted side, from Postgres and Valkey: waiting for a phase's backlog to drain,
its ledger rows and lag, and the servers' versions and durability settings.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench.config import INFLIGHT_KEY
from bench.load import LoadStats
from bench.stack import Catalog


@dataclass(slots=True)
class Persisted:
    """What Postgres says about one phase's events."""

    total: int = 0
    in_window: int = 0
    first_at: float | None = None
    last_at: float | None = None
    drained: bool = False
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_p999_s: float | None = None
    lag_max_s: float | None = None
    # From the commit timestamps of the persisting transactions, when Postgres tracks them.
    commit_lag_p50_s: float | None = None
    commit_lag_p99_s: float | None = None
    commit_lag_max_s: float | None = None
    per_second: dict[int, int] = field(default_factory=dict)  # second since phase start -> rows
    failed_events: int = 0


async def wait_drained(
    pg: asyncpg.Connection, redis: Redis, catalog: Catalog, prefix: str, expected: int, timeout: float
) -> bool:
    """Wait until every accepted event of the phase is in `event_ledger`.

    Polls the (cheap) in-flight set of the live view and counts the ledger only when it is
    empty, or every 5 s, so the polling does not load Postgres."""
    deadline = time.monotonic() + timeout
    last_count = 0.0
    while time.monotonic() < deadline:
        inflight = await redis.zcard(INFLIGHT_KEY)
        if inflight == 0 or time.monotonic() - last_count > 5:
            last_count = time.monotonic()
            done = await count_persisted(pg, catalog, prefix)
            if done >= expected:
                return True
        await asyncio.sleep(0.1)
    return False


async def count_persisted(pg: asyncpg.Connection, catalog: Catalog, prefix: str) -> int:
    return int(
        await pg.fetchval(
            "SELECT count(*) FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
            catalog.customers,
            prefix + "%",
        )
    )


async def measure_persisted(
    pg: asyncpg.Connection, catalog: Catalog, prefix: str, stats: LoadStats, drained: bool
) -> Persisted:
    start = datetime.fromtimestamp(stats.started_wall, UTC)
    end = datetime.fromtimestamp(stats.ended_wall, UTC)
    row = await pg.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE persisted_at <= $3) AS in_window, "
        "extract(epoch FROM min(persisted_at)) AS first_at, "
        "extract(epoch FROM max(persisted_at)) AS last_at, "
        "percentile_cont(ARRAY[0.5, 0.99, 0.999]) WITHIN GROUP "
        "  (ORDER BY extract(epoch FROM persisted_at - received_at)) AS lag, "
        "extract(epoch FROM max(persisted_at - received_at)) AS lag_max "
        "FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
        catalog.customers,
        prefix + "%",
        end,
    )
    assert row is not None
    out = Persisted(total=int(row["total"]), in_window=int(row["in_window"]), drained=drained)
    if out.total:
        out.first_at = float(row["first_at"])
        out.last_at = float(row["last_at"])
        out.lag_p50_s, out.lag_p99_s, out.lag_p999_s = (float(v) for v in row["lag"])
        out.lag_max_s = float(row["lag_max"])
    rows = await pg.fetch(
        "SELECT floor(extract(epoch FROM persisted_at - $3::timestamptz))::int AS s, "
        "count(*) AS n FROM event_ledger WHERE customer_id = ANY($1::text[]) "
        "AND event_id LIKE $2 GROUP BY 1 ORDER BY 1",
        catalog.customers,
        prefix + "%",
        start,
    )
    out.per_second = {int(r["s"]): int(r["n"]) for r in rows}
    if out.total and await pg.fetchval("SHOW track_commit_timestamp") == "on":
        lag = await pg.fetchrow(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY "
            "  extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at)) AS lag, "
            "extract(epoch FROM max(pg_xact_commit_timestamp(xmin) - received_at)) AS lag_max "
            "FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
            catalog.customers,
            prefix + "%",
        )
        if lag is not None and lag["lag"] is not None:
            out.commit_lag_p50_s, out.commit_lag_p99_s = (float(v) for v in lag["lag"])
            out.commit_lag_max_s = float(lag["lag_max"])
    out.failed_events = int(
        await pg.fetchval(
            "SELECT count(*) FROM failed_events WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
            catalog.customers,
            prefix + "%",
        )
    )
    return out


async def server_info(pg: asyncpg.Connection, redis: Redis, broker_url: str) -> dict[str, Any]:
    """Server versions and durability settings: Postgres', the live view's Valkey's and, when
    the broker is a Redis, the broker's (its fsync is what a 202 waits for)."""
    info = await redis.info("server")
    broker_fsync = "-"
    if broker_url.startswith(("redis://", "rediss://")):
        broker = Redis.from_url(broker_url)
        try:
            broker_fsync = await _appendfsync(broker)
        finally:
            await broker.aclose()
    return {
        "postgres": await pg.fetchval("SHOW server_version"),
        "postgres_fsync": await pg.fetchval("SHOW fsync"),
        "postgres_synchronous_commit": await pg.fetchval("SHOW synchronous_commit"),
        "valkey": info.get("valkey_version") or info.get("redis_version"),
        "valkey_appendfsync": await _appendfsync(redis),
        "broker_appendfsync": broker_fsync,
    }


async def _appendfsync(redis: Redis) -> str:
    setting: dict[Any, Any] = await redis.config_get("appendfsync")
    value = setting.get("appendfsync") or setting.get(b"appendfsync") or "?"
    return value.decode() if isinstance(value, bytes) else str(value)
