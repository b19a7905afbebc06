"""`usage-portal status` reports what the data says, exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from portal.operations.status import gather_status, render

# The newest migration file's revision (files are named NNNN_what.py after their revision).
NEWEST_MIGRATION = max(
    p.name[:4] for p in (Path(__file__).parents[2] / "migrations" / "versions").glob("[0-9]*.py")
)


async def test_status_counts_failed_events_drift_and_dead_letters(settings: Settings, pg: Any) -> None:
    oldest = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
    for i, failed_at in enumerate((oldest, oldest + timedelta(hours=1))):
        await pg.execute(
            "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason, "
            "failed_at) VALUES ('m', 'acme', $1, '{}', now(), 'boom', $2)",
            f"e{i}",
            failed_at,
        )
    run = await pg.fetchval(
        "INSERT INTO reconcile_runs (started_at, finished_at, window_start, window_end, full_rebuild, "
        "keys_written) VALUES (now(), now(), now(), now(), false, 0) RETURNING id"
    )
    for metric in ("a", "b", "c"):
        await pg.execute("INSERT INTO live_drift VALUES ($1, 'acme', $2, 2, 1, 1)", run, metric)
    broker = Redis.from_url(settings.broker_url or "")
    await broker.hset("dramatiq:alerts.XQ.msgs", "dead-1", json.dumps({"dead": True}))
    await broker.aclose()

    status = await gather_status(settings)
    assert (status.failed_events, status.oldest_failed_at, status.drift_rows) == (2, oldest, 3)
    assert [(q.name, q.dead) for q in status.queues] == [("ingest", 0), ("maintenance", 0), ("alerts", 1)]
    assert (status.unsettled_late_events, status.deliveries_pending, status.deliveries_failed) == (0, 0, 0)
    text = render(status)
    assert "failed events   2 (oldest 2026-11-20T08:00:00+00:00" in text
    assert "drift           3 customer/meter pair(s) off in the last reconcile" in text


async def test_readyz_says_ready_when_stores_broker_and_migrations_are(client: Any) -> None:
    from portal.operations.routes import migration_head

    response = await client.get("/readyz")
    assert (response.status_code, response.json()) == (200, {"status": "ready"})
    assert migration_head() == NEWEST_MIGRATION


async def test_readyz_names_a_database_behind_the_code(client: Any, pg: Any) -> None:
    await pg.execute("UPDATE alembic_version SET version_num = '0002'")
    try:
        response = await client.get("/readyz")
    finally:
        await pg.execute("UPDATE alembic_version SET version_num = $1", NEWEST_MIGRATION)
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "migrations": f"database at 0002, code expects {NEWEST_MIGRATION}",
    }
