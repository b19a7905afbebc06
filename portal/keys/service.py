"""API keys are random tokens shown once; only their SHA-256 is stored.

A key looks like `up_ingest_<32 random url-safe chars>`: the scope in the prefix helps a
person tell keys apart, but authority comes only from the stored row.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.errors import StoreUnavailable

Scope = Literal["ingest", "admin"]
SCOPES: tuple[Scope, ...] = ("ingest", "admin")


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: int
    name: str
    scope: Scope


def hash_key(token: str) -> bytes:
    # Keys carry 190+ bits of randomness, so a fast hash is enough (no password stretching).
    return hashlib.sha256(token.encode()).digest()


def new_token(scope: Scope) -> str:
    return f"up_{scope}_{secrets.token_urlsafe(24)}"


async def create_key(session: AsyncSession, *, scope: Scope, name: str) -> tuple[ApiKey, str]:
    """Store a new key; returns it with the token, which is never retrievable again."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    token = new_token(scope)
    row: int = (await session.execute(
        text("INSERT INTO api_keys (name, scope, prefix, key_hash) VALUES (:n, :s, :p, :h) "
             "RETURNING id"),
        {"n": name, "s": scope, "p": token[: len(f"up_{scope}_") + 4], "h": hash_key(token)},
    )).scalar_one()
    return ApiKey(id=row, name=name, scope=scope), token


async def key_is_active(sessions: async_sessionmaker[AsyncSession], key_id: int, scope: Scope) -> bool:
    """Whether key `key_id` still exists with `scope` and is not revoked (uncached: a page
    session ends at the first request after its key is revoked)."""
    async with sessions() as db:
        row = (await db.execute(
            text("SELECT 1 FROM api_keys WHERE id = :id AND scope = :s AND revoked_at IS NULL"),
            {"id": key_id, "s": scope},
        )).first()
    return row is not None


class KeyCache:
    """Resolves tokens to keys, remembering answers for `ttl_s` (a revoked key stops
    working within that time on every process)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl_s: float = 30.0) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}

    async def resolve(self, token: str) -> ApiKey | None:
        digest = hash_key(token)
        hit = self._cache.get(digest)
        now = time.monotonic()
        if hit is not None and now - hit[0] < self._ttl_s:
            return hit[1]
        try:
            async with self._sessions() as session:
                row = (await session.execute(
                    text("SELECT id, name, scope FROM api_keys "
                         "WHERE key_hash = :h AND revoked_at IS NULL"), {"h": digest}
                )).first()
        except Exception as exc:
            # Postgres is down: a key we know stays valid, so ingest goes on.
            if hit is not None and hit[1] is not None:
                return hit[1]
            raise StoreUnavailable("API keys cannot be checked (Postgres unavailable)") from exc
        key = ApiKey(id=row[0], name=row[1], scope=row[2]) if row else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        # Unknown tokens are remembered briefly only: a key created a moment ago must work.
        self._cache[digest] = (now if key else now - self._ttl_s + 1.0, key)
        return key


# --- Admin pages: the list of keys and revoking one.

@dataclass(frozen=True, slots=True)
class KeyListing:
    """A key as the admin pages show it: never its token (only the hash is stored)."""

    id: int
    name: str
    scope: Scope
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


_LISTING_COLUMNS = "id, name, scope, prefix, created_at, revoked_at"


def _listing(row: Any) -> KeyListing:
    return KeyListing(*tuple(row))


async def list_keys(session: AsyncSession) -> list[KeyListing]:
    """Active keys first, newest first."""
    rows = await session.execute(text(
        f"SELECT {_LISTING_COLUMNS} FROM api_keys ORDER BY revoked_at IS NOT NULL, created_at DESC, id DESC"))
    return [_listing(row) for row in rows]


async def get_key(session: AsyncSession, key_id: int) -> KeyListing | None:
    row = (await session.execute(text(f"SELECT {_LISTING_COLUMNS} FROM api_keys WHERE id = :id"),
                                 {"id": key_id})).first()
    return _listing(row) if row else None


async def revoke_key(session: AsyncSession, key_id: int) -> KeyListing | None:
    """Revoke a key (kept, with when it was revoked); revoking it again changes nothing.

    Processes that checked the key in the last KeyCache TTL keep accepting it until then."""
    row = (await session.execute(text(
        f"UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = :id "
        f"RETURNING {_LISTING_COLUMNS}"), {"id": key_id})).first()
    return _listing(row) if row else None
