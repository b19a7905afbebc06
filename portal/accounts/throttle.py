"""Sign-in throttling: failed attempts counted in Redis per address and per client.

Five failures for one email address within 15 minutes lock that address out for the rest of
the window (whoever tries); 30 from one client IP address lock that client out. A success
clears the address's count. Counting failures only means a person who types their password
right is never slowed down by someone else's guessing from another address... except on
the address being guessed, which is the point.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

WINDOW_S = 15 * 60
MAX_PER_EMAIL = 5
MAX_PER_CLIENT = 30


@dataclass(frozen=True, slots=True)
class Lockout:
    retry_after_s: int


def _keys(email: str, client: str) -> tuple[str, str]:
    return f"login-fail:email:{email.strip().lower()}", f"login-fail:client:{client}"


async def locked_out(redis: Redis, email: str, client: str) -> Lockout | None:
    email_key, client_key = _keys(email, client)
    by_email, by_client = await redis.mget(email_key, client_key)
    for key, count, limit in ((email_key, by_email, MAX_PER_EMAIL), (client_key, by_client, MAX_PER_CLIENT)):
        if count is not None and int(count) >= limit:
            ttl = await redis.ttl(key)
            return Lockout(retry_after_s=max(int(ttl), 1))
    return None


async def record_failure(redis: Redis, email: str, client: str) -> None:
    async with redis.pipeline(transaction=True) as pipe:
        for key in _keys(email, client):
            pipe.incr(key)
            pipe.expire(key, WINDOW_S, nx=True)
        await pipe.execute()


async def record_success(redis: Redis, email: str) -> None:
    await redis.delete(_keys(email, "")[0])
