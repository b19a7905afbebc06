"""Ending a subscription (`POST /v1/customers/{id}/subscriptions/end`): its last period is
billed for the part it covered, usage after the end is not billed, no later period is, and
what cannot be ended is refused with the reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.periods import local_midnight, period_for
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter

BASIC = {
    "id": "basic",
    "name": "Basic",
    "currency": "EUR",
    "charges": [
        {"key": "base", "model": "flat", "amount": "30.00", "description": "Platform fee"},
        {
            "key": "calls",
            "model": "per_unit",
            "meter": "api_calls",
            "unitPrice": "0.01",
            "description": "API calls",
        },
    ],
}
PRO = {**BASIC, "id": "pro", "name": "Pro"}


async def end(client: AsyncTestClient[Any], key: str, customer: str, **body: Any) -> Any:
    return await client.post(f"/v1/customers/{customer}/subscriptions/end", headers=auth(key), json=body)


async def send(client: AsyncTestClient[Any], key: str, redis: Redis, events: list[dict[str, Any]]) -> None:
    response = await client.post("/v1/events/batch", headers=auth(key), json={"events": events})
    assert response.status_code == 202 and response.json()["accepted"] == len(events), response.text
    await wait_until_persisted(redis)


async def test_an_ended_subscription_bills_its_last_period_for_the_part_it_covered(
    client: AsyncTestClient[Any], admin_key: str, ingest_key: str, worker: WorkerProcess, redis: Redis
) -> None:
    # Given acme (Berlin) on 30.00 a period + 0.01 a call since its last closed period began
    closed = closed_period("Europe/Berlin")
    period = closed.period
    await make_customer(client, admin_key, id="acme", timezone=closed.tz, currency="EUR")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, BASIC)
    await subscribe(
        client,
        admin_key,
        "acme",
        planId="basic",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )

    # When its subscription is ended ten local days into that period
    ends = local_midnight(closed.start_date + timedelta(days=10), closed.tz)
    ended = await end(client, admin_key, "acme", effectiveAt=ends.isoformat())
    assert ended.status_code == 200, ended.text
    assert (ended.json()["planId"], datetime.fromisoformat(ended.json()["endsAt"])) == ("basic", ends)

    # And calls arrive before the end, after it in that period, and in the period after
    at = closed.ms
    await send(
        client,
        ingest_key,
        redis,
        [
            event(customer="acme", quantity=100, timestamp=at(period.start + timedelta(hours=2))),
            event(customer="acme", quantity=50, timestamp=at(ends + timedelta(hours=2))),
            event(customer="acme", quantity=70, timestamp=at(datetime.now(UTC) - timedelta(minutes=1))),
        ],
    )

    # Then the period is billed for its first ten days: the fee prorated to the second,
    # the 100 calls before the end, not the 50 after it
    invoice = await draft(client, admin_key, "acme", month_of(period, closed.tz))
    share = Decimal(int((ends - period.start).total_seconds())) / Decimal(
        int((period.end - period.start).total_seconds())
    )
    fee = (Decimal("30.00") * share).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    lines = {line["chargeKey"]: line for line in invoice["lines"]}
    assert (lines["base"]["amount"], Decimal(lines["base"]["proration"])) == (str(fee), share)
    assert (lines["calls"]["quantity"], lines["calls"]["amount"]) == ("100", "1.00")
    assert invoice["total"] == str(fee + Decimal("1.00"))

    # And no later period is billed: the customer has no subscription in it
    later = await client.post("/v1/customers/acme/invoices", headers=auth(admin_key), json={})
    assert later.status_code == 404, later.text
    assert "has no subscription in the period" in later.json()["detail"]

    # And a second end is refused, naming when it ends
    again = await end(client, admin_key, "acme", effective="immediate")
    assert again.status_code == 409, again.text
    assert f"subscription ends at {ends.isoformat()} already" in again.json()["detail"]


async def test_by_default_it_ends_with_the_current_period_and_drops_a_scheduled_change(
    client: AsyncTestClient[Any], admin_key: str
) -> None:
    await make_customer(client, admin_key, id="acme", timezone="Asia/Kolkata", currency="EUR")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, BASIC)
    await create_plan(client, admin_key, PRO)
    first = await subscribe(client, admin_key, "acme", planId="basic", anchorDay=1)
    await subscribe(client, admin_key, "acme", planId="pro")  # from the next period

    ended = await end(client, admin_key, "acme")
    assert ended.status_code == 200, ended.text
    period_end = period_for(datetime.now(UTC), "Asia/Kolkata", 1).end
    assert (ended.json()["id"], datetime.fromisoformat(ended.json()["endsAt"])) == (first["id"], period_end)
    listed = (await client.get("/v1/customers/acme/subscriptions", headers=auth(admin_key))).json()
    assert [(s["planId"], s["endsAt"] is not None) for s in listed] == [("basic", True)]

    # A customer may subscribe again later
    again = await client.post(
        "/v1/customers/acme/subscriptions",
        headers=auth(admin_key),
        json={"planId": "pro", "effective": "immediate"},
    )
    assert again.status_code == 201, again.text


async def test_what_cannot_be_ended_is_refused_with_the_reason(
    client: AsyncTestClient[Any], admin_key: str
) -> None:
    missing = await end(client, admin_key, "nobody")
    assert missing.status_code == 404, missing.text
    await make_customer(client, admin_key, id="acme", timezone="UTC", currency="EUR")
    await make_meter(client, admin_key, metric="api_calls")
    none = await end(client, admin_key, "acme")
    assert none.status_code == 409 and "has no subscription to end" in none.json()["detail"]
    await create_plan(client, admin_key, BASIC)
    await subscribe(client, admin_key, "acme", planId="basic")
    mid_hour = datetime.now(UTC).replace(minute=30, second=0, microsecond=0) + timedelta(hours=1)
    odd = await end(client, admin_key, "acme", effectiveAt=mid_hour.isoformat())
    assert odd.status_code == 422 and "must start one of the customer's hours" in odd.text
    naive = await end(client, admin_key, "acme", effectiveAt="2030-01-01T00:00:00")
    assert naive.status_code == 422, naive.text
    unknown = await end(client, admin_key, "acme", effective="tomorrow")
    assert unknown.status_code in (400, 422), unknown.text
    assert len((await client.get("/v1/customers/acme/subscriptions", headers=auth(admin_key))).json()) == 1
