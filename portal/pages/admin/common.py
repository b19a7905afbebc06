"""What the admin pages share: the controller base (admins only, under /portal/admin) and
how they write the audit log."""

from __future__ import annotations

from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.pages.access import ADMIN_GUARDS, viewer
from portal.pages.web import PageController

ADMIN_PATH = "/portal/admin"
# Admin pages show instants in UTC (they are about no one customer); the zone is named.
ADMIN_TZ = "UTC"


def numeric_id(value: str) -> int | None:
    """A bigserial id from a path segment; None for anything that is not one (answered 404)."""
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


class AdminController(PageController):
    path = ADMIN_PATH
    guards = ADMIN_GUARDS


async def record(
    db: AsyncSession,
    request: Request[Any, Any, Any],
    *,
    action: str,
    object_type: str,
    object_id: str,
    customer_id: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    """An audit entry by the signed-in admin, in `db`'s transaction."""
    who = viewer(request)
    await audit.record(
        db,
        user_id=who.user_id,
        actor=who.email,
        action=action,
        object_type=object_type,
        object_id=object_id,
        customer_id=customer_id,
        detail=detail,
    )
