"""Entitlement checks end to end: events through the real ingest (several requests at once),
the answer read from the live period accumulators, flipping to denied at exactly the limit."""

from __future__ import annotations

import asyncio
import socket
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from portal.entitlements import service as entitlement_service
from portal.entitlements.schemas import CheckIn
from portal.entitlements.service import EntitlementBook
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.periods import period_for
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as live_keys
from portal.live.quick_reads import QuickReads
from portal.live.store import LiveStore
from portal.state import PortalState
from tests.billing.conftest import create_plan, subscribe
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_meter
from tests.ingest.test_pipeline import catalog, send

__all__ = ["catalog"]

PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "EUR",
    "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"}],
}


async def set_limits(client: AsyncTestClient[Any], key: str, limits: list[dict[str, Any]]) -> None:
    response = await client.put("/v1/customers/acme/limits", headers=auth(key), json={"limits": limits})
    assert response.status_code == 200, response.text


async def check(client: AsyncTestClient[Any], key: str, meter: str, **extra: Any) -> dict[str, Any]:
    response = await client.post(
        "/v1/entitlements/check",
        headers=auth(key),
        json={"checks": [{"customerId": "acme", "meter": meter, **extra}]},
    )
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    return dict(result)


async def send_together(
    client: AsyncTestClient[Any], key: str, events: list[dict[str, Any]], ways: int
) -> None:
    """The events in `ways` batches sent at once (concurrent requests, as several connections)."""
    batches = [events[i::ways] for i in range(ways)]
    replies = await asyncio.gather(*(send(client, key, b) for b in batches if b))
    assert sum(r["accepted"] + r["duplicates"] for r in replies) == len(events)


def picked(result: dict[str, Any]) -> tuple[bool, str, str | None, str | None]:
    return result["allowed"], result["used"], result["limit"], result["remaining"]


@pytest.mark.parametrize(
    ("meter", "limit", "below", "last"),
    [
        # 99 calls of 1 (some fractional), then the 100th
        (
            "api_calls",
            "100",
            [event(quantity="0.5") for _ in range(2)] + [event() for _ in range(98)],
            event(),
        ),
        ("requests", "100", [event(metric="requests") for _ in range(99)], event(metric="requests")),
        # the largest of many values, then one at the limit
        (
            "storage_gb",
            "50",
            [event(metric="storage_gb", quantity=q % 50) for q in range(120)],
            event(metric="storage_gb", quantity=50),
        ),
        # 9 distinct users seen many times, then a 10th
        (
            "active_users",
            "10",
            [event(metric="active_users", dimensions={"user": f"u{i % 9}"}) for i in range(90)],
            event(metric="active_users", dimensions={"user": "u9"}),
        ),
    ],
    ids=["sum", "count", "max", "unique_count"],
)
async def test_a_hard_limit_denies_at_exactly_the_limit_under_concurrent_ingest(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    meter: str,
    limit: str,
    below: list[dict[str, Any]],
    last: dict[str, Any],
) -> None:
    await set_limits(client, admin_key, [{"meter": meter, "limit": limit, "enforcement": "hard"}])
    before = await check(client, ingest_key, meter)
    assert picked(before) == (True, "0", limit, limit)
    used_below = str(int(limit) - 1)
    # The first check filled the period accumulator: what follows is counted into it live.
    await send_together(client, ingest_key, below, ways=6)
    assert picked(await check(client, ingest_key, meter)) == (True, used_below, limit, "1")
    if meter != "active_users":
        assert (await check(client, ingest_key, meter, quantity="1"))["allowed"] is True
        assert (await check(client, ingest_key, meter, quantity="2"))["allowed"] is (meter == "storage_gb")
    await send_together(client, ingest_key, [last, *below[:5]], ways=3)
    at_limit = await check(client, ingest_key, meter)
    assert picked(at_limit) == (False, limit, limit, "0")
    assert at_limit["exceeded"] is True and at_limit["enforcement"] == "hard"
    # Persisted, the answer is the same (the worker settles without counting twice), and a
    # check that fills the accumulator afresh from the hours agrees.
    await wait_until_persisted(redis)
    assert picked(await check(client, ingest_key, meter)) == (False, limit, limit, "0")
    await redis.delete(live_keys.period_key("acme", meter), live_keys.period_unique_key("acme", meter))
    assert picked(await check(client, ingest_key, meter)) == (False, limit, limit, "0")


