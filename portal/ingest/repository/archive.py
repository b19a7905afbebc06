"""Queries behind the raw event archive (portal/ingest/archive.py): the monthly partitions of
`usage_events`, their rows and totals, dropping one, and `archived_partitions`.

Raw asyncpg on a bare connection: the archive streams whole partitions through a cursor and
runs DDL (DETACH, DROP) on tables the models do not know (the partitions are made at run
time), which SQLAlchemy expressions cannot name. A partition name is interpolated into SQL
only after `checked_name` matched it against the one shape partitions.py gives names.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.ingest.models import ArchivedPartition

_PARTITION = re.compile(r"usage_events_p[0-9]{6}")


def checked_name(name: str) -> str:
    """`name` when it is a monthly partition's name (usage_events_pYYYYMM); ValueError otherwise."""
    if not _PARTITION.fullmatch(name):
        raise ValueError(f"not a monthly partition of usage_events: {name!r}")
    return name


async def event_partitions(conn: Any) -> list[str]:
    """The monthly partitions attached to `usage_events`, oldest first."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage_events'::regclass ORDER BY c.relname"
    )
    return [r["relname"] for r in rows if _PARTITION.fullmatch(r["relname"])]


async def usage_event_columns(conn: Any) -> list[str]:
    """The columns of `usage_events` as the database has them, in table order."""
    rows = await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = 'usage_events'::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
    )
    return [r["attname"] for r in rows]


async def partition_size(conn: Any, name: str) -> int:
    """Bytes the partition takes in Postgres, indexes included."""
    return int(await conn.fetchval("SELECT pg_total_relation_size($1::regclass)", checked_name(name)))


async def partition_rows(conn: Any, name: str, columns: Sequence[str]) -> AsyncIterator[Any]:
    """Every row of the partition (asyncpg Records with `columns`), in no particular order;
    the caller holds a transaction (a cursor needs one)."""
    selected = ", ".join(f'"{c}"' for c in columns)
    async for record in conn.cursor(f"SELECT {selected} FROM {checked_name(name)}", prefetch=5000):
        yield record


class MeterTotal(NamedTuple):
    events: int
    quantity: Decimal
    cancelled: int


async def partition_totals(conn: Any, name: str) -> dict[tuple[str, str], MeterTotal]:
    """Per (customer_id, metric_name): events, exact sum of quantity, cancelled events."""
    rows = await conn.fetch(
        f"SELECT customer_id, metric_name, count(*) AS events, sum(quantity) AS quantity, "
        f"count(cancelled_at) AS cancelled FROM {checked_name(name)} GROUP BY 1, 2"
    )
    return {
        (r["customer_id"], r["metric_name"]): MeterTotal(r["events"], r["quantity"], r["cancelled"])
        for r in rows
    }


async def detach_partition(conn: Any, name: str) -> None:
    """Detach the partition (inside the caller's transaction: it waits for readers of it,
    at most 10 s, then fails rather than queue every ingest behind it)."""
    await conn.execute("SET LOCAL lock_timeout = '10s'")
    await conn.execute(f"ALTER TABLE usage_events DETACH PARTITION {checked_name(name)}")


async def drop_table(conn: Any, name: str) -> None:
    await conn.execute(f"DROP TABLE {checked_name(name)}")


class ArchivedRecord(NamedTuple):
    name: str
    range_start: datetime
    range_end: datetime
    rows: int
    bytes: int
    path: str
    manifest_sha256: str
    archived_at: datetime | None = None


async def record_archived(conn: Any, record: ArchivedRecord) -> None:
    """Remember a dropped partition (in the transaction that dropped it); a repeat replaces it."""
    await conn.execute(
        "INSERT INTO archived_partitions "
        "(name, range_start, range_end, rows, bytes, path, manifest_sha256) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET "
        "range_start = EXCLUDED.range_start, range_end = EXCLUDED.range_end, rows = EXCLUDED.rows, "
        "bytes = EXCLUDED.bytes, path = EXCLUDED.path, manifest_sha256 = EXCLUDED.manifest_sha256, "
        "archived_at = now()",
        *record[:7],
    )


async def archived_partitions(conn: Any) -> list[ArchivedRecord]:
    """Every archived partition, oldest month first."""
    rows = await conn.fetch(
        "SELECT name, range_start, range_end, rows, bytes, path, manifest_sha256, archived_at "
        "FROM archived_partitions ORDER BY range_start"
    )
    return [ArchivedRecord(*tuple(r)) for r in rows]


async def archive_totals(session: AsyncSession) -> tuple[int, int, int]:
    """(archived partitions, events in them, bytes of their files), for the status view."""
    statement = select(
        func.count(),
        func.coalesce(func.sum(col(ArchivedPartition.rows)), 0),
        func.coalesce(func.sum(col(ArchivedPartition.bytes)), 0),
    )
    row: Any = (await session.execute(statement)).one()
    return int(row[0]), int(row[1]), int(row[2])
