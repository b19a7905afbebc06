"""Stripe's meter events (`POST /v1/billing/meter_events`, form-encoded) → native events.

Mapping: `event_name` → meter, `payload[stripe_customer_id]` → customer id,
`payload[value]` → quantity, `identifier` → event id (generated when absent), `timestamp`
(unix seconds; now when absent) → timestamp; other `payload[...]` keys → dimensions. The
payload keys of the customer and the value can be set per meter in
`PORTAL_STRIPE_MAPPING` (`{"<meter>": {"customer": "user", "value": "tokens"}}`), like a
Stripe meter's `customer_mapping.event_payload_key` and `value_settings.event_payload_key`.
"""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from litestar import Response

from portal.catalog.service import MeterSpec
from portal.compat.mapping import (
    VALUELESS,
    MappingError,
    meter_mappings,
    native,
    new_id,
    quantity,
    rfc3339,
    split_error,
)
from portal.infrastructure.http_errors import RETRY_AFTER_S
from portal.ingest.validation import MAX_NUMBER_CHARS, EventError, epoch_seconds_us

MAPPING_ENV = "PORTAL_STRIPE_MAPPING"


def error(
    status: int,
    message: str,
    *,
    param: str | None = None,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> Response[Any]:
    """Stripe's error body: `{"error": {"type", "message", "param", "code"}}`."""
    body: dict[str, Any] = {"type": kind, "message": message}
    if param is not None:
        body["param"] = param
    if code is not None:
        body["code"] = code
    return Response({"error": body}, status_code=status, headers=headers)


def unavailable(detail: str) -> Response[Any]:
    return error(
        503,
        f"{detail}; nothing was recorded, retry later",
        kind="api_error",
        headers={"Retry-After": RETRY_AFTER_S, "Stripe-Should-Retry": "true"},
    )


def form_items(body: bytes) -> list[tuple[str, str]]:
    """The fields of a form-encoded body, strictly: bytes or %-escapes that are not UTF-8
    are a MappingError (a lenient decoder would turn them into U+FFFD, so that two
    different identifiers became the same one)."""
    try:
        return parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=1000,
        )
    except UnicodeDecodeError:
        raise MappingError("payload", "the body is not valid UTF-8 form data.") from None
    except ValueError:
        raise MappingError("payload", "the body holds too many fields.") from None


def parse_form(items: list[tuple[str, str]]) -> tuple[dict[str, str], dict[str, str]]:
    """Top-level fields and `payload[...]` entries of a form-encoded body."""
    fields: dict[str, str] = {}
    payload: dict[str, str] = {}
    for key, value in items:
        if key.startswith("payload[") and key.endswith("]"):
            payload[key[len("payload[") : -1]] = value
        else:
            fields[key] = value
    return fields, payload


class Mapped:
    """A meter event mapped to a native body, with what the answer echoes."""

    def __init__(
        self, body: bytes, event_name: str, identifier: str, timestamp: int, payload: dict[str, str]
    ) -> None:
        self.body = body
        self.event_name = event_name
        self.identifier = identifier
        self.timestamp = timestamp
        self.payload = payload


def to_native(fields: dict[str, str], payload: dict[str, str], meters: dict[str, MeterSpec]) -> Mapped:
    # Spaces only: a control character is refused by the event rules, never trimmed away
    # (str.strip() would drop \x1c-\x1f, tabs and line breaks at either end).
    event_name = fields.get("event_name", "").strip(" ")
    if not event_name:
        raise MappingError("event_name", "Missing required param: event_name.")
    if not payload:
        raise MappingError("payload", "Missing required param: payload.")
    config = meter_mappings(MAPPING_ENV).get(event_name)
    customer_key = (config.customer if config else None) or "stripe_customer_id"
    value_key = ".".join(config.value) if config and config.value else "value"
    customer_id = payload.get(customer_key, "").strip(" ")
    if not customer_id:
        raise MappingError(f"payload[{customer_key}]", f"Missing required param: payload[{customer_key}].")
    spec = meters.get(event_name)
    raw_value = payload.get(value_key)
    if raw_value is None or raw_value == "":
        if spec is not None and spec.aggregation not in VALUELESS:
            raise MappingError(f"payload[{value_key}]", f"Missing required param: payload[{value_key}].")
        value = Decimal(1)
    else:
        value = quantity(raw_value, f"payload[{value_key}]")
    raw_time = fields.get("timestamp", "").strip(" ")
    if raw_time:
        if len(raw_time) > MAX_NUMBER_CHARS or not raw_time.lstrip("-").isdecimal():
            raise MappingError("timestamp", "Invalid integer: " + raw_time[:MAX_NUMBER_CHARS])
        timestamp = int(raw_time)
        try:
            epoch_seconds_us(timestamp)
        except EventError as exc:
            raise MappingError("timestamp", str(exc).partition(": ")[2]) from None
    else:
        timestamp = int(time.time())
    identifier = fields.get("identifier", "").strip(" ") or new_id()
    dimensions = {k: v for k, v in payload.items() if k not in (customer_key, value_key)}
    body = native(
        event_id=identifier,
        timestamp=rfc3339(timestamp * 1_000_000),
        customer_id=customer_id,
        metric=event_name,
        value=value,
        dimensions=dimensions,
        source="stripe",
        version="billing.meter_event",
    )
    return Mapped(body, event_name, identifier, timestamp, payload)


def param_for(message: str, customer_key: str = "stripe_customer_id") -> tuple[str, str]:
    field, reason = split_error(message)
    param = {
        "eventId": "identifier",
        "customerId": f"payload[{customer_key}]",
        "metricName": "event_name",
        "timestamp": "timestamp",
        "quantity": "payload[value]",
        "dimensions": "payload",
    }.get(field, field or "payload")
    return param, reason


def answer_error(message: str) -> Response[Any]:
    param, reason = param_for(message)
    return error(400, reason if reason.endswith(".") else f"{param}: {reason}", param=param)


def meter_event(mapped: Mapped) -> Response[Any]:
    return Response(
        {
            "object": "billing.meter_event",
            "created": int(time.time()),
            "event_name": mapped.event_name,
            "identifier": mapped.identifier,
            "livemode": False,
            "payload": mapped.payload,
            "timestamp": mapped.timestamp,
        },
        status_code=200,
    )


def meter_event_adjustment(event_name: str, identifier: str) -> Response[Any]:
    """Stripe's `billing.meter_event_adjustment`; ours is complete when answered (the event is
    cancelled in the same request; Stripe's turns complete later)."""
    return Response(
        {
            "object": "billing.meter_event_adjustment",
            "livemode": False,
            "status": "complete",
            "event_name": event_name,
            "type": "cancel",
            "cancel": {"identifier": identifier},
        },
        status_code=200,
    )
