"""Every query on `api_keys`, the table the keys domain owns; other modules call these
functions, never the table. None of them commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.keys.models import ApiKey as ApiKeyRow
from portal.keys.schemas import ApiKey, KeyListing, Scope

_LISTING = (
    col(ApiKeyRow.id),
    col(ApiKeyRow.name),
    col(ApiKeyRow.scope),
    col(ApiKeyRow.prefix),
    col(ApiKeyRow.created_at),
    col(ApiKeyRow.revoked_at),
)


def _listing(row: Any) -> KeyListing:
    return KeyListing(*tuple(row))


async def create_key(session: AsyncSession, *, name: str, scope: Scope, prefix: str, key_hash: bytes) -> int:
    """Store a key (its SHA-256 only); returns its id."""
    statement = (
        insert(ApiKeyRow)
        .values(name=name, scope=scope, prefix=prefix, key_hash=key_hash)
        .returning(col(ApiKeyRow.id))
    )
    key_id = (await session.execute(statement)).scalar_one()
    assert key_id is not None  # a bigserial
    return key_id


async def active_key_by_hash(session: AsyncSession, key_hash: bytes) -> ApiKey | None:
    """The unrevoked key whose token hashes to `key_hash`, or None."""
    statement = select(col(ApiKeyRow.id), col(ApiKeyRow.name), col(ApiKeyRow.scope)).where(
        col(ApiKeyRow.key_hash) == key_hash, col(ApiKeyRow.revoked_at).is_(None)
    )
    row: Any = (await session.execute(statement)).first()
    return ApiKey(*tuple(row)) if row else None


async def keys_listing(session: AsyncSession) -> list[KeyListing]:
    """Every key: active ones first, newest first."""
    statement = select(*_LISTING).order_by(
        col(ApiKeyRow.revoked_at).is_not(None), col(ApiKeyRow.created_at).desc(), col(ApiKeyRow.id).desc()
    )
    return [_listing(row) for row in await session.execute(statement)]


async def key_by_id(session: AsyncSession, key_id: int) -> KeyListing | None:
    row = (await session.execute(select(*_LISTING).where(col(ApiKeyRow.id) == key_id))).first()
    return _listing(row) if row else None


async def revoke_key(session: AsyncSession, key_id: int) -> KeyListing | None:
    """Mark the key revoked now, or keep when it was revoked before; None for no such key."""
    statement = (
        update(ApiKeyRow)
        .where(col(ApiKeyRow.id) == key_id)
        .values(revoked_at=func.coalesce(col(ApiKeyRow.revoked_at), func.now()))
        .returning(*_LISTING)
        # Keys are never loaded as objects into a session, so there are none to update.
        .execution_options(synchronize_session=False)
    )
    row = (await session.execute(statement)).first()
    return _listing(row) if row else None


async def key_counts(session: AsyncSession) -> tuple[int, int]:
    """(active, revoked): how many keys of each."""
    revoked = col(ApiKeyRow.revoked_at).is_not(None)
    statement = select(
        func.count().filter(~revoked),
        func.count().filter(revoked),
    ).select_from(ApiKeyRow)
    active, gone = (await session.execute(statement)).one()
    return int(active), int(gone)
