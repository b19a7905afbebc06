"""Webhooks API (admin key): endpoints, the events announced, deliveries with their
attempts, and replay."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Response, delete, get, patch, post
from litestar.params import FromPath, JSONBody, QueryParameter

from portal.dependencies import Db, Portal
from portal.http.created import created
from portal.http.openapi_answers import error_answers
from portal.http.query_params import choice
from portal.http.request_checks import ID_MAX
from portal.webhooks import service
from portal.webhooks.events import EVENT_TYPES
from portal.webhooks.schemas import (
    DELIVERY_STATUSES,
    Delivery,
    Endpoint,
    EndpointCreate,
    EndpointUpdate,
    Event,
)

ADMIN = {"scope": "admin"}
EVENT_CURSOR_HELP = (
    "An event id (`evt_…`): only the events listed after it (older, or as old with a lower id)."
)
ID_CURSOR_HELP = "A delivery id: only deliveries with a lower id (older)."


class EndpointController(Controller):
    """Where billing events are POSTed, and which ones."""

    path = "/v1/webhook-endpoints"
    tags = ["webhooks"]
    opt = ADMIN

    @post("/", status_code=201)
    async def create(self, data: JSONBody[EndpointCreate], db: Db, portal: Portal) -> Response[Endpoint]:
        """Checked now: a URL that is not http(s), or whose host is or resolves to an address
        the portal must not reach (loopback, private, link-local, metadata…), is a 422
        naming the reason. The signing secret is in this answer only; `Location` says where
        to read the endpoint."""
        endpoint = await service.create_endpoint(
            db,
            data,
            secret_key=portal.settings.secret_key,
            allow_networks=portal.settings.destination_allow_networks,
        )
        return created(endpoint, "webhook-endpoints", endpoint.id)

    @get("/")
    async def list_(self, db: Db) -> list[Endpoint]:
        return await service.list_endpoints(db)

    @get("/{endpoint_id:int}")
    async def get_(self, endpoint_id: FromPath[int], db: Db) -> Endpoint:
        return await service.get_endpoint(db, endpoint_id)

    @patch("/{endpoint_id:int}")
    async def update(
        self, endpoint_id: FromPath[int], data: JSONBody[EndpointUpdate], db: Db, portal: Portal
    ) -> Endpoint:
        """Change the URL (checked like a new one), the event types, the description, or
        enable/disable it. Fields left out stay as they are."""
        return await service.update_endpoint(
            db,
            endpoint_id,
            data,
            now=portal.now(),
            allow_networks=portal.settings.destination_allow_networks,
        )

    @delete("/{endpoint_id:int}", status_code=204)
    async def delete_(self, endpoint_id: FromPath[int], db: Db, portal: Portal) -> None:
        """Stop sending to it for good; its deliveries stay listed."""
        await service.delete_endpoint(db, endpoint_id, now=portal.now())


class EventController(Controller):
    """The events the portal announced, newest first, with the body each delivery sends."""

    path = "/v1/webhook-events"
    tags = ["webhooks"]
    opt = ADMIN

    @get("/")
    async def list_(
        self,
        db: Db,
        event_type: Annotated[
            str | None,
            QueryParameter(
                name="type", description=", ".join(EVENT_TYPES), schema_extra={"enum": list(EVENT_TYPES)}
            ),
        ] = None,
        customer_id: Annotated[str | None, QueryParameter(name="customerId", max_length=200)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: Annotated[str | None, QueryParameter(max_length=200, description=EVENT_CURSOR_HELP)] = None,
    ) -> list[Event]:
        """Newest first (by `createdAt`, then `id`, both descending); page with
        `before=<id of the last event>`. The cursor is an event id (`evt_…`), whatever the
        filters: an id no event has is a 422."""
        wanted = choice("type", event_type, EVENT_TYPES)
        return await service.list_events(
            db, event_type=wanted, customer_id=customer_id, limit=limit, before=before
        )

    @get("/{event_id:str}")
    async def get_(self, event_id: FromPath[str], db: Db) -> Event:
        return await service.get_event(db, event_id)


class DeliveryController(Controller):
    """Every delivery of an event to an endpoint, with each attempt; replay."""

    path = "/v1/webhook-deliveries"
    tags = ["webhooks"]
    opt = ADMIN

    @get("/")
    async def list_(
        self,
        db: Db,
        endpoint_id: Annotated[int | None, QueryParameter(name="endpointId", ge=1, le=ID_MAX)] = None,
        event_id: Annotated[str | None, QueryParameter(name="eventId", max_length=200)] = None,
        status: Annotated[
            str | None,
            QueryParameter(
                name="status",
                description=", ".join(DELIVERY_STATUSES),
                schema_extra={"enum": list(DELIVERY_STATUSES)},
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
        before: Annotated[int | None, QueryParameter(ge=1, le=ID_MAX, description=ID_CURSOR_HELP)] = None,
    ) -> list[Delivery]:
        """Newest first (by id); page with `before=<id of the last delivery>`."""
        wanted = choice("status", status, DELIVERY_STATUSES)
        return await service.list_deliveries(
            db, endpoint_id=endpoint_id, event_id=event_id, status=wanted, limit=limit, before=before
        )

    @get("/{delivery_id:int}")
    async def get_(self, delivery_id: FromPath[int], db: Db) -> Delivery:
        return await service.get_delivery(db, delivery_id)

    @post("/{delivery_id:int}/replay", status_code=202, responses=error_answers(409))
    async def replay(self, delivery_id: FromPath[int], db: Db, portal: Portal) -> Delivery:
        """Send the same body again (same event id) as a new delivery with its own attempts;
        follow it at GET /v1/webhook-deliveries/{id}. 409 when its endpoint is deleted or
        disabled."""
        return await service.replay(db, delivery_id, now=portal.now())


webhook_handlers = [EndpointController, EventController, DeliveryController]
