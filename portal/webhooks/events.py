"""The events the portal announces, and the body every delivery of one sends (pure).

Body (docs/webhooks.md): `{"id": "evt_…", "type": "invoice.finalized", "apiVersion":
"2026-12-01", "createdAt": "2026-12-06T18:45:37.123456Z", "data": {…}}`, compact JSON, UTF-8.
`data` uses the API's camelCase field names; money is `{"amount": "12.50", "currency":
"EUR"}` (exact decimal strings with the currency's decimals), other numbers exact decimal
strings as the API prints them ("100", "12.5"), instants are ISO 8601 UTC.
"""

from __future__ import annotations

import json
import secrets
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

from portal.usage.combine import exact

API_VERSION = "2026-12-01"

EventType = Literal[
    "invoice.drafted",
    "invoice.finalized",
    "invoice.voided",
    "adjustment.created",
    "credit.low",
    "entitlement.exceeded",
    "alert.fired",
    "event.corrected",
]
EVENT_TYPES: tuple[EventType, ...] = (
    "invoice.drafted",
    "invoice.finalized",
    "invoice.voided",
    "adjustment.created",
    "credit.low",
    "entitlement.exceeded",
    "alert.fired",
    "event.corrected",
)

# What each type means, in the words the pages and docs use.
DESCRIPTIONS: dict[str, str] = {
    "invoice.drafted": "A draft invoice was created for a billing period",
    "invoice.finalized": "An invoice was approved and issued",
    "invoice.voided": "An issued invoice was voided",
    "adjustment.created": "A credit or debit note was issued",
    "credit.low": "A customer's prepaid credit fell below a fifth of what was granted",
    "entitlement.exceeded": "A customer reached a usage limit",
    "alert.fired": "An alert rule fired",
    "event.corrected": "An accepted usage event was cancelled or its quantity changed",
}

EVENT_ID_PREFIX = "evt_"


def new_event_id() -> str:
    """`evt_` + 24 random hex digits: the id receivers dedupe on, the same on every
    delivery, retry and replay of the event."""
    return EVENT_ID_PREFIX + secrets.token_hex(12)


def instant(value: datetime) -> str:
    """ISO 8601 in UTC with `Z` (a naive datetime is taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def money(amount: Decimal, currency: str) -> dict[str, str]:
    """Money as the body carries it: the exact amount as a string, and its currency."""
    return {"amount": format(amount, "f"), "currency": currency.strip()}


def _plain(value: Any) -> Any:
    # A quantity reads as the API's answers print it ("100", "12.5"): the stored numeric(32, 12)
    # would otherwise carry twelve decimal places ("100.000000000000"). Money is text already.
    if isinstance(value, Decimal):
        return exact(value)
    if isinstance(value, datetime):
        return instant(value)
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def body(event_id: str, event_type: str, data: dict[str, Any], *, created_at: datetime) -> str:
    """The event's JSON body, exactly as signed and sent (compact, keys in this order).
    Decimals in `data` become exact strings without trailing zeros ("100", "12.5"),
    datetimes ISO 8601 UTC. Raises ValueError for an unknown type, TypeError for a value
    JSON cannot carry."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"type: {event_type!r} is not an event type ({', '.join(EVENT_TYPES)})")
    envelope = {
        "id": event_id,
        "type": event_type,
        "apiVersion": API_VERSION,
        "createdAt": instant(created_at),
        "data": data,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), default=_plain)
