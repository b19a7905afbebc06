"""Generated hostile bodies (bytes, nesting, numbers, strings with control characters)
thrown at all four ingest APIs, mixed with valid events: never a 5xx, every hostile one
refused, and the live and billed totals equal exactly the valid events' quantities."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

import msgspec
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import TestClient
from redis import Redis

from portal.app import create_app
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as live_keys
from tests.conftest import WorkerProcess
from tests.factories import auth

CUSTOMERS = ("acme", "globex")
# (api, path, headers, body, the valid events' quantities by customer, how many are valid)
Request = tuple[str, str, dict[str, str], bytes, dict[str, Decimal], int]


@pytest.fixture
def sync_client(settings: Settings, admin_key: str) -> Iterator[TestClient[Any]]:
    with TestClient(app=create_app(settings)) as client:
        for customer in CUSTOMERS:
            response = client.post(
                "/v1/customers",
                headers=auth(admin_key),
                json={"id": customer, "name": customer, "timezone": "Asia/Kolkata", "currency": "EUR"},
            )
            assert response.status_code == 201, response.text
        response = client.post(
            "/v1/meters",
            headers=auth(admin_key),
            json={"metricName": "api_calls", "aggregation": "sum", "unit": "call", "groupBy": ["region"]},
        )
        assert response.status_code == 201, response.text
        yield client


quantities = st.decimals(min_value=0, max_value=10**6, places=3, allow_nan=False)
customers = st.sampled_from(CUSTOMERS)
controls = st.sampled_from([chr(c) for c in (*range(0x20), 0x7F)])
deep = st.integers(min_value=65, max_value=5_000)
huge_exponent = st.integers(min_value=20, max_value=10**12).map(lambda n: f"1e{n}")
bad_numbers = st.one_of(
    huge_exponent,
    st.just("-1"),
    st.just("1e-13"),
    st.just("0.0000000000001"),
    st.integers(min_value=10**20, max_value=10**40).map(str),
    st.just("NaN"),
    st.just("Infinity"),
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _native(customer: str, quantity: Any, **extra: Any) -> dict[str, Any]:
    body = {
        "eventId": uuid.uuid4().hex,
        "timestamp": _now_ms(),
        "customerId": customer,
        "metricName": "api_calls",
        "quantity": str(quantity),
        "dimensions": {"region": "eu"},
    }
    body.update(extra)
    return body


def _with_control(text: str, control: str, at: int) -> str:
    at %= len(text) + 1
    return text[:at] + control + text[at:]


@st.composite
def native_events(draw: st.DrawFn) -> tuple[dict[str, Any], Decimal | None, str]:
    """A native event and its quantity (None when the event is hostile)."""
    customer = draw(customers)
    if draw(st.booleans()):
        quantity = draw(quantities)
        return _native(customer, quantity), quantity, customer
    event = _native(customer, 1)
    kind = draw(st.sampled_from(["text", "number", "timestamp", "type"]))
    if kind == "text":
        where = draw(st.sampled_from(["eventId", "productId", "region", "source"]))
        bad = _with_control("abc", draw(controls), draw(st.integers(0, 3)))
        if where == "region":
            event["dimensions"] = {"region": bad}
        elif where == "source":
            event["metadata"] = {"source": bad}
        else:
            event[where] = bad
    elif kind == "number":
        event["quantity"] = draw(bad_numbers)
    elif kind == "timestamp":
        event["timestamp"] = draw(
            st.sampled_from([-1, 253402300800000, "10000-01-01T00:00:00Z", "1970-01-01T00:00:00", "x" * 100])
        )
    else:
        event["quantity"] = draw(st.sampled_from([[1], {"a": 1}, None, True]))
    return event, None, customer


@st.composite
def requests(draw: st.DrawFn) -> Request:
    """One request to one of the four APIs, valid or hostile."""
    api = draw(st.sampled_from(["native", "batch", "lago", "cloudevents", "stripe", "garbage"]))
    json_headers = {"Content-Type": "application/json"}
    if api == "garbage":
        path = draw(
            st.sampled_from(["/v1/events", "/v1/events/batch", "/api/v1/events", "/api/v1/events/batch"])
        )
        body = draw(
            st.one_of(
                st.binary(max_size=64).map(lambda b: b"\xff" + b),  # never UTF-8
                deep.map(lambda d: b'{"events": ' + b"[" * d + b"]" * d + b"}"),
                deep.map(lambda d: b'{"event": ' + b'{"a":' * d + b"1" + b"}" * d + b"}"),
            )
        )
        return api, path, json_headers, body, {}, 0
    if api in ("native", "batch"):
        events = draw(st.lists(native_events(), min_size=1, max_size=5 if api == "batch" else 1))
        good: dict[str, Decimal] = {}
        valid = sum(1 for _, quantity, _ in events if quantity is not None)
        for _, quantity, customer in events:
            if quantity is not None:
                good[customer] = good.get(customer, Decimal(0)) + quantity
        if api == "native":
            body = msgspec.json.encode(events[0][0])
            return api, "/v1/events", json_headers, body, good, valid
        body = msgspec.json.encode({"events": [e for e, _, _ in events]})
        return api, "/v1/events/batch", json_headers, body, good, valid
    customer = draw(customers)
    hostile = draw(st.booleans())
    quantity = draw(quantities)
    value: Any = quantity
    event_id = uuid.uuid4().hex
    if hostile:
        if draw(st.booleans()):
            event_id = _with_control(event_id, draw(controls), draw(st.integers(0, 32)))
        else:
            value = draw(bad_numbers)
    good = {} if hostile else {customer: quantity}
    if api == "lago":
        number = str(value).encode()
        raw = (
            b'{"event": {"transaction_id": %s, "external_customer_id": "%s", "code": "api_calls",'
            b' "timestamp": %d, "properties": {"value": %s, "region": "eu"}}}'
            % (
                msgspec.json.encode(event_id),
                customer.encode(),
                int(time.time()),
                number if _is_json_number(number) else msgspec.json.encode(str(value)),
            )
        )
        return api, "/api/v1/events", json_headers, raw, good, len(good)
    if api == "cloudevents":
        event = {
            "specversion": "1.0",
            "id": event_id,
            "source": "fuzz",
            "type": "api_calls",
            "subject": customer,
            "data": {"value": str(value), "region": "eu"},
        }
        return (
            api,
            "/api/v1/events",
            {"Content-Type": "application/cloudevents+json"},
            msgspec.json.encode(event),
            good,
            len(good),
        )
    form = urlencode(
        {
            "event_name": "api_calls",
            "payload[stripe_customer_id]": customer,
            "payload[value]": str(value),
            "payload[region]": "eu",
            "identifier": event_id,
            "timestamp": str(int(time.time())),
        }
    ).encode()
    return (
        api,
        "/v1/billing/meter_events",
        {"Content-Type": "application/x-www-form-urlencoded"},
        form,
        good,
        len(good),
    )


def _is_json_number(text: bytes) -> bool:
    try:
        return isinstance(msgspec.json.decode(text), int | float)
    except msgspec.DecodeError:
        return False


def _wait_persisted(redis: Redis, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while redis.zcard(live_keys.INFLIGHT_KEY):
        assert time.monotonic() < deadline, "accepted batches were not persisted in time"
        time.sleep(0.05)


def _total(client: TestClient[Any], key: str, customer: str, source: str) -> Decimal:
    response = client.get(
        f"/v1/customers/{customer}/usage", headers=auth(key), params={"metric": "api_calls", "source": source}
    )
    assert response.status_code == 200, response.text
    return Decimal(response.json()["total"])


def test_hostile_bodies_never_cost_a_5xx_or_a_good_event(
    sync_client: TestClient[Any],
    settings: Settings,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
) -> None:
    redis = Redis.from_url(settings.redis_url or "")
    expected = dict.fromkeys(CUSTOMERS, Decimal(0))

    @hypothesis_settings(
        # Derandomized: the same 40 examples at every run, so the suite's verdict does not
        # depend on the draw (a new seed is a deliberate change, and found a case once).
        max_examples=40,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(requests(), min_size=1, max_size=6))
    def send(batch: list[Request]) -> None:
        for api, path, headers, body, good, valid in batch:
            response = sync_client.post(path, content=body, headers={**headers, **auth(ingest_key)})
            what = (api, body[:200], response.status_code, response.text[:500])
            assert response.status_code < 500, what
            if api == "batch":  # a native batch counts its valid events and refuses the others
                assert response.status_code == (202 if valid else 422), what
                assert response.json()["accepted"] == valid, what
            elif api == "garbage":
                assert response.status_code == 400, what
            elif valid:
                assert response.status_code in (200, 202, 204), what
            else:
                assert 400 <= response.status_code < 500, what
            for customer, quantity in good.items():
                expected[customer] += quantity
        _wait_persisted(redis)
        for customer in CUSTOMERS:
            assert _total(sync_client, admin_key, customer, "live") == expected[customer]
            assert _total(sync_client, admin_key, customer, "billed") == expected[customer]

    try:
        send()
    finally:
        redis.close()
