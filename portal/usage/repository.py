"""Every query on usage's tables, `hourly_usage`, `hourly_unique_values` and `daily_usage`;
other modules call these functions, never the tables.

The persist worker writes both on a bare asyncpg connection inside its per-batch
transaction, and reconcile reads them on one: those functions are raw asyncpg SQL (unnest
upserts, one round trip per statement whatever the batch size), the ingest hot path. The
usage API, the pages and billing read on a session: SQLAlchemy expressions, except the bulk
aggregate reads that say why not. Reads select columns rather than whole models, so nothing
lands in the session's identity map. None of them commits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.ingest.events import micros_to_datetime
from portal.usage.models import HourlyUniqueValue, HourlyUsage

# --- hourly_usage and hourly_unique_values: the persist worker's writes (hot path)

AggKey = tuple[str, str, int, str]  # customer, metric, bucket (epoch s), group key
# A unique_count value seen in an hour: customer, metric, bucket (epoch s), group key, value.
UniqueKey = tuple[str, str, int, str, str]


@dataclass(slots=True)
class HourDelta:
    """What a batch adds to one hourly_usage row."""

    value: Decimal
    event_count: int
    latest_at: datetime | None = None
    latest_event_id: str | None = None


_UPSERT = {
    "sum": "value = h.value + EXCLUDED.value, event_count = h.event_count + EXCLUDED.event_count",
    "count": "value = h.value + EXCLUDED.value, event_count = h.event_count + EXCLUDED.event_count",
    "unique_count": "value = h.value + EXCLUDED.value, event_count = h.event_count + EXCLUDED.event_count",
    "max": "value = GREATEST(h.value, EXCLUDED.value), event_count = h.event_count + EXCLUDED.event_count",
    "latest": "value = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) "
    "> (h.latest_at, h.latest_event_id) THEN EXCLUDED.value ELSE h.value END, "
    "latest_event_id = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) "
    "> (h.latest_at, h.latest_event_id) THEN EXCLUDED.latest_event_id "
    "ELSE h.latest_event_id END, "
    "latest_at = GREATEST(h.latest_at, EXCLUDED.latest_at), "
    "event_count = h.event_count + EXCLUDED.event_count",
}


def _delta_columns(rows: Sequence[tuple[AggKey, HourDelta]]) -> list[list[Any]]:
    """The unnest arrays of hour deltas: customer, metric, hour, group key, value, events."""
    return [
        [k[0] for k, _ in rows],
        [k[1] for k, _ in rows],
        [micros_to_datetime(k[2] * 1_000_000) for k, _ in rows],
        [k[3] for k, _ in rows],
        [d.value for _, d in rows],
        [d.event_count for _, d in rows],
    ]


async def upsert_hours(conn: Any, aggregation: str, rows: dict[AggKey, HourDelta]) -> None:
    """Add a batch's deltas to its hourly_usage rows, combined by `aggregation`, on the
    persist transaction's asyncpg connection; rows are locked in key order."""
    if not rows:
        return
    ordered = sorted(rows.items())
    # Raw asyncpg: the ingest hot path, one unnest upsert per aggregation for the whole batch.
    await conn.execute(
        "INSERT INTO hourly_usage AS h (customer_id, metric_name, hour, group_key, value, "
        "event_count, latest_at, latest_event_id) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], "
        "$5::numeric[], $6::bigint[], $7::timestamptz[], $8::text[]) "
        "ON CONFLICT (customer_id, metric_name, hour, group_key) DO UPDATE SET "
        f"{_UPSERT[aggregation]}, updated_at = now()",
        *_delta_columns(ordered),
        [d.latest_at for _, d in ordered],
        [d.latest_event_id for _, d in ordered],
    )


# The aggregations daily_usage rolls up: those whose period total combines day totals (a
# latest value and a distinct count do not; they stay on the hourly tables).
DAILY_AGGREGATIONS = frozenset({"sum", "count", "max"})

