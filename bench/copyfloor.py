"""The raw COPY floor: how many rows shaped like `usage_events` rows this Postgres takes by
COPY from this process, in this run, to judge the persisted rate against (issue 15: the
persisted rate must be >= 0.3x of it).

Rows go into a scratch table `CREATE TABLE … (LIKE usage_events INCLUDING DEFAULTS)`: the
same columns and types, an ordinary logged table (WAL and fsync at commit, as for the real
table) with no index, no partitioning and no constraint, created and dropped here. The
rows have the sizes of the benchmark's events (ids, dimensions, metadata) and go in with
asyncpg's `copy_records_to_table`, as the worker writes them, a few thousand per COPY and
one transaction each, from `connections` connections at once for `seconds`.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from bench.config import REGIONS, log
from portal.ingest.repository.events import USAGE_EVENT_COLUMNS  # the worker's COPY columns

SCRATCH_TABLE = "bench_copy_floor"
ROWS_PER_COPY = 5_000
# Distinct rows built before the clock starts (building tuples is not what is measured).
POOL_ROWS = 40_000


@dataclass(frozen=True, slots=True)
class CopyFloor:
    rows: int
    elapsed_s: float
    connections: int
    rows_per_copy: int
    columns: list[str]
    table_bytes: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.elapsed_s if self.elapsed_s > 0 else 0.0


def _records(columns: list[str], customers: list[str], metrics: list[str], run: str) -> list[tuple[Any, ...]]:
    rng = random.Random(15)
    now = datetime.now(UTC)
    received = now
    out = []
    for i in range(POOL_ROWS):
        event_time = now - timedelta(milliseconds=int(rng.random() * 7_200_000))
        values: dict[str, Any] = {
            "customer_id": customers[i % len(customers)],
            "event_id": f"C{run}-{rng.getrandbits(64):016x}{i:08x}",
            "metric_name": metrics[i % len(metrics)],
            "product_id": "",
            "quantity": Decimal(int(rng.random() * 5000)) / 100,
            "event_time": event_time,
            "hour": event_time.replace(minute=0, second=0, microsecond=0),
            "group_key": f'{{"region":"{REGIONS[i & 3]}"}}',
            "dimensions": f'{{"region":"{REGIONS[i & 3]}","tier":"pro"}}',
            "metadata": '{"source":"bench","version":"1"}',
            "received_at": received,
            "persisted_at": received,
            "message_id": f"bench-copy-{i // 1000:08d}",
        }
        out.append(tuple(values[c] for c in columns))
    return out


async def measure_copy_floor(
    database_url: str,
    *,
    seconds: float,
    connections: int,
    customers: list[str],
    metrics: list[str],
    run: str,
) -> CopyFloor:
    admin = await asyncpg.connect(database_url)
    conns: list[asyncpg.Connection] = []
    try:
        await admin.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        await admin.execute(f"CREATE TABLE {SCRATCH_TABLE} (LIKE usage_events INCLUDING DEFAULTS)")
        present = {
            r["column_name"]
            for r in await admin.fetch(
                "SELECT column_name FROM information_schema.columns WHERE table_name = $1", SCRATCH_TABLE
            )
        }
        # Only the columns the worker writes that the table still has (the schema may move
        # under the benchmark); the others take their defaults, as in the worker's COPY.
        columns = [c for c in USAGE_EVENT_COLUMNS if c in present]
        pool = _records(columns, customers, metrics, run)
        chunks = [pool[i : i + ROWS_PER_COPY] for i in range(0, len(pool), ROWS_PER_COPY)]
        conns = [await asyncpg.connect(database_url) for _ in range(max(1, connections))]
        log(
            f"copy floor: COPY of usage_events-shaped rows into {SCRATCH_TABLE} "
            f"({ROWS_PER_COPY:,} per COPY, {len(conns)} connections) for {seconds:g} s"
        )
        rows = 0
        deadline = time.monotonic() + seconds

        async def run_one(conn: asyncpg.Connection, offset: int) -> None:
            nonlocal rows
            k = offset
            while time.monotonic() < deadline:
                chunk = chunks[k % len(chunks)]
                await conn.copy_records_to_table(SCRATCH_TABLE, columns=columns, records=chunk)
                rows += len(chunk)
                k += 1

        started = time.perf_counter()
        await asyncio.gather(*(run_one(c, i) for i, c in enumerate(conns)))
        elapsed = time.perf_counter() - started
        table_bytes = int(await admin.fetchval(f"SELECT pg_total_relation_size('{SCRATCH_TABLE}')"))
        floor = CopyFloor(rows, elapsed, len(conns), ROWS_PER_COPY, columns, table_bytes)
        log(f"copy floor: {floor.rows_per_s:,.0f} rows/s ({rows:,} rows in {elapsed:.1f} s)")
        return floor
    finally:
        for conn in conns:
            await conn.close()
        try:
            await admin.execute(f"DROP TABLE IF EXISTS {SCRATCH_TABLE}")
        finally:
            await admin.close()
