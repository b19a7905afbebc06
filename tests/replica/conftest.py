"""A streaming replica of the test session's embedded Postgres, made only when a test of
this folder asks for it (a base backup and a start: about a second), and an app that reads
it (DATABASE_READ_URL)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from portal.app import create_app
from portal.infrastructure.pg_replica import EmbeddedReplica
from portal.infrastructure.read_replica import parse_lsn
from portal.infrastructure.settings import Settings
from tests.conftest import EMBEDDED


@pytest.fixture(scope="session")
def session_replica(settings: Settings) -> Iterator[EmbeddedReplica]:
    servers = EMBEDDED.get("servers")
    if servers is None:
        pytest.fail("the replica tests copy the embedded Postgres; run them against the embedded servers")
    port = servers.postgres.running_port()
    assert port is not None
    replica = EmbeddedReplica(settings.data_dir / "replica", primary_port=port, password=servers.password)
    replica.start()
    yield replica
    replica.stop()


@pytest.fixture
def replica(session_replica: EmbeddedReplica) -> EmbeddedReplica:
    """The replica, running (a test that stopped it has it started again)."""
    if session_replica.server.running_port() is None:
        session_replica.start()
    return session_replica


def replica_app_for(settings: Settings, replica: EmbeddedReplica, **changes: Any) -> Litestar:
    return create_app(replace(settings, database_read_url=replica.url, **changes))


@pytest.fixture(scope="session")
def replica_app(settings: Settings, session_replica: EmbeddedReplica) -> Litestar:
    return replica_app_for(settings, session_replica)


@pytest.fixture
async def rclient(replica_app: Litestar, replica: EmbeddedReplica) -> AsyncIterator[AsyncTestClient[Any]]:
    """A client of the app whose display reads go to the replica."""
    async with AsyncTestClient(app=replica_app) as test_client:
        yield test_client


@pytest.fixture
async def standby(replica: EmbeddedReplica) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the replica (replay is resumed after the test, whatever happens)."""
    conn = await asyncpg.connect(replica.url)
    yield conn
    if not conn.is_closed():
        await conn.execute("SELECT pg_wal_replay_resume()")
        await conn.close()


async def caught_up(pg: asyncpg.Connection, standby: asyncpg.Connection, timeout: float = 30.0) -> None:
    """Wait until the replica has replayed everything the primary has written so far."""
    target = parse_lsn(await pg.fetchval("SELECT pg_current_wal_lsn()::text"))
    deadline = time.monotonic() + timeout
    while parse_lsn(await standby.fetchval("SELECT pg_last_wal_replay_lsn()::text")) < target:
        if time.monotonic() > deadline:
            raise AssertionError("the replica did not catch up")
        await asyncio.sleep(0.02)


@asynccontextmanager
async def replay_paused(standby: asyncpg.Connection) -> AsyncIterator[None]:
    """Replay stopped on the replica (it keeps receiving WAL, and answers reads as of the
    pause) until the block ends."""
    await standby.execute("SELECT pg_wal_replay_pause()")
    deadline = time.monotonic() + 30
    while await standby.fetchval("SELECT pg_get_wal_replay_pause_state()") != "paused":
        if time.monotonic() > deadline:
            raise AssertionError("replay did not pause")
        await asyncio.sleep(0.02)
    try:
        yield
    finally:
        await standby.execute("SELECT pg_wal_replay_resume()")
