"""Monthly partitions of `usage_events`, created ahead of need.

Partitions are UTC calendar months. The scheduler keeps the next months ready; the
persist actor also ensures the months of the batch in hand, so an event never meets a
missing partition.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

# How far ahead monthly partitions exist, so the hot path rarely creates one.
PARTITION_MONTHS_AHEAD = 3

_known: set[date] = set()
# One lock id for partition DDL, so concurrent workers do not race CREATE TABLE.
_DDL_LOCK = 74_220_011


def month_start(moment: datetime) -> date:
    return date(moment.year, moment.month, 1)


def next_month(month: date) -> date:
    return date(month.year + (month.month == 12), month.month % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    months = [first]
    while months[-1] < last:
        months.append(next_month(months[-1]))
    return months


def partition_name(month: date) -> str:
    return f"usage_events_p{month:%Y%m}"


async def ensure_partitions(conn: Any, months: list[date]) -> list[str]:
    """Create the missing monthly partitions among `months` (asyncpg connection, inside
    the caller's transaction). Returns the names created."""
    missing = [m for m in months if m not in _known]
    if not missing:
        return []
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
    existing = {
        r["relname"]
        for r in await conn.fetch(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'usage_events'::regclass"
        )
    }
    created = []
    for month in missing:
        name = partition_name(month)
        if name not in existing:
            start = datetime(month.year, month.month, 1, tzinfo=UTC)
            end_month = next_month(month)
            end = datetime(end_month.year, end_month.month, 1, tzinfo=UTC)
            await conn.execute(
                f"CREATE TABLE {name} PARTITION OF usage_events "
                f"FOR VALUES FROM ('{start.isoformat()}') TO ('{end.isoformat()}')"
            )
            created.append(name)
    # Only remember months once the transaction that created them is known to commit;
    # callers commit right after, and a rollback just means one more check next time.
    _known.update(missing)
    return created


def forget_month(month: date) -> None:
    """Forget one month (its partition was archived and dropped: portal/ingest/archive.py)."""
    _known.discard(month)


def forget_known() -> None:
    """Drop the process cache (after a rollback, or in tests that recreate the schema)."""
    _known.clear()


async def maintain_partitions_now(conn: Any, lateness: timedelta, now: datetime | None = None) -> list[str]:
    """The partitions from the oldest month an accepted event may fall in to
    PARTITION_MONTHS_AHEAD months ahead (run by migrate and by the maintenance job)."""
    now = now or datetime.now(UTC)
    first = month_start(now - lateness)
    last = month_start(now + timedelta(days=31 * PARTITION_MONTHS_AHEAD))
    return await ensure_partitions(conn, months_between(first, last))
