"""The operational reads behind status, /readyz, the data gauges and billing health: the
database's own catalogs (migrations, partitions), and ingest's tables read as gauges.

Each query says why it is raw SQL. None of them writes or commits; reads of one domain that
has a repository go through it (live, billing, alerting), not here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from portal.infrastructure.db import values

# --- the database itself (readiness)


async def ping(conn: AsyncConnection) -> Any:
    """1, when Postgres answers."""
    # Raw SQL: no table is read; any answer proves the connection.
    return (await conn.execute(text("SELECT 1"))).scalar()


async def migration_version(conn: AsyncConnection) -> Any:
    """The revision the database is migrated to (Alembic's `version_num`; None when unset)."""
    # Raw SQL: alembic_version is Alembic's table, with no model of ours.
    return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()


async def partitions_after(session: AsyncSession, current: str) -> int:
    """How many partitions of `usage_events` are named after `current` (a partition name,
    `usage_events_pYYYYMM`: they sort by month)."""
    # Raw SQL: reads Postgres's own catalogs (pg_inherits, pg_class).
    return int(
        (
            await session.execute(
                text(
                    "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "WHERE i.inhparent = 'usage_events'::regclass AND c.relname > :current"
                ),
                {"current": current},
            )
        ).scalar_one()
    )


# --- failed_events (ingest's): what waits for an operator


async def failed_events_outstanding(session: AsyncSession) -> tuple[int, datetime | None]:
    """How many failed events wait (status 'failed'), and when the oldest failed (None: none)."""
    # Raw SQL: a gauge over ingest's table, kept as status and the gauges have always read it.
    failed, oldest = values(
        (
            await session.execute(
                text("SELECT count(*), min(failed_at) FROM failed_events WHERE status = 'failed'")
            )
        ).one()
    )
    return int(failed), oldest


async def failed_events_listing(session: AsyncSession, *, status: str, limit: int) -> list[tuple[Any, ...]]:
    """Failed events with `status`, newest first, at most `limit`: (id, message_id,
    customer_id, event_id, event, received_at, reason, failed_at, status)."""
    # Raw SQL: the admin API's listing of ingest's table, moved unchanged from its route.
    rows = await session.execute(
        text(
            "SELECT id, message_id, customer_id, event_id, event, received_at, reason, "
            "failed_at, status FROM failed_events WHERE status = :s "
            "ORDER BY failed_at DESC, id DESC LIMIT :l"
        ),
        {"s": status, "l": limit},
    )
    return [values(row) for row in rows]


# --- event_ledger (ingest's): processing latency


async def persist_latency(
    session: AsyncSession, *, start: datetime, end: datetime, sample: int
) -> tuple[Any, ...]:
    """(events, p50 and p99 of persisted minus received, p50 and p99 of persisted minus
    event time; seconds, None when no event) over the newest `sample` ledger rows with an
    event time from a day before `start` to `end`, counting those persisted in [start, end)."""
    # Raw SQL: ordered-set aggregates (percentile_cont … WITHIN GROUP) over a bounded sample.
    # The ledger (unpartitioned, indexed by event time) holds the same three instants as the
    # raw events; reading at most `sample` of the newest keeps this bounded at any rate.
    return values(
        (
            await session.execute(
                text(
                    "SELECT count(*), "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "received_at)), "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "received_at)), "
                    "percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "event_time)), "
                    "percentile_cont(0.99) WITHIN GROUP (ORDER BY extract(epoch FROM persisted_at - "
                    "event_time)) "
                    "FROM (SELECT * FROM event_ledger WHERE event_time >= CAST(:start AS timestamptz) - "
                    "interval '1 day' "
                    "AND event_time < :end ORDER BY event_time DESC LIMIT :sample) recent "
                    "WHERE persisted_at >= :start AND persisted_at < :end"
                ),
                {"start": start, "end": end, "sample": sample},
            )
        ).one()
    )
