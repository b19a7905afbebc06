"""The event explorer: stored events by customer, meter, time range and id, newest first;
and one event's path from receipt to the bill."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Template

from portal.billing.repository import adjustments as adjustment_store
from portal.catalog import service as catalog
from portal.dependencies import Db, Portal, ReadDb
from portal.infrastructure.domain_errors import Invalid
from portal.ingest import repository as ingest_repository
from portal.ingest.repository import corrections as correction_store
from portal.pages.access import STAFF_GUARDS, may_see, viewer, visible_customer
from portal.pages.manager.archived_events import archive_search, archived_event
from portal.pages.manager.common import (
    PAGE_SIZE,
    customer_zones,
    local_instant,
    page_number,
    query_items,
    text_param,
    visible_ids,
)
from portal.pages.manager.event_charges import EventBilling, event_billing, group_dimensions
from portal.pages.manager.event_corrections_view import corrections_shown, event_facts, refusal, state_text
from portal.pages.manager.review import complete_through_now
from portal.pages.web import PageController, page
from portal.usage import repository as usage_repository
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
    corrected: str | None = None  # "cancel" (cancelled) or "amend" (quantity changed)


@dataclass(frozen=True, slots=True)
class Search:
    customer: str | None
    meter: str | None
    event: str | None
    start: datetime | None
    end: datetime | None
    tz: str


async def _search(
    request: Request[Any, Any, Any], db: Db, customer: str | None, meter: str | None, event: str | None
) -> Search:
    """The filters as a search, times read in the chosen customer's zone (else UTC); Invalid
    names the field that is wrong."""
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
    if start and end and end <= start:
        raise Invalid("to: must be after from")
    return Search(customer_id, text_param("meter", meter), text_param("event", event), start, end, tz)


class EventsController(PageController):
    guards = STAFF_GUARDS

    @get("/events")
    async def events(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        read_db: ReadDb,
        portal: Portal,
        customer: FromQuery[str | None] = None,
        meter: FromQuery[str | None] = None,
        event: FromQuery[str | None] = None,
    ) -> Template:
        """Parameters: customer, meter, event (an eventId), from / to (date and time in the
        customer's zone, else UTC), page. Newest first, 50 a page. Who may see the
        customer is read on the primary, the events on the replica when there is one.

        Every time on the page is in one zone, named in the headers: the chosen customer's,
        else UTC (rows of several customers never mix zones in a column)."""
        query = request.query_params
        form = {k: query.get(k, "") for k in ("customer", "meter", "event", "from", "to")}
        meters = await catalog.list_meters(db)
        try:
            search = await _search(request, db, customer, meter, event)
            number = page_number(query.get("page"))
        except Invalid as exc:
            # The search form again with what was typed and what is wrong with it, not an
            # error page that loses the filters.
            return page(
                "manager/events.html",
                request,
                status_code=422,
                error=str(exc),
                rows=[],
                search=Search(None, None, None, None, None, "UTC"),
                form=form,
                meters=meters,
                searched=True,
                archived=None,
            )
        visible, params = visible_ids(request)
        stored_rows = await ingest_repository.events_page(
            read_db,
            visible=visible,
            params=params,
            customer_id=search.customer,
            metric_name=search.meter,
            event_id=search.event,
            start=search.start,
            end=search.end,
            limit=PAGE_SIZE + 1,
            offset=(number - 1) * PAGE_SIZE,
        )
        found_rows = [EventRow(r[0], r[1], r[2], exact(r[3]), *r[4:]) for r in stored_rows]
        more = len(found_rows) > PAGE_SIZE
        found_rows = found_rows[:PAGE_SIZE]
        corrected = await correction_store.correction_kinds(
            read_db, [(r.customer_id, r.event_id) for r in found_rows]
        )
        found_rows = [replace(r, corrected=corrected.get((r.customer_id, r.event_id))) for r in found_rows]
        zones = await customer_zones(read_db, {r.customer_id for r in found_rows})
        base = [(k, v) for k, v in query_items(request) if k != "page" and v]
        # The archive hook (archived_events.py): an id Postgres no longer holds.
        archived = (
            await archive_search(portal.settings, search.customer, search.event) if not found_rows else None
        )
        return page(
            "manager/events.html",
            request,
            rows=found_rows,
            zones=zones,
            search=search,
            form=form,
            meters=meters,
            units={m.metric_name: m.unit for m in meters},
            page_number=number,
            more=more,
            base=base,
            searched=bool(base),
            archived=archived,
            error=None,
        )

    @get("/events/{customer_id:str}/{event_id:str}")
    async def event_path(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[str],
        event_id: FromPath[str],
        db: Db,
        portal: Portal,
    ) -> Template:
        """Received, persisted, counted in an hourly aggregate, billed (event_charges.py:
        only the charge the event feeds, freshly rated, or as issued), or a late-event
        note: each step with its time, or why it is missing."""
        customer = await visible_customer(request, db, customer_id)
        ledger = await ingest_repository.ledger_entry(db, customer_id, event_id)
        stored = await ingest_repository.stored_event(db, customer_id, event_id)
        failed = await ingest_repository.failed_of_event(db, customer_id, event_id)
        conflicts = await ingest_repository.conflicts_of_event(db, customer_id, event_id)
        if ledger is None and stored is None and not failed and not conflicts:
            # The archive hook (archived_events.py): its month may have been archived.
            if (archived := await archived_event(portal.settings, customer_id, event_id)) is not None:
                found = await catalog.get_meter(db, archived.metric_name)
                unit = found.unit if found else ""
                return page(
                    "manager/archived_event.html", request, customer=customer, event=archived, unit=unit
                )
            raise NotFoundException(f"There is no event “{event_id}” of this customer you can see.")
        hourly = late = meter = None
        billing: list[EventBilling] = []
        if stored is not None:
            metric, _, event_time, hour, group_key = stored[:5]
            hourly = await usage_repository.hour_row(
                db, customer_id=customer_id, metric_name=metric, hour=hour, group_key=group_key
            )
            billing = await event_billing(
                db,
                customer_id,
                meter=metric,
                dimensions=group_dimensions(group_key),
                at=event_time,
                now=portal.now(),
                grace=portal.settings.invoice_grace,
                complete_through=await complete_through_now(portal),
            )
            late = await adjustment_store.late_event_trace(db, customer_id, event_id)
            meter = await catalog.get_meter(db, metric)
        facts = await event_facts(db, customer, event_id) if stored is not None else None
        done = request.query_params.get("done")
        return page(
            "manager/event.html",
            request,
            customer=customer,
            event_id=event_id,
            ledger=ledger,
            stored=stored,
            hourly=hourly,
            billing=billing,
            unit=meter.unit if meter else "",
            late=late,
            failed=failed,
            conflicts=conflicts,
            exact=exact,
            group_dimensions=group_dimensions,
            corrections=await corrections_shown(db, facts) if facts else [],
            state=state_text(facts) if facts else None,
            # Why the event can no longer be corrected (None: the actions are offered).
            closed=refusal(facts, now=portal.now(), lateness=portal.settings.accepted_lateness)
            if facts
            else (0, ""),
            done=done if done in ("cancelled", "amended") else None,
        )
