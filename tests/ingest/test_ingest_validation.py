"""Bad input gets a clear error naming the field, and changes nothing (invariant 4)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.live import redis_keys as live_keys
from tests.factories import auth, event, make_customer, make_meter

NOW_MS = int(time.time() * 1000)
DAY_MS = 86_400_000


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum")
    await make_meter(
        client, admin_key, metric="seats", aggregation="unique_count", unit="user", unique_by="user"
    )


async def _nothing_counted(redis: Redis, settings_broker: Redis) -> None:
    assert await redis.keys("lu:*") == []
    assert await redis.keys("ld:*") == []
    assert await redis.zcard(live_keys.INFLIGHT_KEY) == 0
    assert await settings_broker.llen("dramatiq:ingest") == 0


@pytest.fixture
async def broker_redis(settings: Any) -> Any:
    client = Redis.from_url(settings.broker_url)
    yield client
    await client.aclose()


BAD_EVENTS: list[tuple[str, dict[str, Any], str]] = [
    ("unknown customer", event(customer="nobody"), "customerId: unknown customer 'nobody'"),
    ("customer id with a brace", event(customer="a{b}"), "customerId: only letters"),
    ("unknown metric", event(metric="nope"), "metricName: unknown meter 'nope'"),
    (
        "missing quantity",
        {k: v for k, v in event().items() if k != "quantity"},
        "Object missing required field `quantity`",
    ),
    (
        "missing eventId",
        {k: v for k, v in event().items() if k != "eventId"},
        "Object missing required field `eventId`",
    ),
    ("mistyped customerId", event(customer=12), "customerId: Expected `str`, got `int`"),
    ("negative quantity", event(quantity=-1), "quantity: must not be negative"),
    ("NaN quantity", event(quantity="NaN"), "quantity: must be a finite number"),
    ("infinite quantity", event(quantity="Infinity"), "quantity: must be a finite number"),
    ("text quantity", event(quantity="lots"), "quantity: Invalid decimal string"),
    ("boolean quantity", event(quantity=True), "quantity: Expected `decimal`, got `bool`"),
    ("too precise quantity", event(quantity="0.0000000000001"), "quantity: at most 12 decimal places"),
    ("huge quantity", event(quantity="1e21"), "quantity: must be less than 10^20"),
    ("blank event id", event(event_id="   "), "eventId: must not be blank (spaces only)"),
    ("too old", event(timestamp=NOW_MS - 36 * DAY_MS), "timestamp: older than the accepted lateness"),
    # The usual unit mix-ups are named as such
    (
        "seconds for milliseconds",
        event(timestamp=NOW_MS // 1000),
        "timestamp: older than the accepted lateness window (it reads as epoch seconds; "
        "this API takes epoch milliseconds)",
    ),
    (
        "microseconds for milliseconds",
        event(timestamp=NOW_MS * 1000),
        "timestamp: after 9999-12-31T23:59:59Z (epoch milliseconds are expected, 13 digits today: "
        "16 digits are microseconds, 19 nanoseconds)",
    ),
    # Hours ahead, not minutes: NOW_MS is taken when the suite is collected, minutes before.
    ("in the future", event(timestamp=NOW_MS + 3 * 3_600_000), "timestamp: more than the allowed tolerance"),
    (
        "timestamp without offset",
        event(timestamp="2026-11-24T10:00:00"),
        "timestamp: RFC 3339 time needs an offset",
    ),
    ("garbage timestamp", event(timestamp="yesterday"), "timestamp: not epoch milliseconds or RFC 3339"),
    ("negative timestamp", event(timestamp=-5), "timestamp: must not be negative"),
    (
        "too many dimensions",
        event(dimensions={f"d{i}": "x" for i in range(21)}),
        "dimensions: more than 20 entries",
    ),
    ("long dimension key", event(dimensions={"k" * 65: "x"}), "dimensions: key"),
    (
        "long dimension value",
        event(dimensions={"region": "x" * 257}),
        "dimensions.region: longer than 256 characters",
    ),
    ("non-string dimension", event(dimensions={"region": 5}), "dimensions: Expected `str`, got `int`"),
    ("long eventId", event(event_id="e" * 129), "eventId: longer than 128 characters"),
    ("empty eventId", event(event_id=""), "eventId: must not be empty"),
    ("eventId with a slash", event(event_id="order/17"), "eventId: must not contain “/”"),
    ("eventId a dot segment", event(event_id="."), "eventId: must not be “.” or “..”"),
    ("eventId the parent segment", event(event_id=".."), "eventId: must not be “.” or “..”"),
    ("unknown field", event(customerID="acme"), "Object contains unknown field `customerID`"),
    (
        "unique_count without its dimension",
        event(metric="seats"),
        "dimensions.user: required by meter 'seats' (unique_count)",
    ),
]


@pytest.mark.parametrize(("case", "body", "error"), BAD_EVENTS, ids=[c[0] for c in BAD_EVENTS])
async def test_bad_event_is_rejected_with_its_reason_and_counts_nothing(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
    case: str,
    body: dict[str, Any],
    error: str,
) -> None:
    response = await client.post("/v1/events", headers=auth(ingest_key), json=body)
    assert response.status_code == 422, response.text
    answer = response.json()
    assert answer["accepted"] == 0 and answer["duplicates"] == 0
    assert len(answer["rejected"]) == 1
    assert answer["rejected"][0]["index"] == 0
    assert error in answer["rejected"][0]["error"], answer
    if "eventId" in body and isinstance(body["eventId"], str):
        assert answer["rejected"][0]["eventId"] == body["eventId"]
    await _nothing_counted(redis, broker_redis)


async def test_a_batch_accepts_the_good_and_names_the_bad_by_index(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
) -> None:
    good = event(quantity=4)
    response = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(metric="nope"), good, event(quantity=-2)]},
    )
    assert response.status_code == 202
    assert response.json() == {
        "accepted": 1,
        "duplicates": 0,
        "rejected": [
            {
                "index": 0,
                "eventId": response.json()["rejected"][0]["eventId"],
                "error": "metricName: unknown meter 'nope'",
            },
            {
                "index": 2,
                "eventId": response.json()["rejected"][1]["eventId"],
                "error": "quantity: must not be negative",
            },
        ],
    }
    usage = await client.get("/v1/customers/acme/usage", headers=auth(ingest_key))
    assert usage.status_code == 403  # usage reads need the admin key


async def test_malformed_json_event_is_rejected(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
) -> None:
    response = await client.post(
        "/v1/events",
        headers={**auth(ingest_key), "Content-Type": "application/json"},
        content=b'{"eventId": ',
    )
    assert response.status_code == 422
    assert response.json()["rejected"][0]["error"].startswith("malformed JSON")
    await _nothing_counted(redis, broker_redis)


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events/batch"])
async def test_a_lone_surrogate_escape_is_named_not_called_truncated(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
    path: str,
) -> None:
    """msgspec reports `"\\ud800"` as "Input data was truncated", which the body was not."""
    # Last in the body: msgspec says "truncated" only when little follows the escape.
    one = json.dumps(event(dimensions={"region": "SURROGATE"})).replace('"SURROGATE"', '"\\ud800"')
    body = one if path == "/v1/events" else '{"events": [' + one + "]}"
    response = await client.post(
        path, headers={**auth(ingest_key), "Content-Type": "application/json"}, content=body.encode()
    )
    assert response.status_code in (400, 422), response.text
    words = "a \\u escape of half a surrogate pair (such as \\ud800) is not text"
    answer = response.json()
    assert words in (answer["rejected"][0]["error"] if "rejected" in answer else answer["detail"])
    await _nothing_counted(redis, broker_redis)


async def test_batch_over_1000_events_is_413(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
) -> None:
    response = await client.post(
        "/v1/events/batch", headers=auth(ingest_key), json={"events": [event() for _ in range(1001)]}
    )
    assert response.status_code == 413
    assert "at most 1000 events" in response.json()["detail"]
    await _nothing_counted(redis, broker_redis)


async def test_body_over_5_mib_is_413(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
) -> None:
    padding = "x" * 256
    events = [event(dimensions={f"k{i}": padding for i in range(20)}) for _ in range(1000)]
    body = json.dumps({"events": events}).encode()
    assert len(body) > 5 * 1024 * 1024
    response = await client.post(
        "/v1/events/batch", headers={**auth(ingest_key), "Content-Type": "application/json"}, content=body
    )
    assert response.status_code == 413
    await _nothing_counted(redis, broker_redis)


@pytest.mark.parametrize("body", [{"events": []}, {"evts": []}, [], {"events": "x"}])
async def test_batch_envelope_errors_are_400(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    body: Any,
) -> None:
    response = await client.post("/v1/events/batch", headers=auth(ingest_key), json=body)
    assert response.status_code == 400
    assert "events" in response.json()["detail"]


@pytest.mark.parametrize(
    ("headers", "status", "detail"),
    [
        ({}, 401, "missing API key"),
        ({"Authorization": "Basic abc"}, 401, "missing API key"),
        ({"Authorization": "Bearer up_ingest_wrong"}, 401, "unknown or revoked API key"),
    ],
)
async def test_ingest_needs_a_valid_key(
    client: AsyncTestClient[Any],
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
    headers: dict[str, str],
    status: int,
    detail: str,
) -> None:
    response = await client.post("/v1/events", headers=headers, json=event())
    assert response.status_code == status
    assert detail in response.json()["detail"]
    await _nothing_counted(redis, broker_redis)


async def test_ingest_key_cannot_use_admin_routes(
    client: AsyncTestClient[Any],
    ingest_key: str,
) -> None:
    response = await client.post("/v1/customers", headers=auth(ingest_key), json={"id": "x", "name": "X"})
    assert response.status_code == 403
    assert "needs 'admin'" in response.json()["detail"]


async def test_broker_down_answers_503_and_counts_nothing(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    redis: Redis,
    broker_redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The broker becomes unreachable: its scripts are bound to a client of a closed port.
    import redis as sync_redis

    from portal.infrastructure.broker import get_broker

    broker = get_broker()
    unreachable = sync_redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(
        broker,
        "scripts",
        {name: unreachable.register_script(script.script) for name, script in broker.scripts.items()},
    )
    response = await client.post("/v1/events", headers=auth(ingest_key), json=event())
    monkeypatch.undo()
    unreachable.close()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    assert "retry later" in response.json()["detail"]
    await _nothing_counted(redis, broker_redis)
    # The retry, once the broker is back, is accepted (not taken for a duplicate).
    retry = await client.post("/v1/events", headers=auth(ingest_key), json=event())
    assert retry.status_code == 202
