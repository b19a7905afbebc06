"""Loading the demo's past through the real persistence path, two days at a time, with
the customers' alert rules evaluated at the end of each piece as the usage accumulates.

Each piece is one persist transaction (`workers.persist.persist_rows`: ledger, raw
events, hourly aggregates, late events), then one live settle (`LiveStore.settle`, what
the persist worker does for a batch no web process counted), then one alert evaluation
per customer with rules (`evaluate_customer` at the piece's end: a firing is recorded
when the piece's usage crossed a level, as the sweep would have recorded it then).

Idempotent without the ledger: the ledger forgets events after the lateness window, so a
piece already holding hourly usage of a demo customer is skipped whole. A second
`up --demo` on the same data dir loads nothing again; one cut short resumes at the first
piece it had not committed; one days later fills the pieces in which the demo did not run.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.alerting.evaluate import evaluate_customer
from portal.catalog.service import CatalogCache
from portal.cli.demo_history import PROFILES, by_chunk, chunk_starts, history_events
from portal.infrastructure.db import transaction
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.ingest.failed_events import unstorable
from portal.live.store import LiveStore, SettledBatch
from portal.usage import repository as usage_repository
from workers.persist import PersistOutcome, persist_rows, persist_split

# One unit of work: persisted in one transaction, then counted live, then the alert rules
# are evaluated as of its end (two days: the evaluations cost more than the writes).
CHUNK = timedelta(days=2)

# The failed event: a row the persist worker cannot store (a NUL byte in its product id,
# which Postgres text refuses). The edge refuses such events now; this one stands for an
# event from an integration that sent it before it did. The worker's split sets it aside
# in failed_events with its reason, and its batch's good events are billed.
FAILED_CUSTOMER = "globex"
FAILED_EVENT_ID = "demo-globex-legacy-import-0001"


@dataclass(slots=True)
class LoadReport:
    days: int = 0
    chunks_loaded: int = 0
    chunks_skipped: int = 0
    events: int = 0
    set_aside: int = 0
    seconds: float = 0.0


def message_id(chunk: datetime) -> str:
    return f"demo-history-{chunk:%Y%m%d}"


def _failed_row(day_events: Sequence[AcceptedEvent]) -> list[Any] | None:
    """An unstorable copy of one of globex's API-call events of the day (another id)."""
    for e in day_events:
        if e.customer_id == FAILED_CUSTOMER and e.metric_name == "api_calls":
            row = e.to_wire()
            row[1] = FAILED_EVENT_ID
            row[3] = "legacy-importer\x00"  # the product id
            return row
    return None


async def _chunk_loaded(conn: Any, start: datetime, customers: set[str]) -> bool:
    """Whether a demo customer has hourly usage in the chunk starting at `start`."""
    rows = await usage_repository.hours_between(conn, start, start + CHUNK)
    return any(r["customer_id"] in customers for r in rows)


async def load_history(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    days: int,
    failed_event_chunk: int | None = None,
    alert_customers: Sequence[str] = (),
) -> LoadReport:
    """Generate and persist `days` of history up to `now` for every demo customer (see the
    module docstring); evaluate the alert rules of `alert_customers` after each piece.
    `failed_event_chunk`: the index of the chunk (from the oldest) whose batch carries the
    unstorable event (None: the one before the last), on the first load only."""
    assert settings.database_url and settings.redis_url
    started = time.monotonic()
    report = LoadReport(days=days)
    start = now - timedelta(days=days)
    customers = {p.customer_id for p in PROFILES}
    starts = chunk_starts(start, now, CHUNK)
    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=1)
    redis = async_client(settings.redis_url)
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )

    @asynccontextmanager
    async def unit() -> AsyncIterator[Any]:
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    try:
        async with unit() as conn:
            todo = [s for s in starts if not await _chunk_loaded(conn, s, customers)]
        report.chunks_skipped = len(starts) - len(todo)
        # The failed event belongs to the first load only (a later one fills gaps).
        failing = failed_event_chunk if failed_event_chunk is not None else len(starts) - 2
        failed_at = starts[max(0, failing)] if todo == starts else None
        events = await _generate(settings, sessions, customers, start=start, end=now) if todo else []
        chunks = by_chunk(events, starts, CHUNK)
        for chunk in todo:
            chunk_events = chunks.get(chunk, [])
            rows = [e.to_wire() for e in chunk_events]
            bad = _failed_row(chunk_events) if chunk == failed_at else None
            # Received now, by this load: the billing-health latency from receipt stays
            # true (from event time it is days for history, until newer events outnumber it).
            outcome = await _persist(unit, message_id(chunk), now, rows, bad, report)
            await _settle(live, message_id(chunk), outcome, now)
            end = min(now, chunk + CHUNK)
            report.chunks_loaded += 1
            report.events += outcome.persisted
            for customer_id in alert_customers:
                async with transaction(sessions) as session:
                    # Deliveries stay pending: the alerts sweep sends what is due.
                    await evaluate_customer(session, customer_id, now=end, settings=settings)
    finally:
        await pool.close()
        await redis.aclose()
    report.seconds = time.monotonic() - started
    return report


async def _generate(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    customers: set[str],
    *,
    start: datetime,
    end: datetime,
) -> list[AcceptedEvent]:
    """Every demo customer's history, validated against the catalog as the edge sees it."""
    zones, meters = await CatalogCache(sessions, ttl_s=0).lookup(
        customers, {"api_calls", "active_users", "storage_gb"}
    )
    events: list[AcceptedEvent] = []
    for profile in PROFILES:
        if profile.customer_id in zones:
            events += history_events(
                profile,
                zone=zones[profile.customer_id],
                start=start,
                end=end,
                meters=meters,
                settings=settings,
            )
    return events


async def _persist(
    unit: Callable[[], Any],
    message: str,
    received_at: datetime,
    rows: list[list[Any]],
    bad: list[Any] | None,
    report: LoadReport,
) -> PersistOutcome:
    """One piece's batch in one transaction; with the unstorable row, through the worker's
    split (`persist_split`), which persists the rest and sets that row aside."""
    if bad is None:
        async with unit() as conn:
            return await persist_rows(conn, message, received_at, rows)
    batch = {"id": message, "acceptedAt": int(received_at.timestamp() * 1000), "events": [*rows, bad]}
    fault = unstorable(bad)
    split = await persist_split(
        unit, batch, error=ValueError(fault or "unstorable"), may_set_aside=lambda exc: True
    )
    report.set_aside += split.set_aside
    return split.persisted


async def _settle(live: LiveStore, message: str, outcome: PersistOutcome, received_at: datetime) -> None:
    """Count what the commit admitted in the live view, once per customer's part."""
    parts: dict[str, list[AcceptedEvent]] = defaultdict(list)
    for e in outcome.admitted:
        parts[e.customer_id].append(e)
    if parts:
        await live.settle(
            message,
            [SettledBatch(c, f"{message}-{c}", tuple(admitted), ()) for c, admitted in parts.items()],
            int(received_at.timestamp() * 1000),
        )
