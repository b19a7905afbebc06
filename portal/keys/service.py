"""API keys are random tokens shown once; only their SHA-256 is stored.

A key looks like `up_ingest_<32 random url-safe chars>`: the scope in the prefix helps a
person tell keys apart, but authority comes only from the stored row.

Revocation is immediate in every web process, at no cost per request. Each process
caches the keys it resolved, and only while it is subscribed to the Redis channel
`api-keys:revoked:db<n>`; revoking a key commits the row, publishes a notice there, and
waits (up to 2 s) until every subscribed process has dropped its cache and acknowledged.
A process whose subscription is not confirmed, or lost, caches nothing (each request asks
Postgres) until it is subscribed again. Why not a Redis read per request: one GET costs
the web process ~80 µs of CPU (redis-py asyncio), close to the whole cost of a
single-event ingest request (docs/decisions.md).

The SQL is in `portal.keys.repository`; nothing here commits.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.infrastructure.http_errors import StoreUnavailable
from portal.infrastructure.redis_client import database, publish
from portal.keys import repository
from portal.keys.schemas import SCOPES, ApiKey, KeyListing, Scope

log = logging.getLogger(__name__)


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
    key_id = await repository.create_key(
        session, name=name, scope=scope, prefix=token[: len(f"up_{scope}_") + 4], key_hash=hash_key(token)
    )
    return ApiKey(id=key_id, name=name, scope=scope), token


# Redis names of the revocation notices (pub/sub is per server: the db number keeps two
# portals sharing one server apart), and how long an acknowledgement count lives.
REVOCATIONS_CHANNEL = "api-keys:revoked:db{db}"
ACK_KEY = "api-keys:revoked-ack:{nonce}"
ACK_TTL_S = 60
# How long revoking waits for every process to acknowledge.
ACK_WAIT_S = 2.0
# A cached key is looked up again after this long even without a notice: a backstop for a
# notice lost with a connection Redis had not yet noticed was dead.
POSITIVE_TTL_S = 60.0
# Unknown tokens are remembered briefly only: a key created a moment ago must work.
NEGATIVE_TTL_S = 1.0
# The subscription is pinged this often, and given up (and opened again) after this long
# without any answer.
PING_EVERY_S = 5.0
SILENT_LIMIT_S = 15.0
MAX_ENTRIES = 10_000


def revocations_channel(redis: Redis) -> str:
    return REVOCATIONS_CHANNEL.format(db=database(redis))


class KeyCache:
    """Resolves tokens to keys for one web process. Answers are cached only while the
    process listens to revocation notices (see the module doc), so a revoked key is refused
    by the next request in every process; `redis=None` caches nothing."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], redis: Redis | None = None) -> None:
        self._sessions = sessions
        self._redis = redis
        self._cache: dict[bytes, tuple[float, ApiKey | None]] = {}
        # Bumped whenever the cache is dropped: an answer read from Postgres across a bump
        # may predate the revocation that caused it, so it is not cached.
        self._epoch = 0
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def listening(self) -> bool:
        """Whether this process is subscribed to revocation notices (and so caches keys)."""
        return self._listening

    async def resolve(self, token: str) -> ApiKey | None:
        """The active key for `token`, or None (unknown or revoked). Raises StoreUnavailable
        when Postgres cannot be asked and no cached answer stands in for it."""
        self._start_listening()
        digest = hash_key(token)
        hit = self._cache.get(digest) if self._listening else None
        now = time.monotonic()
        if hit is not None and now < hit[0]:
            return hit[1]
        epoch = self._epoch
        try:
            async with self._sessions() as session:
                key = await repository.active_key_by_hash(session, digest)
        except Exception as exc:
            # Postgres is down: a key known (and not revoked since) stays valid, so ingest goes on.
            if hit is not None and hit[1] is not None:
                return hit[1]
            raise StoreUnavailable("API keys cannot be checked (Postgres unavailable)") from exc
        if self._listening and epoch == self._epoch:
            if len(self._cache) >= MAX_ENTRIES:
                self._cache.clear()
            self._cache[digest] = (now + (POSITIVE_TTL_S if key else NEGATIVE_TTL_S), key)
        return key

    def forget(self) -> None:
        """Drop every cached answer (a revocation, or the notices cannot be trusted)."""
        self._cache.clear()
        self._epoch += 1

    def _start_listening(self) -> None:
        # Started by the first request, on the loop that serves requests.
        if self._listener is None and self._redis is not None and not self._closed:
            self._listener = asyncio.get_running_loop().create_task(self._listen(self._redis))

    async def _listen(self, redis: Redis) -> None:
        channel = revocations_channel(redis)
        delay, told = 0.1, False
        while not self._closed:
            pubsub = redis.pubsub()
            try:
                await pubsub.subscribe(channel)
                await self._follow(redis, pubsub)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._listening:  # it was working: a new outage
                    delay, told = 0.1, False
                if not told:  # once per outage, not at every retry
                    log.warning(
                        "API key revocation notices unavailable (%s): keys are checked in "
                        "Postgres on every request until they are back",
                        exc,
                    )
                    told = True
            finally:
                self._listening = False
                self.forget()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), timeout=1.0)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    async def _follow(self, redis: Redis, pubsub: Any) -> None:
        loop = asyncio.get_running_loop()
        heard = pinged = loop.time()
        while True:
            message = await pubsub.get_message(timeout=1.0)
            now = loop.time()
            if message is not None:
                heard = now
                if message["type"] == "subscribe":
                    self.forget()
                    self._listening = True
                elif message["type"] == "message":
                    self.forget()
                    await _acknowledge(redis, message["data"])
            if now - heard > SILENT_LIMIT_S:
                raise ConnectionError(f"no answer on {revocations_channel(redis)} for {SILENT_LIMIT_S:.0f} s")
            if now - pinged >= PING_EVERY_S:
                await pubsub.ping()
                pinged = now

    async def close(self) -> None:
        self._closed = True
        listener, self._listener = self._listener, None
        if listener is not None and not listener.done():
            owner = listener.get_loop()
            if owner is asyncio.get_running_loop():
                listener.cancel()
                # Bounded: a shutdown must never wait on a Redis that does not answer.
                await asyncio.wait({listener}, timeout=2.0)
            elif not owner.is_closed():
                # The listener runs on the loop that served requests, which may not be the
                # one closing the app (a test client runs the lifespan in its own thread,
                # and blocks the requests' loop meanwhile): awaiting it from here would
                # wait forever, so it is only told to stop.
                owner.call_soon_threadsafe(listener.cancel)
        self._listening = False
        self.forget()


