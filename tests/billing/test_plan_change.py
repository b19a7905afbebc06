"""A plan change inside a period: each part rated on its own plan, flat fees prorated."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.periods import period_for
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter


def plan(plan_id: str, flat: str, price: str) -> dict[str, Any]:
    return {
        "id": plan_id,
        "name": plan_id,
        "currency": "USD",
        "charges": [
            {"key": "base", "model": "flat", "amount": flat},
            {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": price},
        ],
    }


async def test_a_change_mid_period_splits_it_in_a_quarter_hour_zone(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    closed = closed_period("Asia/Kathmandu")  # +05:45
    start, end = closed.period.start, closed.period.end
    change = start + timedelta(days=10)  # local midnight ten days in: a whole local hour
    await make_customer(client, admin_key, id="globex", timezone=closed.tz, currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("basic", "30.00", "0.01"))
    await create_plan(client, admin_key, plan("growth", "60.00", "0.005"))
    await subscribe(
        client,
        admin_key,
        "globex",
        planId="basic",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    changed = await subscribe(client, admin_key, "globex", planId="growth", effectiveAt=change.isoformat())
    assert changed["startsAt"] == change.isoformat().replace("+00:00", "Z")

    events = [
        event(customer="globex", quantity=100, timestamp=closed.ms(at))
        for at in (
            start + timedelta(days=1),
            change - timedelta(milliseconds=1),
            change,
            end - timedelta(milliseconds=1),
        )
    ]
    response = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert response.status_code == 202 and response.json()["accepted"] == 4
    await wait_until_persisted(redis)

    invoice = await draft(client, admin_key, "globex", month_of(closed.period, closed.tz))
    by_plan = {(line["planId"], line["chargeKey"]): line for line in invoice["lines"]}
    total_s = Decimal(int((end - start).total_seconds()))
    basic_share = Decimal(10 * 86400) / total_s
    cents = Decimal("0.01")
    basic_flat = (Decimal(30) * basic_share).quantize(cents, ROUND_HALF_UP)
    growth_flat = (Decimal(60) * (1 - basic_share)).quantize(cents, ROUND_HALF_UP)
    assert by_plan["basic", "calls"]["quantity"] == "200" and by_plan["basic", "calls"]["amount"] == "2.00"
    assert by_plan["growth", "calls"]["quantity"] == "200" and by_plan["growth", "calls"]["amount"] == "1.00"
    assert by_plan["basic", "base"]["amount"] == f"{basic_flat}"
    assert by_plan["growth", "base"]["amount"] == f"{growth_flat}"
    assert invoice["total"] == f"{basic_flat + growth_flat + Decimal('3.00')}"
    assert by_plan["basic", "base"]["segmentEnd"] == by_plan["growth", "base"]["segmentStart"]


async def test_a_change_takes_effect_at_the_next_period_by_default(
    client: AsyncTestClient[Any],
    admin_key: str,
) -> None:
    closed = closed_period("UTC")
    await make_customer(client, admin_key, id="initech", timezone="UTC", currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    await create_plan(client, admin_key, plan("basic", "30.00", "0.01"))
    await create_plan(client, admin_key, plan("growth", "60.00", "0.005"))
    first = await subscribe(
        client,
        admin_key,
        "initech",
        planId="basic",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    changed = await subscribe(client, admin_key, "initech", planId="growth")
    listed = (await client.get("/v1/customers/initech/subscriptions", headers=auth(admin_key))).json()
    # The current period (which began three days ago, on the anchor day) stays on basic.
    current = period_for(datetime.now(UTC), "UTC", closed.anchor_day)
    boundary = current.end.isoformat().replace("+00:00", "Z")
    assert [(s["id"], s["planId"], s["endsAt"]) for s in listed] == [
        (first["id"], "basic", boundary),
        (changed["id"], "growth", None),
    ]
    assert changed["startsAt"] == boundary
