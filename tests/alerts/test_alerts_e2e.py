"""Alerts end to end: real ingest, a real worker, a real SMTP server and HTTP receiver.

The worker sends email through PORTAL_SMTP_URL and Slack posts to PORTAL_SLACK_WEBHOOK_BASE,
both pointing at the sinks below (ports fixed for the session in tests/conftest.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from alerts.signing import verify
from portal.alerting.evaluate import evaluate_customer
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.jobs import enqueue
from portal.infrastructure.periods import local_date, period_for, previous_period
from portal.infrastructure.settings import Settings
from tests.alerts.conftest import HttpReceiver, SmtpServer
from tests.conftest import ALERT_HTTP_PORT, WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter

SLACK = "slack://T000A/B000B/C0000000000000000000000C"
PLAN = {
    "id": "metered-usd",
    "name": "Metered",
    "currency": "USD",
    "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.10"}],
}


def mails_to(sink: SmtpServer, address: str) -> list[Any]:
    return [m for m in sink.messages if address in m.rcpt_tos]


def posts_to(sink: HttpReceiver, path: str) -> list[Any]:
    return [r for r in sink.requests if r.path.startswith(path)]


async def setup_customer(
    client: AsyncTestClient[Any], key: str, customer: str, *, tz: str = "UTC", anchor_today: bool = False
) -> None:
    await make_customer(client, key, id=customer, timezone=tz, currency="USD")
    if (await client.get("/v1/meters", headers=auth(key))).json() == []:
        await make_meter(client, key, metric="api_calls")
        assert (await client.post("/v1/plans", headers=auth(key), json=PLAN)).status_code == 201
    now = datetime.now(UTC)
    body: dict[str, Any] = {"planId": "metered-usd"}
    if anchor_today:
        today = local_date(now.timestamp(), tz)
        body |= {"startDate": (today - timedelta(days=40)).isoformat(), "anchorDay": today.day}
    assert (
        await client.post(f"/v1/customers/{customer}/subscriptions", headers=auth(key), json=body)
    ).status_code == 201


async def channel(
    client: AsyncTestClient[Any], key: str, customer: str, name: str, destination: str
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/customers/{customer}/alert-channels",
        headers=auth(key),
        json={"name": name, "destination": destination},
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def rule(client: AsyncTestClient[Any], key: str, customer: str, **body: Any) -> dict[str, Any]:
    response = await client.post(f"/v1/customers/{customer}/alert-rules", headers=auth(key), json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def send(client: AsyncTestClient[Any], key: str, events: list[dict[str, Any]], redis: Redis) -> None:
    response = await client.post("/v1/events/batch", headers=auth(key), json={"events": events})
    assert response.status_code == 202 and response.json()["accepted"] == len(events), response.text
    await wait_until_persisted(redis)


async def deliveries(client: AsyncTestClient[Any], key: str, customer: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/alert-deliveries?customerId={customer}", headers=auth(key))
    assert response.status_code == 200, response.text
    return list(response.json())


async def settled(client: AsyncTestClient[Any], key: str, customer: str, count: int) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        found = await deliveries(client, key, customer)
        return found if len(found) >= count and all(d["status"] != "pending" for d in found) else None

    result: list[dict[str, Any]] = await wait_for(done, what=f"{count} settled deliveries")
    return result


async def test_a_spend_budget_crossed_at_three_levels_notifies_each_channel_once_per_level(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    mail_sink: SmtpServer,
    hook_sink: HttpReceiver,
    settings: Settings,
) -> None:
    await setup_customer(client, admin_key, "acme")
    await channel(client, admin_key, "acme", "ops mail", "mailto://ops@acme.test")
    await channel(client, admin_key, "acme", "ops slack", SLACK)
    hook = await channel(
        client, admin_key, "acme", "ops hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/acme"
    )
    assert hook["kind"] == "webhook" and hook["signingSecret"].startswith("whsec_")
    assert "C0000000000000000000000C" not in str(
        await client.get("/v1/customers/acme/alert-channels", headers=auth(admin_key))
    )
    await rule(
        client,
        admin_key,
        "acme",
        name="Monthly budget",
        basis="budget",
        budget="100.00",
        levels=["50", "80", "100"],
    )

    # One batch: 1,000 calls at 0.10 = 100.00, across all three levels at once.
    await send(client, ingest_key, [event(quantity=1000)], redis)
    sent = await settled(client, admin_key, "acme", 9)
    assert sorted(d["status"] for d in sent) == ["sent"] * 9

    mails = mails_to(mail_sink, "ops@acme.test")
    assert len(mails) == 3
    for mail in mails:
        types = {part.get_content_type() for part in mail.message.walk()}
        assert {"text/plain", "text/html"} <= types
    assert len(posts_to(hook_sink, "/slack/T000A/B000B/")) == 3
    hooks = posts_to(hook_sink, "/hooks/acme")
    assert sorted(r.json()["level"]["label"] for r in hooks) == ["100%", "50%", "80%"]
    for request in hooks:
        assert verify(
            hook["signingSecret"],
            request.header("X-Usage-Portal-Timestamp") or "",
            request.body,
            request.header("X-Usage-Portal-Signature") or "",
            now=time.time(),
        )
        assert request.json()["value"] == "100.00"

    # More usage, then evaluating again (as the sweep does): nothing new is owed or sent.
    await send(client, ingest_key, [event(quantity=5)], redis)
    engine = create_engine(settings.database_url or "", pool_size=1)
    async with transaction(session_factory(engine)) as session:
        assert await evaluate_customer(session, "acme", now=datetime.now(UTC), settings=settings) == []
    await engine.dispose()
    await settled(client, admin_key, "acme", 9)
    assert len(await deliveries(client, admin_key, "acme")) == 9
    assert len(mails_to(mail_sink, "ops@acme.test")) == 3 and len(posts_to(hook_sink, "/hooks/acme")) == 3
    firings = (await client.get("/v1/customers/acme/alert-firings", headers=auth(admin_key))).json()
    assert sorted((f["kind"], f["level"], f["threshold"]) for f in firings) == [
        ("crossing", "100", "100"),
        ("crossing", "50", "50"),
        ("crossing", "80", "80"),
    ]
    # Each firing lists its own three deliveries (read for all the firings at once).
    for firing in firings:
        assert sorted((d["firingId"], d["channelName"], d["status"]) for d in firing["deliveries"]) == [
            (firing["id"], "ops hook", "sent"),
            (firing["id"], "ops mail", "sent"),
            (firing["id"], "ops slack", "sent"),
        ]


async def test_a_late_event_fires_for_the_closed_period_and_the_new_period_fires_again(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    hook_sink: HttpReceiver,
) -> None:
    await setup_customer(client, admin_key, "globex", tz="Asia/Kolkata", anchor_today=True)
    await channel(client, admin_key, "globex", "hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/globex")
    await rule(client, admin_key, "globex", name="Calls", metricName="api_calls", levels=["500"])
    current = period_for(datetime.now(UTC), "Asia/Kolkata", local_date(time.time(), "Asia/Kolkata").day)
    closed = previous_period(current, "Asia/Kolkata", local_date(time.time(), "Asia/Kolkata").day)

    # The previous period ended today at local midnight: its grace period is still running.
    late = int((closed.end - timedelta(hours=1)).timestamp() * 1000)
    await send(client, ingest_key, [event(customer="globex", quantity=600, timestamp=late)], redis)
    await send(client, ingest_key, [event(customer="globex", quantity=600)], redis)
    await settled(client, admin_key, "globex", 2)
    periods = sorted(r.json()["period"]["start"] for r in posts_to(hook_sink, "/hooks/globex"))
    assert periods == sorted(p.start.isoformat().replace("+00:00", "Z") for p in (closed, current))


async def test_an_unreachable_destination_is_retried_then_failed_while_others_get_theirs(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    mail_sink: SmtpServer,
) -> None:
    from tests.conftest import _free_port

    await setup_customer(client, admin_key, "initech")
    await channel(client, admin_key, "initech", "mail", "mailto://ops@initech.test")
    dead = await channel(client, admin_key, "initech", "dead hook", f"json://127.0.0.1:{_free_port()}/x")
    await rule(client, admin_key, "initech", name="Calls", metricName="api_calls", levels=["10"])
    await send(client, ingest_key, [event(customer="initech", quantity=10)], redis)

    found = {d["channelId"]: d for d in await settled(client, admin_key, "initech", 2)}
    assert found[dead["id"]]["status"] == "failed" and found[dead["id"]]["attempts"] == 3
    assert len(mails_to(mail_sink, "ops@initech.test")) == 1
    failed = (await client.get("/v1/alert-deliveries?status=failed", headers=auth(admin_key))).json()
    assert [d["id"] for d in failed] == [found[dead["id"]]["id"]]
    detail = (await client.get(f"/v1/alert-deliveries/{failed[0]['id']}", headers=auth(admin_key))).json()
    assert [(a["attempt"], a["ok"]) for a in detail["attemptLog"]] == [(1, False), (2, False), (3, False)]
    assert all(a["error"] and a["destination"] == dead["destination"] for a in detail["attemptLog"])


async def test_a_worker_killed_during_delivery_does_not_lose_the_notice(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    own_worker: WorkerProcess,
    redis: Redis,
    hook_sink: HttpReceiver,
) -> None:
    hook_sink.slow_paths["/hooks/slow"] = 4.0
    await setup_customer(client, admin_key, "hooli")
    await channel(client, admin_key, "hooli", "slow hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/slow")
    await rule(client, admin_key, "hooli", name="Calls", metricName="api_calls", levels=["1"])
    await send(client, ingest_key, [event(customer="hooli", quantity=1)], redis)

    # The worker is inside the HTTP request when it dies.
    await wait_for(lambda: _async(len(posts_to(hook_sink, "/hooks/slow")) >= 1), what="the first attempt")
    own_worker.kill()
    hook_sink.slow_paths.pop("/hooks/slow")
    own_worker.start()
    [delivery] = await settled(client, admin_key, "hooli", 1)
    assert delivery["status"] == "sent"
    ids = {r.json()["id"] for r in posts_to(hook_sink, "/hooks/slow")}
    assert len(ids) == 1 and len(posts_to(hook_sink, "/hooks/slow")) >= 2  # sent again, same notice id


async def _async(value: Any) -> Any:
    return value


async def test_a_forecast_arrives_before_the_crossing_for_a_steady_trend(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    hook_sink: HttpReceiver,
) -> None:
    await setup_customer(client, admin_key, "umbrella", anchor_today=True)
    await channel(client, admin_key, "umbrella", "hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/umbrella")
    await rule(
        client,
        admin_key,
        "umbrella",
        name="Calls",
        metricName="api_calls",
        levels=["1000"],
        notifyForecast=True,
    )
    # Today's pace (the period began at midnight) reaches 1,000 long before the month ends.
    await send(client, ingest_key, [event(customer="umbrella", quantity=500)], redis)
    await settled(client, admin_key, "umbrella", 1)
    await send(client, ingest_key, [event(customer="umbrella", quantity=600)], redis)
    await settled(client, admin_key, "umbrella", 2)
    kinds = [r.json()["kind"] for r in posts_to(hook_sink, "/hooks/umbrella")]
    assert kinds == ["forecast", "crossing"]
    forecast = posts_to(hook_sink, "/hooks/umbrella")[0].json()
    assert forecast["occurredAt"] < forecast["forecastAt"] < forecast["period"]["end"]


async def test_a_credit_brings_spend_back_below_a_level_and_the_sweep_sends_the_recovery(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    hook_sink: HttpReceiver,
) -> None:
    await setup_customer(client, admin_key, "stark")
    await channel(client, admin_key, "stark", "hook", f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/stark")
    await rule(
        client,
        admin_key,
        "stark",
        name="Spend",
        basis="budget",
        budget="10.00",
        levels=["100"],
        notifyRecovery=True,
    )
    await send(client, ingest_key, [event(customer="stark", quantity=150)], redis)  # 15.00
    await settled(client, admin_key, "stark", 1)
    granted = await client.post(
        "/v1/customers/stark/credits", headers=auth(admin_key), json={"amount": "10.00"}
    )
    assert granted.status_code == 201
    # A credit grant is no usage: nothing schedules an evaluation but the sweep.
    await enqueue("sweep_alerts", "alerts")
    await settled(client, admin_key, "stark", 2)
    notices = [(r.json()["kind"], r.json()["value"]) for r in posts_to(hook_sink, "/hooks/stark")]
    assert notices == [("crossing", "15.00"), ("recovery", "5.00")]
