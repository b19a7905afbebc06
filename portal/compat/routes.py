"""Drop-in ingest endpoints of OpenMeter (CloudEvents), Lago and Stripe.

`POST /api/v1/events` is shared by OpenMeter and Lago and dispatched by content type:
CloudEvents media types → OpenMeter; JSON with an `event` object → Lago; JSON that looks
like a CloudEvent (has `specversion`) or an array of them → OpenMeter.
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.exceptions import HTTPException

from portal.compat import cloudevents, lago, stripe
from portal.compat.mapping import MappingError, decode_json, map_events, meter_specs, submit
from portal.compat.openapi import LagoBatchOperation, SharedEventsOperation, StripeMeterEventsOperation
from portal.dependencies import Portal
from portal.infrastructure.domain_errors import Problem
from portal.ingest.corrections import CorrectionAsked, correct_and_apply
from portal.ingest.repository import corrections as correction_store
from portal.ingest.service import IngestUnavailable
from portal.ingest.validation import BodyError
from portal.keys.guard import key_actor

INGEST = {"scope": "ingest"}
MAX_BODY = 5 * 1024 * 1024
_OPENMETER_TYPES = (cloudevents.STRUCTURED, cloudevents.BATCH)


def _media_type(request: Request[Any, Any, Any]) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _status_and_detail(exc: Exception) -> tuple[int, str, dict[str, str]]:
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail), dict(exc.headers or {})
    return 500, "internal error", {}


def _shared_errors(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """Errors before the handler ran (401, 403, 413, 503 from the key store) on the shared
    path: problem details for CloudEvents media types; for plain JSON a body both Lago's
    and OpenMeter's clients read (problem details plus Lago's `error`)."""
    status, detail, headers = _status_and_detail(exc)
    response = cloudevents.problem(status, detail, headers=headers or None)
    if _media_type(request) not in _OPENMETER_TYPES:
        assert isinstance(response.content, dict)
        response.content["error"] = response.content["title"]
    return response


def _lago_errors(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, detail, headers = _status_and_detail(exc)
    return lago.error(status, message=detail, headers=headers or None)


def _stripe_errors(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    status, detail, headers = _status_and_detail(exc)
    kind = "api_error" if status >= 500 else "invalid_request_error"
    return stripe.error(status, detail, kind=kind, headers=headers or None)


async def _cloudevents(state: Any, events: list[Any], *, batch: bool) -> Response[Any]:
    if batch and not events:
        return cloudevents.problem(400, "the batch is empty")
    limit = state.settings.max_batch_events
    if len(events) > limit:
        return cloudevents.problem(413, f"a batch holds at most {limit} events, got {len(events)}")
    try:
        meters = await meter_specs(state, cloudevents.meter_names(events))
        bodies, errors = map_events(events, cloudevents.to_native, meters)
        outcome = await submit(state, bodies, drop_conflicts=True, source="openmeter", errors=errors)
    except IngestUnavailable as exc:
        return cloudevents.unavailable(str(exc))
    return cloudevents.answer(outcome, batch=batch)


async def _lago(state: Any, events: list[Any], *, batch: bool) -> Response[Any]:
    limit = state.settings.max_batch_events
    if batch and not events:
        return lago.error(422, code="validation_errors", details={"events": ["no_events"]})
    if len(events) > limit:
        return lago.error(422, code="validation_errors", details={"events": ["too_many_events"]})
    try:
        meters = await meter_specs(state, lago.meter_names(events))
        bodies, errors = map_events(events, lago.to_native, meters)
        outcome = await submit(state, bodies, drop_conflicts=False, source="lago", errors=errors)
    except IngestUnavailable as exc:
        return lago.unavailable(str(exc))
    return lago.answer(outcome, events, batch=batch)


@post(
    "/api/v1/events",
    opt=INGEST,
    request_max_body_size=MAX_BODY,
    tags=["compat"],
    summary="OpenMeter (CloudEvents) and Lago compatible ingest",
    status_code=200,
    operation_class=SharedEventsOperation,
    exception_handlers={HTTPException: _shared_errors},
)
async def shared_events(request: Request[Any, Any, Any], portal: Portal) -> Response[Any]:
    """CloudEvents (one or a batch) answered like OpenMeter: 204, or 400 problem details;
    `{"event": {...}}` answered like Lago: 200 with the event, or 422."""
    media = _media_type(request)
    body = await request.body()
    try:
        decoded = decode_json(body)
    except BodyError as exc:
        if media in _OPENMETER_TYPES:
            return cloudevents.problem(400, str(exc))
        return lago.bad_request(str(exc))
    if media == cloudevents.STRUCTURED:
        return await _cloudevents(portal, [decoded], batch=False)
    if media == cloudevents.BATCH:
        if not isinstance(decoded, list):
            return cloudevents.problem(400, "a CloudEvents batch must be a JSON array")
        return await _cloudevents(portal, decoded, batch=True)
    if isinstance(decoded, dict) and isinstance(decoded.get("event"), dict):
        return await _lago(portal, [decoded["event"]], batch=False)
    if cloudevents.is_cloudevent(decoded):
        return await _cloudevents(portal, [decoded], batch=False)
    if isinstance(decoded, list) and all(cloudevents.is_cloudevent(e) for e in decoded) and decoded:
        return await _cloudevents(portal, decoded, batch=True)
    if isinstance(decoded, dict) and "event" in decoded:
        return lago.error(422, code="validation_errors", details={"event": ["value_is_invalid"]})
    return lago.bad_request(
        'param is missing or the value is empty: event (send {"event": {...}} for Lago, or a '
        "CloudEvent with Content-Type application/cloudevents+json for OpenMeter)"
    )


@post(
    "/api/v1/events/batch",
    opt=INGEST,
    request_max_body_size=MAX_BODY,
    tags=["compat"],
    summary="Lago compatible batch ingest",
    status_code=200,
    operation_class=LagoBatchOperation,
    exception_handlers={HTTPException: _lago_errors},
)
async def lago_batch(request: Request[Any, Any, Any], portal: Portal) -> Response[Any]:
    """`{"events": [...]}` answered like Lago: 200 with the events, or 422 naming each bad
    event by its index (nothing counted)."""
    try:
        decoded = decode_json(await request.body())
    except BodyError as exc:
        return lago.bad_request(str(exc))
    if not isinstance(decoded, dict) or not isinstance(decoded.get("events"), list):
        return lago.bad_request("param is missing or the value is empty: events")
    return await _lago(portal, decoded["events"], batch=True)


@post(
    "/v1/billing/meter_events",
    opt=INGEST,
    request_max_body_size=64 * 1024,
    tags=["compat"],
    summary="Stripe compatible meter events",
    status_code=200,
    operation_class=StripeMeterEventsOperation,
    exception_handlers={HTTPException: _stripe_errors},
)
async def stripe_meter_events(request: Request[Any, Any, Any], portal: Portal) -> Response[Any]:
    """A form-encoded meter event answered like Stripe: 200 with the `billing.meter_event`,
    or 400 `invalid_request_error` (nothing counted)."""
    if _media_type(request) == "application/x-www-form-urlencoded":
        try:
            items = stripe.form_items(await request.body())
        except MappingError as exc:
            return stripe.error(400, exc.message, param=exc.field)
    else:  # multipart, which Stripe's API does not use but HTML forms may
        items = [(k, str(v)) for k, v in (await request.form()).multi_items()]
    fields, payload = stripe.parse_form(items)
    try:
        meters = await meter_specs(portal, {fields.get("event_name", "")})
        try:
            mapped = stripe.to_native(fields, payload, meters)
        except MappingError as exc:
            return stripe.error(400, exc.message, param=exc.field)
        outcome = await submit(portal, [mapped.body], drop_conflicts=True, source="stripe")
    except IngestUnavailable as exc:
        return stripe.unavailable(str(exc))
    if outcome.errors:
        return stripe.answer_error(outcome.errors[0])
    return stripe.meter_event(mapped)


@post(
    "/v1/billing/meter_event_adjustments",
    opt=INGEST,
    request_max_body_size=16 * 1024,
    tags=["compat"],
    summary="Stripe compatible meter event adjustments (cancel)",
    status_code=200,
    exception_handlers={HTTPException: _stripe_errors},
)
async def stripe_meter_event_adjustments(request: Request[Any, Any, Any], portal: Portal) -> Response[Any]:
    """`event_name`, `type=cancel`, `cancel[identifier]`, form-encoded: the event with that
    identifier is cancelled (an event correction with the reason "cancelled through the
    Stripe-compatible API"), within the lateness window, answered like Stripe (400
    `invalid_request_error` when it cannot be)."""
    try:
        items = stripe.form_items(await request.body())
    except MappingError as exc:
        return stripe.error(400, exc.message, param=exc.field)
    fields = dict(items)
    event_name = fields.get("event_name", "").strip(" ")
    identifier = fields.get("cancel[identifier]", "").strip(" ")
    kind = fields.get("type", "cancel")
    if not event_name:
        return stripe.error(400, "Missing required param: event_name.", param="event_name")
    if kind != "cancel":
        return stripe.error(400, "Invalid type: must be cancel.", param="type")
    if not identifier:
        return stripe.error(400, "Missing required param: cancel[identifier].", param="cancel[identifier]")
    if len(identifier) > 256 or len(event_name) > 100:
        return stripe.error(400, "No such meter event.", param="cancel[identifier]")
    try:
        async with portal.sessions() as session:
            customers = await correction_store.customers_with_event(session, identifier, event_name)
        if len(customers) != 1:
            message = (
                f"No meter event {identifier!r} of {event_name!r} within the lateness window."
                if not customers
                else f"The identifier {identifier!r} names events of several customers; cancel it "
                "with POST /v1/events/{id}/cancel and a customerId."
            )
            return stripe.error(400, message, param="cancel[identifier]")
        asked = CorrectionAsked(
            customers[0],
            identifier,
            "cancel",
            "cancelled through the Stripe-compatible API",
            key_actor(request),
            "stripe",
        )
        await correct_and_apply(
            portal.sessions, portal.live, asked, now=portal.now(), settings=portal.settings
        )
    except Problem as exc:
        return stripe.error(400, str(exc), param="cancel[identifier]")
    return stripe.meter_event_adjustment(event_name, identifier)


compat_handlers = [shared_events, lago_batch, stripe_meter_events, stripe_meter_event_adjustments]