# A local hour → its local day's start and end in the customer's zone, as instants; the day
# end is the next local midnight, so it equals the next day's start across DST changes.
_DAY = "date_trunc('day', u.h, cu.timezone)"
_DAY_END = f"({_DAY} AT TIME ZONE cu.timezone + interval '1 day') AT TIME ZONE cu.timezone"


async def upsert_days(conn: Any, deltas: dict[str, dict[AggKey, HourDelta]]) -> None:
    """Add a batch's hourly deltas (by aggregation) to their daily_usage rows, after
    `upsert_hours` in the same persist transaction: sums and counts added, maxima kept;
    rows are locked in key order, in at most two statements."""
    additive = sorted((k, d) for a in ("sum", "count") for k, d in deltas.get(a, {}).items())
    for rows, combine, kept in (
        (additive, "sum", "value = d.value + EXCLUDED.value"),
        (sorted(deltas.get("max", {}).items()), "max", "value = GREATEST(d.value, EXCLUDED.value)"),
    ):
        if not rows:
            continue
        # Raw asyncpg: the ingest hot path, one unnest upsert for the whole batch. The local
        # day is Postgres' (the customer's zone is in the same database; no lookup here).
        await conn.execute(
            "INSERT INTO daily_usage AS d (customer_id, metric_name, day, group_key, day_end, value, "
            f"event_count) SELECT u.c, u.m, {_DAY}, u.g, {_DAY_END}, {combine}(u.v), sum(u.n) "
            "FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::numeric[], "
            "$6::bigint[]) AS u(c, m, h, g, v, n) JOIN customers cu ON cu.id = u.c "
            "GROUP BY u.c, u.m, 3, u.g, 5 ORDER BY u.c, u.m, 3, u.g "
            "ON CONFLICT (customer_id, metric_name, day, group_key) DO UPDATE SET "
            f"{kept}, event_count = d.event_count + EXCLUDED.event_count, updated_at = now()",
            *_delta_columns(rows),
        )


async def rebuild_days(conn: Any, customer_ids: Sequence[str] | None = None) -> int:
    """Set the customers' daily_usage rows (every customer's, without `customer_ids`) to what
    their hourly_usage rows come to (the migration's backfill, for loaders and tests that
    write hourly_usage directly, and `usage-portal rebuild-days`), on an asyncpg connection
    in the caller's transaction; the day rows written."""
    # Raw asyncpg: a bulk rollup, one statement for the whole set of customers.
    chosen = "" if customer_ids is None else "WHERE customer_id = ANY($1::text[])"
    args = () if customer_ids is None else (list(customer_ids),)
    await conn.execute(f"DELETE FROM daily_usage {chosen}", *args)
    status: str = await conn.execute(
        "INSERT INTO daily_usage (customer_id, metric_name, day, group_key, day_end, value, "
        f"event_count) SELECT u.c, u.m, {_DAY}, u.g, {_DAY_END}, "
        "CASE WHEN m.aggregation = 'max' THEN max(u.v) ELSE sum(u.v) END, sum(u.n) "
        "FROM hourly_usage AS u(c, m, h, g, v, n) JOIN customers cu ON cu.id = u.c "
        "JOIN meters m ON m.metric_name = u.m AND m.aggregation IN ('sum', 'count', 'max') "
        f"{chosen.replace('customer_id', 'u.c')} GROUP BY u.c, u.m, 3, u.g, 5, m.aggregation",
        *args,
    )
    return int(status.split()[-1])


async def insert_unique_values(conn: Any, distinct: Sequence[UniqueKey]) -> list[Any]:
    """Insert unique_count values (sorted, each once) on the persist transaction's asyncpg
    connection; the records (customer_id, metric_name, hour, group_key) of those new to
    their hour."""
    # Raw asyncpg: the ingest hot path, one unnest insert for the whole batch.
    new: list[Any] = await conn.fetch(
        "INSERT INTO hourly_unique_values (customer_id, metric_name, hour, group_key, value) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) "
        "ON CONFLICT DO NOTHING RETURNING customer_id, metric_name, hour, group_key",
        [d[0] for d in distinct],
        [d[1] for d in distinct],
        [micros_to_datetime(d[2] * 1_000_000) for d in distinct],
        [d[3] for d in distinct],
        [d[4] for d in distinct],
    )
    return new


