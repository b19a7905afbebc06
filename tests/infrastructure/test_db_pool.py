"""The web's connection pool heals by itself when Postgres closes its connections
(portal/infrastructure/db.py `drop_closed_connections`): the next requests are answered
as usual, without a person and without an error."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.settings import Settings
from tests.factories import auth, make_customer

TERMINATE_OTHERS = (
    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
    "WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
)


async def test_requests_after_postgres_closed_every_connection_are_answered(
    client: AsyncTestClient[Any], admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme")
    # Several requests at once, so the pool holds several connections.
    answers = await asyncio.gather(
        *(client.get("/v1/customers/acme", headers=auth(admin_key)) for _ in range(8))
    )
    assert {a.status_code for a in answers} == {200}

    for _ in range(3):  # again and again: each time every pooled connection is gone
        assert await pg.fetchval(TERMINATE_OTHERS) >= 1
        await asyncio.sleep(0.2)  # the server's goodbyes reach the idle connections
        answers = await asyncio.gather(
            *(client.get("/v1/customers/acme", headers=auth(admin_key)) for _ in range(8))
        )
        assert [a.status_code for a in answers] == [200] * 8
        assert {a.json()["id"] for a in answers} == {"acme"}


async def test_a_pooled_connection_closed_by_the_server_is_replaced_at_checkout(
    settings: Settings, pg: asyncpg.Connection
) -> None:
    engine = create_engine(settings.database_url, pool_size=2)
    sessions = session_factory(engine)
    try:
        async with sessions() as session:
            first = await session.scalar(text_pid())
        assert await pg.fetchval("SELECT pg_terminate_backend($1)", first)
        await asyncio.sleep(0.2)
        async with sessions() as session:
            second = await session.scalar(text_pid())
        assert second != first  # a new connection, not an error
    finally:
        await engine.dispose()


def text_pid() -> Any:
    from sqlalchemy import text

    return text("SELECT pg_backend_pid()")
