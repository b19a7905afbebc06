"""A new webhook channel's signing secret, kept for the one page that shows it.

Adding a channel answers with a redirect (so a reload does not add it twice); the secret,
which is stored encrypted and never shown again, waits for that page in Redis under
`alerts-secret:<session id>:<channel id>` (STRING: the secret encrypted with the portal's
key, at most `SECRET_TTL`), and is deleted as it is read: shown once, to the session that
added the channel.
"""

from __future__ import annotations

from datetime import timedelta

from redis.asyncio import Redis

from alerts.secrets import decrypt, encrypt

SECRET_TTL = timedelta(minutes=10)


def secret_key_name(session_id: str, channel_id: int) -> str:
    return f"alerts-secret:{session_id}:{channel_id}"


async def keep_secret(
    redis: Redis, session_id: str, channel_id: int, secret: str, *, secret_key: str
) -> None:
    await redis.set(secret_key_name(session_id, channel_id), encrypt(secret_key, secret), ex=SECRET_TTL)


async def take_secret(redis: Redis, session_id: str, channel_id: int, *, secret_key: str) -> str | None:
    """The secret, once (None: already shown, expired, or kept under another key)."""
    token = await redis.getdel(secret_key_name(session_id, channel_id))
    if token is None:
        return None
    try:
        return decrypt(secret_key, token if isinstance(token, bytes) else str(token).encode())
    except ValueError:
        return None
