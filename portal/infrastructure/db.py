"""Database engine and the per-request transaction.

The edge owns the transaction: a request gets one session, committed when the handler
returns normally and rolled back otherwise. Services take the session and never commit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from portal.infrastructure.jobs import send_owed


def sqlalchemy_url(database_url: str) -> str:
    """`postgresql://…` (what operators write) as the asyncpg dialect URL SQLAlchemy wants."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+asyncpg://" + database_url[len(prefix) :]
    raise ValueError(f"DATABASE_URL must be a postgresql:// URL, got {database_url.split(':')[0]}")


def create_engine(database_url: str, *, pool_size: int = 10) -> AsyncEngine:
    engine = create_async_engine(sqlalchemy_url(database_url), pool_size=pool_size, max_overflow=pool_size)
    drop_closed_connections(engine)
    return engine


def drop_closed_connections(engine: AsyncEngine) -> None:
    """A pooled connection the server closed (Postgres restarted, a backend terminated) is
    discarded when taken from the pool, and another one is taken or opened.

    Instead of SQLAlchemy's `pool_pre_ping`, which on asyncpg costs three round trips per
    request (BEGIN, a ping, ROLLBACK: a third of a dashboard poll's statements): a closed
    server sends its goodbye and closes the socket, which the pooled connection's protocol
    reads on the event loop while it idles, so asking whether it is closed needs no round
    trip. A connection lost without a word (a host gone) fails its first statement as a
    disconnect, and SQLAlchemy then drops the whole pool, as the ping would have had to.
    """

    @event.listens_for(engine.sync_engine, "checkout")
    def _checkout(dbapi_connection: Any, connection_record: Any, connection_proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            raise DisconnectionError("the server closed this connection")


def create_read_engine(database_read_url: str, *, pool_size: int = 10) -> AsyncEngine:
    """The engine of a read replica (DATABASE_READ_URL). A replica that does not answer
    must cost a request little: connecting gives up after 2 s and the request reads the
    primary (portal/infrastructure/read_replica.py)."""
    engine = create_async_engine(
        sqlalchemy_url(database_read_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        connect_args={"timeout": 2},
    )
    drop_closed_connections(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commit on success, roll back on any exception; then send the jobs
    it owes (`portal.infrastructure.jobs.after_commit`)."""
    async with sessions() as session:
        async with session.begin():
            yield session
        await send_owed(session)


def values(row: Any) -> tuple[Any, ...]:
    """A result row as a plain tuple (SQLAlchemy's Row types its text() columns as
    `object`; the SQL beside each call says what they are)."""
    return tuple(row)


async def read_only(session: AsyncSession) -> None:
    """Make the session's transaction read-only from here on: Postgres then refuses any
    write in it ("cannot execute INSERT in a read-only transaction"). Allowed at any point
    of a transaction (only turning a transaction back to read-write is refused), so a
    request that has read already may still promise to write nothing more."""
    await session.execute(text("SET TRANSACTION READ ONLY"))
