"""History for the "flat as data grows" target: `--preload-millions N` loads N million
events straight into the store with SQL, as if the product had run for the 30 days before
now, for the benchmark catalog's customers and meters:

- `event_ledger` and `usage_events` rows from `generate_series` (random-looking event ids,
  as clients' UUIDs; event times evenly over the 30 days; 60 % sum events with a region,
  30 % count, 10 % max, like the load generator), in chunks on two connections;
- `hourly_usage` aggregated from those `usage_events` rows (local hours of each
  customer's zone), and `daily_usage` rolled up from those hours, so billing and
  reconcile read consistent history.

The monthly partitions are created first (`portal.ingest.partitions.ensure_partitions`).
The tables' indexes and primary keys are dropped for the load and rebuilt after it (one
sort each instead of N random index inserts; the definitions are read from the catalog, so
they follow the migrations), then VACUUM ANALYZE. Nothing reads these tables meanwhile:
it runs between two phases.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.config import REGIONS, ZONES, log
from bench.stack import Catalog
from portal.usage import repository as usage_repository

HISTORY = timedelta(days=30)
CHUNK = 2_000_000
# Tables whose indexes are rebuilt after the load (hourly_usage gets few rows: it keeps its key).
BULK_TABLES = ("event_ledger", "usage_events")


@dataclass(slots=True)
class Preload:
    events: int
    prefix: str
    steps: dict[str, float] = field(default_factory=dict)
    hourly_rows: int = 0
    bytes_by_table: dict[str, int] = field(default_factory=dict)

    @property
    def total_s(self) -> float:
        return sum(self.steps.values())


def _event_sql(catalog: Catalog, prefix: str) -> tuple[str, str]:
    """The two INSERT … SELECT statements for events $1..$2 of $3, ending at $4."""
    n_customers = len(catalog.customers)
    # Series element i -> customer i % n, meter by (i / n) % 10 (6 sum, 3 count, 1 max),
    # event time evenly spread, a random-looking id from md5 (spread over the key index).
    customers = ", ".join(f"'{c}'" for c in catalog.customers)
    zones = ", ".join(f"'{z}'" for z in ZONES[:n_customers])
    series = f"""
        SELECT i,
               (ARRAY[{customers}])[1 + i % {n_customers}] AS customer_id,
               (ARRAY[{zones}])[1 + i % {n_customers}] AS zone,
               CASE WHEN (i / {n_customers}) % 10 < 6 THEN '{catalog.sum_meter}'
                    WHEN (i / {n_customers}) % 10 < 9 THEN '{catalog.count_meter}'
                    ELSE '{catalog.max_meter}' END AS metric_name,
               (ARRAY[{", ".join(f"'{r}'" for r in REGIONS)}])[1 + i % {len(REGIONS)}] AS region,
               '{prefix}' || md5(i::text) AS event_id,
               $4::timestamptz - $5::interval + (i - 1) * ($5::interval / $3::bigint) AS event_time
        FROM generate_series($1::bigint, $2::bigint) AS i
    """
    ledger = f"""
        INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, received_at, persisted_at)
        SELECT customer_id, event_id, decode(md5('f' || i::text), 'hex'), event_time,
               event_time + interval '0.5 s', event_time + interval '0.7 s'
        FROM ({series}) AS s
    """
    events = f"""
        INSERT INTO usage_events (customer_id, event_id, metric_name, product_id, quantity,
                                  event_time, hour, group_key, dimensions, metadata, received_at,
                                  persisted_at, message_id)
        SELECT customer_id, event_id, metric_name, '', ((i * 7919) % 5000) / 100.0, event_time,
               date_trunc('hour', event_time, zone),
               CASE WHEN metric_name = '{catalog.sum_meter}'
                    THEN '{{"region":"' || region || '"}}' ELSE '' END,
               jsonb_build_object('region', region, 'tier', 'pro'), '{{"source":"preload"}}'::jsonb,
               event_time + interval '0.5 s', event_time + interval '0.7 s', 'preload-' || (i / 1000)
        FROM ({series}) AS s
    """
    return ledger, events


def _hourly_sql(catalog: Catalog, prefix: str) -> str:
    return f"""
        INSERT INTO hourly_usage (customer_id, metric_name, hour, group_key, value, event_count)
        SELECT customer_id, metric_name, hour, group_key,
               CASE WHEN metric_name = '{catalog.count_meter}' THEN count(*)::numeric
                    WHEN metric_name = '{catalog.max_meter}' THEN max(quantity)
                    ELSE sum(quantity) END,
               count(*)
        FROM usage_events WHERE event_id LIKE '{prefix}%'
        GROUP BY 1, 2, 3, 4
        ON CONFLICT (customer_id, metric_name, hour, group_key) DO UPDATE
          SET value = hourly_usage.value + excluded.value,
              event_count = hourly_usage.event_count + excluded.event_count
    """


async def _index_definitions(conn: asyncpg.Connection, table: str) -> tuple[list[str], list[str], list[str]]:
    """(drop statements, constraint re-adds, index re-creates) for `table`'s keys and indexes."""
    constraints = await conn.fetch(
        "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
        "WHERE conrelid = $1::regclass AND contype IN ('p', 'u')",
        table,
    )
    indexes = await conn.fetch(
        "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def "
        "FROM pg_index i WHERE i.indrelid = $1::regclass AND i.indexrelid NOT IN "
        "(SELECT conindid FROM pg_constraint WHERE conrelid = $1::regclass)",
        table,
    )
    drops = [f'ALTER TABLE {table} DROP CONSTRAINT "{c["conname"]}"' for c in constraints]
    drops += [f"DROP INDEX {i['name']}" for i in indexes]
    adds = [f'ALTER TABLE {table} ADD CONSTRAINT "{c["conname"]}" {c["def"]}' for c in constraints]
    # A partitioned table's index reads "ON ONLY parent": re-created on the parent it must
    # cascade to the partitions.
    creates = [str(i["def"]).replace(" ON ONLY ", " ON ") for i in indexes]
    return drops, adds, creates