# --- reconcile's reads (asyncpg)


async def hours_between(conn: Any, start: datetime, end: datetime) -> list[Any]:
    """Records (customer_id, metric_name, hour, group_key, value, latest_at, latest_event_id)
    of every hourly_usage row whose hour is in [start, end), on an asyncpg connection."""
    # Raw asyncpg: the reconcile actor runs on a bare asyncpg connection, not a session.
    rows: list[Any] = await conn.fetch(
        "SELECT customer_id, metric_name, hour, group_key, value, latest_at, latest_event_id "
        "FROM hourly_usage WHERE hour >= $1 AND hour < $2",
        start,
        end,
    )
    return rows


async def unique_values_between(conn: Any, start: datetime, end: datetime) -> list[Any]:
    """Records (customer_id, metric_name, hour, group_key, value) of every hourly unique
    value whose hour is in [start, end), on an asyncpg connection."""
    # Raw asyncpg: the reconcile actor runs on a bare asyncpg connection, not a session.
    rows: list[Any] = await conn.fetch(
        "SELECT customer_id, metric_name, hour, group_key, value FROM hourly_unique_values "
        "WHERE hour >= $1 AND hour < $2",
        start,
        end,
    )
    return rows


# --- one customer's meter over a range of hours


class HourValue(NamedTuple):
    hour: datetime
    group_key: str
    value: Decimal
    latest_at: datetime | None
    latest_event_id: str | None


def _in_range(model: Any, customer_id: str, metric_name: str, start: datetime, end: datetime) -> list[Any]:
    return [
        col(model.customer_id) == customer_id,
        col(model.metric_name) == metric_name,
        col(model.hour) >= start,
        col(model.hour) < end,
    ]


async def hour_values(
    session: AsyncSession, *, customer_id: str, metric_name: str, start: datetime, end: datetime
) -> list[HourValue]:
    """Every hourly_usage row of the customer's meter with hour in [start, end), one per
    group (the group key "" when the meter has no groupBy), unordered."""
    statement = select(
        col(HourlyUsage.hour),
        col(HourlyUsage.group_key),
        col(HourlyUsage.value),
        col(HourlyUsage.latest_at),
        col(HourlyUsage.latest_event_id),
    ).where(*_in_range(HourlyUsage, customer_id, metric_name, start, end))
    rows: Any = await session.execute(statement)
    return [HourValue(*tuple(row)) for row in rows]


async def unique_values(
    session: AsyncSession, *, customer_id: str, metric_name: str, start: datetime, end: datetime
) -> list[tuple[datetime, str]]:
    """Distinct (hour, value) of the customer's unique_count meter with hour in [start, end)."""
    statement = (
        select(col(HourlyUniqueValue.hour), col(HourlyUniqueValue.value))
        .distinct()
        .where(*_in_range(HourlyUniqueValue, customer_id, metric_name, start, end))
    )
    rows: Any = await session.execute(statement)
    return [(hour, str(value)) for hour, value in rows]


async def group_unique_values(
    session: AsyncSession, *, customer_id: str, metric_name: str, start: datetime, end: datetime
) -> list[tuple[datetime, str, str]]:
    """Distinct (hour, group key, value) of the customer's unique_count meter with hour in [start, end)."""
    statement = (
        select(col(HourlyUniqueValue.hour), col(HourlyUniqueValue.group_key), col(HourlyUniqueValue.value))
        .distinct()
        .where(*_in_range(HourlyUniqueValue, customer_id, metric_name, start, end))
    )
    rows: Any = await session.execute(statement)
    return [(hour, str(group_key), str(value)) for hour, group_key, value in rows]


