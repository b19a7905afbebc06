"""The OpenAPI operations of the compatible endpoints, written by hand.

Their handlers read the raw body (the shared route dispatches by content type, Stripe's is a
form) and answer in each vendor's own shapes, so Litestar can generate neither the bodies
nor the answers. What is written here is what the handlers in `routes.py` really send: the
status codes, their media types and the top-level shape of each body, so that a client
generated from the document (or schemathesis) sees the truth.
"""

from __future__ import annotations

from dataclasses import dataclass

from litestar.openapi.spec import OpenAPIMediaType, OpenAPIResponse, Operation, Reference, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType

from portal.compat import cloudevents

_OBJECT = Schema(type=OpenAPIType.OBJECT)
_ARRAY = Schema(type=OpenAPIType.ARRAY, items=_OBJECT)


def _object(*required: str, **properties: Schema) -> Schema:
    fields: dict[str, Schema | Reference] = dict(properties)
    return Schema(type=OpenAPIType.OBJECT, required=list(required) or None, properties=fields or None)


_TEXT = Schema(type=OpenAPIType.STRING)
_INTEGER = Schema(type=OpenAPIType.INTEGER)

PROBLEM = _object(
    "type",
    "title",
    "status",
    "detail",
    type=_TEXT,
    title=_TEXT,
    status=_INTEGER,
    detail=_TEXT,
    instance=_TEXT,
    errors=_ARRAY,
)
LAGO_ERROR = _object(
    "status", "error", status=_INTEGER, error=_TEXT, code=_TEXT, message=_TEXT, error_details=_OBJECT
)
STRIPE_ERROR = _object(
    "error", error=_object("type", "message", type=_TEXT, message=_TEXT, param=_TEXT, code=_TEXT)
)


def _json(schema: Schema) -> dict[str, OpenAPIMediaType]:
    return {"application/json": OpenAPIMediaType(schema=schema)}


def _answer(description: str, content: dict[str, OpenAPIMediaType] | None = None) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=content)


_SHARED_ERRORS = {
    cloudevents.PROBLEM: OpenAPIMediaType(schema=PROBLEM),
    "application/json": OpenAPIMediaType(schema=LAGO_ERROR),
}


@dataclass
class SharedEventsOperation(Operation):
    """`POST /api/v1/events`: OpenMeter (CloudEvents) or Lago, by content type."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            required=True,
            content={
                "application/json": OpenAPIMediaType(schema=_object("event", event=_OBJECT)),
                cloudevents.STRUCTURED: OpenAPIMediaType(
                    schema=_object("specversion", "id", "type", "subject")
                ),
                cloudevents.BATCH: OpenAPIMediaType(schema=_ARRAY),
            },
        )
        self.responses = {
            "200": _answer(
                "Lago: the event was accepted (or was already known); it is echoed back.",
                _json(_object("event", event=_OBJECT)),
            ),
            "204": _answer("OpenMeter: every CloudEvent was accepted (or was already known)."),
            "400": _answer(
                "A body that is not JSON, or (OpenMeter) a CloudEvent that cannot be "
                "ingested; problem details name each. Nothing was ingested.",
                _SHARED_ERRORS,
            ),
            "422": _answer(
                "Lago: an event that cannot be ingested; nothing was ingested.", _json(LAGO_ERROR)
            ),
            "503": _answer(
                "A store is unreachable; nothing was ingested. Retry after `Retry-After` seconds.",
                _SHARED_ERRORS,
            ),
        }


@dataclass
class LagoBatchOperation(Operation):
    """`POST /api/v1/events/batch`: Lago's batch."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(required=True, content=_json(_object("events", events=_ARRAY)))
        self.responses = {
            "200": _answer(
                "Every event was accepted (or was already known); they are echoed back.",
                _json(_object("events", events=_ARRAY)),
            ),
            "400": _answer('A body that is not `{"events": [...]}`.', _json(LAGO_ERROR)),
            "422": _answer(
                "An event cannot be ingested (each is named by its index), the batch is "
                "empty or too large; nothing was ingested.",
                _json(LAGO_ERROR),
            ),
            "503": _answer(
                "A store is unreachable; nothing was ingested. Retry after `Retry-After` seconds.",
                _json(LAGO_ERROR),
            ),
        }


@dataclass
class StripeMeterEventsOperation(Operation):
    """`POST /v1/billing/meter_events`: a Stripe form."""

    def __post_init__(self) -> None:
        form = _object(
            "event_name",
            "payload",
            event_name=_TEXT,
            identifier=_TEXT,
            timestamp=_INTEGER,
            payload=_object(stripe_customer_id=_TEXT, value=_TEXT),
        )
        self.request_body = RequestBody(
            required=True, content={"application/x-www-form-urlencoded": OpenAPIMediaType(schema=form)}
        )
        stripe_error = _json(STRIPE_ERROR)
        self.responses = {
            "200": _answer(
                "The `billing.meter_event` recorded (or already known).",
                _json(_object("object", "event_name", object=_TEXT, event_name=_TEXT)),
            ),
            "400": _answer(
                "`invalid_request_error`: the form or the event cannot be recorded; nothing was recorded.",
                stripe_error,
            ),
            "503": _answer(
                "`api_error`: a store is unreachable; nothing was recorded. Retry after "
                "`Retry-After` seconds.",
                stripe_error,
            ),
        }
