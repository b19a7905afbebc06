"""Shared fixtures of the compatibility tests: a catalog and exact counts."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from tests.conftest import wait_until_persisted
from tests.factories import make_customer, make_meter


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="tokens", aggregation="sum", unit="token", group_by=["model"])
    await make_meter(client, admin_key, metric="requests", aggregation="count", unit="request")


async def counted(pg: asyncpg.Connection, redis: Redis) -> tuple[int, str]:
    """(events, total quantity) persisted in Postgres."""
    await wait_until_persisted(redis)
    row = await pg.fetchrow("SELECT count(*), coalesce(sum(quantity), 0) FROM usage_events")
    assert row is not None
    return int(row[0]), format(row[1].normalize(), "f")
