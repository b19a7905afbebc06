"""The admin index: each section with how many things it holds."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template
from sqlalchemy import text

from portal.accounts import repository as accounts
from portal.catalog import repository as catalog
from portal.dependencies import Db
from portal.pages.admin.common import AdminController
from portal.pages.web import page


class AdminHomeController(AdminController):
    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: Db) -> Template:
        customers, meters = await catalog.catalog_counts(db)
        # `plans` belongs to billing, which has no repository yet.
        plans: int = (await db.execute(text("SELECT count(*) FROM plans"))).scalar_one()
        users_active, users_invited, users_disabled = await accounts.user_counts(db)
        keys_row = (
            await db.execute(
                text(
                    "SELECT count(*) FILTER (WHERE revoked_at IS NULL), "
                    "count(*) FILTER (WHERE revoked_at IS NOT NULL) FROM api_keys"
                )
            )
        ).one()
        keys_active, keys_revoked = keys_row
        counts = {
            "customers": customers,
            "meters": meters,
            "plans": plans,
            "users_active": users_active,
            "users_invited": users_invited,
            "users_disabled": users_disabled,
            "keys_active": keys_active,
            "keys_revoked": keys_revoked,
        }
        return page("admin/index.html", request, counts=counts)
