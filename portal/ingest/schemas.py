"""The usage event as clients send it (the seed's `UsageEvent`) and the ingest answer."""

from __future__ import annotations

from decimal import Decimal

import msgspec

from portal.http.schemas import CamelStruct


class EventMetadata(CamelStruct):
    source: str = ""
    version: str = ""
    request_id: str | None = None


class UsageEvent(CamelStruct):
    event_id: str
    timestamp: int | str  # epoch milliseconds or RFC 3339 with an offset
    customer_id: str
    metric_name: str
    quantity: Decimal
    product_id: str = ""
    dimensions: dict[str, str] = msgspec.field(default_factory=dict)
    metadata: EventMetadata = msgspec.field(default_factory=EventMetadata)


class EventBatch(msgspec.Struct, forbid_unknown_fields=True):
    # Each event is decoded on its own so one bad event is rejected alone.
    events: list[msgspec.Raw]


class Rejection(CamelStruct):
    index: int
    event_id: str | None
    error: str


class IngestResult(CamelStruct):
    accepted: int
    duplicates: int
    rejected: list[Rejection]
