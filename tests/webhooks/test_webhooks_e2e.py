"""Billing webhooks end to end: the real API writes the events in the transaction of the
change, a real worker POSTs them to a local receiver that fails at first, and retries."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from alerts.signing import verify
from portal.billing.manual_adjustments import add_manual_adjustment
from portal.billing.run import run_invoices
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.settings import Settings
from tests.alerts.test_alerts_e2e import rule, send, setup_customer
from tests.billing.conftest import closed_period, create_plan, month_of, subscribe
from tests.conftest import WorkerProcess, wait_for
from tests.factories import auth, event, make_customer, make_meter
from tests.sinks import HttpReceiver, ReceivedRequest
from tests.webhooks.conftest import closed_customer, deliveries, draft_of, endpoint, events


def signed_by(secret: str, request: ReceivedRequest) -> bool:
    timestamp = request.header("X-Usage-Portal-Timestamp") or ""
    signature = request.header("X-Usage-Portal-Signature") or ""
    return verify(secret, timestamp, request.body, signature, now=int(timestamp))


async def settled(client: AsyncTestClient[Any], key: str, count: int, **query: str) -> list[dict[str, Any]]:
    async def done() -> list[dict[str, Any]] | None:
        found = await deliveries(client, key, **query)
        return found if len(found) >= count and all(d["status"] != "pending" for d in found) else None

    result: list[dict[str, Any]] = await wait_for(done, timeout=20, what=f"{count} settled deliveries")
    return result


async def test_an_approved_invoice_is_retried_through_a_failing_receiver_then_delivered_once(
    client: AsyncTestClient[Any], admin_key: str, worker: WorkerProcess, http_receiver: HttpReceiver
) -> None:
    # Given an endpoint for invoice.finalized whose receiver answers 500 twice, then 200
    closed = await closed_customer(client, admin_key)
    hook = await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["invoice.finalized"])
    http_receiver.fail_first["/erp"] = 2
    invoice = await draft_of(client, admin_key, closed)
    # When the invoice is approved
    approved = await client.post(
        f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={"approvedBy": "maria@vendor"}
    )
    assert approved.status_code == 200, approved.text
    # Then exactly one invoice.finalized event is written, and its one delivery succeeds on
    # the third attempt (two retries after HTTP 500)
    [event] = await events(client, admin_key, type="invoice.finalized")
    [delivery] = await settled(client, admin_key, 1)
    assert (delivery["status"], delivery["attemptCount"], delivery["eventId"]) == (
        "delivered",
        3,
        event["id"],
    )
    assert [(a["attempt"], a["httpStatus"]) for a in delivery["attempts"]] == [(1, 500), (2, 500), (3, 200)]
    assert [a["error"] for a in delivery["attempts"]] == ["answered HTTP 500", "answered HTTP 500", None]
    # And the receiver got the same signed body three times, with the same event id
    received = http_receiver.requests
    assert len(received) == 3
    assert {r.body for r in received} == {received[0].body}
    assert {r.header("X-Usage-Portal-Event-Id") for r in received} == {event["id"]}
    assert all(signed_by(hook["signingSecret"], r) for r in received)
    assert not signed_by("whsec_someone-else", received[0])
    body = received[0].json()
    assert (body["id"], body["type"], body["apiVersion"]) == (event["id"], "invoice.finalized", "2026-12-01")
    data = body["data"]
    assert (data["invoiceId"], data["number"], data["customerId"], data["status"]) == (
        invoice["id"],
        "INV-000001",
        "acme",
        "finalized",
    )
    assert data["total"] == {"amount": "49.00", "currency": "USD"}
    assert data["creditsApplied"] == {"amount": "0.00", "currency": "USD"}
    assert data["approvedBy"] == "maria@vendor"
    assert event["payload"] == body


async def test_a_replay_delivers_the_same_body_again_under_the_same_event_id(
    client: AsyncTestClient[Any], admin_key: str, worker: WorkerProcess, http_receiver: HttpReceiver
) -> None:
    # Given a delivered invoice.drafted event
    closed = await closed_customer(client, admin_key)
    hook = await endpoint(client, admin_key, f"{http_receiver.url}/crm", ["invoice.drafted"])
    await draft_of(client, admin_key, closed)
    [first] = await settled(client, admin_key, 1)
    assert first["status"] == "delivered"
    # When it is replayed
    replayed = await client.post(f"/v1/webhook-deliveries/{first['id']}/replay", headers=auth(admin_key))
    assert replayed.status_code == 202, replayed.text
    assert (replayed.json()["replayOfId"], replayed.json()["eventId"]) == (first["id"], first["eventId"])
    # Then a second delivery of the same event succeeds, and the receiver got the same bytes
    both = await settled(client, admin_key, 2)
    assert [(d["status"], d["attemptCount"], d["eventId"]) for d in both] == [
        ("delivered", 1, first["eventId"]),
        ("delivered", 1, first["eventId"]),
    ]
    one, two = http_receiver.wait_for_requests(2)
    assert one.body == two.body
    assert one.header("X-Usage-Portal-Event-Id") == two.header("X-Usage-Portal-Event-Id") == first["eventId"]
    assert signed_by(hook["signingSecret"], two)
    assert two.json()["data"]["total"] == {"amount": "49.00", "currency": "USD"}


async def test_each_billing_action_announces_its_event_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    worker: WorkerProcess,
    http_receiver: HttpReceiver,
    settings: Settings,
) -> None:
    # Given an endpoint for every billing event, and 50.00 USD of prepaid credit
    closed = await closed_customer(client, admin_key)
    types = ["invoice.drafted", "invoice.finalized", "invoice.voided", "adjustment.created", "credit.low"]
    await endpoint(client, admin_key, f"{http_receiver.url}/all", types)
    granted = await client.post(
        "/v1/customers/acme/credits", headers=auth(admin_key), json={"amount": "50.00"}
    )
    assert granted.status_code == 201, granted.text
    # When a draft is made, approved (drawing 49.00 of the credit), credited by a manual
    # note, and voided (its period reissued as a new draft)
    invoice = await draft_of(client, admin_key, closed)
    again = await draft_of(client, admin_key, closed)  # read again: re-rated, not re-announced
    assert again["id"] == invoice["id"]
    approve = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approve.status_code == 200, approve.text
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    async with transaction(session_factory(engine)) as session:
        await add_manual_adjustment(session, invoice["id"], kind="credit", amount="5.00", reason="goodwill")
    await engine.dispose()
    voided = await client.post(
        f"/v1/invoices/{invoice['id']}/void", headers=auth(admin_key), json={"reason": "wrong address"}
    )
    assert voided.status_code == 200, voided.text
    # Then each action announced its event once, each delivered once
    found = await events(client, admin_key)
    assert Counter(e["type"] for e in found) == {
        "invoice.drafted": 2,
        "credit.low": 1,
        "invoice.finalized": 1,
        "adjustment.created": 1,
        "invoice.voided": 1,
    }
    by_type = {e["type"]: e["payload"]["data"] for e in found}
    assert by_type["credit.low"] == {
        "customerId": "acme",
        "remaining": {"amount": "1.00", "currency": "USD"},
        "granted": {"amount": "50.00", "currency": "USD"},
        "threshold": {"amount": "10.00", "currency": "USD"},
        "invoiceId": invoice["id"],
    }
    note = by_type["adjustment.created"]
    assert (note["number"], note["kind"], note["origin"], note["amount"], note["reason"]) == (
        "CN-000001",
        "credit",
        "manual",
        {"amount": "-5.00", "currency": "USD"},
        "goodwill",
    )
    assert (note["invoiceNumber"], note["customerId"]) == ("INV-000001", "acme")
    void = by_type["invoice.voided"]
    assert (void["status"], void["voidReason"], void["reissuedInvoiceId"]) == (
        "void",
        "wrong address",
        voided.json()["id"],
    )
    assert [e["customerId"] for e in found] == ["acme"] * 6
    sent = await settled(client, admin_key, 6)
    assert [d["status"] for d in sent] == ["delivered"] * 6
    assert Counter(r.json()["type"] for r in http_receiver.wait_for_requests(6)) == Counter(
        e["type"] for e in found
    )


async def test_an_alert_that_fires_is_announced_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    http_receiver: HttpReceiver,
) -> None:
    # Given a customer with a spend rule at 10.00 USD, and an endpoint for alert.fired
    await setup_customer(client, admin_key, "stark")
    await rule(client, admin_key, "stark", name="Spend", basis="budget", budget="10.00", levels=["100"])
    await endpoint(client, admin_key, f"{http_receiver.url}/ops", ["alert.fired"])
    # When 150 calls at 0.10 are ingested (15.00 USD) and the worker evaluates the rule
    await send(client, ingest_key, [event(customer="stark", quantity=150)], redis)
    # Then one alert.fired event reaches the receiver, with the exact spend
    [request] = http_receiver.wait_for_requests(1, timeout=20)
    body = request.json()
    assert body["type"] == "alert.fired"
    data = body["data"]
    assert (data["alertId"], data["kind"], data["value"], data["customer"]) == (
        f"firing-{data['firingId']}",
        "crossing",
        "15.00",
        {"id": "stark", "name": "Acme Inc"},
    )
    assert data["level"] == {"label": "100%", "threshold": "10.00"}
    assert [e["type"] for e in await events(client, admin_key, customerId="stark")] == ["alert.fired"]
    assert [d["status"] for d in await settled(client, admin_key, 1)] == ["delivered"]


async def test_the_invoice_run_announces_each_new_draft_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    settings: Settings,
    worker: WorkerProcess,
    http_receiver: HttpReceiver,
) -> None:
    # Given two customers on plan flat and an endpoint for invoice.drafted
    closed = await closed_customer(client, admin_key, "acme")
    await make_customer(client, admin_key, id="globex", name="Globex", timezone=closed.tz, currency="USD")
    start = closed.start_date.isoformat()
    await subscribe(client, admin_key, "globex", planId="flat", startDate=start, anchorDay=closed.anchor_day)
    await endpoint(client, admin_key, f"{http_receiver.url}/erp", ["invoice.drafted"])
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    month = month_of(closed.period, closed.tz)
    # When the invoice run drafts the month twice
    for _ in range(2):
        summary = await run_invoices(session_factory(engine), month=month, now=datetime.now(UTC))
        assert summary.errors == []
    await engine.dispose()
    # Then each customer's new draft was announced once, with one delivery each
    found = await events(client, admin_key, type="invoice.drafted")
    assert sorted((e["customerId"], e["payload"]["data"]["total"]["amount"]) for e in found) == [
        ("acme", "49.00"),
        ("globex", "49.00"),
    ]
    sent = await settled(client, admin_key, 2)
    assert sorted((d["eventId"], d["status"]) for d in sent) == sorted((e["id"], "delivered") for e in found)
    assert len(http_receiver.requests) == 2


METERED = {
    "id": "metered",
    "name": "Metered",
    "currency": "USD",
    "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.10"}],
}


async def test_late_events_after_approval_announce_one_automatic_note(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    http_receiver: HttpReceiver,
) -> None:
    # Given an approved invoice for 100 calls at 0.10 USD, and an endpoint for notes
    closed = closed_period("UTC")
    await make_customer(client, admin_key, id="acme", currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, METERED)
    start = closed.start_date.isoformat()
    await subscribe(client, admin_key, "acme", planId="metered", startDate=start, anchorDay=closed.anchor_day)
    inside = closed.ms(closed.period.start) + 3_600_000
    await send(client, ingest_key, [event(quantity=100, timestamp=inside)], redis)
    invoice = await draft_of(client, admin_key, closed)
    assert invoice["total"] == "10.00"
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    await endpoint(client, admin_key, f"{http_receiver.url}/ledger", ["adjustment.created"])
    # When 15 more calls of that period arrive late
    await send(client, ingest_key, [event(quantity=15, timestamp=inside, event_id="late-1")], redis)
    # Then the worker's debit note is announced once, delivered, with the exact amount
    [request] = http_receiver.wait_for_requests(1, timeout=20)
    data = request.json()["data"]
    assert (data["number"], data["kind"], data["origin"], data["amount"]) == (
        "DN-000001",
        "debit",
        "late_events",
        {"amount": "1.50", "currency": "USD"},
    )
    assert (data["invoiceId"], data["invoiceNumber"], data["reason"]) == (
        invoice["id"],
        "INV-000001",
        "1 event arrived after INV-000001 was finalized",
    )
    assert [d["status"] for d in await settled(client, admin_key, 1)] == ["delivered"]
    assert len(await events(client, admin_key, type="adjustment.created")) == 1