class HourRow(NamedTuple):
    hour: datetime
    group_key: str
    value: Decimal
    event_count: int
    updated_at: datetime


async def hour_row(
    session: AsyncSession, *, customer_id: str, metric_name: str, hour: datetime, group_key: str
) -> HourRow | None:
    """One hourly_usage row, None when there is none."""
    statement = select(
        col(HourlyUsage.hour),
        col(HourlyUsage.group_key),
        col(HourlyUsage.value),
        col(HourlyUsage.event_count),
        col(HourlyUsage.updated_at),
    ).where(
        col(HourlyUsage.customer_id) == customer_id,
        col(HourlyUsage.metric_name) == metric_name,
        col(HourlyUsage.hour) == hour,
        col(HourlyUsage.group_key) == group_key,
    )
    row: Any = (await session.execute(statement)).first()
    return HourRow(*tuple(row)) if row else None


# --- bulk aggregate reads: anomalies and invoices


async def hourly_totals_since(
    session: AsyncSession,
    *,
    customer_ids: Sequence[str],
    metric_names: Sequence[str],
    since: datetime,
    end: datetime,
) -> list[tuple[str, str, datetime, datetime | None, Decimal | None]]:
    """(customer id, metric, first hour ever, hour, total over groups) of every customer of
    `customer_ids` and metric of `metric_names` with any usage ever: one row per hour in
    [since, end), or one with hour and total None when it has no usage there; unordered."""
    # Raw SQL: a heavy aggregate read. The first usage ever comes from the primary key's index
    # (one short index scan per customer and meter), the series from one range scan, for a
    # whole page of customers in one statement.
    rows: Any = await session.execute(
        text(
            "WITH pairs AS (SELECT c, m, (SELECT min(hour) FROM hourly_usage "
            "  WHERE customer_id = c AND metric_name = m) AS started "
            "  FROM unnest(CAST(:ids AS text[])) AS c CROSS JOIN unnest(CAST(:ms AS text[])) AS m) "
            "SELECT p.c, p.m, p.started, h.hour, sum(h.value) FROM pairs p "
            "LEFT JOIN hourly_usage h ON h.customer_id = p.c AND h.metric_name = p.m "
            "  AND h.hour >= :since AND h.hour < :end "
            "WHERE p.started IS NOT NULL GROUP BY 1, 2, 3, 4"
        ),
        {"ids": list(customer_ids), "ms": list(metric_names), "since": since, "end": end},
    )
    return [(str(c), str(m), started, hour, total) for c, m, started, hour, total in rows]


# Bulk reads of an invoice run: one statement per window for every customer that shares it.
# Raw SQL: heavy aggregate reads over array parameters, one plan whatever the number of
# customers (an expanding IN would be a new statement per count).


# A local day lasts at most 25 hours (a DST change; 26 leaves an hour to spare): a day that
# overlaps a window starting at `lo` starts after `lo - _LONGEST_DAY`.
_LONGEST_DAY = timedelta(hours=26)


# Raw SQL: a CTE read twice and a join of the straddling days to their hours; one statement
# for the whole chunk of customers. Parsed once (the usage panel runs it at every poll).
_WINDOW_SUMS = text(
    "WITH days AS MATERIALIZED (SELECT customer_id, metric_name, group_key, value, day, "
    "day_end FROM daily_usage WHERE customer_id = ANY(:ids) AND metric_name = ANY(:metrics) "
    "AND day > :reach AND day < :hi AND day_end > :lo) "
    "SELECT customer_id, metric_name, group_key, sum(value), max(value) FROM ("
    "SELECT customer_id, metric_name, group_key, value FROM days "
    "WHERE day >= :lo AND day_end <= :hi UNION ALL "
    "SELECT h.customer_id, h.metric_name, h.group_key, h.value FROM days d "
    "JOIN hourly_usage h ON h.customer_id = d.customer_id AND h.metric_name = d.metric_name "
    "AND h.hour >= greatest(d.day, :lo) AND h.hour < least(d.day_end, :hi) "
    "AND h.group_key = d.group_key WHERE d.day < :lo OR d.day_end > :hi"
    ") usage GROUP BY 1, 2, 3"
)


