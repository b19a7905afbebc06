"""Reaching a limit, end to end: real ingest, a real worker, the alert channels (a real SMTP
server), and the crossing recorded once per limit and period."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.jobs import enqueue
from portal.live.redis_keys import ALERTS_PENDING_KEY
from tests.alerts.conftest import SmtpServer
from tests.alerts.test_alerts_e2e import channel, mails_to, rule, send, settled, setup_customer
from tests.conftest import WorkerProcess, wait_for
from tests.factories import auth, event
from tests.sinks import HttpReceiver
from tests.webhooks.conftest import endpoint


async def test_a_limit_reached_notifies_once_through_the_alert_channels_and_is_recorded_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    mail_sink: SmtpServer,
    pg: asyncpg.Connection,
    http_receiver: HttpReceiver,
) -> None:
    await setup_customer(client, admin_key, "acme")
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["entitlement.exceeded"])
    limits = {"limits": [{"meter": "api_calls", "limit": "1000", "enforcement": "hard"}]}
    assert (
        await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json=limits)
    ).status_code == 200
    await channel(client, admin_key, "acme", "ops mail", "mailto://limits-ops@acme.test")
    await rule(
        client,
        admin_key,
        "acme",
        name="Calls limit",
        metricName="api_calls",
        basis="limit",
        levels=["80", "100"],
    )

    await send(client, ingest_key, [event(quantity=799)], redis)
    assert await pg.fetchval("SELECT count(*) FROM entitlement_crossings") == 0
    await send(client, ingest_key, [event(quantity=1)], redis)  # 800: 80% of the limit
    await settled(client, admin_key, "acme", 1)
    await send(client, ingest_key, [event(quantity=200)], redis)  # 1,000: the limit
    sent = await settled(client, admin_key, "acme", 2)
    assert sorted(d["status"] for d in sent) == ["sent", "sent"]
    subjects = sorted(m.message["Subject"] for m in mails_to(mail_sink, "limits-ops@acme.test"))
    assert subjects == [
        "Acme Inc reached 100% of its API calls limit",
        "Acme Inc reached 80% of its API calls limit",
    ]
    rows = await pg.fetch("SELECT metric_name, limit_quantity, enforcement, used FROM entitlement_crossings")
    assert [tuple(r) for r in rows] == [("api_calls", 1000, "hard", 1000)]
    # More usage past the limit records nothing new.
    await send(client, ingest_key, [event(quantity=5)], redis)
    await settled(client, admin_key, "acme", 2)
    assert await pg.fetchval("SELECT count(*) FROM entitlement_crossings") == 1
    # Announced once to the operator's systems, with the exact figures.
    [request] = http_receiver.wait_for_requests(1, timeout=20)
    body = request.json()
    assert body["type"] == "entitlement.exceeded"
    data = body["data"]
    assert (data["customerId"], data["meter"], data["limit"], data["used"], data["enforcement"]) == (
        "acme",
        "api_calls",
        "1000",
        "1000",
        "hard",
    )
    assert len(http_receiver.requests) == 1
    denied = await client.post(
        "/v1/entitlements/check",
        headers=auth(ingest_key),
        json={"checks": [{"customerId": "acme", "meter": "api_calls"}]},
    )
    assert denied.json()["results"][0]["allowed"] is False


async def test_a_limit_reached_is_announced_for_a_customer_without_alert_rules(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    http_receiver: HttpReceiver,
) -> None:
    # Given a customer with a limit of its own and no alert rule, and an operator's
    # endpoint for entitlement.exceeded
    await setup_customer(client, admin_key, "acme")
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["entitlement.exceeded"])
    limits = {"limits": [{"meter": "api_calls", "limit": "100", "enforcement": "hard"}]}
    assert (
        await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json=limits)
    ).status_code == 200

    # When its usage reaches the limit, and nothing else happens
    await send(client, ingest_key, [event(quantity=60), event(quantity=40)], redis)

    # Then the crossing is recorded and announced once, with the exact figures
    [request] = http_receiver.wait_for_requests(1, timeout=20)
    data = request.json()["data"]
    assert (data["customerId"], data["meter"], data["limit"], data["used"]) == (
        "acme",
        "api_calls",
        "100",
        "100",
    )
    rows = await pg.fetch("SELECT metric_name, used FROM entitlement_crossings")
    assert [tuple(r) for r in rows] == [("api_calls", 100)]
    # and the evaluation that did it is no longer pending
    assert await wait_for(lambda: _gone(redis, "acme"), timeout=10)


async def test_the_sweep_runs_an_evaluation_whose_message_was_lost(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given a customer at its limit whose evaluation was asked for two minutes ago and never
    # ran (its message lost with a killed process), and no usage since
    await setup_customer(client, admin_key, "acme")
    await send(client, ingest_key, [event(quantity=150)], redis)  # no limit yet: nothing asked
    await client.put(
        "/v1/customers/acme/limits",
        headers=auth(admin_key),
        json={"limits": [{"meter": "api_calls", "limit": "100", "enforcement": "soft"}]},
    )
    assert await pg.fetchval("SELECT count(*) FROM entitlement_crossings") == 0
    await redis.zadd(ALERTS_PENDING_KEY, {"acme": (time.time() - 120) * 1000})

    # When the alert sweep runs
    await enqueue("sweep_alerts", "alerts")

    # Then it evaluates that customer: the crossing is recorded, and it is pending no more
    async def recorded() -> int | None:
        count = await pg.fetchval("SELECT count(*) FROM entitlement_crossings")
        return int(count) or None

    assert await wait_for(recorded, timeout=20) == 1
    assert await wait_for(lambda: _gone(redis, "acme"), timeout=10)


async def _gone(redis: Redis, customer_id: str) -> bool | None:
    return True if await redis.zscore(ALERTS_PENDING_KEY, customer_id) is None else None
