"""The short way of `POST /v1/entitlements/check` (portal/entitlements/fast_check.py) answers
byte for byte as the documented route does, and leaves everything else to that route."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient, TestClient
from redis.asyncio import Redis

from portal.app import SHORT_WAYS, PortalApp, create_app
from portal.entitlements import fast_check
from portal.http import short_way as short_way_module
from portal.infrastructure.settings import Settings
from portal.state import PortalState
from tests.clock import StoppedClock, set_clock
from tests.entitlements.test_checks import set_limits
from tests.factories import auth, event
from tests.ingest.test_pipeline import catalog, send

__all__ = ["catalog"]

PATH = "/v1/entitlements/check"


@pytest.fixture
def short_way(client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    """Whether the short way answered each check since (True) or passed it on (False)."""
    yield from observe_short_way(client, monkeypatch, PATH)


def observe_short_way(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch, path: str
) -> Iterator[list[bool]]:
    seen: list[bool] = []
    answer = SHORT_WAYS[path]

    async def observed(*args: Any) -> Any:
        rest = await answer(*args)
        seen.append(rest is None)
        return rest

    monkeypatch.setitem(SHORT_WAYS, path, observed)
    app: PortalApp = client.app  # type: ignore[assignment]
    yield seen
    app.short_ways = True


async def both_ways(
    client: AsyncTestClient[Any], body: bytes, headers: dict[str, str], path: str = PATH
) -> list[Any]:
    """(status, headers, body) of the same request the short way and through Litestar."""
    app: PortalApp = client.app  # type: ignore[assignment]
    answers = []
    for short in (True, False):
        app.short_ways = short
        response = await client.post(path, content=body, headers=headers)
        answers.append((response.status_code, sorted(response.headers.multi_items()), response.content))
    app.short_ways = True
    return answers


async def test_the_short_way_answers_exactly_as_the_route_does(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    short_way: list[bool],
) -> None:
    await set_limits(client, admin_key, [{"meter": "requests", "limit": "2"}])
    await send(client, ingest_key, [event(metric="requests"), event(quantity="7.25")])
    portal: PortalState = client.app.state.portal
    kept = portal.clock
    set_clock(client, datetime.now(UTC) - timedelta(seconds=1))
    headers = {**auth(ingest_key), "x-request-id": "same-id", "content-type": "application/json"}
    bodies = [
        {"checks": [{"customerId": "acme", "meter": "requests"}]},
        {"checks": [{"customerId": "acme", "meter": "api_calls", "quantity": "0.75"}]},
        {
            "checks": [
                {"customerId": "acme", "meter": "requests", "quantity": "1"},
                {"customerId": "nobody", "meter": "requests"},
                {"customerId": "acme", "meter": "no_such_meter"},
                {"customerId": "acme", "meter": "storage_gb"},
            ]
        },
    ]
    try:
        for body in bodies:
            short, route = await both_ways(client, json.dumps(body).encode(), headers)
            assert short == route
            assert short[0] == 200
    finally:
        portal.clock = kept
    assert short_way == [True] * len(bodies)  # (the route way does not ask it)
    results = json.loads(short[2])["results"]
    assert [(r["allowed"], r["used"], r["remaining"]) for r in results] == [
        (True, "1", "1"),
        (False, "0", None),
        (False, "0", None),
        (True, "0", None),
    ]


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (b'{"checks": [{"customerId": "acme", "meter": "requests"}]}', {}, 401),
        (b'{"checks": [{"customerId": "acme", "meter": "requests"}]}', {"authorization": "Bearer nope"}, 401),
        (b'{"checks": [{"customerId": "acme", "meter": "requests"}]}', {"authorization": "Basic x"}, 401),
        (b'{"checks": [{"customerId": "acme", "meter": "requests"}', None, 400),
        (b'{"checks": [{"customerId": "acme", "meter": "requests", "extra": 1}]}', None, 422),
        (b'{"checks": [{"customerId": "acme", "meter": "requests", "quantity": "-1"}]}', None, 422),
        (b'{"checks": []}', None, 422),
        (b"\xff\xfe", None, 400),
        (b"", None, 422),
    ],
    ids=[
        "no-key",
        "unknown-key",
        "not-bearer",
        "cut-short",
        "unknown-field",
        "negative",
        "empty",
        "bytes",
        "none",
    ],
)
async def test_what_the_short_way_does_not_answer_the_route_refuses(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    short_way: list[bool],
    body: bytes,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = auth(ingest_key) if headers is None else headers
    short, route = await both_ways(client, body, {**sent, "x-request-id": "same-id"})
    assert short == route
    assert short[0] == status, short
    assert True not in short_way


async def test_large_bodies_and_query_strings_take_the_route(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    short_way: list[bool],
) -> None:
    await set_limits(client, admin_key, [{"meter": "requests", "limit": "2"}])
    many = {"checks": [{"customerId": "acme", "meter": "requests"}] * 10_000}
    body = json.dumps(many, indent=16).encode()  # the API's most checks, spaced out
    assert len(body) > fast_check.MAX_BODY
    response = await client.post(PATH, content=body, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    assert [r["limit"] for r in response.json()["results"]] == ["2"] * 10_000
    one = {"checks": [{"customerId": "acme", "meter": "requests"}]}
    response = await client.post(f"{PATH}?x=1", json=one, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    # An admin key may check too, the short way.
    response = await client.post(PATH, json=one, headers=auth(admin_key))
    assert response.status_code == 200, response.text
    assert short_way == [False, True]


async def test_a_batch_after_redis_lost_its_scripts_is_answered(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    redis: Redis,
    short_way: list[bool],
) -> None:
    await set_limits(client, admin_key, [{"meter": "requests", "limit": "5"}])
    await send(client, ingest_key, [event(metric="requests"), event(metric="requests")])
    await redis.script_flush()  # as after a Redis restart
    checks = [{"customerId": "acme", "meter": m} for m in ("requests", "api_calls", "storage_gb")]
    response = await client.post(PATH, json={"checks": checks}, headers=auth(ingest_key))
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["used"], r["remaining"]) for r in results] == [("2", "3"), ("0", None), ("0", None)]
    assert short_way == [True]


async def test_request_ids_are_echoed_as_the_route_echoes_them(
    client: AsyncTestClient[Any], ingest_key: str, catalog: None, short_way: list[bool]
) -> None:
    body = json.dumps({"checks": [{"customerId": "acme", "meter": "requests"}]}).encode()
    app: PortalApp = client.app  # type: ignore[assignment]
    echoed = []
    for short in (True, False):
        app.short_ways = short
        lengths = []
        for sent in ({"x-request-id": "a b"}, {}):
            response = await client.post(PATH, content=body, headers={**auth(ingest_key), **sent})
            assert response.status_code == 200, response.text
            lengths.append(len(response.headers["x-request-id"]))
        echoed.append(lengths)
    app.short_ways = True
    assert echoed == [[32, 32], [32, 32]]  # a new id for a missing or unusable one
    assert short_way == [True, True]
    # Given twice, the last is echoed, as the request-id middleware's dict of headers has it.
    scope = {"headers": [(b"authorization", b"Bearer k"), (b"x-request-id", b"1"), (b"x-request-id", b"2")]}
    assert short_way_module._headers_fit(scope) == ("k", b"2")


@pytest.fixture
def sync_client(settings: Settings, admin_key: str) -> Iterator[TestClient[Any]]:
    """An app of its own with a customer, two meters and a limit, for a synchronous fuzzer."""
    with TestClient(app=create_app(settings)) as client:
        for path, body in [
            ("/v1/customers", {"id": "acme", "name": "Acme", "timezone": "Europe/Berlin", "currency": "EUR"}),
            ("/v1/meters", {"metricName": "api_calls", "aggregation": "sum", "unit": "call"}),
            ("/v1/meters", {"metricName": "requests", "aggregation": "count", "unit": "request"}),
        ]:
            response = client.post(path, headers=auth(admin_key), json=body)
            assert response.status_code == 201, response.text
        limits = {"limits": [{"meter": "requests", "limit": "3"}]}
        response = client.put("/v1/customers/acme/limits", headers=auth(admin_key), json=limits)
        assert response.status_code == 200, response.text
        yield client


def check_bodies() -> st.SearchStrategy[bytes]:
    """Check requests a client or an attacker might send: near-valid ones above all."""
    names = st.one_of(
        st.sampled_from(["acme", "nobody", "", "ac me", "acme\\u0000", "a" * 300, "api_calls", "requests"]),
        st.integers(),
        st.none(),
    )
    quantities = st.one_of(
        st.sampled_from(["1", "0.5", "3", "-1", "1e3", "100000000000000000000", "0.0000000000001", " 1"]),
        st.integers(min_value=-5, max_value=5),
        st.floats(allow_nan=False),
        st.none(),
    )
    check = st.fixed_dictionaries(
        {"customerId": names, "meter": names},
        optional={"quantity": quantities, "extra": st.integers()},
    )
    envelope = st.fixed_dictionaries(
        {"checks": st.lists(check, max_size=4)}, optional={"more": st.booleans()}
    )
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
        max_leaves=8,
    )
    return st.one_of(
        envelope.map(lambda body: json.dumps(body).encode()),
        json_values.map(lambda body: json.dumps(body).encode()),
        st.binary(max_size=64),
    )


def test_any_body_is_answered_the_same_both_ways(sync_client: TestClient[Any], ingest_key: str) -> None:
    app: PortalApp = sync_client.app  # type: ignore[assignment]
    portal: PortalState = app.state.portal
    portal.clock = StoppedClock(datetime.now(UTC) - timedelta(seconds=1))  # the same asOf both ways
    headers = {**auth(ingest_key), "x-request-id": "fuzz"}

    @hypothesis_settings(
        max_examples=80,  # derandomized: the same examples at every run
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(check_bodies())
    def compare(body: bytes) -> None:
        answers = []
        for short in (True, False):
            app.short_ways = short
            response = sync_client.post(PATH, content=body, headers=headers)
            answers.append((response.status_code, response.content))
        app.short_ways = True
        assert answers[0] == answers[1], (body[:300], answers)
        assert answers[0][0] < 500, (body[:300], answers)
        statuses[answers[0][0]] += 1

    statuses: Counter[int] = Counter()
    compare()
    # Answered, refused as unreadable and refused field by field: each way was exercised.
    assert statuses[200] and statuses[400] and statuses[422], statuses
