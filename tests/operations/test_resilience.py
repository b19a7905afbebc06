"""Every role survives its stores being briefly unavailable or loading (issue 13).

Valkey loading its data is real here: a Valkey of the test's own (the binary the product
ships) restarts on a data file that takes seconds to load (tests/loading_valkey.py), and
each test checks that the role met it loading. Postgres is the tests' embedded one, stopped
and started again.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import dramatiq
import pytest
import redis
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.app import create_app
from portal.infrastructure.broker import (
    ALERTS_QUEUE,
    MAINTENANCE_QUEUE,
    ResilientRedisBroker,
    reset_broker,
    setup_broker,
)
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as live_keys
from portal.operations.heartbeats import read_roles
from portal.operations.scheduler import Job, Scheduler, scheduler_client
from tests.conftest import ROOT, RUNNING_WORKERS, TEST_ENV, WorkerProcess, wait_for, wait_until_persisted
from tests.factories import event, make_customer, make_meter
from tests.ingest.test_pipeline import send, usage
from tests.loading_valkey import LoadingValkey

# A fixed instant (epoch s) for the scheduler's ticks: no wall clock in the assertions.
NOW_S = 1_800_000_000.0


@pytest.fixture
def valkey() -> Iterator[LoadingValkey]:
    server = LoadingValkey()
    server.start()
    server.fill()
    yield server
    server.destroy()


@asynccontextmanager
async def app_on(settings: Settings, *, session: Settings) -> AsyncIterator[AsyncTestClient[Any]]:
    """A web app on other servers than the session's (the process's broker follows it, and
    goes back to the session's afterwards)."""
    reset_broker()
    try:
        async with AsyncTestClient(app=create_app(settings)) as client:
            yield client
    finally:
        reset_broker()
        setup_broker(session)


@pytest.fixture
def on_valkey(settings: Settings, valkey: LoadingValkey) -> Settings:
    """The session's Postgres with the test's own Valkey (live view db 0, broker db 1)."""
    return replace(settings, redis_url=valkey.url(0), broker_url=valkey.url(1))


def stop_running_workers() -> None:
    for other in RUNNING_WORKERS:
        other.stop()


# --- the scheduler -------------------------------------------------------------------------


