"""DATABASE_READ_URL: pages and the usage API read a streaming replica, and say how
complete what they read is; money is decided on the primary; a replica that is down or too
far behind is not read.

Each test stops the replica's replay (`pg_wal_replay_pause()`) to hold it at a known point,
writes on the primary through the real ingest and worker, and reads both ways."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.pg_replica import EmbeddedReplica
from portal.infrastructure.settings import Settings
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import HTMX, make_user, sign_in
from tests.replica.conftest import caught_up, replay_paused, replica_app_for

Client = AsyncTestClient[Any]
ADMIN = "ada@vendor.test"
BILLED = "/v1/customers/acme/usage?metric=api_calls&source=billed"


async def acme_on_payg(client: Client, admin_key: str) -> None:
    """Acme, meter api_calls, on EUR 5.00 flat plus EUR 0.25 per call from today."""
    await make_customer(client, admin_key)
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    plan = {
        "id": "payg",
        "name": "PAYG",
        "currency": "EUR",
        "charges": [
            {"key": "base", "model": "flat", "amount": "5.00"},
            {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.25"},
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    subscribed = await client.post(
        "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "payg"}
    )
    assert subscribed.status_code == 201, subscribed.text


async def send(client: Client, ingest_key: str, redis: Redis, *quantities: str) -> None:
    """Events of acme's api_calls, now, through the real ingest; returns once in Postgres."""
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=q, timestamp=int(time.time() * 1000)) for q in quantities]},
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)


async def billed(client: Client, admin_key: str) -> tuple[str, datetime]:
    """The usage API's billed total of the period and its completeThrough."""
    answer = await client.get(BILLED, headers=auth(admin_key))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    return body["total"], datetime.fromisoformat(body["completeThrough"])


async def cost_so_far(client: Client) -> str:
    """The customer page's live panel: the cost so far (rated from stored usage)."""
    panel = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert panel.status_code == 200, panel.text
    found = re.search(r'<data class="total" id="cost-so-far" value="([^"]+)">', panel.text)
    assert found is not None, panel.text
    return found.group(1)


async def test_pages_read_the_replica_and_money_reads_the_primary(
    rclient: Client,
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    standby: asyncpg.Connection,
) -> None:
    # Given acme with 5.5 calls stored, and a replica that has replayed them
    await acme_on_payg(rclient, admin_key)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(rclient, ADMIN)
    await send(rclient, ingest_key, redis, "2", "3.5")
    await caught_up(pg, standby)
    assert (await billed(rclient, admin_key))[0] == "5.5"
    assert await cost_so_far(rclient) == "6.38"  # 5.00 + 5.5 x 0.25 = 6.375, half up
    await caught_up(pg, standby)

    async with replay_paused(standby):
        # When 4 more calls are stored on the primary while the replica stands still
        before = datetime.now(UTC)
        await send(rclient, ingest_key, redis, "4")

        # Then what decides money reads the primary: the draft invoice bills 9.5 calls
        draft = await rclient.post("/v1/customers/acme/invoices", headers=auth(admin_key), json={})
        assert draft.status_code == 200, draft.text
        assert draft.json()["total"] == "7.38"  # 5.00 + 9.5 x 0.25 = 7.375, half up
        # and the primary's own usage API says complete through after the new event
        primary_total, primary_complete = await billed(client, admin_key)
        assert primary_total == "9.5" and primary_complete >= before
        # while the page and the API reading the replica show what it has replayed, and
        # claim no completeness later than it
        replica_total, replica_complete = await billed(rclient, admin_key)
        assert replica_total == "5.5"
        assert replica_complete < before
        assert await cost_so_far(rclient) == "6.38"

    # After replay resumes, the replica's readers show the exact new totals
    await caught_up(pg, standby)
    total, complete = await billed(rclient, admin_key)
    assert total == "9.5" and complete >= before
    assert await cost_so_far(rclient) == "7.38"
    ready = await rclient.get("/readyz")
    assert ready.json() == {"status": "ready"}


async def test_what_was_just_made_is_found_while_the_replica_lags(
    rclient: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    standby: asyncpg.Connection,
) -> None:
    # Given a signed-in admin, read once, and a replica that has replayed that much
    await make_user(pg, ADMIN, role="admin")
    await sign_in(rclient, ADMIN)
    assert (await rclient.get("/portal/customers")).status_code == 200
    await caught_up(pg, standby)
    async with replay_paused(standby):
        # When a customer and a meter are made on the primary, which the replica lacks
        await make_customer(rclient, admin_key, id="beta", name="Beta GmbH")
        await make_meter(rclient, admin_key, metric="api_calls", unit="call")
        assert await standby.fetchval("SELECT count(*) FROM customers") == 0
        # Then the pages and the usage API find them (who may see what, and the objects in
        # the path, are read on the primary), with the replica's (empty) usage
        page = await rclient.get("/portal/customers/beta")
        assert page.status_code == 200, page.text
        assert "<h1>Beta GmbH</h1>" in page.text
        usage = await rclient.get(
            "/v1/customers/beta/usage?metric=api_calls&source=billed", headers=auth(admin_key)
        )
        assert usage.status_code == 200, usage.text
        assert usage.json()["total"] == "0"
        # and the replica was read all along
        assert (await rclient.get("/readyz")).json() == {"status": "ready"}


async def test_a_replica_too_far_behind_is_not_read(
    settings: Settings,
    replica: EmbeddedReplica,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    standby: asyncpg.Connection,
) -> None:
    # Given an app that reads a replica at most 0.2 s behind, and 5.5 calls replayed
    app = replica_app_for(settings, replica, read_replica_max_lag_s=0.2)
    async with AsyncTestClient(app=app) as lagging:
        await acme_on_payg(lagging, admin_key)
        await send(lagging, ingest_key, redis, "2", "3.5")
        await caught_up(pg, standby)
        assert (await billed(lagging, admin_key))[0] == "5.5"
        await caught_up(pg, standby)
        async with replay_paused(standby):
            # When 4 more calls are stored and the replica stays behind
            before = datetime.now(UTC)
            await send(lagging, ingest_key, redis, "4")
            # Then, once it is more than 0.2 s behind, reads go to the primary: the exact
            # new total, complete through after the new event
            deadline = time.monotonic() + 30
            while (answer := await billed(lagging, admin_key))[0] == "5.5":
                assert time.monotonic() < deadline, "reads never left the lagging replica"
                await asyncio.sleep(0.02)
            assert answer[0] == "9.5" and answer[1] >= before
            # and /readyz says so (still ready: the primary serves)
            ready = (await lagging.get("/readyz")).json()
            assert ready["status"] == "degraded"
            assert re.fullmatch(
                r"reading the primary: the replica is \d+\.\d s behind \(limit 0\.2 s\)", ready["replica"]
            )


async def test_a_replica_that_is_down_is_not_read(
    rclient: Client,
    replica: EmbeddedReplica,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given acme with 5.5 calls and the replica stopped
    await acme_on_payg(rclient, admin_key)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(rclient, ADMIN)
    await send(rclient, ingest_key, redis, "2", "3.5")
    replica.stop()
    try:
        # When the page, its panel and the usage API are read
        page = await rclient.get("/portal/customers/acme")
        # Then they answer from the primary: no error, the exact totals
        assert page.status_code == 200, page.text
        assert await cost_so_far(rclient) == "6.38"
        assert (await billed(rclient, admin_key))[0] == "5.5"
        # and /readyz names the replica
        ready = (await rclient.get("/readyz")).json()
        assert ready["status"] == "degraded"
        assert ready["replica"].startswith("reading the primary: the replica did not answer")
    finally:
        replica.start()
