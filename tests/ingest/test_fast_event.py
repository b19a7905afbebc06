"""The short way of `POST /v1/events` (portal/ingest/fast_event.py) answers as the route
does, counts each event once, and leaves everything else to the route."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.ingest import fast_event
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.entitlements.test_fast_check import both_ways, observe_short_way
from tests.factories import auth, event, usage_totals
from tests.ingest.test_pipeline import catalog

__all__ = ["catalog"]

PATH = fast_event.EVENT_PATH


@pytest.fixture
def short_way(client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[list[bool]]:
    yield from observe_short_way(client, monkeypatch, PATH)


def encoded(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


async def test_the_short_way_answers_events_as_the_route_does_and_counts_them_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    short_way: list[bool],
) -> None:
    headers = {**auth(ingest_key), "x-request-id": "same-id"}
    # A new event each way: the same answer.
    first, second = event(quantity=2), event(quantity=3)
    app = client.app
    app.short_ways = True  # type: ignore[attr-defined]
    taken = await client.post(PATH, content=encoded(first), headers=headers)
    app.short_ways = False  # type: ignore[attr-defined]
    taken_by_route = await client.post(PATH, content=encoded(second), headers=headers)
    app.short_ways = True  # type: ignore[attr-defined]
    assert (taken.status_code, taken.content) == (taken_by_route.status_code, taken_by_route.content)
    assert taken.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert sorted(taken.headers.multi_items()) == sorted(taken_by_route.headers.multi_items())
    # The same event again, a conflicting one, an invalid one: the same answers both ways.
    again, again_by_route = await both_ways(client, encoded(first), headers, PATH)
    assert again == again_by_route and json.loads(again[2])["duplicates"] == 1
    conflict = {**first, "quantity": 7}
    answers = await both_ways(client, encoded(conflict), headers, PATH)
    assert answers[0] == answers[1] and answers[0][0] == 409
    for invalid in (encoded(event(quantity="-1")), b"{", b"[]"):
        answers = await both_ways(client, invalid, headers, PATH)
        assert answers[0] == answers[1] and answers[0][0] == 422
    assert short_way == [True] * 6
    # Counted once each, live and in Postgres.
    await wait_until_persisted(redis)
    assert await usage_totals(client, admin_key) == {"live": "5", "billed": "5"}


@pytest.mark.parametrize(
    ("body", "headers", "status"),
    [
        (None, {}, 401),
        (None, {"authorization": "Bearer nope"}, 401),
        (b"\xff\xfe", None, 400),
        (b"[" * 200 + b"]" * 200, None, 400),
        (b'{"eventId": "x", ' + b'"pad": "' + b"a" * 70_000 + b'"}', None, 413),
    ],
    ids=["no-key", "unknown-key", "bytes", "nested", "too-large"],
)
async def test_what_the_short_way_does_not_take_the_route_refuses(
    client: AsyncTestClient[Any],
    ingest_key: str,
    catalog: None,
    short_way: list[bool],
    body: bytes | None,
    headers: dict[str, str] | None,
    status: int,
) -> None:
    sent = auth(ingest_key) if headers is None else headers
    content = encoded(event(event_id="never-taken")) if body is None else body
    short, route = await both_ways(client, content, {**sent, "x-request-id": "same-id"}, PATH)
    assert short == route
    assert short[0] == status, short
    assert True not in short_way
