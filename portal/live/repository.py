"""Every query on the live domain's tables, `reconcile_runs` and `live_drift`; other modules
call these functions, never the tables.

Reads select columns rather than whole models, so nothing lands in the session's identity
map. None of them commits. The drift page's scoped read of `live_drift` is a report
(`portal/reports/repository.py`): it filters by a subquery on `customers`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.live.models import LiveDrift, ReconcileRun

_RUN = (
    col(ReconcileRun.id),
    col(ReconcileRun.started_at),
    col(ReconcileRun.finished_at),
    col(ReconcileRun.window_start),
    col(ReconcileRun.window_end),
    col(ReconcileRun.full_rebuild),
    col(ReconcileRun.keys_written),
)
_DRIFT = (
    col(LiveDrift.customer_id),
    col(LiveDrift.metric_name),
    col(LiveDrift.live_value),
    col(LiveDrift.billed_value),
    col(LiveDrift.drift),
)


def _latest_run_id() -> Any:
    return select(func.max(col(ReconcileRun.id))).scalar_subquery()


# --- reconcile_runs


async def latest_run(session: AsyncSession) -> tuple[Any, ...] | None:
    """The last run as (id, started_at, finished_at, window_start, window_end, full_rebuild,
    keys_written); None before the first."""
    row = (await session.execute(select(*_RUN).order_by(col(ReconcileRun.id).desc()).limit(1))).first()
    return tuple(row) if row else None


async def last_reconcile(session: AsyncSession) -> tuple[datetime | None, int]:
    """When the last run finished (None: never) and how many drift rows it found."""
    drifted = (
        select(func.count())
        .select_from(LiveDrift)
        .where(col(LiveDrift.run_id) == _latest_run_id())
        .scalar_subquery()
    )
    row = (await session.execute(select(func.max(col(ReconcileRun.finished_at)), drifted))).one()
    finished: datetime | None = row[0]
    count: int = row[1]
    return finished, int(count)


async def record_run(
    conn: Any,
    *,
    started: datetime,
    finished: datetime,
    window_start: datetime,
    window_end: datetime,
    full: bool,
    keys_written: int,
    drift: Iterable[tuple[str, str, Decimal, Decimal]],
) -> int:
    """Insert a run and its drift rows (customer, metric, live, billed), drop runs older than
    a week; the run's id. On an asyncpg connection, in the caller's transaction.

    Raw SQL because the reconcile actor runs on a bare asyncpg connection, not a session."""
    run_id: int = await conn.fetchval(
        "INSERT INTO reconcile_runs (started_at, finished_at, window_start, window_end, "
        "full_rebuild, keys_written) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        started,
        finished,
        window_start,
        window_end,
        full,
        keys_written,
    )
    rows = [(run_id, c, m, lv, bv, lv - bv) for c, m, lv, bv in drift]
    if rows:
        await conn.executemany(
            "INSERT INTO live_drift (run_id, customer_id, metric_name, live_value, "
            "billed_value, drift) VALUES ($1, $2, $3, $4, $5, $6)",
            rows,
        )
    # Keep a week of runs; older ones say nothing the newer ones do not.
    await conn.execute("DELETE FROM reconcile_runs WHERE finished_at < now() - interval '7 days'")
    return run_id


# --- live_drift


async def drift_of_run(
    session: AsyncSession, run_id: int
) -> list[tuple[str, str, Decimal, Decimal, Decimal]]:
    """The run's rows as (customer, metric, live, billed, drift), by customer and metric."""
    statement = (
        select(*_DRIFT)
        .where(col(LiveDrift.run_id) == run_id)
        .order_by(col(LiveDrift.customer_id), col(LiveDrift.metric_name))
    )
    return [(c, m, lv, bv, d) for c, m, lv, bv, d in await session.execute(statement)]


async def latest_drift_count(session: AsyncSession, customer_id: str) -> int:
    """How many of the customer's meters the last run found drifting."""
    statement = (
        select(func.count())
        .select_from(LiveDrift)
        .where(col(LiveDrift.customer_id) == customer_id, col(LiveDrift.run_id) == _latest_run_id())
    )
    return int((await session.execute(statement)).scalar_one())


async def latest_drift_by_metric(session: AsyncSession) -> list[tuple[str, Decimal]]:
    """The last run's drift summed per metric, by metric."""
    statement = (
        select(col(LiveDrift.metric_name), func.sum(col(LiveDrift.drift)))
        .where(col(LiveDrift.run_id) == _latest_run_id())
        .group_by(col(LiveDrift.metric_name))
        .order_by(col(LiveDrift.metric_name))
    )
    return [(m, d) for m, d in await session.execute(statement)]
