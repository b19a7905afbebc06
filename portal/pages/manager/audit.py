"""The audit log as a page: who changed what, when and why, newest first."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy import text

from portal.accounts.audit import AuditEntry
from portal.db import values
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
        rows = await db.execute(
            text(
                "SELECT id, at, actor, action, object_type, object_id, customer_id, reason, detail, "
                "count(*) OVER () "
                f"FROM audit_log WHERE (customer_id IN {visible} OR (customer_id IS NULL AND :everything)) "
                "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
                "ORDER BY at DESC, id DESC LIMIT :limit OFFSET :offset"
            ),
            {
                **params,
                "everything": everything,
                "c": customer_id,
                "limit": PAGE_SIZE,
                "offset": (number - 1) * PAGE_SIZE,
            },
        )
        entries, total = [], 0
        for *row, count in (values(r) for r in rows):
            entries.append(AuditEntry(*row))
            total = int(count)
        zones = await customer_zones(db, {e.customer_id for e in entries if e.customer_id})
        return page(
            "manager/audit.html",
            request,
            entries=entries,
            zones=zones,
            customer=customer_id or "",
            pager=Pager(number, total, "/portal/audit", query_items(request)),
        )
