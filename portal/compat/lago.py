"""Lago's events API: `{"event": {...}}` and `{"events": [...]}` → native events.

Mapping: `transaction_id` → event id, `external_customer_id` (else
`external_subscription_id`) → customer id, `code` → meter, `timestamp` (unix seconds, int,
float or numeric string; now when absent) → timestamp, `properties[<value key>]` →
quantity (key "value", or the meter's `value` in `PORTAL_LAGO_MAPPING`, like a Lago
billable metric's `field_name`), every other property → a dimension.
"""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from litestar import Response

from portal.catalog.service import MeterSpec
from portal.compat.mapping import (
    MappingError,
    Outcome,
    dimension_text,
    epoch_seconds_to_rfc3339,
    lookup,
    meter_mappings,
    meter_value,
    native,
    now_ms,
    rfc3339,
    split_error,
)
from portal.infrastructure.http_errors import RETRY_AFTER_S

MAPPING_ENV = "PORTAL_LAGO_MAPPING"
DEFAULT_VALUE = ("value",)
_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    503: "Service Unavailable",
}


def error(
    status: int,
    *,
    code: str | None = None,
    details: dict[str, Any] | None = None,
    message: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """Lago's error body: `{"status", "error", "code", "error_details"}`."""
    body: dict[str, Any] = {"status": status, "error": _REASONS.get(status, "Error")}
    if code is not None:
        body["code"] = code
    if details is not None:
        body["error_details"] = details
    if message is not None:
        body["message"] = message
    return Response(body, status_code=status, headers=headers)


def bad_request(message: str) -> Response[Any]:
    return error(400, code="bad_request", message=message)


def unavailable(detail: str) -> Response[Any]:
    return error(
        503,
        code="service_unavailable",
        message=f"{detail}; retry later",
        headers={"Retry-After": RETRY_AFTER_S},
    )


def _customer_field(event: dict[str, Any]) -> str:
    return "external_customer_id" if event.get("external_customer_id") else "external_subscription_id"


def meter_names(events: list[Any]) -> set[str]:
    return {e["code"] for e in events if isinstance(e, dict) and isinstance(e.get("code"), str)}


def _required(event: dict[str, Any], name: str) -> str:
    value = event.get(name)
    if value is None or value == "":
        raise MappingError(name, "value_is_mandatory")
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise MappingError(name, "value_is_invalid")
    return value


def to_native(event: Any, meters: dict[str, MeterSpec]) -> bytes:
    if not isinstance(event, dict):
        raise MappingError("event", "must be an object")
    event_id = _required(event, "transaction_id")
    code = _required(event, "code")
    customer_field = _customer_field(event)
    customer_id = _required(event, customer_field)
    timestamp: int | str
    raw_time = event.get("timestamp")
    if raw_time is None or raw_time == "":
        timestamp = now_ms()
    elif isinstance(raw_time, str) and "-" in raw_time[1:]:
        timestamp = raw_time  # an RFC 3339 time; the native rules check it
    else:
        timestamp = epoch_seconds_to_rfc3339(raw_time, "timestamp")
    properties = event.get("properties") or {}
    if not isinstance(properties, dict):
        raise MappingError("properties", "value_is_invalid")
    config = meter_mappings(MAPPING_ENV).get(code)
    value_path = (config.value if config else None) or DEFAULT_VALUE
    value = meter_value(
        properties,
        code,
        meters,
        mapping_env=MAPPING_ENV,
        field="properties",
        required_by=lambda _: f"billable metric {code!r}",
        label="properties",
    )
    dimensions: dict[str, str] = {}
    if config and config.dimensions:
        for name, path in config.dimensions.items():
            text = dimension_text(lookup(properties, path))
            if text is not None:
                dimensions[name] = text
    else:
        skip = value_path[0] if len(value_path) == 1 else None
        for name, prop in properties.items():
            if name == skip:
                continue
            text = dimension_text(prop)
            if text is not None:
                dimensions[str(name)] = text
    return native(
        event_id=event_id,
        timestamp=timestamp,
        customer_id=customer_id,
        metric=code,
        value=value,
        dimensions=dimensions,
        source="lago",
        version="lago-v1",
    )


def _lago_field(field: str, event: Any) -> str:
    customer = _customer_field(event) if isinstance(event, dict) else "external_subscription_id"
    return {
        "eventId": "transaction_id",
        "customerId": customer,
        "metricName": "code",
        "timestamp": "timestamp",
        "quantity": "properties",
        "dimensions": "properties",
        "metadata": "event",
    }.get(field, field or "event")


def _details(message: str, event: Any, conflict: bool) -> dict[str, list[str]]:
    if conflict:
        return {"transaction_id": ["value_already_exist"]}
    field, reason = split_error(message)
    return {_lago_field(field, event): [reason]}


def echo(event: dict[str, Any], created_ms: int) -> dict[str, Any]:
    """The event as Lago answers it (`EventResponse`)."""
    timestamp = event.get("timestamp")
    try:
        shown = (
            epoch_seconds_to_rfc3339(timestamp, "timestamp")
            if timestamp not in (None, "")
            else rfc3339(created_ms * 1000)
        )
    except MappingError:
        shown = str(timestamp)
    return {
        "lago_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"lago:{event.get('transaction_id')}")),
        "transaction_id": str(event.get("transaction_id")),
        "lago_customer_id": None,
        "code": event.get("code"),
        "timestamp": shown,
        "lago_subscription_id": None,
        "external_subscription_id": event.get("external_subscription_id"),
        "external_customer_id": event.get("external_customer_id"),
        "precise_total_amount_cents": event.get("precise_total_amount_cents"),
        "properties": event.get("properties") or {},
        "created_at": rfc3339(created_ms * 1000),
    }


def answer(outcome: Outcome, events: list[Any], *, batch: bool) -> Response[Any]:
    """200 with the events echoed, or 422 `validation_errors` (nothing counted)."""
    if outcome.errors:
        conflicts = set(outcome.conflicts)
        if batch:
            details: dict[str, Any] = {
                str(i): _details(m, events[i], i in conflicts) for i, m in sorted(outcome.errors.items())
            }
        else:
            details = _details(outcome.errors[0], events[0], 0 in conflicts)
        return error(422, code="validation_errors", details=details)
    created = now_ms()
    if batch:
        return Response({"events": [echo(e, created) for e in events]}, status_code=200)
    return Response({"event": echo(events[0], created)}, status_code=200)
