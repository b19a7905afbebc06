"""Per-event checks: pure functions from a decoded event and the catalog to an
`AcceptedEvent` or an error that names the field and the rule."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import msgspec

from portal.catalog.service import MeterSpec
from portal.ingest.events import AcceptedEvent
from portal.ingest.schemas import UsageEvent
from portal.periods import hour_bucket

MAX_QUANTITY = Decimal(10) ** 20  # numeric(32, 12): 20 integer digits
MAX_FRACTION_DIGITS = 12
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encode = msgspec.json.Encoder().encode  # compact JSON, keys in insertion order
_group_keys: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
_ID_RE = re.compile(r"^[A-Za-z0-9._:@+\-]+$")


class EventError(ValueError):
    """A reason to refuse one event; its message names the field."""


@dataclass(frozen=True, slots=True)
class Limits:
    now_us: int
    oldest_us: int  # now - accepted lateness
    newest_us: int  # now + future tolerance
    max_dimensions: int
    max_dimension_key_chars: int
    max_dimension_value_chars: int
    max_event_id_chars: int


def decode_event(raw: bytes) -> UsageEvent:
    """Decode one event; msgspec's message already names the path (`$.quantity`)."""
    try:
        return msgspec.json.decode(raw, type=UsageEvent)
    except msgspec.ValidationError as exc:
        raise EventError(_tidy(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise EventError(f"malformed JSON: {exc}") from exc


def loose_event_id(raw: bytes) -> str | None:
    """The eventId of an event that failed to decode, if one can be read, so the
    rejection can name it."""
    try:
        value = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return None
    event_id = value.get("eventId") if isinstance(value, dict) else None
    return event_id if isinstance(event_id, str) else None


def _tidy(message: str) -> str:
    # "Expected `str`, got `int` - at `$.customerId`" -> "customerId: Expected `str`, got `int`"
    if " - at `$." in message:
        text, _, path = message.rpartition(" - at `$.")
        # "dimensions[...]" is msgspec's "some value of this mapping"
        return f"{path.rstrip('`').replace('[...]', '')}: {text}"
    return message


def parse_timestamp_us(value: int | str) -> int:
    """Epoch milliseconds or RFC 3339 (with an offset) as epoch microseconds."""
    if isinstance(value, int):
        if value < 0:
            raise EventError("timestamp: must not be negative")
        return value * 1000
    text = value.strip()
    if not re.match(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}", text):
        raise EventError(f"timestamp: not epoch milliseconds or RFC 3339: {value!r}")
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise EventError(f"timestamp: not a valid RFC 3339 time: {value!r}") from exc
    if moment.tzinfo is None:
        raise EventError("timestamp: RFC 3339 time needs an offset (Z or ±hh:mm)")
    # Integer arithmetic from the epoch keeps microseconds exact (float timestamps do not).
    return (moment - _EPOCH) // timedelta(microseconds=1)


def check_quantity(quantity: Decimal) -> Decimal:
    if not quantity.is_finite():
        raise EventError("quantity: must be a finite number")
    if quantity < 0:
        raise EventError("quantity: must not be negative")
    if quantity >= MAX_QUANTITY:
        raise EventError("quantity: must be less than 10^20")
    exponent = quantity.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_FRACTION_DIGITS:
        raise EventError(f"quantity: at most {MAX_FRACTION_DIGITS} decimal places")
    return quantity.normalize() + Decimal(0)


def fingerprint(event: UsageEvent, quantity: Decimal, event_time_us: int) -> str:
    """What makes two sends "the same event": everything but the metadata (a retry may
    carry another request id)."""
    content = _encode(
        [event.customer_id, event.metric_name, event.product_id, format(quantity, "f"),
         event_time_us, sorted(event.dimensions.items())])
    return hashlib.blake2b(content, digest_size=16).hexdigest()


def group_key(meter: MeterSpec, dimensions: dict[str, str]) -> str:
    """Canonical group-by values: JSON object in the meter's groupBy order ("" if none).

    A missing group-by dimension groups under the empty string."""
    if not meter.group_by:
        return ""
    values = tuple(dimensions.get(d, "") for d in meter.group_by)
    key = (meter.group_by, values)
    cached = _group_keys.get(key)
    if cached is None:
        # Group-by values repeat across a batch; encode each combination once.
        if len(_group_keys) > 100_000:
            _group_keys.clear()
        cached = _group_keys[key] = _encode(dict(zip(meter.group_by, values, strict=True))).decode()
    return cached


def validate(
    event: UsageEvent,
    *,
    zones: dict[str, str],
    meters: dict[str, MeterSpec],
    limits: Limits,
) -> AcceptedEvent:
    """Every rule an event must pass to be counted. Raises EventError naming the field."""
    if not event.event_id:
        raise EventError("eventId: must not be empty")
    if len(event.event_id) > limits.max_event_id_chars:
        raise EventError(f"eventId: longer than {limits.max_event_id_chars} characters")
    tz_name = zones.get(event.customer_id)
    if tz_name is None:
        # Known ids passed this pattern when the customer was created.
        if not _ID_RE.match(event.customer_id):
            raise EventError("customerId: only letters, digits and . _ : @ + - are allowed")
        raise EventError(f"customerId: unknown customer {event.customer_id!r}")
    meter = meters.get(event.metric_name)
    if meter is None:
        raise EventError(f"metricName: unknown meter {event.metric_name!r}")
    quantity = check_quantity(event.quantity)
    event_time_us = parse_timestamp_us(event.timestamp)
    if event_time_us < limits.oldest_us:
        raise EventError("timestamp: older than the accepted lateness window")
    if event_time_us > limits.newest_us:
        raise EventError("timestamp: more than the allowed tolerance in the future")
    if len(event.dimensions) > limits.max_dimensions:
        raise EventError(f"dimensions: more than {limits.max_dimensions} entries")
    for name, value in event.dimensions.items():
        if not name or len(name) > limits.max_dimension_key_chars:
            raise EventError(
                f"dimensions: key {name[:40]!r} must have 1-{limits.max_dimension_key_chars} "
                "characters")
        if len(value) > limits.max_dimension_value_chars:
            raise EventError(
                f"dimensions.{name}: longer than {limits.max_dimension_value_chars} characters")
    unique_value: str | None = None
    if meter.unique_by is not None:
        unique_value = event.dimensions.get(meter.unique_by)
        if not unique_value:
            raise EventError(
                f"dimensions.{meter.unique_by}: required by meter {meter.metric_name!r} "
                "(unique_count)")
    metadata = {"source": event.metadata.source, "version": event.metadata.version}
    if event.metadata.request_id is not None:
        metadata["requestId"] = event.metadata.request_id
    return AcceptedEvent(
        customer_id=event.customer_id,
        event_id=event.event_id,
        metric_name=event.metric_name,
        product_id=event.product_id,
        quantity=quantity,
        event_time_us=event_time_us,
        dimensions=event.dimensions,
        metadata=metadata,
        fingerprint=fingerprint(event, quantity, event_time_us),
        aggregation=meter.aggregation,
        bucket=hour_bucket(event_time_us / 1_000_000, tz_name),
        group_key=group_key(meter, event.dimensions),
        unique_value=unique_value,
    )