async def preload(database_url: str, catalog: Catalog, millions: float) -> Preload:
    from portal.ingest.partitions import ensure_partitions, month_start, months_between

    total = int(millions * 1_000_000)
    prefix = f"H{catalog.run}-"
    out = Preload(total, prefix)
    now = datetime.now(UTC)
    conns = [await asyncpg.connect(database_url) for _ in range(2)]
    main = conns[0]

    async def step(name: str, work: Awaitable[Any]) -> None:
        started = time.perf_counter()
        await work
        out.steps[name] = time.perf_counter() - started
        log(f"preload: {name}: {out.steps[name]:.1f} s")

    try:
        for conn in conns:
            # The load's commits need not wait for fsync: a crash would just fail the run.
            await conn.execute("SET synchronous_commit = off")
            await conn.execute("SET maintenance_work_mem = '1GB'")
        async with main.transaction():
            await ensure_partitions(main, months_between(month_start(now - HISTORY), month_start(now)))
        rebuild: list[str] = []
        drops: list[str] = []
        for table in BULK_TABLES:
            d, adds, creates = await _index_definitions(main, table)
            drops += d
            rebuild += adds + creates
        for statement in drops:
            await main.execute(statement)
        log(
            f"preload: {total:,} events over the {HISTORY.days} days before now "
            f"({len(drops)} keys and indexes dropped for the load)"
        )
        ledger_sql, events_sql = _event_sql(catalog, prefix)

        async def load() -> None:
            first = 1
            started = time.perf_counter()
            while first <= total:
                last = min(total, first + CHUNK - 1)
                args = (first, last, total, now, HISTORY)
                await asyncio.gather(conns[0].execute(ledger_sql, *args), conns[1].execute(events_sql, *args))
                elapsed = time.perf_counter() - started
                log(
                    f"preload:   {last:>13,} events  {last / total:6.1%}  {elapsed:6.1f} s  "
                    f"{last / elapsed:,.0f}/s"
                )
                first = last + 1

        await step("event_ledger + usage_events (INSERT … SELECT)", load())

        async def rebuild_indexes() -> None:
            # Two at a time: one per core.
            queue = list(rebuild)

            async def worker(conn: asyncpg.Connection) -> None:
                while queue:
                    await conn.execute(queue.pop(0))

            await asyncio.gather(*(worker(c) for c in conns))

        await step(f"rebuild {len(rebuild)} keys and indexes", rebuild_indexes())
        await step("hourly_usage (aggregated from the events)", main.execute(_hourly_sql(catalog, prefix)))
        await step(
            "daily_usage (rolled up from the hours)",
            usage_repository.rebuild_days(main, list(catalog.customers)),
        )
        out.hourly_rows = int(
            await main.fetchval(
                "SELECT count(*) FROM hourly_usage WHERE customer_id = ANY($1::text[])", catalog.customers
            )
        )
        await step(
            "VACUUM ANALYZE",
            asyncio.gather(
                conns[0].execute("VACUUM (ANALYZE) event_ledger"),
                conns[1].execute("VACUUM (ANALYZE) usage_events"),
            ),
        )
        await main.execute("VACUUM (ANALYZE) hourly_usage")
        await step("CHECKPOINT", main.execute("CHECKPOINT"))
        for table in (*BULK_TABLES, "hourly_usage"):
            out.bytes_by_table[table] = int(
                await main.fetchval("SELECT pg_total_relation_size($1::regclass)", table)
            )
        # A partitioned parent has no storage of its own: sum its partitions.
        out.bytes_by_table["usage_events"] = int(
            await main.fetchval(
                "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                "WHERE inhparent = 'usage_events'::regclass"
            )
        )
    finally:
        for conn in conns:
            await conn.close()
    return out


def lines(result: Preload) -> list[str]:
    sizes = ", ".join(f"{t} {b / 2**30:,.2f} GiB" for t, b in result.bytes_by_table.items())
    out = [
        f"   preload       {result.events:,} events of history over 30 days in {result.total_s:,.1f} s "
        f"({result.events / result.total_s if result.total_s else 0:,.0f} events/s); "
        f"hourly_usage {result.hourly_rows:,} rows",
        f"   sizes         {sizes}",
    ]
    out += [f"     {name:<46} {seconds:8.1f} s" for name, seconds in result.steps.items()]
    return out
