"""Queries on `webhook_endpoints`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.webhooks.models import WebhookEndpoint as EndpointRow
from portal.webhooks.repository.common import ENDPOINT_COLUMNS, NO_SYNC, endpoint_of
from portal.webhooks.schemas import Endpoint


async def insert_endpoint(
    session: AsyncSession,
    *,
    url: str,
    description: str,
    event_types: list[str],
    enabled: bool,
    signing_secret_encrypted: bytes,
) -> Endpoint:
    statement = (
        insert(EndpointRow)
        .values(
            url=url,
            description=description,
            event_types=event_types,
            enabled=enabled,
            signing_secret_encrypted=signing_secret_encrypted,
        )
        .returning(*ENDPOINT_COLUMNS)
    )
    return endpoint_of((await session.execute(statement)).one())


async def endpoints(session: AsyncSession) -> list[Endpoint]:
    """Every endpoint not deleted, oldest first."""
    statement = (
        select(*ENDPOINT_COLUMNS).where(col(EndpointRow.deleted_at).is_(None)).order_by(col(EndpointRow.id))
    )
    return [endpoint_of(row) for row in await session.execute(statement)]


async def endpoint_by_id(session: AsyncSession, endpoint_id: int) -> Endpoint | None:
    statement = select(*ENDPOINT_COLUMNS).where(
        col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else endpoint_of(row)


async def update_endpoint(
    session: AsyncSession, endpoint_id: int, *, now: datetime, **changes: Any
) -> Endpoint | None:
    """Change the given columns of an endpoint not deleted; None for no such endpoint."""
    statement = (
        update(EndpointRow)
        .where(col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None))
        .values(updated_at=now, **changes)
        .returning(*ENDPOINT_COLUMNS)
        .execution_options(**NO_SYNC)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else endpoint_of(row)


async def delete_endpoint(session: AsyncSession, endpoint_id: int, *, now: datetime) -> bool:
    statement = (
        update(EndpointRow)
        .where(col(EndpointRow.id) == endpoint_id, col(EndpointRow.deleted_at).is_(None))
        .values(deleted_at=now, enabled=False, updated_at=now)
        .returning(col(EndpointRow.id))
        .execution_options(**NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


async def enabled_endpoint_types(session: AsyncSession) -> list[tuple[int, frozenset[str]]]:
    """(id, event types) of every enabled endpoint not deleted, by id."""
    statement = (
        select(col(EndpointRow.id), col(EndpointRow.event_types))
        .where(col(EndpointRow.enabled), col(EndpointRow.deleted_at).is_(None))
        .order_by(col(EndpointRow.id))
    )
    found: Any = await session.execute(statement)
    return [(int(i), frozenset(types)) for i, types in found]
