"""Webhook endpoints: where billing events are sent. Adding one (its signing secret shown
once, on the answer to the form), pausing and resuming it, and deleting it after a
confirmation page. The same service as `/v1/webhook-endpoints`: a URL the portal must not
reach (loopback, private, metadata…) is refused with the reason, here as on the API."""

from __future__ import annotations

from typing import Any

import msgspec
from litestar import Request, Response, get, post
from litestar.params import FromPath, FromQuery
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from portal.dependencies import Db, Portal
from portal.infrastructure.domain_errors import Invalid, NotFound
from portal.pages.admin.common import ADMIN_PATH, ADMIN_TZ, AdminController, numeric_id, record
from portal.pages.admin.forms import UNPROCESSABLE, Form, read_form, text_of, texts_of
from portal.pages.manager.webhooks import EVENT_NAMES, address
from portal.pages.web import page
from portal.state import PortalState
from portal.webhooks import service
from portal.webhooks.events import DESCRIPTIONS, EVENT_TYPES
from portal.webhooks.schemas import Endpoint, EndpointCreate, EndpointUpdate
from portal.webhooks.urls import MAX_URL_LENGTH

ENDPOINT_LABELS = {"url": "Address (URL)", "description": "Description", "event_types": "Events to send"}
MAX_DESCRIPTION = 500
# What the list says after an action, by the `done` query parameter.
DONE = {
    "paused": "is paused: nothing is sent to it until it is resumed.",
    "resumed": "is sending again.",
    "deleted": "is deleted: nothing more is sent to it. Its deliveries stay listed on the Webhooks page.",
}


def endpoint_form(values: dict[str, Any] | None = None) -> Form:
    return Form(
        labels=ENDPOINT_LABELS,
        values=values or {"url": "", "description": "", "event_types": list(EVENT_TYPES)},
    )


class WebhookPagesController(AdminController):
    @get("/webhooks")
    async def endpoints(
        self,
        request: Request[Any, Any, Any],
        db: Db,
        done: FromQuery[str | None] = None,
        endpoint: FromQuery[str | None] = None,
    ) -> Template:
        """Parameters: done (paused, resumed, deleted) and endpoint (its id), the notice
        after an action."""
        return await _endpoints_page(request, db, endpoint_form(), done=done, endpoint=endpoint)

    @post("/webhooks", status_code=200)
    async def create(self, request: Request[Any, Any, Any], db: Db, portal: Portal) -> Template:
        data = await read_form(request)
        chosen = texts_of(data, "event_types")
        form = endpoint_form(
            {"url": text_of(data, "url"), "description": text_of(data, "description"), "event_types": chosen}
        )
        form.require("url")
        if len(form.values["url"]) > MAX_URL_LENGTH:
            form.fail("url", f"at most {MAX_URL_LENGTH} characters")
        description = form.values["description"]
        if len(description) > MAX_DESCRIPTION or "\x00" in description:
            form.fail("description", f"at most {MAX_DESCRIPTION} characters of text")
        if not chosen:
            form.fail("event_types", "tick at least one")
        elif any(t not in EVENT_TYPES for t in chosen):
            form.fail("event_types", "tick only the events listed")
        if not form.ok:
            return await _endpoints_page(request, db, form, status_code=UNPROCESSABLE)
        try:
            wanted = msgspec.convert(
                {"url": form.values["url"], "eventTypes": chosen, "description": description}, EndpointCreate
            )
            created = await service.create_endpoint(
                db,
                wanted,
                secret_key=portal.settings.secret_key,
                allow_networks=portal.settings.destination_allow_networks,
            )
        except (Invalid, msgspec.ValidationError) as exc:  # judged as the API judges it, reason named
            form.refuse(str(exc), default="url")
            return await _endpoints_page(request, db, form, status_code=UNPROCESSABLE)
        await record(
            db,
            request,
            action="webhook_endpoint.created",
            object_type="webhook_endpoint",
            object_id=str(created.id),
            detail={"address": address(created.url), "event_types": created.event_types},
        )
        return page("admin/webhook_created.html", request, endpoint=created, address=address(created.url))

    @post("/webhooks/{endpoint_id:str}/pause", status_code=303)
    async def pause(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, endpoint_id: FromPath[str]
    ) -> Response[Any]:
        return await _set_enabled(request, db, portal, endpoint_id, enabled=False)

    @post("/webhooks/{endpoint_id:str}/resume", status_code=303)
    async def resume(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, endpoint_id: FromPath[str]
    ) -> Response[Any]:
        return await _set_enabled(request, db, portal, endpoint_id, enabled=True)

    @get("/webhooks/{endpoint_id:str}/delete")
    async def confirm_delete(
        self, request: Request[Any, Any, Any], db: Db, endpoint_id: FromPath[str]
    ) -> Template:
        endpoint = await _require_endpoint(db, endpoint_id)
        return page(
            "admin/webhook_delete.html",
            request,
            endpoint=endpoint,
            address=address(endpoint.url),
            event_names=EVENT_NAMES,
        )

    @post("/webhooks/{endpoint_id:str}/delete", status_code=303)
    async def delete(
        self, request: Request[Any, Any, Any], db: Db, portal: Portal, endpoint_id: FromPath[str]
    ) -> Response[Any]:
        endpoint = await _require_endpoint(db, endpoint_id)
        await service.delete_endpoint(db, endpoint.id, now=portal.now())
        await record(
            db,
            request,
            action="webhook_endpoint.deleted",
            object_type="webhook_endpoint",
            object_id=str(endpoint.id),
            detail={"address": address(endpoint.url)},
        )
        return Redirect(f"{ADMIN_PATH}/webhooks?done=deleted&endpoint={endpoint.id}", status_code=303)


