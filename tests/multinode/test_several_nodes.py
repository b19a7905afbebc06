"""Several nodes of every role at once (issue 16): two web processes, two workers and two
schedulers on different ports, on RabbitMQ, a 3-primary Valkey Cluster and a Postgres
primary with a streaming replica that the web nodes read.

Events go through both web nodes, with retries of whole batches through the other node; one
node of each role is SIGKILLed mid-stream, and the client sends what the dead web node did
not answer through the live one, as a client with two addresses would. Then the live and
billed totals are exact, every event is in the ledger once, and each scheduled tick was
queued by exactly one scheduler and ran once."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from portal.infrastructure.pg_replica import EmbeddedReplica
from portal.infrastructure.rabbitmq_server import RabbitmqServer
from portal.infrastructure.settings import Settings
from portal.infrastructure.valkey_cluster import LocalValkeyCluster
from tests.conftest import EMBEDDED, ROOT, TEST_ENV, _free_port, wait_for
from tests.factories import auth, event, make_customer, make_meter

# Their hash tags fall in the three primaries' slot ranges (tests/cluster checks it).
CUSTOMERS = ("acme", "umbrella", "hooli")
RECONCILE_EVERY_S = 5  # the shortest interval the scheduler allows
BATCHES = 24
EVENTS_PER_BATCH = 100
KILL_AT = 8  # batches answered when one node of each role dies


@dataclass
class Node:
    """One process of a role, in its own process group (killed whole)."""

    role: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv,
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@dataclass
class Stack:
    rabbitmq: RabbitmqServer
    cluster: LocalValkeyCluster
    replica: EmbeddedReplica
    settings: Settings  # the primary, the cluster and RabbitMQ
    base: Path

    def node(self, role: str, index: int) -> Node:
        env = {**os.environ, **TEST_ENV}
        env.update(
            {
                "DATABASE_URL": self.settings.database_url or "",
                "DATABASE_READ_URL": self.replica.url,
                "REDIS_URL": self.cluster.url,
                "BROKER_URL": self.rabbitmq.url,
                "PORTAL_DATA_DIR": str(self.settings.data_dir),
                "PORTAL_RECONCILE_SECONDS": str(RECONCILE_EVERY_S),
                "PORTAL_LOG_LEVEL": "INFO",
            }
        )
        log = self.base / f"{role}-{index}.log"
        cli = [sys.executable, "-m", "portal.cli.main"]
        if role == "web":
            port = _free_port()
            return Node(role, [*cli, "web", "--port", str(port)], env, log, port)
        if role == "scheduler":
            return Node(role, [*cli, "scheduler"], env, log)
        queues = ["ingest", "maintenance", "alerts"]
        argv = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", "1", "--threads", "2"]
        return Node(role, [*argv, "--queues", *queues], env, log)


@pytest.fixture(scope="module")
def stack(settings: Settings) -> Iterator[Stack]:
    servers = EMBEDDED.get("servers")
    if servers is None:
        pytest.fail("the replica is made from the embedded Postgres; run against the embedded servers")
    base = Path(tempfile.mkdtemp(prefix="portal-nodes-"))
    rabbitmq = RabbitmqServer(base / "rabbitmq")
    cluster = LocalValkeyCluster(base / "cluster")
    port = servers.postgres.running_port()
    assert port is not None
    replica = EmbeddedReplica(base / "replica", primary_port=port, password=servers.password)
    try:
        rabbitmq.start()
        cluster.start()
        replica.start()
        urls = replace(settings, redis_url=cluster.url, broker_url=rabbitmq.url)
        yield Stack(rabbitmq, cluster, replica, urls, base)
    finally:
        replica.stop()
        cluster.stop()
        rabbitmq.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
async def nodes(stack: Stack) -> AsyncIterator[dict[str, list[Node]]]:
    started = {role: [stack.node(role, i) for i in range(2)] for role in ("web", "worker", "scheduler")}
    for group in started.values():
        for node in group:
            node.start()
    try:
        yield started
    finally:
        # Killed, not stopped: what a node does on SIGTERM is tested elsewhere, and waiting
        # for six graceful stops would cost the suite seconds.
        for group in started.values():
            for node in group:
                node.kill()


async def _ready(url: str) -> bool:
    try:
        async with httpx.AsyncClient(base_url=url, timeout=2) as probe:
            return (await probe.get("/readyz")).status_code == 200
    except httpx.TransportError:
        return False


async def _send(
    clients: list[httpx.AsyncClient], key: str, batch: list[dict[str, Any]], first: int
) -> dict[str, Any]:
    """Send the batch to `clients[first]`; if that node does not answer, to the other."""
    for client in (clients[first], clients[1 - first]):
        try:
            response = await client.post("/v1/events/batch", headers=auth(key), json={"events": batch})
        except httpx.TransportError:
            continue
        assert response.status_code == 202, response.text
        return dict(response.json())
    raise AssertionError("no web node answered")


def _queued_ticks(nodes: list[Node]) -> Counter[tuple[str, int]]:
    """(job, tick) -> how many schedulers queued it, from the schedulers' JSON logs."""
    queued: Counter[tuple[str, int]] = Counter()
    for node in nodes:
        for line in node.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            words = str(record.get("event", "")).split()
            if words[:2] == ["scheduler:", "queued"] and len(words) == 6:
                queued[(words[2], int(words[5]))] += 1
    return queued


