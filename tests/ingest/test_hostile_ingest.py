"""Hostile input at the four ingest APIs (native, Lago, OpenMeter/CloudEvents, Stripe):
every malformed or unstorable request gets a 4xx in its API's shape and changes nothing,
and the good events sent beside it are billed exactly, for the sender and for others."""

from __future__ import annotations

import asyncio
import time
import uuid
from decimal import Decimal, localcontext
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from portal.ingest.validation import REJECTION_REASONS
from portal.operations.operator_tasks import enqueue_reconcile
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.ingest.test_pipeline import usage
from tests.pages.helpers import make_user, sign_in

CLOUDEVENTS = {"Content-Type": "application/cloudevents+json"}


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", timezone="Asia/Kolkata")
    await make_customer(client, admin_key, id="globex", timezone="America/New_York")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum", group_by=["region"])


async def totals(client: AsyncTestClient[Any], key: str, customer: str) -> tuple[str, str]:
    live = await usage(client, key, "api_calls", "live", customer=customer)
    billed = await usage(client, key, "api_calls", "billed", customer=customer)
    return live["total"], billed["total"]


def lago_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "transaction_id": uuid.uuid4().hex,
        "external_customer_id": "acme",
        "code": "api_calls",
        "timestamp": int(time.time()),
        "properties": {"value": 1},
    }
    body.update(overrides)
    return body


def cloud_event(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "specversion": "1.0",
        "id": uuid.uuid4().hex,
        "source": "test",
        "type": "api_calls",
        "subject": "acme",
        "data": {"value": 1},
    }
    body.update(overrides)
    return body


def stripe_form(**overrides: Any) -> dict[str, str]:
    body = {
        "event_name": "api_calls",
        "payload[stripe_customer_id]": "acme",
        "payload[value]": "1",
        "identifier": uuid.uuid4().hex,
        "timestamp": str(int(time.time())),
    }
    body.update(overrides)
    return body


UNSTORABLE = [
    ("eventId", {"event_id": "evt\u0000x"}),
    ("productId", {"productId": "prod\u0000"}),
    ("dimensions.region", {"dimensions": {"region": "eu\u0000west"}}),
    ("dimensions", {"dimensions": {"re\u0000gion": "eu"}}),
    ("metadata.source", {"metadata": {"source": "app\u0000", "version": "1"}}),
    ("metadata.requestId", {"metadata": {"requestId": "r\u0001"}}),
    ("dimensions.region", {"dimensions": {"region": "tab\there"}}),
    ("dimensions.region", {"dimensions": {"region": "del\u007f"}}),
]


