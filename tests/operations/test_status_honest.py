"""`usage-portal status` and `/readyz` tell the truth while a store or a role is down
(issue 13), and dead letters say what still needs doing, not what an outage once did."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import dramatiq
import pytest
import redis
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.cli.main import main
from portal.infrastructure.broker import INGEST_QUEUE, MAINTENANCE_QUEUE, get_broker
from portal.infrastructure.redis_client import sync_client
from portal.infrastructure.settings import Settings
from portal.operations import dead_letters
from portal.operations.heartbeats import Identity, beat, read_roles
from portal.operations.operator_tasks import enqueue_reconcile
from portal.operations.scheduler import run_scheduler
from portal.operations.status import gather_status, render
from tests.conftest import RUNNING_WORKERS, WorkerProcess, wait_for, wait_until_persisted
from tests.factories import event, make_customer, make_meter
from tests.ingest.test_pipeline import send, usage
from tests.loading_valkey import LoadingValkey


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum")


@pytest.fixture
def quick_beats(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes started by the test beat every 0.5 s (the reader needs no setting: each
    beat carries its interval)."""
    monkeypatch.setenv("PORTAL_HEARTBEAT_SECONDS", "0.5")


@pytest.fixture
def lone_worker(settings: Settings, quick_beats: None) -> Any:
    """A worker started by the test, the only one running."""
    for other in RUNNING_WORKERS:
        other.stop()
    process = WorkerProcess(settings)
    process.start()
    yield process
    process.stop()


async def the_worker(client: Redis) -> int:
    """The pid of the one worker process alive by its heartbeat (Dramatiq's worker process,
    a child of the process the test started), once it beats."""

    async def beating() -> int | None:
        alive = (await read_roles(client)).alive("worker")
        return alive[0].pid if len(alive) == 1 else None

    pid: int = await wait_for(beating, what="the worker's heartbeat")
    return pid


# --- stores --------------------------------------------------------------------------------


async def test_postgres_down_is_named_with_the_stalled_persist_by_readyz_and_status(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    lone_worker: WorkerProcess,
    redis: Redis,
    embedded: Any,
    settings: Settings,
) -> None:
    pid = await the_worker(redis)
    await send(client, ingest_key, [event(quantity=10)])  # the key is known before the outage
    await wait_until_persisted(redis)
    embedded.postgres.stop()
    try:
        for quantities in ([1, 2], [3]):
            await send(client, ingest_key, [event(quantity=q) for q in quantities])  # still 202
        ready = await client.get("/readyz")
        status = await gather_status(settings)
    finally:
        embedded.start()
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["postgres"]) == ("unavailable", "ConnectionRefusedError")
    stalled = "stalled: Postgres is down; 2 accepted batch(es) wait in the broker, the oldest for "
    assert stalled in body["persist"]
    assert "worker" not in body  # alive, waiting for Postgres
    assert list(status.stores_down) == ["postgres"]
    assert status.stores_down["postgres"].startswith("ConnectionRefusedError: ")
    assert (status.failed_events, status.drift_rows, status.deliveries_pending) == (None, None, None)
    text = render(status)
    assert "  postgres    DOWN: ConnectionRefusedError: " in text
    assert "  redis       up" in text
    assert f"  worker      1 alive: pid {pid} on " in text
    assert "failed events   unknown (Postgres unavailable)" in text
    assert "stalled: Postgres is down; 2 accepted batch(es) wait in the broker" in text
    # Once Postgres is back the batches are persisted and the stall is gone.
    await wait_until_persisted(redis, timeout=60)
    assert "stalled" not in (await client.get("/readyz")).json().get("persist", "")
    assert (await usage(client, admin_key, "api_calls", "billed"))["total"] == "16"


async def test_status_names_an_unreachable_redis_and_broker_and_shows_what_postgres_knows(
    settings: Settings,
) -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        closed = f"redis://127.0.0.1:{sock.getsockname()[1]}/0"
    status = await gather_status(replace(settings, redis_url=closed, broker_url=closed))
    assert sorted(status.stores_down) == ["broker", "redis"]
    assert status.stores_down["redis"].startswith("ConnectionError: ")
    assert (status.failed_events, status.queues, status.roles, status.lag_s) == (0, (), None, None)
    text = render(status)
    assert "  postgres    up" in text
    assert "  redis       DOWN: ConnectionError: " in text
    assert "  unknown (Redis unavailable: processes report there)" in text
    assert "queues          unknown (broker unavailable)" in text
    assert "lag             unknown (Redis unavailable)" in text
    assert "persist         unknown (Redis unavailable)" in text
    assert "failed events   0 (oldest never)" in text
    assert status.attention == ["redis is down", "broker is down"]
    assert text.splitlines()[0].endswith(": NEEDS ATTENTION: redis is down; broker is down")


