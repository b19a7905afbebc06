"""The audit log as a page: who changed what, when and why, newest first.

Every time is in UTC, named in the column's header: the log spans customers in many zones,
and one column must read in one zone (docs/decisions.md, "staff"). Objects are named as
people know them (INV-000001, "Draft, Sep 2026", the customer's name, the key's name),
never by their row id."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from litestar import Request, get
from litestar.params import FromQuery
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import repository as accounts
from portal.accounts.schemas import AuditEntry
from portal.billing.invoices import load_invoice
from portal.dependencies import Db
from portal.infrastructure.domain_errors import NotFound
from portal.pages.access import STAFF_GUARDS, viewer
from portal.pages.formatting import invoice_label
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

# The one zone of the log's "When" column.
AUDIT_TZ = "UTC"


@dataclass(frozen=True, slots=True)
class ObjectName:
    """How an entry's object reads on the page, and where it links (None: nowhere)."""

    text: str
    href: str | None = None


def _numeric(value: str) -> int | None:
    return int(value) if value.isascii() and value.isdigit() and len(value) < 19 else None


async def object_names(
    db: AsyncSession, entries: list[AuditEntry], zones: dict[str, tuple[str, str]], *, admin: bool
) -> dict[int, ObjectName]:
    """Entry id → its object's name: invoices by number (a draft by its month), customers by
    name, keys, users and meters by what the entry recorded of them."""
    names: dict[int, ObjectName] = {}
    invoice_labels: dict[str, str] = {}
    for e in entries:
        kind, ident, detail = e.object_type, e.object_id, e.detail
        if kind == "invoice":
            if ident not in invoice_labels:
                number = _numeric(ident)
                try:
                    row = await load_invoice(db, number) if number is not None else None
                except NotFound:
                    row = None
                tz = zones.get(row.customer_id, ("", "UTC"))[1] if row else "UTC"
                invoice_labels[ident] = (
                    invoice_label(row.number, row.period_start, tz) if row else "an invoice no longer stored"
                )
            names[e.id] = ObjectName(f"Invoice {invoice_labels[ident]}", f"/portal/invoices/{ident}")
        elif kind == "customer":
            name = zones.get(ident, (detail.get("name") or ident, ""))[0]
            names[e.id] = ObjectName(f"Customer {name}", f"/portal/customers/{quote(ident, safe='')}")
        elif kind == "meter":
            names[e.id] = ObjectName(f"Meter {ident}", "/portal/admin/meters" if admin else None)
        elif kind == "api_key":
            names[e.id] = ObjectName(
                f"API key “{detail.get('name', '')}”", "/portal/admin/keys" if admin else None
            )
        elif kind == "user":
            who = detail.get("email") or "a user"
            names[e.id] = ObjectName(f"User {who}", f"/portal/admin/users/{ident}" if admin else None)
        elif kind == "failed_event":
            event_id = str(detail.get("event_id") or "")
            href = (
                f"/portal/events/{quote(e.customer_id, safe='')}/{quote(event_id, safe='')}"
                if e.customer_id and event_id
                else None
            )
            names[e.id] = ObjectName(f"Failed event {event_id}".strip(), href)
        elif kind == "catalog":
            names[e.id] = ObjectName(f"Catalog file {ident}", None)
        else:
            names[e.id] = ObjectName(kind.replace("_", " ").capitalize())
    return names


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
        about = {e.customer_id for e in entries if e.customer_id}
        about |= {e.object_id for e in entries if e.object_type == "customer"}
        zones = await customer_zones(db, about)
        return page(
            "manager/audit.html",
            request,
            entries=entries,
            zones=zones,
            objects=await object_names(db, entries, zones, admin=session.role == "admin"),
            tz=AUDIT_TZ,
            customer=customer_id or "",
            pager=Pager(number, total, "/portal/audit", query_items(request)),
        )
