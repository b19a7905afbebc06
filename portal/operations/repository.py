"""The operational reads behind status, /readyz, the data gauges and billing health: the
database's own catalogs (migrations, partitions). Gauges over one domain's tables are read
through that domain's repository (ingest's failed events and ledger, live, billing, alerting).

Each query says why it is raw SQL. None of them writes or commits; reads of one domain that
has a repository go through it (live, billing, alerting), not here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

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
