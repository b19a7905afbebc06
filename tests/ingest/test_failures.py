"""Failures that must not lose or double count anything: a worker killed mid-batch,
Postgres down, Redis flushed, an event id re-used, a batch that keeps failing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from portal.infrastructure.settings import Settings
from portal.live import redis_keys as live_keys
from portal.live.store import LiveStore
from portal.operations.operator_tasks import enqueue_reconcile, replay_failed
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.ingest.test_pipeline import send, usage


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", timezone="America/New_York")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum", group_by=["region"])


async def totals(client: AsyncTestClient[Any], key: str) -> tuple[str, str]:
    live = await usage(client, key, "api_calls", "live")
    billed = await usage(client, key, "api_calls", "billed")
    return live["total"], billed["total"]


async def test_worker_killed_mid_batch_then_restarted_counts_everything_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    own_worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given the aggregate table is locked, the worker blocks mid-transaction: raw rows
    # and ledger rows written, aggregates not yet.
    blocker = pg.transaction()
    await blocker.start()
    await pg.execute("LOCK TABLE hourly_usage IN ACCESS EXCLUSIVE MODE")
    await send(client, ingest_key, [event(quantity=q) for q in range(1, 101)])  # 5050

    async def worker_blocked() -> bool:
        waiting = await asyncpg.connect(own_worker.settings.database_url)
        try:
            return bool(
                await waiting.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE 'INSERT INTO hourly_usage%'"
                )
            )
        finally:
            await waiting.close()

    await wait_for(worker_blocked, what="the worker to block inside its transaction")
    # When it is killed and the lock released, its transaction dies with it.
    own_worker.kill()
    await blocker.commit()
    assert await pg.fetchval("SELECT count(*) FROM hourly_usage") == 0
    # Then a new worker picks the unacknowledged message up again and counts it once.
    own_worker.start()
    await wait_until_persisted(redis, timeout=60)
    assert await totals(client, admin_key) == ("5050", "5050")
    assert await pg.fetchval("SELECT count(*) FROM event_ledger") == 100
    assert await pg.fetchval("SELECT count(*) FROM usage_events") == 100


async def test_postgres_down_loses_nothing_that_was_acknowledged(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    embedded: Any,
    settings: Settings,
) -> None:
    await send(client, ingest_key, [event(quantity=1)])
    await wait_until_persisted(redis)
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    embedded.postgres.stop()
    try:
        health = await client.get("/readyz")
        assert health.status_code == 503
        assert health.json()["postgres"]  # names what is down
        assert "redis" not in health.json() and "broker" not in health.json()
        # The process itself is up.
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        # Ingest still answers 202: the batches are durable in the broker.
        for quantity in (10, 20, 30):
            answer = await send(client, ingest_key, [event(quantity=quantity)])
            assert answer["accepted"] == 1
        await asyncio.sleep(0.5)  # the worker tries, fails, backs off
        assert await redis.zcard(live_keys.INFLIGHT_KEY) == 3
    finally:
        embedded.postgres.start()
    await wait_until_persisted(redis, timeout=60)
    assert await totals(client, admin_key) == ("61", "61")


async def test_flushed_live_view_is_rebuilt_by_reconcile(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    now = int(time.time() * 1000)
    await send(
        client,
        ingest_key,
        [
            event(quantity=5, dimensions={"region": "eu"}, timestamp=now - 30 * 3_600_000),
            event(quantity=7, dimensions={"region": "us"}),
        ],
    )
    await wait_until_persisted(redis)
    await redis.flushdb()
    assert (await totals(client, admin_key)) == ("0", "12")
    enqueue_reconcile(settings, full=False)  # the marker is gone, so this rebuilds all
    await wait_for(lambda: pg.fetchval("SELECT count(*) FROM reconcile_runs"), what="the reconcile run")
    assert await totals(client, admin_key) == ("12", "12")
    drift = await client.get("/v1/drift", headers=auth(admin_key))
    assert drift.json()["fullRebuild"] is True
    # The drift found was the whole flushed usage: live 0 against billed 12.
    assert [(r["customerId"], r["live"], r["billed"], r["drift"]) for r in drift.json()["rows"]] == [
        ("acme", "0", "12", "-12")
    ]


async def test_reconcile_reports_and_repairs_live_drift(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    await send(client, ingest_key, [event(quantity=40, timestamp=two_hours_ago)])
    await wait_until_persisted(redis)
    # Someone (a bug, a lost write) changes a settled live hour.
    [hour_key] = await redis.keys("lu:*")
    await redis.hincrbyfloat(hour_key, live_keys.TOTAL_FIELD, 2.5)
    assert (await totals(client, admin_key)) == ("42.5", "40")
    enqueue_reconcile(settings, full=False)
    await wait_for(lambda: pg.fetchval("SELECT count(*) FROM reconcile_runs"), what="the reconcile run")
    drift = (await client.get("/v1/drift", headers=auth(admin_key))).json()
    assert drift["fullRebuild"] is False
    assert [(r["live"], r["billed"], r["drift"]) for r in drift["rows"]] == [("42.5", "40", "2.5")]
    assert await totals(client, admin_key) == ("40", "40")


async def test_reused_event_id_with_other_content_is_refused_and_recorded(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    original = event(event_id="evt-1", quantity=3)
    await send(client, ingest_key, [original])
    changed = {**original, "quantity": 300}
    response = await client.post("/v1/events", headers=auth(ingest_key), json=changed)
    assert response.status_code == 409
    assert response.json()["rejected"] == [
        {
            "index": 0,
            "eventId": "evt-1",
            "error": "eventId: already used by a different event (conflict); not counted",
        }
    ]
    await wait_until_persisted(redis)
    # Even when the edge has forgotten the id (markers lost), Postgres refuses it.
    await redis.delete(*await redis.keys(live_keys.marker_pattern("acme")))
    again = await client.post("/v1/events", headers=auth(ingest_key), json={**original, "quantity": 30})
    assert again.status_code == 202  # the edge cannot know any more...
    await wait_until_persisted(redis)
    # ...but the bill counts it once, and the worker took it out of the live view again.
    assert await totals(client, admin_key) == ("3", "3")
    recorded = await pg.fetch(
        "SELECT event_id, detected_by, event->>'quantity' AS q FROM event_conflicts ORDER BY id"
    )
    assert [(r["event_id"], r["detected_by"], r["q"]) for r in recorded] == [
        ("evt-1", "ingest", "300"),
        ("evt-1", "worker", "30"),
    ]


async def test_a_batch_that_keeps_failing_is_kept_and_can_be_replayed(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    # Postgres refuses this customer's ledger rows (a real failure inside the worker).
    await pg.execute("""
        CREATE FUNCTION refuse_acme() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_acme BEFORE INSERT ON event_ledger
            FOR EACH ROW EXECUTE FUNCTION refuse_acme();
    """)
    try:
        await send(client, ingest_key, [event(event_id="a", quantity=2), event(event_id="b", quantity=3)])
        await wait_until_persisted(redis)  # given up on after its retries
        failed = await client.get("/v1/failed-events", headers=auth(admin_key))
        assert failed.status_code == 200
        rows = failed.json()
        assert sorted(r["eventId"] for r in rows) == ["a", "b"]
        assert all("ledger is read-only for maintenance" in r["reason"] for r in rows)
        assert (await totals(client, admin_key))[1] == "0"
    finally:
        await pg.execute("DROP TRIGGER refuse_acme ON event_ledger; DROP FUNCTION refuse_acme()")
    assert await replay_failed(settings, ids=None) == 2
    await wait_until_persisted(redis)
    assert (await totals(client, admin_key))[1] == "5"
    assert (await client.get("/v1/failed-events", headers=auth(admin_key))).json() == []
    replayed = await client.get("/v1/failed-events", headers=auth(admin_key), params={"status": "replayed"})
    assert len(replayed.json()) == 2
    # Replaying again finds nothing left to replay.
    assert await replay_failed(settings, ids=None) == 0


@pytest.mark.parametrize("lost", ["request", "reply"])
async def test_a_batch_whose_live_apply_failed_is_counted_live_once_redis_answers(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    monkeypatch: pytest.MonkeyPatch,
    lost: str,
) -> None:
    # Redis goes away between the broker hand-off (the batch is durable: 202) and the live
    # apply, as when Valkey is killed under load; then it answers again. Either the apply
    # never reached Redis, or it ran and its reply was lost: counted once either way.
    real_apply = LiveStore.apply
    failures = [RedisConnectionError("Connection closed by server.")]

    async def apply_after_a_failure(
        self: LiveStore, events: Any, batch_id: str, accepted_ms: int
    ) -> set[int]:
        if failures:
            if lost == "reply":
                await real_apply(self, events, batch_id, accepted_ms)
            raise failures.pop()
        return await real_apply(self, events, batch_id, accepted_ms)

    monkeypatch.setattr(LiveStore, "apply", apply_after_a_failure)
    batch = [event(quantity=q) for q in range(1, 11)]  # 55
    answer = await send(client, ingest_key, batch)
    assert answer["accepted"] == 10 and failures == []

    async def counted() -> bool:
        return bool((await usage(client, admin_key, "api_calls", "live"))["total"] == "55")

    await wait_for(counted, timeout=10, what="the live total after the retried apply")
    # The same batch sent again is a duplicate: the retried apply set its markers.
    again = await send(client, ingest_key, batch)
    assert (again["accepted"], again["duplicates"]) == (0, 10)
    assert (await usage(client, admin_key, "api_calls", "live"))["total"] == "55"