async def window_sums(
    session: AsyncSession,
    *,
    customer_ids: Sequence[str],
    metric_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[tuple[str, str, str, Decimal, Decimal]]:
    """(customer id, metric, group key, sum, max) of the usage in [start, end) of each
    customer, sum/count/max meter and group with any: the value of its hours added, and the
    largest hourly value (meaningful for a max meter only).

    Read from the daily rows that overlap the window: a day whole inside it counts as its
    row; a day that straddles an end counts as its hours inside the window, read from
    hourly_usage (none, for a window of whole local days). Every hour is in its day's row,
    so the total is the hours' to the digit, at ~31 rows a month per meter and group instead
    of ~744, and without one random read of hourly_usage's index per customer and meter."""
    rows: Any = await session.execute(
        _WINDOW_SUMS,
        {
            "ids": list(customer_ids),
            "metrics": list(metric_names),
            "lo": start,
            "hi": end,
            "reach": start - _LONGEST_DAY,
        },
    )
    return [(c, m, g, total, peak) for c, m, g, total, peak in rows]


async def window_latest(
    session: AsyncSession,
    *,
    customer_ids: Sequence[str],
    metric_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[tuple[str, str, str, datetime, str, Decimal]]:
    """(customer id, metric, group key, latest at, latest event id, value) of the latest
    event's hour in [start, end) of each customer, meter and group with any."""
    rows: Any = await session.execute(
        text(
            "SELECT DISTINCT ON (customer_id, metric_name, group_key) customer_id, metric_name, "
            "group_key, latest_at, latest_event_id, value FROM hourly_usage "
            "WHERE customer_id = ANY(:ids) AND metric_name = ANY(:metrics) "
            "AND hour >= :lo AND hour < :hi "
            "ORDER BY customer_id, metric_name, group_key, latest_at DESC, latest_event_id DESC"
        ),
        {"ids": list(customer_ids), "metrics": list(metric_names), "lo": start, "hi": end},
    )
    return [(c, m, g, at, event_id, value) for c, m, g, at, event_id, value in rows]


async def window_unique_values(
    session: AsyncSession,
    *,
    customer_ids: Sequence[str],
    metric_names: Sequence[str],
    start: datetime,
    end: datetime,
) -> list[tuple[str, str, str, str]]:
    """Distinct (customer id, metric, group key, value) seen in [start, end)."""
    rows: Any = await session.execute(
        text(
            "SELECT DISTINCT customer_id, metric_name, group_key, value FROM hourly_unique_values "
            "WHERE customer_id = ANY(:ids) AND metric_name = ANY(:metrics) "
            "AND hour >= :lo AND hour < :hi"
        ),
        {"ids": list(customer_ids), "metrics": list(metric_names), "lo": start, "hi": end},
    )
    return [(c, m, g, value) for c, m, g, value in rows]


# --- event corrections (portal/ingest/corrections.py): one hour and group at a time


def _hour_where(model: Any, customer_id: str, metric_name: str, hour: datetime, group_key: str) -> list[Any]:
    return [
        col(model.customer_id) == customer_id,
        col(model.metric_name) == metric_name,
        col(model.hour) == hour,
        col(model.group_key) == group_key,
    ]


async def lock_hour(
    session: AsyncSession, customer_id: str, metric_name: str, hour: datetime, group_key: str
) -> bool:
    """Lock the hour's row before its events are read again: a persist transaction adding to
    it waits for the correction, or has committed and its events are read. False: no row."""
    statement = (
        select(col(HourlyUsage.value))
        .where(*_hour_where(HourlyUsage, customer_id, metric_name, hour, group_key))
        .with_for_update()
    )
    return (await session.execute(statement)).first() is not None


async def add_to_hour(
    session: AsyncSession,
    customer_id: str,
    metric_name: str,
    hour: datetime,
    group_key: str,
    *,
    value: Decimal,
    events: int,
) -> None:
    """Add to a sum or count hour (negative: take out) exactly, in Postgres' numeric."""
    statement = (
        update(HourlyUsage)
        .where(*_hour_where(HourlyUsage, customer_id, metric_name, hour, group_key))
        .values(
            value=col(HourlyUsage.value) + value,
            event_count=col(HourlyUsage.event_count) + events,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)


async def set_hour(
    session: AsyncSession,
    customer_id: str,
    metric_name: str,
    hour: datetime,
    group_key: str,
    *,
    value: Decimal | None,
    events: int,
    latest_at: datetime | None = None,
    latest_event_id: str | None = None,
) -> None:
    """Set a max or latest hour to what its remaining events come to (none left: the row goes)."""
    where = _hour_where(HourlyUsage, customer_id, metric_name, hour, group_key)
    if events == 0 or value is None:
        await session.execute(delete(HourlyUsage).where(*where).execution_options(synchronize_session=False))
        return
    statement = (
        update(HourlyUsage)
        .where(*where)
        .values(
            value=value,
            event_count=events,
            latest_at=latest_at,
            latest_event_id=latest_event_id,
            updated_at=func.now(),
        )
        .execution_options(synchronize_session=False)
    )
    await session.execute(statement)


async def refresh_day(
    session: AsyncSession,
    customer_id: str,
    metric_name: str,
    hour: datetime,
    group_key: str,
    aggregation: str,
) -> None:
    """Set the daily_usage row of the hour's local day and group to what its hourly_usage
    rows come to now (after a correction changed one; none left: the row goes)."""
    if aggregation not in DAILY_AGGREGATIONS:
        return
    key = {"c": customer_id, "m": metric_name, "g": group_key, "hour": hour}
    # Raw SQL: an insert from an aggregate over the day's hours, the day in the customer's
    # zone as the persist transaction computes it (`upsert_days`).
    await session.execute(
        text(
            "DELETE FROM daily_usage WHERE customer_id = :c AND metric_name = :m AND group_key = :g "
            "AND day <= :hour AND day_end > :hour"
        ),
        key,
    )
    combine = "max" if aggregation == "max" else "sum"
    await session.execute(
        text(
            "INSERT INTO daily_usage (customer_id, metric_name, day, group_key, day_end, value, "
            f"event_count) SELECT h.customer_id, h.metric_name, z.day, h.group_key, z.day_end, "
            f"{combine}(h.value), sum(h.event_count) FROM customers cu CROSS JOIN LATERAL (SELECT "
            f"{_DAY} AS day, {_DAY_END} AS day_end FROM (SELECT CAST(:hour AS timestamptz) AS h) u) z "
            "JOIN hourly_usage h ON h.customer_id = cu.id AND h.metric_name = :m AND h.group_key = :g "
            "AND h.hour >= z.day AND h.hour < z.day_end WHERE cu.id = :c "
            "GROUP BY h.customer_id, h.metric_name, z.day, h.group_key, z.day_end"
        ),
        key,
    )


async def drop_unique_value(
    session: AsyncSession, customer_id: str, metric_name: str, hour: datetime, group_key: str, value: str
) -> bool:
    """Forget a distinct value of the hour and group; True when it was there."""
    statement = (
        delete(HourlyUniqueValue)
        .where(
            *_hour_where(HourlyUniqueValue, customer_id, metric_name, hour, group_key),
            col(HourlyUniqueValue.value) == value,
        )
        .execution_options(synchronize_session=False)
    )
    result: Any = await session.execute(statement)
    return bool(result.rowcount)
