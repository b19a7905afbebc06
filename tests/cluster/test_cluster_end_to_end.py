"""End to end on a Redis/Valkey Cluster: customers whose live keys are on different nodes,
through the web app and a real worker process, with exact live and billed totals; the live
view rebuilt from Postgres after the cluster lost it; and the other multi-key users of
REDIS_URL (sign-in throttle, sessions, persist failures, revocation notices, scheduler claims,
role heartbeats)."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from portal.accounts import throttle
from portal.accounts.models import User
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.redis_client import flush
from portal.infrastructure.settings import Settings
from portal.keys.service import KeyCache, announce_revocation
from portal.live import redis_keys as live_keys
from portal.live.store import live_value
from portal.operations.operator_tasks import enqueue_reconcile
from portal.operations.scheduler import Job, Scheduler, scheduler_client
from portal.operations.status import Status, gather_status, recent_persist_failures, record_persist_failure
from portal.pages import sessions
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import event, make_customer, make_meter
from tests.ingest.test_pipeline import send, usage

# Their hash tags fall in the three primaries' slot ranges (asserted below).
CUSTOMERS = ("acme", "umbrella", "hooli")


async def _nodes(redis: Redis, *keys: str) -> set[str]:
    """The cluster nodes holding `keys`."""
    cluster = redis
    assert isinstance(cluster, RedisCluster)
    await cluster.initialize()  # the slot map
    return {cluster.get_node_from_key(key).name for key in keys}


async def test_customers_on_different_nodes_get_exact_live_and_billed_totals(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    assert len(await _nodes(redis, *(live_keys.index_key(c) for c in CUSTOMERS))) == 3
    for customer in CUSTOMERS:
        await make_customer(client, admin_key, id=customer)
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum", group_by=["region"])
    await make_meter(client, admin_key, metric="seats", aggregation="unique_count", unique_by="user")
    # One batch holds events of every customer: its marker check and apply are one script
    # call per customer, each on the customer's node, in one shared pipeline.
    batch = [
        event(customer=c, quantity=f"{n}.25", dimensions={"region": "eu" if n % 2 else "us"})
        for n in range(1, 7)
        for c in CUSTOMERS
    ]
    batch += [
        event(customer=c, metric="seats", dimensions={"user": u}) for c in CUSTOMERS for u in ("ann", "bo")
    ]
    assert await send(client, ingest_key, batch) == {"accepted": 24, "duplicates": 0, "rejected": []}
    # A retry of the whole batch with one new event per customer: the markers answer.
    again = [*batch, *(event(customer=c, quantity="0.5", dimensions={"region": "eu"}) for c in CUSTOMERS)]
    assert await send(client, ingest_key, again) == {"accepted": 3, "duplicates": 24, "rejected": []}
    await wait_until_persisted(redis)
    # Each customer's keys (hours, distinct sets, index, markers, applied batches) are all
    # on one node, a different one for each customer: asked of each node itself.
    cluster = redis
    assert isinstance(cluster, RedisCluster)
    where: dict[str, set[str]] = {c: set() for c in CUSTOMERS}
    kinds: dict[str, set[str]] = {c: set() for c in CUSTOMERS}
    for node in cluster.get_primaries():
        for key in await cluster.execute_command("KEYS", "*{*}*", target_nodes=node):
            customer = key[key.index("{") + 1 : key.index("}")]
            if customer in where:
                where[customer].add(node.name)
                kinds[customer].add(key.split(":", 1)[0])
    assert all(len(nodes) == 1 for nodes in where.values()), where
    assert len(set.union(*where.values())) == 3
    assert all(found == {"lu", "ls", "lk", "ld", "la"} for found in kinds.values()), kinds
    expected = {"api_calls": "23", "seats": "2"}  # 1.25 + 2.25 + ... + 6.25 = 22.5, + 0.5
    for customer in CUSTOMERS:
        for metric, total in expected.items():
            for source in ("live", "billed"):
                answer = await usage(client, admin_key, metric, source, customer=customer)
                assert answer["total"] == total, (customer, metric, source)
    [hour] = [k for k in await redis.zrange(live_keys.index_key("umbrella"), 0, -1) if ":api_calls:" in k]
    groups = await redis.hgetall(hour)
    by_region = {r: live_value(groups, live_keys.group_field(f'{{"region":"{r}"}}')) for r in ("eu", "us")}
    assert by_region == {"eu": Decimal("10.25"), "us": Decimal("12.75")}  # 1.25+3.25+5.25+0.5, 2.25+...

    # `usage-portal status` reads the cluster: the worker's heartbeat (seen since it
    # started), nothing in flight.
    async def worker_seen() -> Status | None:
        status = await gather_status(settings)
        return status if status.roles is not None and status.roles.alive("worker") else None

    status = await wait_for(worker_seen, what="the worker's heartbeat", timeout=15)
    assert "redis" not in status.stores_down
    assert status.roles is not None and len(status.roles.alive("worker")) == 1
    assert status.waiting is not None and status.waiting.batches == 0

    # The cluster loses everything: the next reconcile finds no "built" marker and rebuilds
    # every customer's hours from Postgres, on every node.
    await flush(redis)
    assert (await usage(client, admin_key, "api_calls", "live", customer="acme"))["total"] == "0"
    enqueue_reconcile(settings, full=False)
    await wait_for(lambda: redis.exists(live_keys.BUILT_KEY), what="the rebuild", timeout=30)
    for customer in CUSTOMERS:
        for metric, total in expected.items():
            assert (await usage(client, admin_key, metric, "live", customer=customer))["total"] == total


async def test_throttle_sessions_failures_revocations_and_scheduler_claims_on_a_cluster(
    redis: Redis, settings: Settings
) -> None:
    # Sign-in throttle: its counters are in different slots (no MGET, no MULTI across them).
    for attempt in range(throttle.MAX_PER_ADDRESS_AND_CLIENT):
        assert await throttle.locked_out(redis, "ann@example.com", "10.0.0.1") is None
        assert await throttle.record_failure(redis, "ann@example.com", "10.0.0.1") == attempt + 1
    lockout = await throttle.locked_out(redis, "ann@example.com", "10.0.0.1")
    assert lockout is not None and 1 <= lockout.retry_after_s <= throttle.WINDOW_S
    assert await throttle.locked_out(redis, "ann@example.com", "10.0.0.2") is None

    # Portal sessions (a MULTI on one key, then one DEL over keys in different slots) and
    # the persist failure record (a MULTI on one key).
    user = User(id=7, email="ann@example.com", name="Ann", role="admin")
    opened = [await sessions.open_session(redis, user) for _ in range(3)]
    first = await sessions.load_session(redis, opened[0].id)
    assert first is not None and first.user_id == 7
    await sessions.close_user_sessions(redis, 7)
    assert [await sessions.load_session(redis, s.id) for s in opened] == [None, None, None]
    await record_persist_failure(redis, kind="outage", message_id="m-1", events=3)
    failures, newest = await recent_persist_failures(redis)
    assert failures == 1 and newest is not None and (newest.message_id, newest.events) == ("m-1", 3)

    # Revocation notices: the listening process is counted and confirms.
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    cache = KeyCache(session_factory(engine), redis)
    try:
        assert await cache.resolve("not-a-key") is None  # starts listening
        await wait_for(lambda: asyncio.sleep(0, cache.listening), what="listening", timeout=10)
        announced = await announce_revocation(redis)
        assert (announced.processes, announced.confirmed) == (1, 1)
    finally:
        await cache.close()
        await engine.dispose()

    # Scheduler: each tick of a job is claimed once, by whichever scheduler comes first.
    assert settings.redis_url
    queued: list[str] = []
    one, other = (scheduler_client(settings.redis_url) for _ in range(2))
    try:
        jobs = [Job(f"job_{n}", 60) for n in range(6)]  # claim keys spread over the slots
        now = time.time()
        assert Scheduler(one, jobs, lambda actor, _: queued.append(actor)).tick(now) == [
            j.actor_name for j in jobs
        ]
        assert Scheduler(other, jobs, lambda actor, _: queued.append(actor)).tick(now) == []
        assert len(queued) == 6
    finally:
        one.close()
        other.close()
