"""Portal sign-in: server-side sessions in Redis and the login form's CSRF token.

A session is opened by presenting an admin API key once. The browser then holds only a
random session id in the `portal_session` cookie (HttpOnly, SameSite=Strict); Redis holds
`sess:<id>` -> the key's id, its scope and a CSRF token for the session's own forms, for
12 hours from sign-in (not extended by use). Signing out deletes the Redis key; revoking
the API key ends its sessions on their next request.

The login form, which has no session yet, is protected by a signed double-submit token:
the same random value in the `portal_csrf` cookie and in a hidden field, with an HMAC
(settings.secret_key) so that a cookie planted by a sibling subdomain is refused too.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta

from litestar.datastructures import Cookie
from redis.asyncio import Redis

from portal.keys.service import ApiKey
from portal.settings import Settings

SESSION_COOKIE = "portal_session"
CSRF_COOKIE = "portal_csrf"
SESSION_TTL = timedelta(hours=12)
SESSION_PREFIX = "sess:"
# secrets.token_urlsafe(32): 43 url-safe characters. Anything else is not looked up.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CSRF_CONTEXT = b"portal-login-csrf:"


@dataclass(frozen=True, slots=True)
class PageSession:
    id: str
    key_id: int
    scope: str
    csrf: str


def session_key(session_id: str) -> str:
    return f"{SESSION_PREFIX}{session_id}"


async def open_session(redis: Redis, key: ApiKey) -> PageSession:
    """Store a new session for `key`; the caller sets its id as the cookie."""
    session = PageSession(id=secrets.token_urlsafe(32), key_id=key.id, scope=key.scope,
                          csrf=secrets.token_urlsafe(32))
    record = json.dumps({"key_id": session.key_id, "scope": session.scope, "csrf": session.csrf})
    await redis.set(session_key(session.id), record, ex=SESSION_TTL, nx=True)
    return session


async def load_session(redis: Redis, session_id: str | None) -> PageSession | None:
    """The live session with this id, or None (absent, malformed, expired or unreadable)."""
    if not session_id or not _SESSION_ID.match(session_id):
        return None
    raw = await redis.get(session_key(session_id))
    if raw is None:
        return None
    try:
        record = json.loads(raw)
        return PageSession(id=session_id, key_id=int(record["key_id"]), scope=str(record["scope"]),
                           csrf=str(record["csrf"]))
    except (ValueError, KeyError, TypeError):
        return None


async def close_session(redis: Redis, session_id: str) -> None:
    if _SESSION_ID.match(session_id):
        await redis.delete(session_key(session_id))


def session_cookie(session_id: str, settings: Settings) -> Cookie:
    return Cookie(key=SESSION_COOKIE, value=session_id, path="/", httponly=True, samesite="strict",
                  secure=settings.environment != "development")


def _csrf_signature(value: str, secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_CONTEXT + value.encode(), hashlib.sha256).hexdigest()


def new_csrf_token(secret: str) -> str:
    value = secrets.token_urlsafe(32)
    return f"{value}.{_csrf_signature(value, secret)}"


def csrf_token_valid(token: str | None, secret: str) -> bool:
    """Whether `token` was minted by `new_csrf_token` with this secret."""
    if not token:
        return False
    value, _, signature = token.partition(".")
    return bool(value) and same_token(_csrf_signature(value, secret), signature)


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time equality of a non-empty expected token and a submitted one."""
    # Bytes, not str: compare_digest refuses non-ASCII str, which a forged field may hold.
    return bool(expected) and given is not None and hmac.compare_digest(
        expected.encode(), given.encode("utf-8", "surrogatepass"))


def csrf_matches(cookie: str | None, field: str | None, secret: str) -> bool:
    """The double-submit check: the cookie and the form field carry the same valid token."""
    return cookie is not None and same_token(cookie, field) and csrf_token_valid(cookie, secret)


def csrf_cookie(token: str, settings: Settings) -> Cookie:
    return Cookie(key=CSRF_COOKIE, value=token, path="/portal", httponly=True, samesite="strict",
                  secure=settings.environment != "development")