async def test_the_answer_says_its_period_and_how_fresh_it_is(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    await create_plan(client, admin_key, PLAN)
    subscription = await subscribe(client, admin_key, "acme", planId="metered")
    response = await client.put(
        "/v1/plans/metered/limits",
        headers=auth(admin_key),
        json={
            "limits": [
                {"meter": "api_calls", "limit": "1000", "enforcement": "soft", "customerMayLower": True}
            ]
        },
    )
    assert response.status_code == 200, response.text
    await send(client, ingest_key, [event(quantity=1200)])
    sent_at = datetime.now(UTC)
    result = await check(client, ingest_key, "api_calls")
    # Soft: allowed, and flagged as exceeded.
    assert picked(result) == (True, "1200", "1000", "0")
    assert (result["exceeded"], result["enforcement"]) == (True, "soft")
    # The subscription's period (anchored on the day it started), in the customer's zone.
    period = period_for(sent_at, "Europe/Berlin", subscription["anchorDay"])
    assert result["periodStart"] == period.start.isoformat().replace("+00:00", "Z")
    assert result["periodEnd"] == period.end.isoformat().replace("+00:00", "Z")
    # From the live counters: nothing acknowledged is missing, and the answer is as of now.
    assert result["lagMs"] == 0
    assert abs(datetime.fromisoformat(result["asOf"]) - sent_at).total_seconds() < 60
    # The live view lost (a flushed Redis before the rebuild): the answer comes from
    # Postgres, as of what it holds.
    await wait_until_persisted(redis)
    await redis.delete(live_keys.BUILT_KEY)
    portal: PortalState = client.app.state.portal
    portal.entitlements.invalidate()
    portal.entitlements._built_checked_at = float("-inf")
    rebuilt = await check(client, ingest_key, "api_calls")
    assert picked(rebuilt) == (True, "1200", "1000", "0")
    assert rebuilt["lagMs"] >= 0 and datetime.fromisoformat(rebuilt["asOf"]) <= datetime.now(UTC)
    await redis.set(live_keys.BUILT_KEY, "test")
    portal.entitlements._built_checked_at = float("-inf")


async def test_a_batch_answers_many_customers_and_meters_in_order(
    client: AsyncTestClient[Any], admin_key: str, ingest_key: str, catalog: None
) -> None:
    await set_limits(client, admin_key, [{"meter": "requests", "limit": "2"}])
    await send(
        client, ingest_key, [event(metric="requests"), event(metric="requests"), event(quantity="7.25")]
    )
    checks = [
        {"customerId": "acme", "meter": "requests"},
        {"customerId": "acme", "meter": "api_calls"},
        {"customerId": "nobody", "meter": "requests"},
        {"customerId": "acme", "meter": "no_such_meter"},
    ]
    response = await client.post("/v1/entitlements/check", headers=auth(ingest_key), json={"checks": checks})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [picked(r) for r in results[:2]] == [(False, "2", "2", "0"), (True, "7.25", None, None)]
    assert [(r["allowed"], r["error"]) for r in results[2:]] == [
        (False, "unknown customer 'nobody'"),
        (False, "unknown meter 'no_such_meter'"),
    ]
    listing = await client.get("/v1/customers/acme/entitlements", headers=auth(ingest_key))
    assert listing.status_code == 200, listing.text
    assert {r["meter"]: r["used"] for r in listing.json()} == {
        "active_users": "0",
        "api_calls": "7.25",
        "plan_seats": "0",
        "requests": "2",
        "storage_gb": "0",
    }
    assert (
        await client.get("/v1/customers/nobody/entitlements", headers=auth(ingest_key))
    ).status_code == 404
    # A meter created a moment ago is listed at once (the process had read the meters)
    await make_meter(client, admin_key, metric="fresh_calls", aggregation="count", unit="call")
    again = await client.get("/v1/customers/acme/entitlements", headers=auth(ingest_key))
    assert {r["meter"]: r["used"] for r in again.json()}["fresh_calls"] == "0"


@pytest.mark.parametrize(
    "body",
    [
        {"checks": []},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": "-1"}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": "1e30"}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": 5}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": "100000000000000000000"}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": "0.0000000000001"}]},
        {"checks": [{"customerId": "ac{me}", "meter": "api_calls"}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "extra": 1}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls"}] * 10_001},
    ],
    ids=[
        "empty",
        "negative",
        "huge",
        "a-json-number",
        "10^20",
        "too-precise",
        "braces",
        "unknown-field",
        "too-many",
    ],
)
async def test_hostile_checks_are_refused_with_422(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, body: dict[str, Any]
) -> None:
    response = await client.post("/v1/entitlements/check", headers=auth(ingest_key), json=body)
    assert response.status_code == 422, response.text