async def test_unstorable_text_is_refused_and_costs_no_good_event_its_bill(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    # Given a batch mixing good events with events Postgres could not store,
    bad = [event(quantity=1000, **fields) for _, fields in UNSTORABLE]
    good = [event(quantity=q, dimensions={"region": "eu"}) for q in (1, 2, 3)]
    started_ms = int(time.time() * 1000)

    async def other_customer() -> None:  # another customer sending at the same time
        for q in (10, 20, 30):
            response = await client.post(
                "/v1/events", headers=auth(ingest_key), json=event(customer="globex", quantity=q)
            )
            assert response.status_code == 202, response.text

    mixed, _ = await asyncio.gather(
        client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": [*bad, *good]}),
        other_customer(),
    )
    # Then each bad event is refused naming its field, and the good ones are accepted.
    assert mixed.status_code == 202, mixed.text
    body = mixed.json()
    assert body["accepted"] == 3
    assert [(r["index"], r["error"].split(":", 1)[0]) for r in body["rejected"]] == [
        (i, field) for i, (field, _) in enumerate(UNSTORABLE)
    ]
    assert all("not allowed" in r["error"] for r in body["rejected"])
    # And every good event reaches billing exactly, for both customers.
    await wait_until_persisted(redis)
    assert await totals(client, admin_key, "acme") == ("6", "6")
    assert await totals(client, admin_key, "globex") == ("60", "60")
    live = await usage(client, admin_key, "api_calls", "live", customer="acme")
    complete = live["completeThrough"]
    assert complete and complete >= time.strftime("%Y-%m-%dT%H:%M", time.gmtime(started_ms / 1000))


async def test_unstorable_text_is_refused_by_the_compatible_apis(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    lago = await client.post(
        "/api/v1/events", headers=auth(ingest_key), json={"event": lago_event(transaction_id="t\u0000")}
    )
    assert lago.status_code == 422, lago.text
    assert "transaction_id" in lago.json()["error_details"]
    lago_props = await client.post(
        "/api/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [lago_event(), lago_event(properties={"value": 1, "region": "eu\u0000"})]},
    )
    assert lago_props.status_code == 422, lago_props.text
    cloud = await client.post(
        "/api/v1/events", headers={**auth(ingest_key), **CLOUDEVENTS}, json=cloud_event(id="c\u0000")
    )
    assert cloud.status_code == 400, cloud.text
    stripe = await client.post(
        "/v1/billing/meter_events", headers=auth(ingest_key), data=stripe_form(identifier="s\u0000")
    )
    assert stripe.status_code == 400, stripe.text
    assert stripe.json()["error"]["param"] == "identifier"
    # Nothing of any of them was counted.
    await wait_until_persisted(redis)
    assert await totals(client, admin_key, "acme") == ("0", "0")


MAX_QUANTITY = "99999999999999999999.999999999999"


async def test_every_accepted_quantity_is_shown_summed_and_reconciled_exactly(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    # Given quantities at the top of the accepted range, in an hour that has settled,
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    quantities = ["10000000000000000000", MAX_QUANTITY, MAX_QUANTITY, "0.000000000001", "7"]
    response = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={
            "events": [
                event(quantity=q, timestamp=two_hours_ago, dimensions={"region": "eu"}) for q in quantities
            ]
        },
    )
    assert response.status_code == 202, response.text
    assert response.json()["accepted"] == 5
    await wait_until_persisted(redis)
    # Then live and billed totals, far beyond 10^19, agree to the last decimal,
    with localcontext(prec=60):
        assert sum((Decimal(q) for q in quantities), Decimal(0)) == Decimal(
            "210000000000000000006.999999999999"
        )
    expected = "210000000000000000006.999999999999"
    assert await totals(client, admin_key, "acme") == (expected, expected)
    live = await usage(client, admin_key, "api_calls", "live", customer="acme", groupBy="region")
    assert [g["total"] for g in live.get("groups", [])] in ([], [expected])
    # and the customer's pages show it whole (no exponent, nothing rounded),
    await make_user(pg, "ops@acme.test", customer_id="acme")
    await sign_in(client, "ops@acme.test")
    for path in (
        "/portal/customers/acme",
        "/portal/customers/acme/usage",
        "/portal/customers/acme/meters/api_calls",
    ):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text)
        assert "210,000,000,000,000,000,006.999999999999" in page.text, path
    # and the reconcile finds nothing to repair.
    enqueue_reconcile(settings, full=False)
    await wait_for(lambda: pg.fetchval("SELECT count(*) FROM reconcile_runs"), what="the reconcile run")
    assert await pg.fetchval("SELECT count(*) FROM live_drift") == 0
    assert await pg.fetchval("SELECT keys_written FROM reconcile_runs") == 0
    assert await totals(client, admin_key, "acme") == (expected, expected)


@pytest.mark.parametrize(
    "quantity",
    [
        "1e20",
        "100000000000000000000",
        "1e1000000000",
        "0.0000000000001",
        "1e-1000000000",
        "-1",
        "NaN",
    ],
)
async def test_quantities_outside_the_range_are_refused_by_their_text(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    quantity: str,
) -> None:
    # As a string,
    response = await client.post("/v1/events", headers=auth(ingest_key), json=event(quantity=quantity))
    assert response.status_code == 422, response.text
    assert response.json()["rejected"][0]["error"].startswith("quantity: ")
    # and as a JSON number.
    raw = b'{"eventId":"e1","timestamp":%d,"customerId":"acme","metricName":"api_calls","quantity":%s}' % (
        int(time.time() * 1000),
        quantity.encode(),
    )
    if quantity != "NaN":  # not a JSON number
        response = await client.post(
            "/v1/events", headers={**auth(ingest_key), "Content-Type": "application/json"}, content=raw
        )
        assert response.status_code == 422, response.text


async def test_a_huge_exponent_is_refused_by_every_api_without_expanding_it(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
) -> None:
    stripe = await client.post(
        "/v1/billing/meter_events",
        headers=auth(ingest_key),
        data=stripe_form(**{"payload[value]": "1e1000000000"}),
    )
    assert stripe.status_code == 400, stripe.text
    assert stripe.json()["error"]["param"] == "payload[value]"
    lago = await client.post(
        "/api/v1/events",
        headers={**auth(ingest_key), "Content-Type": "application/json"},
        content=b'{"event": {"transaction_id": "t1", "external_customer_id": "acme", '
        b'"code": "api_calls", "properties": {"value": 1e1000000000}}}',
    )
    assert lago.status_code == 422, lago.text
    cloud = await client.post(
        "/api/v1/events",
        headers={**auth(ingest_key), **CLOUDEVENTS},
        content=b'{"specversion": "1.0", "id": "c1", "source": "t", "type": "api_calls", '
        b'"subject": "acme", "data": {"value": 1e1000000000, "region": 1e1000000000}}',
    )
    assert cloud.status_code == 400, cloud.text
    # A huge number as a dimension is kept as its short text, never expanded.
    lago_dimension = await client.post(
        "/api/v1/events",
        headers={**auth(ingest_key), "Content-Type": "application/json"},
        content=b'{"event": {"transaction_id": "t2", "external_customer_id": "acme", '
        b'"code": "api_calls", "properties": {"value": 1, "region": 1e1000000000}}}',
    )
    assert lago_dimension.status_code == 200, lago_dimension.text
    # The process still answers at once.
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("timestamp", [b"1e12", b"1e15", b"253402300800", b"1e99999", b"-1"])
async def test_lago_timestamps_out_of_range_are_422(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    timestamp: bytes,
) -> None:
    response = await client.post(
        "/api/v1/events",
        headers={**auth(ingest_key), "Content-Type": "application/json"},
        content=b'{"event": {"transaction_id": "t1", "external_customer_id": "acme", '
        b'"code": "api_calls", "timestamp": %s, "properties": {"value": 1}}}' % timestamp,
    )
    assert response.status_code == 422, response.text
    assert "timestamp" in response.json()["error_details"]


@pytest.mark.parametrize("timestamp", ["253402300800", "-99999999999999", "1" * 5000, "12a"])
async def test_stripe_timestamps_out_of_range_are_400(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    timestamp: str,
) -> None:
    response = await client.post(
        "/v1/billing/meter_events", headers=auth(ingest_key), data=stripe_form(timestamp=timestamp)
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "timestamp"


JSON_ENDPOINTS = [
    ("/v1/events", {}),
    ("/v1/events/batch", {}),
    ("/api/v1/events", {}),
    ("/api/v1/events", CLOUDEVENTS),
    ("/api/v1/events/batch", {}),
]


@pytest.mark.parametrize(("path", "headers"), JSON_ENDPOINTS)
async def test_invalid_utf8_is_400(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    path: str,
    headers: dict[str, str],
) -> None:
    body = b'{"events": [{"eventId": "\xff\xfe"}], "event": {"transaction_id": "\xc3("}}'
    response = await client.post(
        path, headers={"Content-Type": "application/json", **headers, **auth(ingest_key)}, content=body
    )
    assert response.status_code == 400, response.text


@pytest.mark.parametrize(("path", "headers"), JSON_ENDPOINTS)
@pytest.mark.parametrize("depth", [65, 1_000, 10_000])
async def test_deep_nesting_is_400(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    path: str,
    headers: dict[str, str],
    depth: int,
) -> None:
    nested = b"[" * depth + b"]" * depth
    body = b'{"events": [%s], "event": %s}' % (nested, nested)
    response = await client.post(
        path, headers={"Content-Type": "application/json", **headers, **auth(ingest_key)}, content=body
    )
    assert response.status_code == 400, response.text


async def test_invented_field_names_do_not_grow_the_metrics(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
) -> None:
    events = [{**event(), f"invented_{i}": 1} for i in range(200)]
    response = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert response.status_code == 422
    scrape = (await client.get("/metrics", headers=auth(admin_key))).text
    labels = {
        line.split('field="', 1)[1].split('"', 1)[0]
        for line in scrape.splitlines()
        if line.startswith("portal_ingest_rejections_total{")
    }
    assert labels and labels <= REJECTION_REASONS


@pytest.mark.parametrize(
    "body",
    [
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&identifier=%FF%FE",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&identifier=%ED%A0%80",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&identifier=\xff",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&payload[region]=%00",
        b"event_name=api%00calls&payload[stripe_customer_id]=acme&payload[value]=1",
        b"event_name=api_calls&payload[stripe_customer_id]=ac%01me&payload[value]=1",
        # A control character at either end is refused, never trimmed away (str.strip()
        # drops \x1c-\x1f, tabs and line breaks).
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&identifier=abc%1F",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&identifier=%0Babc",
        b"event_name=api_calls%1C&payload[stripe_customer_id]=acme&payload[value]=1",
        b"event_name=api_calls&payload[stripe_customer_id]=acme%0A&payload[value]=1",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1%1D",
        b"event_name=api_calls&payload[stripe_customer_id]=acme&payload[value]=1&timestamp=1796538240%0D",
        b"\xff\xfe\x00=\x00",
    ],
)
async def test_stripe_forms_with_undecodable_or_control_bytes_are_400(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    body: bytes,
) -> None:
    response = await client.post(
        "/v1/billing/meter_events",
        content=body,
        headers={**auth(ingest_key), "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert await totals(client, admin_key, "acme") == ("0", "0")
