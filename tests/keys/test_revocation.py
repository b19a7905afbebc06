"""A revoked API key is refused at once by every web process (two apps here: two processes,
each with its own key cache, sharing Postgres and Redis)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.app import create_app
from portal.infrastructure.settings import Settings
from portal.keys import service
from portal.keys.service import KeyCache, announce_revocation, revocations_channel
from portal.state import PortalState
from tests.conftest import auth
from tests.factories import event, make_customer, make_meter
from tests.pages.helpers import make_user, sign_in

Client = AsyncTestClient[Any]


@pytest.fixture
async def first(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@pytest.fixture
async def second(settings: Settings) -> AsyncIterator[Client]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


def keys_of(client: Client) -> KeyCache:
    state: PortalState = client.app.state.portal  # type: ignore[attr-defined]
    return state.keys


async def _listening(*clients: Client) -> None:
    """Wait until each process's cache is subscribed (it starts with the first API request)."""
    for _ in range(500):
        if all(keys_of(c).listening for c in clients):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("a key cache never subscribed to revocation notices")


async def _ingest(client: Client, key: str, n: int) -> int:
    response = await client.post("/v1/events", headers=auth(key), json=event(event_id=f"evt-{n}"))
    return response.status_code


async def _revoke_through_the_admin_page(client: Client, pg: asyncpg.Connection, name: str) -> str:
    await make_user(pg, "root@vendor.test", role="admin")
    csrf = await sign_in(client, "root@vendor.test")
    key_id = await pg.fetchval("SELECT id FROM api_keys WHERE name = $1", name)
    response = await client.post(
        f"/portal/admin/keys/{key_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    page = await client.get(response.headers["location"])
    notice = re.search(r'id="revoked-notice">(.*?)</p>', page.text, re.DOTALL)
    assert notice
    return " ".join(notice.group(1).split())


async def test_a_key_revoked_in_one_process_is_refused_by_the_other_at_once(
    first: Client,
    second: Client,
    admin_key: str,
    ingest_key: str,
    pg: asyncpg.Connection,
) -> None:
    # Given both processes accepted (and cached) the ingest key
    await make_customer(first, admin_key)
    await make_meter(first, admin_key)
    both = (first, second, first, second)
    assert [await _ingest(c, ingest_key, n) for n, c in enumerate(both)] == [202] * 4
    await _listening(first, second)
    assert await _ingest(second, ingest_key, 4) == 202  # from the cache
    # When an admin revokes it through the first process
    notice = await _revoke_through_the_admin_page(first, pg, "test ingest")
    assert notice.endswith("is revoked. Every web process refuses it from now on.")
    # Then the very next request to the other process is refused, and to the first too
    refused = await second.post("/v1/events", headers=auth(ingest_key), json=event(event_id="evt-5"))
    assert (refused.status_code, refused.json()["detail"]) == (401, "unknown or revoked API key")
    assert await _ingest(first, ingest_key, 6) == 401
    # And other keys go on working in both
    assert (await first.get("/v1/customers", headers=auth(admin_key))).status_code == 200
    assert (await second.get("/v1/customers", headers=auth(admin_key))).status_code == 200


async def test_revoking_waits_for_every_listening_process(
    first: Client,
    second: Client,
    admin_key: str,
    redis: Redis,
) -> None:
    for client in (first, second):
        assert (await client.get("/v1/customers", headers=auth(admin_key))).status_code == 200
    await _listening(first, second)
    # Other web processes of the session (a browser test's live server) may listen too:
    # every one of them must be counted and must confirm.
    ((_, listeners),) = await redis.pubsub_numsub(revocations_channel(redis))
    assert listeners >= 2
    announced = await announce_revocation(redis)
    assert (announced.processes, announced.confirmed) == (listeners, listeners)


async def test_an_unconfirmed_process_is_named_on_the_page(
    first: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    # A subscriber that never acknowledges (a process whose loop is stuck)
    stuck = redis.pubsub()
    await stuck.subscribe(revocations_channel(redis))
    try:
        await pg.execute(
            "INSERT INTO api_keys (name, scope, prefix, key_hash) VALUES ('x', 'ingest', 'up_', "
            "'\\x00'::bytea)"
        )
        started = asyncio.get_running_loop().time()
        notice = await _revoke_through_the_admin_page(first, pg, "x")
        assert asyncio.get_running_loop().time() - started >= service.ACK_WAIT_S
        assert notice.endswith(
            "is revoked. 1 web process did not confirm in time; they refuse it as soon as "
            "they read the notice, and within 60 seconds at most."
        )
    finally:
        await stuck.aclose()


async def test_a_process_not_listening_caches_nothing(
    settings: Settings, ingest_key: str, pg: asyncpg.Connection
) -> None:
    state = PortalState.open(settings)
    try:
        uncached = KeyCache(state.sessions)  # no Redis: no notices, so no cache
        assert (await uncached.resolve(ingest_key)) is not None
        await pg.execute("UPDATE api_keys SET revoked_at = now()")
        assert await uncached.resolve(ingest_key) is None
    finally:
        await state.close()


async def test_losing_the_notices_drops_the_cache(
    first: Client, admin_key: str, redis: Redis, pg: asyncpg.Connection
) -> None:
    # Given a process that cached the key while listening
    assert (await first.get("/v1/customers", headers=auth(admin_key))).status_code == 200
    await _listening(first)
    assert (await first.get("/v1/customers", headers=auth(admin_key))).status_code == 200
    # When Redis drops the subscription (a restart, a network cut)
    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for _ in range(400):
        if not keys_of(first).listening:
            break
        await asyncio.sleep(0.005)
    assert not keys_of(first).listening  # (it waits 0.1 s before subscribing again)
    # Then a revocation nobody announced is seen by the next request (the cache was dropped
    # with the subscription, whether or not it is back yet)
    await pg.execute("UPDATE api_keys SET revoked_at = now()")
    assert (await first.get("/v1/customers", headers=auth(admin_key))).status_code == 401
    # And the cache subscribes again by itself
    await _listening(first)