def test_scheduler_skips_ticks_while_valkey_loads_then_queues_each_job_once(
    valkey: LoadingValkey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queued: list[tuple[str, str]] = []
    schedule = [Job("reconcile_live", 60), Job("sweep_alerts", 60, ALERTS_QUEUE)]
    scheduler = Scheduler(
        scheduler_client(valkey.url()), schedule, enqueue=lambda actor, queue: queued.append((actor, queue))
    )
    valkey.restart()
    with caplog.at_level(logging.WARNING, logger="portal.operations.scheduler"):
        # Given Valkey is loading, when the scheduler ticks, then it skips (and lives on).
        assert scheduler.tick(NOW_S) is None
        assert scheduler.tick(NOW_S + 1) is None
        assert valkey.loading()  # both ticks met it loading
        assert queued == []
        # When it has loaded, the next tick of the same period queues each job once.
        valkey.wait_loaded()
        assert scheduler.tick(NOW_S + 2) == ["reconcile_live", "sweep_alerts"]
        assert scheduler.tick(NOW_S + 3) == []
    assert queued == [("reconcile_live", MAINTENANCE_QUEUE), ("sweep_alerts", ALERTS_QUEUE)]
    said = [r.getMessage() for r in caplog.records if r.name == "portal.operations.scheduler"]
    assert len(said) == 2, said  # once when the outage starts, once when it ends
    assert "BusyLoadingError" in said[0]
    assert said[1].startswith("scheduler: ticking again after 2.0 s (2 tick(s) skipped)")


def test_scheduler_skips_a_tick_when_the_broker_refuses_and_claims_it_again(valkey: LoadingValkey) -> None:
    refusing = True

    def enqueue(actor: str, queue: str) -> None:
        if refusing:
            raise redis.ConnectionError("broker down")

    scheduler = Scheduler(scheduler_client(valkey.url()), [Job("reconcile_live", 60)], enqueue=enqueue)
    assert scheduler.tick(NOW_S) is None
    refusing = False
    # The claim was released, so the same period's next tick queues the job.
    assert scheduler.tick(NOW_S + 1) == ["reconcile_live"]


SCHEDULER = (
    "from portal.infrastructure.logs import configure; "
    "from portal.operations.scheduler import run_scheduler; "
    "from portal.infrastructure.settings import from_environment; configure(role='scheduler'); "
    "run_scheduler(from_environment())"
)


class SchedulerProcess:
    """The scheduler role in a process of its own, beating every 0.5 s."""

    def __init__(self, settings: Settings, valkey: LoadingValkey) -> None:
        self.env = dict(os.environ)
        self.env.update(TEST_ENV)
        self.env.update(
            {
                "DATABASE_URL": settings.database_url or "",
                "REDIS_URL": valkey.url(0),
                "BROKER_URL": valkey.url(1),
                "PORTAL_DATA_DIR": str(settings.data_dir),
                "PORTAL_HEARTBEAT_SECONDS": "0.5",
            }
        )
        self.log = Path(tempfile.mkstemp(prefix="scheduler-", suffix=".log")[1])
        self.process = subprocess.Popen(
            [sys.executable, "-c", SCHEDULER],
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


async def test_scheduler_process_started_while_valkey_loads_queues_the_jobs_once_loaded(
    settings: Settings,
    valkey: LoadingValkey,
) -> None:
    valkey.restart()
    scheduler = SchedulerProcess(settings, valkey)
    try:
        await wait_for(
            _said(scheduler.output, "skipping ticks until it is back"),
            what="the scheduler to meet Valkey loading",
        )
        assert valkey.loading()
        valkey.wait_loaded()
        broker = valkey.client(db=1)
        await wait_for(_queued(broker, f"dramatiq:{ALERTS_QUEUE}", 1), what="sweep_alerts queued")
        await wait_for(_queued(broker, f"dramatiq:{MAINTENANCE_QUEUE}", 7), what="maintenance jobs queued")
        assert scheduler.process.poll() is None  # alive all along
        actors = sorted(msg_actor(raw) for raw in broker.hvals(f"dramatiq:{MAINTENANCE_QUEUE}.msgs"))
        assert actors == [
            "archive_raw_events",
            "draft_current_periods",
            "draft_ended_periods",
            "maintain_storage",
            "reconcile_live",
            "sweep_document_emails",
            "sweep_late_events",
        ]
    finally:
        code = scheduler.stop()
    assert code == 0
    output = scheduler.output()
    assert "Traceback" not in output
    assert output.count("skipping ticks until it is back") == 1
    roles = await _roles(valkey.url(0))
    [seen] = roles.of("scheduler")
    assert (seen.pid, seen.state(roles.now)) == (scheduler.process.pid, "stopped")


def msg_actor(raw: bytes) -> str:
    return str(json.loads(raw)["actor_name"])


def _said(output: Callable[[], str], text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in output()

    return check


def _queued(client: redis.Redis, key: str, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return int(client.llen(key)) >= count

    return check


async def _roles(url: str) -> Any:
    client = Redis.from_url(url)
    try:
        return await read_roles(client)
    finally:
        await client.aclose()


# --- the web -------------------------------------------------------------------------------


async def test_web_starts_while_valkey_loads_and_postgres_is_unreachable(
    settings: Settings,
    valkey: LoadingValkey,
) -> None:
    valkey.restart()
    down = replace(
        settings,
        database_url="postgresql://postgres@127.0.0.1:9/portal",
        redis_url=valkey.url(0),
        broker_url=valkey.url(1),
    )
    async with app_on(down, session=settings) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert valkey.loading()  # it answered while Valkey was loading
    assert ready.status_code == 503
    assert ready.json() == {
        "status": "unavailable",
        "postgres": "ConnectionRefusedError",
        "redis": "loading its data (BusyLoadingError)",
        "broker": "loading its data (BusyLoadingError)",
    }


# --- the worker ----------------------------------------------------------------------------


async def _catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum")


async def test_worker_started_while_valkey_loads_persists_every_event_once(
    settings: Settings,
    on_valkey: Settings,
    valkey: LoadingValkey,
    admin_key: str,
    ingest_key: str,
) -> None:
    stop_running_workers()
    async with app_on(on_valkey, session=settings) as client:
        await _catalog(client, admin_key)
        for quantities in ([1, 2, 3], [10, 20], [100]):
            await send(client, ingest_key, [event(quantity=q) for q in quantities])
        # Given the accepted batches wait in the broker and Valkey restarts on its data,
        valkey.restart()
        # when a worker starts while it loads,
        worker = WorkerProcess(on_valkey)
        worker.start()
        try:
            await wait_for(_said(worker.output, "ready for action"), what="the worker to boot")
            assert valkey.loading(), "the worker booted after Valkey had loaded: raise the filler"
            valkey.wait_loaded()
            # then it waits, and persists everything once Valkey is back.
            live = Redis.from_url(on_valkey.redis_url or "")
            await wait_until_persisted(live, timeout=60)
            await live.aclose()
            assert worker.process is not None and worker.process.poll() is None
            assert (await usage(client, admin_key, "api_calls", "billed"))["total"] == "136"
            assert (await usage(client, admin_key, "api_calls", "live"))["total"] == "136"
        finally:
            worker.stop()


async def test_worker_started_while_postgres_is_down_persists_every_event_once_it_is_back(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    embedded: Any,
    redis: Redis,
    settings: Settings,
) -> None:
    await _catalog(client, admin_key)
    stop_running_workers()
    for quantities in ([1, 2, 3], [10, 20]):
        await send(client, ingest_key, [event(quantity=q) for q in quantities])
    worker = WorkerProcess(settings)
    embedded.postgres.stop()
    try:
        worker.start()
        # The worker boots and tries: each batch waits for Postgres ("outage" recorded).
        await wait_for(lambda: _outages(redis, 2), what="both batches to meet the outage")
        assert worker.process is not None and worker.process.poll() is None
    finally:
        embedded.start()
    try:
        await wait_until_persisted(redis, timeout=60)
        assert worker.process.poll() is None
        assert (await usage(client, admin_key, "api_calls", "billed"))["total"] == "36"
    finally:
        worker.stop()


async def _outages(client: Redis, messages: int) -> bool:
    entries = await client.xrange(live_keys.PERSIST_FAILURES_KEY)
    ids = {fields["message_id"] for _, fields in entries if fields.get("kind") == "outage"}
    return len(ids) >= messages


async def test_a_periodic_job_during_a_postgres_outage_is_skipped_not_dead_lettered(
    client: AsyncTestClient[Any],
    embedded: Any,
    worker: WorkerProcess,
    settings: Settings,
) -> None:
    broker = redis.Redis.from_url(settings.broker_url or "")
    embedded.postgres.stop()
    try:
        log_start = len(worker.output())
        for _ in range(2):
            dramatiq.get_broker().enqueue(
                dramatiq.Message(
                    queue_name=MAINTENANCE_QUEUE, actor_name="reconcile_live", args=(), kwargs={}, options={}
                )
            )
        await wait_for(lambda: _drained(broker, MAINTENANCE_QUEUE), what="both runs to end")
    finally:
        embedded.start()
    assert broker.hlen(f"dramatiq:{MAINTENANCE_QUEUE}.XQ.msgs") == 0
    said = worker.output()[log_start:]
    assert said.count("reconcile_live skipped: a store is unavailable") == 1  # once per outage
    assert "Traceback" not in said


async def _drained(client: redis.Redis, queue: str) -> bool:
    return int(client.hlen(f"dramatiq:{queue}.msgs")) == 0 and int(client.llen(f"dramatiq:{queue}")) == 0


# --- the broker ----------------------------------------------------------------------------


def test_an_enqueue_from_a_worker_waits_for_a_loading_broker(valkey: LoadingValkey) -> None:
    patient = ResilientRedisBroker(url=valkey.url(1), enqueue_patience_s=60)
    impatient = ResilientRedisBroker(url=valkey.url(1))
    message: dramatiq.Message[Any] = dramatiq.Message(
        queue_name=MAINTENANCE_QUEUE, actor_name="reconcile_live", args=(), kwargs={}, options={}
    )
    valkey.restart()
    # The web's and the scheduler's broker (no patience) refuses at once...
    with pytest.raises(redis.BusyLoadingError):
        impatient.enqueue(message)
    assert valkey.loading()
    # ...a worker's waits until Valkey has loaded, and the message is then queued.
    patient.enqueue(message)
    assert not valkey.loading()
    assert valkey.client(db=1).llen(f"dramatiq:{MAINTENANCE_QUEUE}") == 1
    patient.close()
    impatient.close()


async def test_a_delayed_message_held_by_a_worker_across_a_valkey_restart_still_runs(
    on_valkey: Settings,
    valkey: LoadingValkey,
    pg: Any,
) -> None:
    stop_running_workers()
    worker = WorkerProcess(on_valkey)
    worker.start()
    broker = valkey.client(db=1)
    try:
        await wait_for(_said(worker.output, "ready for action"), what="the worker to boot")
        # Given the worker holds a delayed message (Dramatiq keeps it in memory until due),
        ResilientRedisBroker(url=valkey.url(1)).enqueue(
            dramatiq.Message(
                queue_name=MAINTENANCE_QUEUE, actor_name="reconcile_live", args=(), kwargs={}, options={}
            ),
            delay=4_000,
        )
        await wait_for(
            lambda: _fetched(broker, f"dramatiq:{MAINTENANCE_QUEUE}.DQ"),
            what="the worker to hold the delayed message",
        )
        # when Valkey restarts under it (its consumers lose their connection),
        valkey.restart()
        valkey.wait_loaded()
        # then the message runs all the same, without restarting the worker.
        await wait_for(
            lambda: pg.fetchval("SELECT count(*) FROM reconcile_runs"),
            timeout=60,
            what="the delayed reconcile to run",
        )
        assert worker.process is not None and worker.process.poll() is None
        assert "gave back 1 delayed message(s) of maintenance.DQ" in worker.output()
    finally:
        worker.stop()


async def _fetched(client: redis.Redis, queue: str) -> bool:
    return int(client.llen(queue)) == 0 and int(client.hlen(f"{queue}.msgs")) == 1
