"""The audit log as a page: who changed what, when and why, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template

from portal.accounts import repository as accounts
from portal.dependencies import Db
from portal.pages.access import STAFF_GUARDS, viewer
from portal.pages.manager.common import (
    PAGE_SIZE,
    Pager,
    customer_zones,
    page_number,
    query_items,
    text_param,
    visible_ids,
)
from portal.pages.web import PageController, page


class AuditController(PageController):
    guards = STAFF_GUARDS

    @get("/audit")
    async def audit_log(
        self, request: Request[Any, Any, Any], db: Db, customer: FromQuery[str | None] = None
    ) -> Template:
        """Parameters: customer (an id), page. Entries about no customer (users, keys) are
        shown to those who see every customer."""
        customer_id = text_param("customer", customer)
        number = page_number(request.query_params.get("page"))
        visible, params = visible_ids(request)
        session = viewer(request)
        everything = session.role == "admin" or session.all_customers
        entries, total = await accounts.audit_page(
            db,
            visible=visible,
            params=params,
            about_no_customer=everything,
            customer_id=customer_id,
            limit=PAGE_SIZE,
            offset=(number - 1) * PAGE_SIZE,
        )
        zones = await customer_zones(db, {e.customer_id for e in entries if e.customer_id})
        return page(
            "manager/audit.html",
            request,
            entries=entries,
            zones=zones,
            customer=customer_id or "",
            pager=Pager(number, total, "/portal/audit", query_items(request)),
        )
