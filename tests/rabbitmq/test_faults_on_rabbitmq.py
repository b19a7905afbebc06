"""Faults on the RabbitMQ broker: the server going away mid-stream, a message that keeps
failing. Nothing acknowledged (202) is lost, nothing is counted twice, and no person has to
step in; what is stuck is visible and can be replayed."""

from __future__ import annotations

import threading
from typing import Any

import asyncpg
import dramatiq
import pytest
from dramatiq.errors import ConnectionClosed
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.broker import INGEST_QUEUE, MAINTENANCE_QUEUE, QUEUES, get_broker
from portal.infrastructure.rabbitmq_admin import RabbitmqAdmin
from portal.infrastructure.rabbitmq_broker import ResilientRabbitmqBroker
from portal.infrastructure.rabbitmq_server import RabbitmqServer
from portal.infrastructure.settings import Settings
from portal.operations import dead_letters
from portal.operations.status import gather_status, render
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event
from tests.ingest.test_failures import catalog, totals
from tests.ingest.test_pipeline import send

__all__ = ["catalog"]


async def test_rabbitmq_restarted_mid_stream_refuses_then_counts_every_acknowledged_event_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    rabbitmq: RabbitmqServer,
) -> None:
    # Given batches acknowledged (202) while the worker is persisting them,
    for quantity in (1, 2, 3, 4):
        assert (await send(client, ingest_key, [event(quantity=quantity)]))["accepted"] == 1
    # when RabbitMQ stops (and with it every connection of the web and the worker),
    rabbitmq.stop()
    try:
        # then the web refuses what it cannot make durable, and says why,
        refused = event(quantity=1000)
        answer = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": [refused]})
        assert answer.status_code == 503, answer.text
        assert "nothing was accepted" in answer.text
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "broker" in ready.json()
        assert "redis" not in ready.json() and "postgres" not in ready.json()
    finally:
        rabbitmq.start()
    # and once it is back, the same web process and worker go on without a person:
    assert (await send(client, ingest_key, [refused]))["accepted"] == 1  # the client's retry
    assert (await send(client, ingest_key, [event(quantity=20)]))["accepted"] == 1
    await wait_until_persisted(redis, timeout=60)
    assert await totals(client, admin_key) == ("1030", "1030")
    assert (await client.get("/readyz")).status_code == 200
    assert worker.process is not None and worker.process.poll() is None


async def test_a_failing_job_is_dead_lettered_shown_in_status_and_replayed_once_fixed(
    client: AsyncTestClient[Any],
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    on_rabbitmq: Settings,
) -> None:
    url = on_rabbitmq.broker_url or ""

    async def dead(count: int) -> bool:
        with RabbitmqAdmin(url) as admin:
            return admin.counts(MAINTENANCE_QUEUE).dead == count

    # Given reconcile runs fail (a real failure; the actor is not retried),
    await pg.execute("""
        CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'reconcile_runs is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_runs BEFORE INSERT ON reconcile_runs
            FOR EACH ROW EXECUTE FUNCTION refuse_runs();
    """)
    try:
        get_broker().enqueue(
            dramatiq.Message(
                queue_name=MAINTENANCE_QUEUE, actor_name="reconcile_live", args=(), kwargs={}, options={}
            )
        )
        # when its run fails, the message goes to the dead-letter queue,
        await wait_for(lambda: dead(1), what="the dead letter")
    finally:
        await pg.execute("DROP TRIGGER refuse_runs ON reconcile_runs; DROP FUNCTION refuse_runs()")
    # which status shows (and listing it twice removes nothing),
    status = await gather_status(on_rabbitmq)
    assert QUEUES == (INGEST_QUEUE, MAINTENANCE_QUEUE, "alerts")
    assert [(q.name, q.waiting, q.dead) for q in status.queues] == [
        (INGEST_QUEUE, 0, 0),
        (MAINTENANCE_QUEUE, 0, 1),
        ("alerts", 0, 0),
    ]
    assert "broker" not in status.stores_down
    assert f"{MAINTENANCE_QUEUE:<13}{0:>9}{'-':>11}{'-':>9}{1:>6}" in render(status)
    with dead_letters.broker_client(on_rabbitmq) as admin:
        for _ in range(2):
            [letter] = dead_letters.listing(admin)
            assert (letter.queue, letter.actor) == (MAINTENANCE_QUEUE, "reconcile_live")
        # Then a replay of another queue moves nothing; of its own, it runs once more and succeeds.
        assert dead_letters.requeue(admin, INGEST_QUEUE) == 0
        assert dead_letters.requeue(admin, MAINTENANCE_QUEUE, ids=[letter.message_id]) == 1
        assert dead_letters.requeue(admin, MAINTENANCE_QUEUE) == 0
    await wait_for(lambda: pg.fetchval("SELECT count(*) FROM reconcile_runs"), what="the replayed reconcile")
    assert await dead(0)
    # The success is recorded where status reads it (the live view's Redis on RabbitMQ).
    await wait_for(lambda: _succeeded(on_rabbitmq, "reconcile_live"), what="the job's success to be recorded")
    assert await pg.fetchval("SELECT count(*) FROM reconcile_runs") == 1


async def _succeeded(settings: Settings, actor: str) -> bool:
    return actor in (await gather_status(settings)).job_successes


def test_a_workers_enqueue_waits_for_rabbitmq_to_come_back(
    rabbitmq: RabbitmqServer, on_rabbitmq: Settings
) -> None:
    url = on_rabbitmq.broker_url or ""
    patient = ResilientRabbitmqBroker(url=url, enqueue_patience_s=60)
    impatient = ResilientRabbitmqBroker(url=url)
    # On a queue no worker consumes, to count it there afterwards.
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name="patience", actor_name="reconcile_live", args=(), kwargs={}, options={}
    )
    rabbitmq.stop()
    starting = threading.Thread(target=rabbitmq.start)
    try:
        # The web's and the scheduler's broker (no patience) refuses at once...
        with pytest.raises(ConnectionClosed):
            impatient.enqueue(message)
        # ...a worker's waits until RabbitMQ is back, and the message is then queued.
        starting.start()
        patient.enqueue(message)
    finally:
        starting.join()
        rabbitmq.start()
        patient.close()
        impatient.close()
    with RabbitmqAdmin(url) as admin:
        assert admin.counts("patience").ready == 1
        for name in ("patience", "patience.DQ", "patience.XQ"):
            admin.connection.channel().queue_delete(name)
