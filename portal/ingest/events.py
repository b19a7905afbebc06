"""An accepted event as the live view and the workers see it: validated, bucketed,
fingerprinted. Shared by `portal.ingest` (which builds them) and `workers` (which
persist them), so its wire form lives here too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import msgspec

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros_to_datetime(micros: int) -> datetime:
    """Epoch microseconds (UTC) as an aware datetime, exactly (no float on the way)."""
    return _EPOCH + timedelta(microseconds=micros)


# A frozen msgspec Struct rather than a frozen dataclass: the web builds one per accepted
# event and the workers one per persisted event, and a frozen dataclass's __init__ (one
# object.__setattr__ per field) cost 2.6 µs of the web's ~26 µs per event; this is 0.2 µs.
class AcceptedEvent(msgspec.Struct, frozen=True):
    customer_id: str
    event_id: str
    metric_name: str
    product_id: str
    quantity: Decimal
    event_time_us: int  # epoch microseconds, UTC
    dimensions: dict[str, str]
    metadata: dict[str, str]
    fingerprint: str  # hex; equal fingerprints mean "the same event sent again"
    aggregation: str
    bucket: int  # start of the customer's local hour, epoch seconds
    group_key: str  # canonical group-by values, "" when the meter has no groupBy
    unique_value: str | None  # the uniqueBy dimension's value for unique_count meters

    def to_wire(self) -> list[Any]:
        return [
            self.customer_id,
            self.event_id,
            self.metric_name,
            self.product_id,
            format(self.quantity, "f"),
            self.event_time_us,
            self.dimensions,
            self.metadata,
            self.fingerprint,
            self.aggregation,
            self.bucket,
            self.group_key,
            self.unique_value,
        ]

    @classmethod
    def from_wire(cls, row: list[Any]) -> AcceptedEvent:
        (
            customer_id,
            event_id,
            metric_name,
            product_id,
            quantity,
            event_time_us,
            dimensions,
            metadata,
            fingerprint,
            aggregation,
            bucket,
            group_key,
            unique_value,
        ) = row
        return cls(
            customer_id,
            event_id,
            metric_name,
            product_id,
            Decimal(quantity),
            int(event_time_us),
            dimensions,
            metadata,
            fingerprint,
            aggregation,
            int(bucket),
            group_key,
            unique_value,
        )

    def as_json(self) -> dict[str, Any]:
        """The event in the public schema's shape (for failed-event and conflict records)."""
        return {
            "eventId": self.event_id,
            "customerId": self.customer_id,
            "metricName": self.metric_name,
            "productId": self.product_id,
            "quantity": format(self.quantity, "f"),
            "timestamp": self.event_time_us // 1000,
            "dimensions": self.dimensions,
            "metadata": self.metadata,
        }