def test_status_exits_1_only_when_something_needs_an_operator(
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    operator_env(monkeypatch, settings)
    main(["status"])  # everything up: exit status 0
    assert capsys.readouterr().out.splitlines()[0].endswith(": all well")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{sock.getsockname()[1]}/0")
    with pytest.raises(SystemExit) as exited:
        main(["status"])
    assert exited.value.code == 1
    assert capsys.readouterr().out.splitlines()[0].endswith(": NEEDS ATTENTION: redis is down")


async def test_status_says_valkey_is_loading(settings: Settings) -> None:
    valkey = LoadingValkey()
    valkey.start()
    try:
        valkey.fill()
        valkey.restart()
        status = await gather_status(replace(settings, redis_url=valkey.url(0), broker_url=valkey.url(1)))
        assert valkey.loading()  # the report was made while it loaded
    finally:
        valkey.destroy()
    assert sorted(status.stores_down) == ["broker", "redis"]
    assert status.stores_down["redis"].startswith("loading its data (BusyLoadingError): ")
    assert "  redis       DOWN: loading its data (BusyLoadingError)" in render(status)


# --- roles ---------------------------------------------------------------------------------


async def test_a_killed_worker_is_named_by_readyz_and_status(
    client: AsyncTestClient[Any],
    lone_worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    pid = await the_worker(redis)
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    lone_worker.kill()

    async def worker_named() -> Any:
        body = (await client.get("/readyz")).json()
        return body if "worker" in body else None

    body = await wait_for(worker_named, what="readyz to notice the worker is gone")
    assert body["status"] == "degraded"  # 200: ingest goes on, the broker holds the batches
    assert body["worker"].startswith(f"no worker alive; last: worker pid {pid} on ")
    assert ": silent, last seen " in body["worker"]
    text = render(await gather_status(settings))
    assert f"  worker      NONE ALIVE: worker pid {pid} on " in text


async def test_a_queue_no_live_worker_reads_is_named_by_readyz_and_status(
    client: AsyncTestClient[Any],
    redis: Redis,
    settings: Settings,
    quick_beats: None,
) -> None:
    # As `up` runs them: one worker for events and maintenance, one for notices; here the
    # notices worker is missing, so alerts and webhooks would wait while ingest looks fine.
    for other in RUNNING_WORKERS:
        other.stop()
    events_worker = WorkerProcess(settings, queues=("ingest", "maintenance"))
    events_worker.start()
    try:
        await the_worker(redis)

        async def queues_named() -> Any:
            body = (await client.get("/readyz")).json()
            return body if "queues" in body else None

        body = await wait_for(queues_named, what="readyz to name the unread queue")
        assert body["status"] == "degraded"
        assert body["queues"] == "no worker alive consumes the queue(s) alerts; their messages wait"
        status = await gather_status(settings)
        assert "no worker alive consumes the queue(s) alerts; their messages wait" in status.attention
        assert " [ingest, maintenance] (up since " in render(status)
    finally:
        events_worker.stop()


async def test_a_stopped_scheduler_is_named_stopped(
    client: AsyncTestClient[Any],
    redis: Redis,
    settings: Settings,
    quick_beats: None,
) -> None:
    stop = threading.Event()
    scheduler = threading.Thread(target=run_scheduler, args=(settings, stop), daemon=True)
    scheduler.start()

    async def scheduler_alive() -> bool:
        return bool((await read_roles(redis)).alive("scheduler"))

    await wait_for(scheduler_alive, what="the scheduler's heartbeat")
    text = render(await gather_status(settings))
    assert "  scheduler   1 alive: pid " in text
    stop.set()
    scheduler.join(timeout=10)
    body = (await client.get("/readyz")).json()
    assert body["status"] == "degraded"
    assert body["scheduler"].startswith("no scheduler alive; last: scheduler pid ")
    assert ": stopped, last seen " in body["scheduler"]


# --- dead letters --------------------------------------------------------------------------


def _run(actor: str, *args: Any) -> None:
    get_broker().enqueue(
        dramatiq.Message(queue_name=MAINTENANCE_QUEUE, actor_name=actor, args=args, kwargs={}, options={})
    )


async def test_a_periodic_jobs_dead_letters_are_cleared_by_its_next_success(
    worker: WorkerProcess,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    broker = redis.Redis.from_url(settings.broker_url or "")

    async def dead(count: int) -> bool:
        return int(broker.hlen(dead_letters.dead_messages_key(MAINTENANCE_QUEUE))) == count

    # Given reconcile runs fail (a real failure, not an outage) and are dead-lettered,
    await pg.execute("""
        CREATE FUNCTION refuse_runs() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'reconcile_runs is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_runs BEFORE INSERT ON reconcile_runs
            FOR EACH ROW EXECUTE FUNCTION refuse_runs();
    """)
    try:
        _run("reconcile_live")
        await wait_for(lambda: dead(1), what="the first dead letter")
        enqueue_reconcile(settings, full=True)  # an operator's full rebuild
        await wait_for(lambda: dead(2), what="the full rebuild's dead letter")
        _run("reconcile_live")
        await wait_for(lambda: dead(3), what="the third dead letter")
    finally:
        await pg.execute("DROP TRIGGER refuse_runs ON reconcile_runs; DROP FUNCTION refuse_runs()")
    assert [(q.name, q.dead) for q in (await gather_status(settings)).queues] == [
        ("ingest", 0),
        ("maintenance", 3),
        ("alerts", 0),
    ]
    # When a later run succeeds,
    _run("reconcile_live")
    await wait_for(lambda: dead(1), what="the moot dead letters to be cleared")
    # then only the full rebuild stays: the periodic run does not do its work.
    [left] = broker.hvals(dead_letters.dead_messages_key(MAINTENANCE_QUEUE))
    assert json.loads(left)["args"] == [True]
    status = await gather_status(settings)
    assert [(q.name, q.dead) for q in status.queues] == [("ingest", 0), ("maintenance", 1), ("alerts", 0)]
    assert list(status.job_successes) == ["reconcile_live"]
    assert "last success    reconcile_live " in render(status)


def _dead_letter(client: redis.Redis, queue: str, message_id: str, at_ms: int, **message: Any) -> None:
    client.zadd(dead_letters.dead_key(queue), {message_id: at_ms})
    client.hset(
        dead_letters.dead_messages_key(queue),
        message_id,
        json.dumps(
            {
                "queue_name": queue,
                "actor_name": "reconcile_live",
                "args": [],
                "kwargs": {},
                "options": {},
                "message_id": message_id,
                "message_timestamp": at_ms,
                **message,
            }
        ),
    )


async def test_old_dead_letters_age_out_except_ingests(settings: Settings) -> None:
    client = redis.Redis.from_url(settings.broker_url or "")
    now_ms = 1_800_000_000_000
    old, recent = now_ms - dead_letters.DEAD_LETTER_KEPT_MS - 1, now_ms - 60_000
    _dead_letter(client, "maintenance", "m-old", old)
    _dead_letter(client, "maintenance", "m-new", recent)
    _dead_letter(client, "alerts", "a-old", old, actor_name="deliver_alert", args=[7])
    _dead_letter(client, INGEST_QUEUE, "i-old", 0, actor_name="persist_events", args=[{"id": "b"}])
    # Dramatiq's own expiry (run with each broker command here) drops none of them,
    get_broker().do_fetch(INGEST_QUEUE, 0)
    get_broker().do_fetch(MAINTENANCE_QUEUE, 0)
    assert client.zcard(dead_letters.dead_key(INGEST_QUEUE)) == 1
    assert client.zcard(dead_letters.dead_key(MAINTENANCE_QUEUE)) == 2
    # ours drops the old ones of the periodic queues, and never ingest's.
    assert dead_letters.age_out(client, now_ms) == 2
    assert [m.decode() for m in client.zrange(dead_letters.dead_key(MAINTENANCE_QUEUE), 0, -1)] == ["m-new"]
    assert client.zcard(dead_letters.dead_key("alerts")) == 0
    assert client.zcard(dead_letters.dead_key(INGEST_QUEUE)) == 1


@pytest.mark.parametrize(
    ("actor", "args", "succeeded", "moot"),
    [
        ("reconcile_live", [], "reconcile_live", True),
        ("reconcile_live", [False], "reconcile_live", True),
        ("reconcile_live", [True], "reconcile_live", False),  # a full rebuild is not done by a periodic run
        ("settle_late_events", [12], "sweep_late_events", True),
        ("evaluate_alerts", ["acme"], "sweep_alerts", True),
        ("deliver_alert", [3], "sweep_alerts", True),
        ("deliver_alert", [3], "reconcile_live", False),
        ("persist_events", [{"id": "b"}], "reconcile_live", False),
        ("persist_events", [{"id": "b"}], "sweep_alerts", False),
    ],
)
def test_which_success_makes_a_dead_letter_moot(
    actor: str, args: list[Any], succeeded: str, moot: bool
) -> None:
    assert dead_letters.covered({"actor_name": actor, "args": args}, succeeded) is moot


def operator_env(monkeypatch: pytest.MonkeyPatch, settings: Settings) -> None:
    """The environment an operator's `usage-portal` command runs in, on the test's servers."""
    for name, url in (
        ("DATABASE_URL", settings.database_url),
        ("REDIS_URL", settings.redis_url),
        ("BROKER_URL", settings.broker_url),
    ):
        monkeypatch.setenv(name, url or "")


async def test_an_ingest_dead_letter_stays_in_status_until_replayed_then_counts_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    settings: Settings,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for other in RUNNING_WORKERS:
        other.stop()
    await send(client, ingest_key, [event(quantity=q) for q in (4, 5)])
    broker = redis_sync(settings)
    # Given the batch's message was dead-lettered (as Dramatiq does when it gives up),
    [message_id] = [m.decode() for m in broker.lrange(f"dramatiq:{INGEST_QUEUE}", 0, -1)]
    raw = broker.hget(f"dramatiq:{INGEST_QUEUE}.msgs", message_id)
    with broker.pipeline(transaction=True) as pipe:
        pipe.lrem(f"dramatiq:{INGEST_QUEUE}", 0, message_id)
        pipe.hdel(f"dramatiq:{INGEST_QUEUE}.msgs", message_id)
        pipe.zadd(dead_letters.dead_key(INGEST_QUEUE), {message_id: 0})
        pipe.hset(dead_letters.dead_messages_key(INGEST_QUEUE), message_id, raw)
        pipe.execute()
    # status shows it, and neither aging nor another job's success clears it,
    assert dead_letters.age_out(broker, int(time.time() * 1000)) == 0
    assert dead_letters.clear_superseded(broker, "reconcile_live", int(time.time() * 1000)) == 0
    status = await gather_status(settings)
    # (the worker this test stopped is named too, and the batch it did not persist)
    assert status.attention[0].startswith("no worker alive; last: worker pid ")
    assert status.attention[-1] == "1 ingest message(s) dead-lettered"
    text = render(status)
    assert text.splitlines()[0].endswith("; 1 ingest message(s) dead-lettered")
    assert (
        "  1 ingest message(s) dead-lettered: accepted events not in Postgres, kept until replayed "
        "(usage-portal dead-letters replay)"
    ) in text
    # the operator lists it and replays it (twice: the second finds nothing),
    operator_env(monkeypatch, settings)
    main(["dead-letters", "list"])
    listed = capsys.readouterr()
    assert listed.out == f"ingest      {message_id}  persist_events        died 1970-01-01T00:00:00+00:00\n"
    assert listed.err == "1 dead letter(s)\n"
    for moved in (1, 0):
        main(["dead-letters", "replay"])
        assert capsys.readouterr().err == f"put {moved} dead letter(s) of ingest back on their queue\n"
    # and a worker persists it once.
    worker = WorkerProcess(settings)
    worker.start()
    try:
        await wait_until_persisted(redis, timeout=60)
    finally:
        worker.stop()
    assert (await usage(client, admin_key, "api_calls", "billed"))["total"] == "9"
    ingest = (await gather_status(settings)).queues[0]
    assert (ingest.name, ingest.dead) == ("ingest", 0)


def redis_sync(settings: Settings) -> redis.Redis:
    return redis.Redis.from_url(settings.broker_url or "")


def test_replaying_failed_events_by_ids_that_name_none_says_so(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    operator_env(monkeypatch, settings)
    with pytest.raises(SystemExit) as refused:
        main(["failed", "replay", "--id", "999999999", "--id", "999999998"])
    assert str(refused.value) == (
        "2 of the 2 id(s) named no outstanding failed event that holds a stored copy "
        "(unknown, already replayed or discarded, or kept without one)"
    )
    assert capsys.readouterr().err == "replayed 0 failed events\n"


async def test_a_web_seen_and_alive_no_more_needs_an_operator(settings: Settings) -> None:
    # `status` runs beside the web: a web that stopped is an ingest outage (exit status 1)
    client = sync_client(settings.redis_url or "")
    try:
        web = Identity("web", "portal-host", 4242, datetime(2026, 12, 7, 9, tzinfo=UTC))
        assert beat(client, web, every_s=0.5, stopped=True)
    finally:
        client.close()
    status = await gather_status(settings)
    assert any(
        p.startswith("no web alive; last: web pid 4242 on portal-host: stopped") for p in status.attention
    )
