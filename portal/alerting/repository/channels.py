"""Queries on `alert_channels`: destinations and signing secrets stored encrypted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.alerting.models import AlertChannel as ChannelRow
from portal.alerting.repository.common import NO_SYNC, ids
from portal.alerting.schemas import Channel, ChannelSecrets, StoredChannel
from portal.infrastructure.db import values

_CHANNEL = (
    col(ChannelRow.id),
    col(ChannelRow.customer_id),
    col(ChannelRow.name),
    col(ChannelRow.kind),
    col(ChannelRow.destination_masked),
    col(ChannelRow.created_at),
)


def _channel(row: Any) -> Channel:
    return Channel(*values(row))


async def insert_channel(
    session: AsyncSession,
    *,
    customer_id: str,
    name: str,
    kind: str,
    destination_encrypted: bytes,
    destination_masked: str,
    signing_secret_encrypted: bytes | None,
) -> Channel | None:
    """Store a channel; None when the customer has a channel of this name already."""
    statement = (
        pg_insert(ChannelRow)
        .values(
            customer_id=customer_id,
            name=name,
            kind=kind,
            destination_encrypted=destination_encrypted,
            destination_masked=destination_masked,
            signing_secret_encrypted=signing_secret_encrypted,
        )
        .on_conflict_do_nothing(index_elements=["customer_id", "name"])
        .returning(*_CHANNEL)
    )
    row = (await session.execute(statement)).first()
    return _channel(row) if row else None


async def active_channels(session: AsyncSession, customer_id: str) -> list[Channel]:
    """The customer's enabled channels, oldest first."""
    statement = (
        select(*_CHANNEL)
        .where(col(ChannelRow.customer_id) == customer_id, col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    return [_channel(row) for row in await session.execute(statement)]


async def active_channel_count(session: AsyncSession, customer_id: str) -> int:
    statement = select(func.count()).where(
        col(ChannelRow.customer_id) == customer_id, col(ChannelRow.disabled_at).is_(None)
    )
    return int(await session.scalar(statement) or 0)


async def disable_channel(session: AsyncSession, customer_id: str, channel_id: int) -> bool:
    """Mark the customer's enabled channel disabled now; False when there is no such channel."""
    statement = (
        update(ChannelRow)
        .where(
            col(ChannelRow.id) == channel_id,
            col(ChannelRow.customer_id) == customer_id,
            col(ChannelRow.disabled_at).is_(None),
        )
        .values(disabled_at=func.now())
        .returning(col(ChannelRow.id))
        .execution_options(**NO_SYNC)
    )
    return (await session.execute(statement)).first() is not None


async def active_channel_ids(session: AsyncSession, customer_id: str) -> list[int]:
    statement = (
        select(col(ChannelRow.id))
        .where(col(ChannelRow.customer_id) == customer_id, col(ChannelRow.disabled_at).is_(None))
        .order_by(col(ChannelRow.id))
    )
    return ids(await session.scalars(statement))


async def owned_active_channel_ids(
    session: AsyncSession, customer_id: str, channel_ids: list[int]
) -> set[int]:
    """Which of `channel_ids` are enabled channels of the customer."""
    statement = select(col(ChannelRow.id)).where(
        col(ChannelRow.customer_id) == customer_id,
        col(ChannelRow.disabled_at).is_(None),
        col(ChannelRow.id).in_(channel_ids),
    )
    return set(ids(await session.scalars(statement)))


async def stored_channel(session: AsyncSession, channel_id: int) -> StoredChannel | None:
    """The channel (enabled or not) with its secrets still encrypted; None for no such channel."""
    statement = select(
        col(ChannelRow.id),
        col(ChannelRow.name),
        col(ChannelRow.kind),
        col(ChannelRow.destination_encrypted),
        col(ChannelRow.destination_masked),
        col(ChannelRow.signing_secret_encrypted),
    ).where(col(ChannelRow.id) == channel_id)
    row = (await session.execute(statement)).first()
    if row is None:
        return None
    cid, name, kind, encrypted, masked, signing = values(row)
    return StoredChannel(
        int(cid), name, kind, bytes(encrypted), masked, None if signing is None else bytes(signing)
    )


async def lock_all_channel_secrets(session: AsyncSession) -> list[ChannelSecrets]:
    """Every channel's encrypted values, by id, locked until the transaction ends (a rotation
    rewrites them all, and a channel changed meanwhile would be overwritten)."""
    statement = (
        select(
            col(ChannelRow.id),
            col(ChannelRow.customer_id),
            col(ChannelRow.name),
            col(ChannelRow.disabled_at).is_not(None),
            col(ChannelRow.destination_encrypted),
            col(ChannelRow.signing_secret_encrypted),
        )
        .order_by(col(ChannelRow.id))
        .with_for_update()
    )
    out = []
    for row in await session.execute(statement):
        cid, customer_id, name, disabled, destination, signing = values(row)
        out.append(
            ChannelSecrets(
                int(cid),
                customer_id,
                name,
                bool(disabled),
                bytes(destination),
                None if signing is None else bytes(signing),
            )
        )
    return out


async def set_channel_secrets(
    session: AsyncSession, rewritten: Sequence[tuple[int, bytes, bytes | None]]
) -> None:
    """Store each (channel id, destination, signing secret), encrypted, in one batch."""
    if not rewritten:
        return
    # One statement executed for every row. By id alone (the key is (id, customer_id)), so
    # through the table, not the ORM's bulk update by primary key.
    table: Any = ChannelRow.__table__  # type: ignore[attr-defined]
    statement = (
        update(table)
        .where(table.c.id == bindparam("channel_id"))
        .values(destination_encrypted=bindparam("destination"), signing_secret_encrypted=bindparam("signing"))
    )
    await session.execute(
        statement,
        [
            {"channel_id": cid, "destination": destination, "signing": signing}
            for cid, destination, signing in rewritten
        ],
    )
