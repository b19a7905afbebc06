"""The event explorer: stored events by customer, meter, time range and id, newest first;
and one event's path from receipt to the bill."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Template
from sqlalchemy import text

from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.catalog import service as catalog
from portal.dependencies import Db
from portal.infrastructure.db import values
from portal.infrastructure.domain_errors import Invalid
from portal.pages.access import STAFF_GUARDS, may_see, viewer, visible_customer
from portal.pages.manager.common import (
    PAGE_SIZE,
    customer_zones,
    local_instant,
    page_number,
    query_items,
    text_param,
    visible_ids,
)
from portal.pages.web import PageController, page
from portal.usage.combine import exact


@dataclass(frozen=True, slots=True)
class EventRow:
    customer_id: str
    event_id: str
    metric_name: str
    quantity: str
    event_time: datetime
    received_at: datetime
    persisted_at: datetime
    dimensions: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Search:
    customer: str | None
    meter: str | None
    event: str | None
    start: datetime | None
    end: datetime | None
    tz: str


class EventsController(PageController):
    guards = STAFF_GUARDS

    @get("/events")
    async def events(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        customer: FromQuery[str | None] = None,
        meter: FromQuery[str | None] = None,
        event: FromQuery[str | None] = None,
    ) -> Template:
        """Parameters: customer, meter, event (an eventId), from / to (date and time in the
        customer's zone, else UTC), page. Newest first, 50 a page."""
        query = request.query_params
        customer_id = text_param("customer", customer)
        tz = "UTC"
        if customer_id is not None:
            found = await catalog.get_customer(db, customer_id)
            if found is None or not await may_see(db, viewer(request), customer_id):
                raise Invalid(f"customer: there is no customer “{customer_id}” you can see")
            tz = found.timezone
        start = local_instant("from", query.get("from"), tz)
        end = local_instant("to", query.get("to"), tz)
        search = Search(customer_id, text_param("meter", meter), text_param("event", event), start, end, tz)
        if search.start and search.end and search.end <= search.start:
            raise Invalid("to: must be after from")
        number = page_number(query.get("page"))
        visible, params = visible_ids(request)
        rows = await db.execute(
            text(
                "SELECT customer_id, event_id, metric_name, quantity, event_time, received_at, persisted_at, "
                f"dimensions FROM usage_events WHERE customer_id IN {visible} "
                "AND (CAST(:c AS text) IS NULL OR customer_id = :c) "
                "AND (CAST(:m AS text) IS NULL OR metric_name = :m) "
                "AND (CAST(:e AS text) IS NULL OR event_id = :e) "
                "AND (CAST(:s AS timestamptz) IS NULL OR event_time >= :s) "
                "AND (CAST(:t AS timestamptz) IS NULL OR event_time < :t) "
                "ORDER BY event_time DESC, customer_id, event_id LIMIT :limit OFFSET :offset"
            ),
            {
                **params,
                "c": search.customer,
                "m": search.meter,
                "e": search.event,
                "s": search.start,
                "t": search.end,
                "limit": PAGE_SIZE + 1,
                "offset": (number - 1) * PAGE_SIZE,
            },
        )
        found_rows = [EventRow(r[0], r[1], r[2], exact(r[3]), *r[4:]) for r in (values(x) for x in rows)]
        more = len(found_rows) > PAGE_SIZE
        found_rows = found_rows[:PAGE_SIZE]
        zones = await customer_zones(db, {r.customer_id for r in found_rows})
        base = [(k, v) for k, v in query_items(request) if k != "page" and v]
        return page(
            "manager/events.html",
            request,
            rows=found_rows,
            zones=zones,
            search=search,
            form={k: query.get(k, "") for k in ("customer", "meter", "event", "from", "to")},
            meters=await catalog.list_meters(db),
            page_number=number,
            more=more,
            base=base,
            searched=bool(base),
        )

    @get("/events/{customer_id:str}/{event_id:str}")
    async def event_path(
        self, request: Request[Any, Any, Any], customer_id: FromPath[str], event_id: FromPath[str], db: Db
    ) -> Template:
        """Received, persisted, counted in an hourly aggregate, billed on an invoice line (or
        a late-event note): each step with its time, or why it is missing."""
        customer = await visible_customer(request, db, customer_id)
        key = {"c": customer_id, "e": event_id}
        ledger = (
            await db.execute(
                text(
                    "SELECT event_time, received_at, persisted_at FROM event_ledger WHERE customer_id = :c "
                    "AND event_id = :e"
                ),
                key,
            )
        ).first()
        stored = (
            await db.execute(
                text(
                    "SELECT metric_name, quantity, event_time, hour, group_key, dimensions, metadata, "
                    "received_at, "
                    "persisted_at, message_id FROM usage_events WHERE customer_id = :c AND event_id = :e "
                    "ORDER BY persisted_at LIMIT 1"
                ),
                key,
            )
        ).first()
        failed = (
            await db.execute(
                text(
                    "SELECT id, reason, failed_at, status, resolved_at FROM failed_events WHERE customer_id "
                    "= :c "
                    "AND event_id = :e ORDER BY id"
                ),
                key,
            )
        ).all()
        conflicts = (
            await db.execute(
                text(
                    "SELECT detected_at, detected_by, event FROM event_conflicts WHERE customer_id = :c "
                    "AND event_id = :e ORDER BY id"
                ),
                key,
            )
        ).all()
        if ledger is None and stored is None and not failed and not conflicts:
            raise NotFoundException(f"There is no event “{event_id}” of this customer you can see.")
        hourly = invoices = lines = late = None
        if stored is not None:
            metric, _, event_time, hour, group_key = values(stored)[:5]
            hourly = (
                await db.execute(
                    text(
                        "SELECT hour, group_key, value, event_count, updated_at FROM hourly_usage "
                        "WHERE customer_id = :c AND metric_name = :m AND hour = :h AND group_key = :g"
                    ),
                    {"c": customer_id, "m": metric, "h": hour, "g": group_key},
                )
            ).first()
            invoices = await invoice_store.invoices_covering(db, customer_id, event_time)
            lines = await invoice_store.meter_lines_at(db, [i[0] for i in invoices], metric, event_time)
            late = await adjustment_store.late_event_trace(db, customer_id, event_id)
        return page(
            "manager/event.html",
            request,
            customer=customer,
            event_id=event_id,
            ledger=ledger,
            stored=stored,
            hourly=hourly,
            invoices=invoices or [],
            lines=lines or [],
            late=late,
            failed=failed,
            conflicts=conflicts,
            exact=exact,
        )
