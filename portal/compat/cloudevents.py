"""CloudEvents 1.0 (OpenMeter's ingest): structured and batch JSON → native events.

Mapping: `type` → meter, `subject` → customer id, `id` → event id, `time` → timestamp
(now when absent), `data` → quantity and dimensions:

- quantity: `data.value`, or the path configured for the meter in
  `PORTAL_CLOUDEVENTS_MAPPING` (`{"<meter>": {"value": "$.tokens", "dimensions":
  {"model": "$.model"}}}`); count and unique_count meters need no value (1 per event);
- dimensions: the configured paths, else the meter's groupBy keys (and its uniqueBy key)
  looked up in `data` by name.
"""

from __future__ import annotations

from typing import Any

from litestar import Response

from portal.catalog.service import MeterSpec
from portal.compat.mapping import (
    MappingError,
    Outcome,
    decode_json,
    dimension_text,
    lookup,
    meter_mappings,
    meter_value,
    native,
    now_ms,
    split_error,
)
from portal.infrastructure.http_errors import RETRY_AFTER_S

MAPPING_ENV = "PORTAL_CLOUDEVENTS_MAPPING"
STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
PROBLEM = "application/problem+json"

# Native field → CloudEvents attribute, for error messages.
_FIELDS = {
    "eventId": "id",
    "customerId": "subject",
    "metricName": "type",
    "timestamp": "time",
    "quantity": "data",
    "dimensions": "data",
    "metadata": "source",
}

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    503: "Service Unavailable",
}


def problem(
    status: int,
    detail: str,
    *,
    instance: str = "/api/v1/events",
    extensions: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """RFC 7807 problem details, as OpenMeter answers errors."""
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if extensions:
        body.update(extensions)
    return Response(body, status_code=status, media_type=PROBLEM, headers=headers)


def unavailable(detail: str) -> Response[Any]:
    return problem(
        503, f"{detail}; nothing was accepted, retry later", headers={"Retry-After": RETRY_AFTER_S}
    )


def is_cloudevent(value: Any) -> bool:
    return isinstance(value, dict) and "specversion" in value


def _string_attr(event: dict[str, Any], name: str, *, required: bool) -> str | None:
    value = event.get(name)
    if value is None or value == "":
        if required:
            raise MappingError(name, "required CloudEvents attribute is missing")
        return None
    if not isinstance(value, str):
        raise MappingError(name, "must be a string")
    return value


def meter_names(events: list[Any]) -> set[str]:
    return {e["type"] for e in events if isinstance(e, dict) and isinstance(e.get("type"), str)}


def to_native(event: Any, meters: dict[str, MeterSpec]) -> bytes:
    """One CloudEvent (decoded JSON) as a native event body; MappingError if it is not a
    usable CloudEvent."""
    if not isinstance(event, dict):
        raise MappingError("event", "a CloudEvent must be a JSON object")
    if event.get("specversion") != "1.0":
        raise MappingError("specversion", 'must be "1.0"')
    event_id = _string_attr(event, "id", required=True)
    source = _string_attr(event, "source", required=True)
    meter_name = _string_attr(event, "type", required=True)
    subject = _string_attr(event, "subject", required=True)
    time_attr = _string_attr(event, "time", required=False)
    assert event_id is not None and source is not None and meter_name is not None
    assert subject is not None
    if "data_base64" in event:
        raise MappingError("data_base64", "binary data is not supported; send JSON data")
    data = event.get("data")
    if isinstance(data, str):  # JSON data sent as a string
        try:
            data = decode_json(data.encode())
        except Exception as exc:
            raise MappingError("data", "must be a JSON object") from exc
    if data is not None and not isinstance(data, dict):
        raise MappingError("data", "must be a JSON object")
    data = data or {}
    spec = meters.get(meter_name)
    config = meter_mappings(MAPPING_ENV).get(meter_name)
    value = meter_value(
        data,
        meter_name,
        meters,
        mapping_env=MAPPING_ENV,
        field="data",
        required_by=lambda m: f"meter {meter_name!r} ({m.aggregation})",
    )
    dimensions: dict[str, str] = {}
    if config and config.dimensions:
        paths = config.dimensions
    else:
        keys = list(spec.group_by) if spec else []
        if spec and spec.unique_by and spec.unique_by not in keys:
            keys.append(spec.unique_by)
        paths = {k: (k,) for k in keys}
    for name, path in paths.items():
        text = dimension_text(lookup(data, path))
        if text is not None:
            dimensions[name] = text
    return native(
        event_id=event_id,
        timestamp=time_attr if time_attr is not None else now_ms(),
        customer_id=subject,
        metric=meter_name,
        value=value,
        dimensions=dimensions,
        source=source,
        version="cloudevents-1.0",
    )


def error_detail(index: int, message: str, *, batch: bool) -> dict[str, Any]:
    field, reason = split_error(message)
    attribute = _FIELDS.get(field, field)
    return (
        {"index": index, "field": attribute, "message": reason}
        if batch
        else {"field": attribute, "message": reason}
    )


def answer(outcome: Outcome, *, batch: bool) -> Response[Any]:
    """204 No Content when everything was accepted (or was already known); 400 problem
    details naming each bad event otherwise (nothing was counted)."""
    if not outcome.errors:
        return Response(None, status_code=204)
    errors = [error_detail(i, m, batch=batch) for i, m in sorted(outcome.errors.items())]
    first = errors[0]
    where = f"event {first['index']}: " if batch else ""
    detail = f"{where}{first['field']}: {first['message']}"
    if len(errors) > 1:
        detail += f" (and {len(errors) - 1} more)"
    return problem(400, f"{detail}; no event was ingested", extensions={"errors": errors})
