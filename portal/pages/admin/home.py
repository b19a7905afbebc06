"""The admin index: each section with how many things it holds."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template
from sqlalchemy import text

from portal.db import values
from portal.dependencies import Db
from portal.pages.admin.common import AdminController
from portal.pages.web import page

_COUNTS = text(
    "SELECT (SELECT count(*) FROM customers), (SELECT count(*) FROM meters), (SELECT count(*) FROM plans), "
    "(SELECT count(*) FROM users WHERE disabled_at IS NULL AND password_hash IS NOT NULL), "
    "(SELECT count(*) FROM users WHERE disabled_at IS NULL AND password_hash IS NULL), "
    "(SELECT count(*) FROM users WHERE disabled_at IS NOT NULL), "
    "(SELECT count(*) FROM api_keys WHERE revoked_at IS NULL), "
    "(SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL)"
)


class AdminHomeController(AdminController):
    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: Db) -> Template:
        row = values((await db.execute(_COUNTS)).one())
        names = (
            "customers",
            "meters",
            "plans",
            "users_active",
            "users_invited",
            "users_disabled",
            "keys_active",
            "keys_revoked",
        )
        return page("admin/index.html", request, counts=dict(zip(names, row, strict=True)))