async def test_staff_limits_stay_within_the_plan(
    client: AsyncTestClient[Any], admin_key: str, catalog: None
) -> None:
    await create_plan(client, admin_key, PLAN)
    await subscribe(client, admin_key, "acme", planId="metered")
    plan_limits = {"limits": [{"meter": "api_calls", "limit": "1000", "enforcement": "hard"}]}
    assert (
        await client.put("/v1/plans/metered/limits", headers=auth(admin_key), json=plan_limits)
    ).status_code == 200
    above = [{"meter": "api_calls", "limit": "1001"}]
    response = await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json={"limits": above})
    assert response.status_code == 422
    assert "above the plan's limit of 1000" in response.text
    soft = [{"meter": "api_calls", "limit": "10", "enforcement": "soft"}]
    response = await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json={"limits": soft})
    assert response.status_code == 422
    lower = [{"meter": "api_calls", "limit": "10"}]
    response = await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json={"limits": lower})
    assert response.status_code == 200, response.text
    assert response.json() == [
        {"meter": "api_calls", "limit": "10", "enforcement": "hard", "customerMayLower": False}
    ]
    unknown = {"limits": [{"meter": "nope", "limit": "1"}]}
    assert (
        await client.put("/v1/plans/metered/limits", headers=auth(admin_key), json=unknown)
    ).status_code == 422
    # A count or a distinct count is whole: 12.5 requests would silently mean 12
    for meter in ("requests", "active_users"):
        half = {"limits": [{"meter": meter, "limit": "12.5"}]}
        refused = await client.put("/v1/plans/metered/limits", headers=auth(admin_key), json=half)
        assert refused.status_code == 422 and f"{meter} is a count: give a whole number" in refused.text
        refused = await client.put("/v1/customers/acme/limits", headers=auth(admin_key), json=half)
        assert refused.status_code == 422 and f"{meter} is a count: give a whole number" in refused.text
    whole = {"limits": [{"meter": "requests", "limit": "12.0"}, {"meter": "storage_gb", "limit": "12.5"}]}
    assert (
        await client.put("/v1/plans/metered/limits", headers=auth(admin_key), json=whole)
    ).status_code == 200
    assert (
        await client.put("/v1/plans/none/limits", headers=auth(admin_key), json=plan_limits)
    ).status_code == 404


@pytest.mark.parametrize("quick", [True, False], ids=["quick-reads", "redis-py"])
async def test_a_live_view_that_cannot_be_reached_is_a_503_not_a_500(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, quick: bool
) -> None:
    portal: PortalState = client.app.state.portal
    book = portal.entitlements
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dead = Redis(
        host="127.0.0.1",
        port=port,
        socket_connect_timeout=0.2,
        socket_timeout=0.2,
        retry=Retry(NoBackoff(), 0),
    )
    kept = book.live
    book.live = LiveStore(
        dead,
        accepted_lateness=kept.accepted_lateness,
        marker_window=kept.marker_window,
        quick=QuickReads(dead, timeout_s=0.2) if quick else None,
    )
    book._built_checked_at = float("-inf")
    if quick:  # as if the live view had been seen built just now: the quick read is what fails
        book._built, book._built_checked_at = True, time.monotonic()
    try:
        response = await client.post(
            "/v1/entitlements/check",
            headers=auth(ingest_key),
            json={"checks": [{"customerId": "acme", "meter": "api_calls"}]},
        )
        assert response.status_code == 503, response.text
        assert response.headers.get("retry-after")
    finally:
        book.live = kept
        book._built_checked_at = float("-inf")
        await dead.aclose()


async def test_a_limit_changed_on_one_web_process_applies_on_the_others_within_a_second(
    client: AsyncTestClient[Any], admin_key: str, catalog: None, redis: Redis, settings: Settings
) -> None:
    # Another web process: its own connections and book, keeping profiles for five minutes.
    engine = create_engine(settings.database_url or "", pool_size=2)
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    other = EntitlementBook(session_factory(engine), live, ttl_s=300)
    ask = [CheckIn(customer_id="acme", meter="api_calls")]
    await set_limits(client, admin_key, [{"meter": "api_calls", "limit": "100"}])
    assert (await check_with(other, ask))[0].limit == "100"
    await set_limits(client, admin_key, [{"meter": "api_calls", "limit": "50"}])

    async def seen() -> bool:
        return (await check_with(other, ask))[0].limit == "50"

    await wait_for(seen, timeout=3, what="the other process to see the new limit")
    # Without a change, it keeps what it read: no Postgres read per check.
    loaded = other._profiles["acme"].loaded_at
    await check_with(other, ask)
    assert other._profiles["acme"].loaded_at == loaded
    await engine.dispose()


async def check_with(book: EntitlementBook, asks: list[CheckIn]) -> list[Any]:
    return await entitlement_service.check(book, asks, now=datetime.now(UTC))
