"""The usage event as clients send it (the seed's `UsageEvent`) and the ingest answer."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

from portal.catalog.schemas import Identifier
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


# --- event corrections

# Why an event is corrected: shown in the audit log and on the note; printable, one line.
Reason = Annotated[
    str, msgspec.Meta(min_length=1, max_length=500, pattern=r"^[^\x00-\x1f\x7f]*\S[^\x00-\x1f\x7f]*$")
]
# A new quantity as exact decimal text (the ingest's bounds are checked by the service).
QuantityText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}(\.[0-9]{1,12})?$")]


class CancelIn(CamelStruct, kw_only=True):
    """Cancel the event: it stays stored, counts nowhere."""

    customer_id: Identifier
    reason: Reason


class AmendIn(CamelStruct, kw_only=True):
    """Give the event a new quantity."""

    customer_id: Identifier
    quantity: QuantityText
    reason: Reason


class CorrectionOut(CamelStruct, kw_only=True):
    id: int
    customer_id: str
    event_id: str
    kind: str
    meter: str
    event_time: datetime
    quantity_before: str
    quantity_after: str | None
    reason: str
    actor: str
    source: str
    created_at: datetime
    # The finalized invoice whose period the event is in (its note follows), None for an open period.
    invoice_id: int | None
    adjustment_id: int | None
