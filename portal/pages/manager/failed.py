"""Failed events: what the workers could not store, replayed or discarded (with a reason)
by an account manager; both written to the audit log in the same transaction.

A discard needs no column of its own: `failed_events.status` already has 'discarded', and
the reason lives in the audit entry (shown next to the row)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.accounts.schemas import AuditEntry
from portal.dependencies import Db, Portal
from portal.ingest import repository as ingest_repository
from portal.ingest.failed_events import replay_refusal
from portal.operations.operator_tasks import replay_failed_events
from portal.pages.access import STAFF_GUARDS, check_owner, viewer
from portal.pages.manager.common import (
    Pager,
    audit_trail,
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
class FormState:
    failed_id: int
    message: str
    reason: str


def _discard_reason(trail: list[AuditEntry]) -> str | None:
    """The reason given by the latest discard in a failed event's audit trail (oldest first)."""
    for entry in reversed(trail):
        if entry.action == "failed_event.discard":
            return entry.reason
    return None


async def _owned(request: Request[Any, Any, Any], db: AsyncSession, failed_id: int) -> tuple[str, str]:
    """(customer id, event id) of a failed event the viewer may see; 404 alike otherwise."""
    key = await ingest_repository.failed_event_key(db, failed_id)
    await check_owner(request, db, None if key is None else key[0], "failed event")
    assert key is not None
    return key


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
    listed, total = await ingest_repository.failed_page(
        db,
        visible=visible,
        params=params,
        status=status,
        customer_id=customer,
        limit=50,
        offset=(number - 1) * 50,
    )
    trails = await audit_trail(db, "failed_event", [str(f.id) for f in listed])
    # Events a replay could only fail again with: no Replay button, the reason instead.
    refusals = {f.id: why for f in listed if (why := replay_refusal(f.stored)) is not None}
    discard_reasons = {f.id: _discard_reason(trails.get(str(f.id), [])) for f in listed}
    pager = Pager(number, total, "/portal/failed-events", query_items(request))
    zones = await customer_zones(db, {r.customer_id for r in listed})
    return page(
        "manager/failed.html",
        request,
        status_code=status_code,
        rows=listed,
        refusals=refusals,
        discard_reasons=discard_reasons,
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
            outstanding = await ingest_repository.failed_to_replay(db, [failed_id])
            refusal = replay_refusal(outstanding[0][2]) if outstanding else None
            if refusal is not None:  # sending it again could only fail again
                why = f"This event cannot be sent again: {refusal}. Discard it with a reason."
                return await failed_page(request, db, status_code=409, form=FormState(failed_id, why, ""))
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
        if not replayed:  # someone replayed or discarded it first
            why = "This event was already replayed or discarded."
            return await failed_page(request, db, status_code=409, form=FormState(failed_id, why, ""))
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
        if len(reason) > 500 or "\x00" in reason:
            problem = "at most 500 characters" if len(reason) > 500 else "must not contain a NUL character"
            return await failed_page(
                request,
                db,
                status_code=422,
                form=FormState(failed_id, f"Reason: {problem}.", reason.replace("\x00", "")),
            )
        if not await ingest_repository.mark_discarded(db, failed_id):
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