async def _acknowledge(redis: Redis, nonce: bytes | str) -> None:
    ack = ACK_KEY.format(nonce=nonce.decode() if isinstance(nonce, bytes) else nonce)
    async with redis.pipeline(transaction=False) as pipe:
        pipe.incr(ack)
        pipe.expire(ack, ACK_TTL_S)
        await pipe.execute()


@dataclass(frozen=True, slots=True)
class Announcement:
    """How many web processes were listening, and how many confirmed in time."""

    processes: int
    confirmed: int

    @property
    def unconfirmed(self) -> int:
        return max(self.processes - self.confirmed, 0)


async def announce_revocation(redis: Redis, *, wait_s: float = ACK_WAIT_S) -> Announcement:
    """Tell every web process to drop its cached keys, and wait until each has (at most
    `wait_s` seconds). Call it after the revocation is committed: a process that looked
    the key up before the commit would otherwise cache it again as valid."""
    nonce = secrets.token_hex(8)
    ack = ACK_KEY.format(nonce=nonce)
    await redis.set(ack, 0, ex=ACK_TTL_S)
    # On a cluster, sent to the node the subscribers are on, so it counts them all.
    processes = await publish(redis, revocations_channel(redis), nonce)
    deadline = time.monotonic() + wait_s
    while True:
        confirmed = int(await redis.get(ack) or 0)
        if confirmed >= processes or time.monotonic() >= deadline:
            return Announcement(processes=processes, confirmed=confirmed)
        await asyncio.sleep(0.005)


# --- Admin pages: the list of keys and revoking one.


async def list_keys(session: AsyncSession) -> list[KeyListing]:
    """Active keys first, newest first."""
    return await repository.keys_listing(session)


async def get_key(session: AsyncSession, key_id: int) -> KeyListing | None:
    return await repository.key_by_id(session, key_id)


async def revoke_key(session: AsyncSession, key_id: int) -> KeyListing | None:
    """Revoke a key (kept, with when it was revoked); revoking it again changes nothing.

    Web processes may still hold it in their caches: after the commit, the caller sends
    `announce_revocation`, which returns once every process has dropped them."""
    return await repository.revoke_key(session, key_id)
