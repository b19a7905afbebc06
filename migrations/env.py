"""Alembic environment: migrations are hand-written SQL run over asyncpg."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from portal.db import sqlalchemy_url
from portal.settings import get_settings


def _url() -> str:
    configured = context.config.attributes.get("database_url") or get_settings().database_url
    if not configured:
        raise RuntimeError("DATABASE_URL is not set and no embedded server was started")
    return sqlalchemy_url(configured)


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=None, transaction_per_migration=True)
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `usage-portal migrate`")
asyncio.run(_main())
