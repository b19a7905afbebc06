"""Failed events: what the workers could not store, replayed or discarded (with a reason)
by an account manager; both written to the audit log in the same transaction.

A discard needs no column of its own: `failed_events.status` already has 'discarded', and
the reason lives in the audit entry (shown next to the row)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.dependencies import Db, Portal
from portal.infrastructure.db import values
from portal.operations.operator_tasks import replay_failed_events
from portal.pages.access import STAFF_GUARDS, check_owner, viewer
from portal.pages.manager.common import (
    Pager,
    choice,
    customer_zones,
    page_number,
    query_items,
    text_param,
    visible_ids,
)
from portal.pages.web import PageController, page

STATUSES = ("failed", "replayed", "discarded")
DONE = {
    "replayed": "Event queued again; it shows under Events once stored.",
    "discarded": "Event discarded; the reason is in the audit log.",
}


@dataclass(frozen=True, slots=True)
class FailedRow:
    id: int
    customer_id: str
    event_id: str
    reason: str
    received_at: datetime
    failed_at: datetime
    status: str
    resolved_at: datetime | None
    metric_name: str
    quantity: str
    timestamp_ms: int | None
    dimensions: int
    discard_reason: str | None


@dataclass(frozen=True, slots=True)
class FormState:
    failed_id: int
    message: str
    reason: str


async def _owned(request: Request[Any, Any, Any], db: AsyncSession, failed_id: int) -> tuple[str, str]:
    """(customer id, event id) of a failed event the viewer may see; 404 alike otherwise."""
    row = (
        await db.execute(
            text("SELECT customer_id, event_id FROM failed_events WHERE id = :id"), {"id": failed_id}
        )
    ).first()
    await check_owner(request, db, None if row is None else str(values(row)[0]), "failed event")
    assert row is not None
    return str(values(row)[0]), str(values(row)[1])


async def failed_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    *,
    status_code: int = 200,
    notice: str | None = None,
    form: FormState | None = None,
) -> Template:
    query = request.query_params
    status = choice("status", query.get("status"), STATUSES, "failed")
    customer = text_param("customer", query.get("customer"))
    number = page_number(query.get("page"))
    visible, params = visible_ids(request)
    rows = await db.execute(
        text(
            "SELECT f.id, f.customer_id, f.event_id, f.reason, f.received_at, f.failed_at, f.status, "
            "f.resolved_at, "
            "COALESCE(f.event->>'metricName', ''), COALESCE(f.event->>'quantity', ''), "
            "(f.event->>'timestamp')::bigint, "
            "(SELECT count(*) FROM jsonb_object_keys(COALESCE(f.event->'dimensions', '{}'::jsonb))), "
            "(SELECT a.reason FROM audit_log a WHERE a.object_type = 'failed_event' AND a.object_id = "
            "f.id::text "
            " AND a.action = 'failed_event.discard' ORDER BY a.at DESC LIMIT 1), count(*) OVER () "
            f"FROM failed_events f WHERE f.customer_id IN {visible} AND f.status = :s "
            "AND (CAST(:c AS text) IS NULL OR f.customer_id = :c) "
            "ORDER BY f.failed_at DESC, f.id DESC LIMIT 50 OFFSET :offset"
        ),
        {**params, "s": status, "c": customer, "offset": (number - 1) * 50},
    )
    found, total = [], 0
    for *row, count in (values(r) for r in rows):
        found.append(FailedRow(*row))
        total = int(count)
    pager = Pager(number, total, "/portal/failed-events", query_items(request))
    zones = await customer_zones(db, {r.customer_id for r in found})
    return page(
        "manager/failed.html",
        request,
        status_code=status_code,
        rows=found,
        zones=zones,
        pager=pager,
        status=status,
        statuses=STATUSES,
        customer=customer or "",
        notice=notice,
        form=form,
    )


class FailedEventsController(PageController):
    guards = STAFF_GUARDS

    @get("/failed-events")
    async def failed_events(
        self, request: Request[Any, Any, Any], db: Db, done: FromQuery[str | None] = None
    ) -> Template:
        """Parameters: status (failed, replayed, discarded), customer, page."""
        return await failed_page(request, db, notice=DONE.get(done or ""))

    @post("/failed-events/{failed_id:int}/replay")
    async def replay(
        self, request: Request[Any, Any, Any], failed_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[Any]:
        customer_id, event_id = await _owned(request, db, failed_id)
        session = viewer(request)
        async with db.begin_nested():
            replayed = await replay_failed_events(db, portal.redis, ids=[failed_id])
            if replayed:
                await audit.record(
                    db,
                    user_id=session.user_id,
                    actor=session.email,
                    action="failed_event.replay",
                    object_type="failed_event",
                    object_id=str(failed_id),
                    customer_id=customer_id,
                    detail={"event_id": event_id},
                )
        if not replayed:
            return await failed_page(
                request,
                db,
                status_code=409,
                form=FormState(failed_id, "This event was already replayed or discarded.", ""),
            )
        return Redirect("/portal/failed-events?done=replayed", status_code=303)

    @post("/failed-events/{failed_id:int}/discard")
    async def discard(
        self, request: Request[Any, Any, Any], failed_id: FromPath[int], db: Db
    ) -> Response[Any]:
        """A reason is required (422 with the form again without one)."""
        customer_id, event_id = await _owned(request, db, failed_id)
        session = viewer(request)
        form = await request.form()
        raw = form.get("reason")
        reason = raw.strip() if isinstance(raw, str) else ""
        if not reason:
            return await failed_page(
                request,
                db,
                status_code=422,
                form=FormState(failed_id, "Reason: say why this event is discarded.", ""),
            )
        if len(reason) > 500:
            return await failed_page(
                request,
                db,
                status_code=422,
                form=FormState(failed_id, "Reason: at most 500 characters.", reason),
            )
        changed = (
            await db.execute(
                text(
                    "UPDATE failed_events SET status = 'discarded', resolved_at = now() WHERE id = :id "
                    "AND status = 'failed' RETURNING id"
                ),
                {"id": failed_id},
            )
        ).first()
        if changed is None:
            return await failed_page(
                request,
                db,
                status_code=409,
                form=FormState(failed_id, "This event was already replayed or discarded.", reason),
            )
        await audit.record(
            db,
            user_id=session.user_id,
            actor=session.email,
            action="failed_event.discard",
            object_type="failed_event",
            object_id=str(failed_id),
            customer_id=customer_id,
            reason=reason,
            detail={"event_id": event_id},
        )
        return Redirect("/portal/failed-events?done=discarded", status_code=303)
