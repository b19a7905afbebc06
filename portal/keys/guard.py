"""API key authentication: `Authorization: Bearer <key>`, with a scope per route.

Routes declare `opt={"scope": "ingest" | "admin"}`; an admin key may also ingest.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from portal.infrastructure.http_errors import ServiceUnavailable, StoreUnavailable
from portal.keys.schemas import ApiKey
from portal.keys.service import KeyCache

_ALLOWED = {"ingest": {"ingest", "admin"}, "admin": {"admin"}}


def _authorization(raw_headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The first Authorization header's value ("" without one), read from the ASGI scope:
    building Litestar's case-insensitive Headers for it cost more than the key lookup."""
    for name, value in raw_headers:
        if len(name) == 13 and name.lower() == b"authorization":
            return value.decode("latin-1")
    return ""


def bearer_token(header: str) -> str:
    """The key in an Authorization header's value ("" unless it is `Bearer <key>`)."""
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def allows(key: ApiKey, needed: str) -> bool:
    """Whether `key` may call a route that needs scope `needed`."""
    return key.scope in _ALLOWED[needed]


async def api_key_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    needed = handler.opt.get("scope")
    if needed is None:
        return
    token = bearer_token(_authorization(connection.scope["headers"]))
    if not token:
        raise NotAuthorizedException("missing API key: send 'Authorization: Bearer <key>'")
    keys: KeyCache = connection.app.state.portal.keys  # the web process's (portal/state.py)
    try:
        key: ApiKey | None = await keys.resolve(token)
    except StoreUnavailable as exc:
        raise ServiceUnavailable(f"{exc}; retry later") from exc
    if key is None:
        raise NotAuthorizedException("unknown or revoked API key")
    if not allows(key, needed):
        raise PermissionDeniedException(f"this key has scope '{key.scope}'; the route needs '{needed}'")
    connection.scope["state"]["api_key"] = key


def key_actor(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    """Who acted, for the audit log and the records that name an actor: `key:<name>` of the
    API key the guard let through ("unknown" on a route without one)."""
    key: ApiKey | None = connection.scope["state"].get("api_key")
    return f"key:{key.name}" if key is not None else "unknown"
