"""Portal sign-in: server-side sessions in Redis and the login form's CSRF token.

Signing in with an email and password opens a session: the browser holds only a random
id in the `portal_session` cookie (HttpOnly, SameSite=Strict, Secure outside development);
Redis holds `sess:<id>` -> the user's id, role, customer binding and a CSRF token for the
session's own forms and htmx requests, for 12 hours from sign-in (not extended by use).
`user-sess:<user id>` lists a user's sessions, so that disabling a user or changing their
password ends every one of them at once. Signing in always mints a new id (rotation): an
id known before signing in is never promoted.

The session records are kept through Litestar's `RedisStore` (namespace `sess`); the
cookie, the id's rotation and format, the absolute lifetime and the per-user index are
ours, since Litestar's session middleware would change them (docs/decisions.md, "Sessions
and CSRF: framework pieces and the exceptions").

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
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis

from portal.accounts.schemas import Role, User
from portal.infrastructure.settings import Settings

SESSION_COOKIE = "portal_session"
CSRF_COOKIE = "portal_csrf"
SESSION_TTL = timedelta(hours=12)
SESSION_NAMESPACE = "sess"
USER_SESSIONS_PREFIX = "user-sess:"
# secrets.token_urlsafe(32): 43 url-safe characters. Anything else is not looked up.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CSRF_CONTEXT = b"portal-login-csrf:"


@dataclass(frozen=True, slots=True)
class PageSession:
    """A signed-in person, as every page and partial sees them."""

    id: str
    user_id: int
    email: str
    name: str
    role: Role
    customer_id: str | None
    all_customers: bool
    csrf: str

    @property
    def is_staff(self) -> bool:
        return self.role != "customer"

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def sees_all_customers(self) -> bool:
        """An admin, or an account manager of every customer: the platform-wide pages."""
        return self.role == "admin" or (self.role == "account_manager" and self.all_customers)

    @property
    def home(self) -> str:
        """Where signing in lands: a customer user's own page, everyone else's customer list."""
        if self.customer_id is not None:
            return f"/portal/customers/{self.customer_id}"
        return "/portal/customers"


def session_key(session_id: str) -> str:
    """The Redis key of a session record (what `RedisStore` makes of the id)."""
    return f"{SESSION_NAMESPACE}:{session_id}"


def session_store(redis: Redis) -> RedisStore:
    """The session records, `sess:<id>`. Read without `renew_for`: use never extends them."""
    return RedisStore(redis, namespace=SESSION_NAMESPACE)


async def open_session(redis: Redis, user: User) -> PageSession:
    """Store a new session for `user`; the caller sets its id as the cookie."""
    session = PageSession(
        id=secrets.token_urlsafe(32),
        user_id=user.id,
        email=user.email,
        name=user.name,
        role=user.role,
        customer_id=user.customer_id,
        all_customers=user.all_customers,
        csrf=secrets.token_urlsafe(32),
    )
    record = json.dumps(
        {
            "user_id": user.id,
            "email": user.email,
            "name": user.name,
            "role": user.role,
            "customer_id": user.customer_id,
            "all_customers": user.all_customers,
            "csrf": session.csrf,
        }
    )
    index = f"{USER_SESSIONS_PREFIX}{user.id}"
    # The index first: a record that exists is always listed, so ending a user's sessions
    # cannot miss one (an id listed without its record is harmless).
    async with redis.pipeline(transaction=True) as pipe:
        pipe.sadd(index, session.id)
        pipe.expire(index, SESSION_TTL)
        await pipe.execute()
    await session_store(redis).set(session.id, record, expires_in=SESSION_TTL)
    return session


async def load_session(redis: Redis, session_id: str | None) -> PageSession | None:
    """The live session with this id, or None (absent, malformed, expired or unreadable)."""
    if not session_id or not _SESSION_ID.match(session_id):
        return None
    raw = await session_store(redis).get(session_id)
    if raw is None:
        return None
    try:
        r = json.loads(raw)
        return PageSession(
            id=session_id,
            user_id=int(r["user_id"]),
            email=str(r["email"]),
            name=str(r["name"]),
            role=r["role"],
            customer_id=r["customer_id"],
            all_customers=bool(r["all_customers"]),
            csrf=str(r["csrf"]),
        )
    except (ValueError, KeyError, TypeError):
        return None


async def close_session(redis: Redis, session_id: str) -> None:
    if _SESSION_ID.match(session_id):
        await session_store(redis).delete(session_id)


async def close_user_sessions(redis: Redis, user_id: int) -> None:
    """End every session of a user (disabled, password changed, role changed)."""
    index = f"{USER_SESSIONS_PREFIX}{user_id}"
    ids = [i.decode() if isinstance(i, bytes) else str(i) for i in await redis.smembers(index)]
    # One DEL for all of them (the store deletes one key per call); `session_key` is the
    # store's own key for an id.
    await redis.delete(index, *(session_key(i) for i in ids if _SESSION_ID.match(i)))


def session_cookie(session_id: str, settings: Settings) -> Cookie:
    return Cookie(
        key=SESSION_COOKIE,
        value=session_id,
        path="/",
        httponly=True,
        samesite="strict",
        secure=settings.environment != "development",
    )


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
    return (
        bool(expected)
        and given is not None
        and hmac.compare_digest(expected.encode(), given.encode("utf-8", "surrogatepass"))
    )


def csrf_matches(cookie: str | None, field: str | None, secret: str) -> bool:
    """The double-submit check: the cookie and the form field carry the same valid token."""
    return cookie is not None and same_token(cookie, field) and csrf_token_valid(cookie, secret)


def csrf_cookie(token: str, settings: Settings) -> Cookie:
    return Cookie(
        key=CSRF_COOKIE,
        value=token,
        path="/portal",
        httponly=True,
        samesite="strict",
        secure=settings.environment != "development",
    )
