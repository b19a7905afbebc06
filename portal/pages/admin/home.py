"""The admin index: each section with how many things it holds."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.response import Template

from portal.accounts import repository as accounts
from portal.billing.repository import plans as plan_store
from portal.catalog import repository as catalog
from portal.dependencies import Db
from portal.keys import repository as keys
from portal.pages.admin.common import AdminController
from portal.pages.web import page


class AdminHomeController(AdminController):
    @get("/")
    async def index(self, request: Request[Any, Any, Any], db: Db) -> Template:
        customers, meters = await catalog.catalog_counts(db)
        plans = await plan_store.plan_count(db)
        users_active, users_invited, users_disabled = await accounts.user_counts(db)
        keys_active, keys_revoked = await keys.key_counts(db)
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
