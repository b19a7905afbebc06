"""Webhooks: where billing events are sent, the recent deliveries with each attempt, and a
Replay button that sends a delivery's event again (same content, so receivers that already
have it ignore it). Endpoints are the operator's, added through the API; staff see the
deliveries of the customers they may see (those of no customer only when they see all)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import audit
from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Conflict, NotFound
from portal.pages.access import STAFF_GUARDS, customer_scope, may_see, viewer
from portal.pages.manager.common import choice, customer_zones
from portal.pages.web import PageController, page
from portal.webhooks import service
from portal.webhooks.schemas import DELIVERY_STATUSES, Delivery

# What each event type is called on the page.
EVENT_NAMES = {
    "invoice.drafted": "Invoice drafted",
    "invoice.finalized": "Invoice issued",
    "invoice.voided": "Invoice voided",
    "adjustment.created": "Credit or debit note issued",
    "credit.low": "Prepaid credit running low",
    "entitlement.exceeded": "Usage limit reached",
    "event.corrected": "Usage event corrected",
    "alert.fired": "Usage alert",
}
STATUS_NAMES = {"pending": "Retrying", "delivered": "Delivered", "failed": "Failed"}
STATUS_PILLS = {"pending": "warning", "delivered": "success", "failed": "danger"}
SHOWN = 50


def address(url: str) -> str:
    """An endpoint's address as people read it: host and path, without the query (which
    may carry a token)."""
    parts = urlsplit(url)
    return f"{parts.hostname or ''}{'' if parts.port is None else f':{parts.port}'}{parts.path or '/'}"


async def _visible(request: Request[Any, Any, Any], db: AsyncSession, rows: list[Delivery]) -> list[Delivery]:
    session = viewer(request)
    if customer_scope(session)[0] == "TRUE":
        return rows
    allowed = {c for c in {r.customer_id for r in rows} if c is not None and await may_see(db, session, c)}
    return [r for r in rows if r.customer_id in allowed]


async def webhooks_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    *,
    status_code: int = 200,
    notice: str | None = None,
    problem: str | None = None,
) -> Template:
    status = choice("status", request.query_params.get("status"), ("all", *DELIVERY_STATUSES), "all")
    endpoints = await service.list_endpoints(db)
    rows = await service.list_deliveries(db, status=None if status == "all" else status, limit=SHOWN * 4)
    rows = (await _visible(request, db, rows))[:SHOWN]
    zones = await customer_zones(db, {r.customer_id for r in rows if r.customer_id})
    return page(
        "manager/webhooks.html",
        request,
        status_code=status_code,
        endpoints=endpoints,
        addresses={e.id: address(e.url) for e in endpoints},
        rows=rows,
        zones=zones,
        status=status,
        statuses=("all", *DELIVERY_STATUSES),
        event_names=EVENT_NAMES,
        status_names=STATUS_NAMES,
        status_pills=STATUS_PILLS,
        address=address,
        notice=notice,
        problem=problem,
    )


class WebhooksController(PageController):
    guards = STAFF_GUARDS

    @get("/webhooks")
    async def webhooks(
        self, request: Request[Any, Any, Any], db: Db, done: FromQuery[str | None] = None
    ) -> Template:
        """Parameters: status (all, pending, delivered, failed)."""
        notice = "Sent again. The new delivery is at the top of the list." if done == "replayed" else None
        return await webhooks_page(request, db, notice=notice)

    @post("/webhooks/deliveries/{delivery_id:int}/replay")
    async def replay(
        self, request: Request[Any, Any, Any], delivery_id: FromPath[int], db: Db, portal: Portal
    ) -> Response[Any]:
        try:
            delivery = await service.get_delivery(db, delivery_id)
        except NotFound:
            raise NotFoundException("There is no such delivery you can see.") from None
        if not await _visible(request, db, [delivery]):
            raise NotFoundException("There is no such delivery you can see.")
        session = viewer(request)
        try:
            async with db.begin_nested():
                replayed = await service.replay(db, delivery_id, now=portal.now())
                await audit.record(
                    db,
                    user_id=session.user_id,
                    actor=session.email,
                    action="webhook_delivery.replay",
                    object_type="webhook_delivery",
                    object_id=str(delivery_id),
                    customer_id=delivery.customer_id,
                    detail={"event_id": delivery.event_id, "replay_id": replayed.id},
                )
        except Conflict:
            problem = "Its endpoint is disabled or deleted, so nothing can be sent to it."
            return await webhooks_page(request, db, status_code=409, problem=problem)
        return Redirect("/portal/webhooks?done=replayed", status_code=303)