async def _set_enabled(
    request: Request[Any, Any, Any], db: AsyncSession, portal: PortalState, endpoint_id: str, *, enabled: bool
) -> Response[Any]:
    endpoint = await _require_endpoint(db, endpoint_id)
    if endpoint.enabled != enabled:
        await service.update_endpoint(
            db,
            endpoint.id,
            EndpointUpdate(enabled=enabled),
            now=portal.now(),
            allow_networks=portal.settings.destination_allow_networks,
        )
        await record(
            db,
            request,
            action="webhook_endpoint.resumed" if enabled else "webhook_endpoint.paused",
            object_type="webhook_endpoint",
            object_id=str(endpoint.id),
            detail={"address": address(endpoint.url)},
        )
    done = "resumed" if enabled else "paused"
    return Redirect(f"{ADMIN_PATH}/webhooks?done={done}&endpoint={endpoint.id}", status_code=303)


async def _require_endpoint(db: AsyncSession, endpoint_id: str) -> Endpoint:
    """The endpoint a path names (not deleted); 404 for anything else (ids are numbers)."""
    number = numeric_id(endpoint_id)
    try:
        if number is not None:
            return await service.get_endpoint(db, number)
    except NotFound:
        pass
    raise NotFound(f"There is no webhook endpoint {endpoint_id}.")


async def _endpoints_page(
    request: Request[Any, Any, Any],
    db: AsyncSession,
    form: Form,
    *,
    done: str | None = None,
    endpoint: str | None = None,
    status_code: int = 200,
) -> Template:
    endpoints = await service.list_endpoints(db)
    notice = None
    if done in DONE and endpoint is not None:
        # A deleted endpoint is no longer listed: the notice then names no address.
        named = next((e for e in endpoints if str(e.id) == endpoint), None)
        what = f"The endpoint {address(named.url)}" if named is not None else "The endpoint"
        notice = f"{what} {DONE[done]}"
    return page(
        "admin/webhooks.html",
        request,
        status_code=status_code,
        endpoints=endpoints,
        addresses={e.id: address(e.url) for e in endpoints},
        form=form,
        event_types=EVENT_TYPES,
        event_names=EVENT_NAMES,
        descriptions=DESCRIPTIONS,
        tz=ADMIN_TZ,
        notice=notice,
        max_url=MAX_URL_LENGTH,
    )