async def test_two_nodes_of_every_role_lose_one_each_and_keep_exact_totals(
    stack: Stack,
    nodes: dict[str, list[Node]],
    admin_key: str,
    ingest_key: str,
    pg: asyncpg.Connection,
) -> None:
    web, workers, schedulers = nodes["web"], nodes["worker"], nodes["scheduler"]
    for node in web:
        await wait_for(lambda node=node: _ready(node.url), what=f"web node {node.port}", timeout=60)
    clients = [httpx.AsyncClient(base_url=node.url, timeout=30) for node in web]
    try:
        # Given customers whose live keys are on the three cluster primaries, and a meter
        for customer in CUSTOMERS:
            await make_customer(clients[0], admin_key, id=customer)  # type: ignore[arg-type]
        await make_meter(clients[1], admin_key, metric="api_calls")  # type: ignore[arg-type]
        now_ms = int(time.time() * 1000)
        batches = [
            [
                event(
                    customer=CUSTOMERS[(n + i) % 3], quantity=f"{(n * 7 + i) % 13}.25", timestamp=now_ms - i
                )
                for i in range(EVENTS_PER_BATCH)
            ]
            for n in range(BATCHES)
        ]
        expected = dict.fromkeys(CUSTOMERS, Decimal(0))
        for item in (item for batch in batches for item in batch):
            expected[item["customerId"]] += Decimal(item["quantity"])
        answers: list[dict[str, Any]] = []

        async def sender(lane: int) -> None:
            """Half the batches, each first to this lane's web node, then retried whole
            through the other; a node that does not answer is skipped."""
            for batch in batches[lane::2]:
                answers.append(await _send(clients, ingest_key, batch, first=lane))
                retry = await _send(clients, ingest_key, batch, first=1 - lane)
                assert retry == {"accepted": 0, "duplicates": EVENTS_PER_BATCH, "rejected": []}

        # A reconcile has just run and the next is seconds away, so the deaths cannot cut one
        # short (a worker killed after its commit, before its ack, runs it again) or come
        # between a scheduler's queueing and its log line
        await _between_reconciles(pg, schedulers)
        # When both lanes send at once, and one node of each role dies without a word while
        # requests are in flight
        lanes = [asyncio.create_task(sender(lane)) for lane in (0, 1)]
        await wait_for(lambda: asyncio.sleep(0, len(answers) >= KILL_AT), what="the first batches")
        for group in (web, workers, schedulers):
            group[1 if group is web else 0].kill()
        killed_in_tick = int(time.time() // RECONCILE_EVERY_S)
        await asyncio.gather(*lanes)
        # Then no event was refused, and none accepted twice (a batch the dead node took and
        # did not answer is answered "duplicate" by the other: never counted again)
        assert all(answer["rejected"] == [] for answer in answers)
        assert sum(answer["accepted"] for answer in answers) <= BATCHES * EVENTS_PER_BATCH
        assert all(node.process and node.process.poll() is None for node in (web[0], workers[1]))

        # And billed (Postgres) and live (the cluster) totals are exact, read through the
        # surviving web node, whose pages read the replica
        async def totals(source: str) -> dict[str, str]:
            found = {}
            for customer in CUSTOMERS:
                response = await clients[0].get(
                    f"/v1/customers/{customer}/usage",
                    headers=auth(admin_key),
                    params={"metric": "api_calls", "source": source},
                )
                assert response.status_code == 200, response.text
                found[customer] = response.json()["total"]
            return found

        want = {customer: str(total.normalize()) for customer, total in expected.items()}

        async def billed_in_full() -> bool:
            return await totals("billed") == want

        await wait_for(billed_in_full, what="the billed totals", timeout=60)
        assert await totals("live") == want
        rows = await pg.fetch("SELECT customer_id, sum(value), sum(event_count) FROM hourly_usage GROUP BY 1")
        assert {r[0]: r[1] for r in rows} == expected
        assert sum(r[2] for r in rows) == BATCHES * EVENTS_PER_BATCH
        assert await pg.fetchval("SELECT count(*) FROM event_ledger") == BATCHES * EVENTS_PER_BATCH

        # And each scheduled tick was queued by one scheduler only, the survivor going on
        # after the other died; every reconcile tick queued ran once
        async def survivor_ticked() -> bool:
            ticks = [t for job, t in _queued_ticks(schedulers[1:]) if job == "reconcile_live"]
            return any(tick > killed_in_tick for tick in ticks)

        await wait_for(survivor_ticked, what="a reconcile tick after the kill", timeout=30)
        await _reconciles_caught_up(pg, schedulers)
        queued = _queued_ticks(schedulers)
        assert queued and set(queued.values()) == {1}
        reconciles = sorted(tick for job, tick in queued if job == "reconcile_live")
        assert reconciles == list(range(reconciles[0], reconciles[-1] + 1))
        assert await pg.fetchval("SELECT count(*) FROM reconcile_runs") == len(reconciles)
    finally:
        for client in clients:
            await client.aclose()


async def _between_reconciles(pg: asyncpg.Connection, schedulers: list[Node]) -> None:
    """Return when the reconcile of the current tick has been queued and has run, with the
    next tick at least 3 s away. The schedulers wake once a second, later on a busy machine,
    so a tick's reconcile is queued some time after the tick starts: a moment taken from the
    clock alone could fall between its queueing and its run."""
    while True:
        tick = int(time.time() // RECONCILE_EVERY_S)

        async def tick_queued(tick: int = tick) -> bool:
            return any(job == "reconcile_live" and t >= tick for job, t in _queued_ticks(schedulers))

        await wait_for(tick_queued, what=f"the reconcile of tick {tick}", timeout=30)
        await _reconciles_caught_up(pg, schedulers)
        next_tick_in = (tick + 1) * RECONCILE_EVERY_S - time.time()
        if next_tick_in >= 3:
            return
        await asyncio.sleep(max(0.0, next_tick_in))


async def _reconciles_caught_up(pg: asyncpg.Connection, schedulers: list[Node]) -> None:
    """Wait until every reconcile queued so far has run (one row each)."""

    async def caught_up() -> bool:
        queued = sum(1 for job, _ in _queued_ticks(schedulers) if job == "reconcile_live")
        runs = await pg.fetchval("SELECT count(*) FROM reconcile_runs")
        return bool(queued) and runs == queued

    try:
        await wait_for(caught_up, what="the queued reconciles", timeout=30)
    except AssertionError:
        # Say which side is ahead and what the nodes logged, for a failure seen once in CI
        queued = sorted(tick for job, tick in _queued_ticks(schedulers) if job == "reconcile_live")
        runs = await pg.fetch("SELECT id, started_at, finished_at FROM reconcile_runs ORDER BY id")
        tails = {node.log.name: node.log.read_text(errors="replace")[-3000:] for node in schedulers}
        raise AssertionError(f"reconciles queued for ticks {queued}, runs {runs}, logs {tails}") from None
