"""Per-event checks: pure functions from a decoded event and the catalog to an
`AcceptedEvent` or an error that names the field and the rule.

This module is the one place that says what input is acceptable, for the native API and
the three compatible ones alike: they map their events onto native bodies with the number
and time helpers below and then pass the same `validate`. The rule behind every check:
whatever is accepted must be storable (Postgres refuses NUL in text; a lone surrogate
cannot be encoded) and showable everywhere downstream, and no check may cost more than
the text it reads (numbers are judged by their exponent and digits, never expanded).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import (
    ROUND_HALF_EVEN,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any

import msgspec

from portal.catalog.service import MeterSpec
from portal.http.json_nesting import MAX_JSON_DEPTH, json_nesting_exceeds
from portal.http.schemas import ID_PATTERN
from portal.infrastructure.periods import hour_bucket
from portal.ingest.events import AcceptedEvent
from portal.ingest.schemas import UsageEvent

MAX_QUANTITY_DIGITS = 20  # numeric(32, 12): 20 integer digits
MAX_QUANTITY = Decimal(10) ** MAX_QUANTITY_DIGITS
MAX_FRACTION_DIGITS = 12
_FRACTION_STEP = Decimal(1).scaleb(-MAX_FRACTION_DIGITS)
_ZERO = Decimal(0)
# Enough precision for every quantity that passed the magnitude check, with Inexact trapped:
# digits beyond the twelfth decimal place would be lost. Passed to each operation rather than
# entered with localcontext(), which cost more than the checks themselves (per event).
_QUANTITY_CONTEXT = Context(
    prec=MAX_QUANTITY_DIGITS + MAX_FRACTION_DIGITS + 2,
    rounding=ROUND_HALF_EVEN,
    Emin=-999_999,
    Emax=999_999,
    traps=[InvalidOperation, DivisionByZero, Overflow, Inexact],
)
# Numbers sent as text (forms, JSON strings) longer than this are refused unread: no valid
# quantity or timestamp needs more (20 + 12 digits, a sign, a point, an exponent).
MAX_NUMBER_CHARS = 64
# The last second a datetime (and so Postgres' timestamptz as we use it) can hold.
MAX_EPOCH_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z
MAX_TIMESTAMP_CHARS = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_encode = msgspec.json.Encoder().encode  # compact JSON, keys in insertion order
_group_keys: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
_ID_RE = re.compile(ID_PATTERN)
DOT_SEGMENTS = frozenset((".", ".."))
# Text that cannot be stored or shown: C0 controls (Postgres refuses NUL in text and jsonb;
# the others are invisible on a page and break CSV and logs), DEL, and lone surrogates
# (no UTF-8 encoding exists for them).
_UNSTORABLE = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_RFC3339_START = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}")
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d{1,6})?$")

# Every rejection is counted under one of these (metrics labels, data-quality counters):
# a fixed set, whatever field names a client invents.
REJECTION_REASONS = frozenset(
    {
        "eventId",
        "timestamp",
        "customerId",
        "metricName",
        "quantity",
        "productId",
        "dimensions",
        "metadata",
        "body",
        "conflict",
        # the compatible APIs' own field names (portal/compat)
        "event",
        "transaction_id",
        "code",
        "external_customer_id",
        "external_subscription_id",
        "properties",
        "specversion",
        "id",
        "source",
        "type",
        "subject",
        "time",
        "data",
        "data_base64",
        "event_name",
        "payload",
        "identifier",
    }
)


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


def rejection_reason(error: str) -> str:
    """The field a rejection message names, as one of `REJECTION_REASONS` ("body" for
    anything that names no known field)."""
    if error.startswith("eventId: already used"):
        return "conflict"
    head = error.split(":", 1)[0].split(".", 1)[0].split("[", 1)[0].strip()
    return head if head in REJECTION_REASONS else "body"


def check_text(field: str, value: str) -> None:
    """Refuse text that cannot be stored or shown (see `_UNSTORABLE`)."""
    found = _UNSTORABLE.search(value)
    if found is not None:
        raise EventError(
            f"{field}: contains the control character or lone surrogate U+{ord(found.group()):04X}; "
            "C0 controls, DEL and lone surrogates are not allowed"
        )


def check_quantity(quantity: Decimal, field: str = "quantity") -> Decimal:
    """`quantity` if it fits numeric(32, 12) (0 ≤ q < 10^20, at most 12 decimal places),
    exactly (never rounded); EventError otherwise. Judged by exponent and digits, so a
    value like 1e1000000000 costs nothing."""
    if not quantity.is_finite():
        raise EventError(f"{field}: must be a finite number")
    if quantity.is_signed() and quantity != 0:
        raise EventError(f"{field}: must not be negative")
    if quantity and quantity.adjusted() >= MAX_QUANTITY_DIGITS:
        raise EventError(f"{field}: must be less than 10^{MAX_QUANTITY_DIGITS}")
    try:
        quantity.quantize(_FRACTION_STEP, context=_QUANTITY_CONTEXT)
    except (Inexact, InvalidOperation):
        raise EventError(f"{field}: at most {MAX_FRACTION_DIGITS} decimal places") from None
    # Plain digits, no trailing zeros, no exponent above 0 ("1E+2" becomes "100").
    return _QUANTITY_CONTEXT.add(quantity.copy_abs().normalize(_QUANTITY_CONTEXT), _ZERO)


def number_from_text(text: str, field: str) -> Decimal:
    """A number sent as text ("12.5", "1e3"): checked by length and shape before it is
    converted. The caller checks the range."""
    stripped = text.strip(" ")  # spaces only: a control character is refused, not trimmed
    if len(stripped) > MAX_NUMBER_CHARS or not _NUMBER_TEXT.match(stripped):
        raise EventError(f"{field}: not a number: {stripped[:MAX_NUMBER_CHARS]!r}")
    return Decimal(stripped)


def epoch_seconds_us(seconds: Decimal | int, field: str = "timestamp") -> int:
    """Unix seconds (possibly fractional) as epoch microseconds, exactly; EventError when
    outside 1970-01-01 .. 9999-12-31 (checked by magnitude before any arithmetic)."""
    value = Decimal(seconds)
    if not value.is_finite():
        raise EventError(f"{field}: must be a finite number")
    if value.is_signed() and value != 0:
        raise EventError(f"{field}: must not be negative")
    if value and (value.adjusted() > 11 or value > MAX_EPOCH_SECONDS):
        # The usual cause is a unit mix-up, which the bare bound would not tell.
        raise EventError(
            f"{field}: after 9999-12-31T23:59:59Z (this field takes epoch seconds: "
            "a value of 13 digits is in milliseconds)"
        )
    if value and value.adjusted() < -7:
        return 0  # below a microsecond
    return int(value.scaleb(6).to_integral_value())


_decode_usage_event = msgspec.json.Decoder(UsageEvent).decode

_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])")


def json_error_words(exc: Exception, raw: bytes) -> str:
    """msgspec's words for a body it could not decode, except where they mislead: a lone
    surrogate escape (`"\\ud800"`, text no store can hold) near the end of a body is
    reported as "Input data was truncated"."""
    if str(exc) == "Input data was truncated" and _LONE_SURROGATE_ESCAPE.search(raw):
        return "a \\u escape of half a surrogate pair (such as \\ud800) is not text"
    return str(exc)


def decode_event(raw: bytes) -> UsageEvent:
    """Decode one event; msgspec's message already names the path (`$.quantity`).
    Invalid UTF-8 and runaway nesting are EventErrors like any other malformed JSON."""
    try:
        return _decode_usage_event(raw)
    except msgspec.ValidationError as exc:
        raise EventError(_tidy(str(exc))) from exc
    except msgspec.DecodeError as exc:
        raise EventError(f"malformed JSON: {json_error_words(exc, raw)}") from exc
    except UnicodeDecodeError:
        raise EventError("body: not valid UTF-8") from None
    except RecursionError:
        raise EventError(f"body: JSON nested deeper than {MAX_JSON_DEPTH} levels") from None


class BodyError(ValueError):
    """A request body that is not JSON we can read at all (400): invalid UTF-8, malformed,
    or nested deeper than `MAX_JSON_DEPTH`."""


_json_decoder = msgspec.json.Decoder(float_hook=Decimal)


def decode_json_body(body: bytes) -> Any:
    """Untyped JSON (numbers with a fraction as Decimal, so 0.1 stays 0.1), for bodies whose
    shape is checked afterwards. Raises BodyError naming what is wrong."""
    if json_nesting_exceeds(body):
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        value = _json_decoder.decode(body)
    except UnicodeDecodeError:
        raise BodyError("the body is not valid UTF-8") from None
    except RecursionError:
        raise BodyError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise BodyError(f"malformed JSON: {json_error_words(exc, body)}") from None
    return value


def loose_event_id(raw: bytes) -> str | None:
    """The eventId of an event that failed to decode, if one can be read, so the
    rejection can name it."""
    try:
        value = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None
    event_id = value.get("eventId") if isinstance(value, dict) else None
    if not isinstance(event_id, str) or _UNSTORABLE.search(event_id):
        return None
    return event_id[: MAX_TIMESTAMP_CHARS * 4]


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
        if value > MAX_EPOCH_SECONDS * 1000:
            raise EventError(
                "timestamp: after 9999-12-31T23:59:59Z (epoch milliseconds are expected, 13 digits "
                "today: 16 digits are microseconds, 19 nanoseconds)"
            )
        return value * 1000
    text = value.strip(" ")  # spaces only: a control character is refused, not trimmed
    if len(text) > MAX_TIMESTAMP_CHARS or not _RFC3339_START.match(text):
        raise EventError(f"timestamp: not epoch milliseconds or RFC 3339: {text[:MAX_TIMESTAMP_CHARS]!r}")
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError as exc:
        raise EventError(f"timestamp: not a valid RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise EventError("timestamp: RFC 3339 time needs an offset (Z or ±hh:mm)")
    # Integer arithmetic from the epoch keeps microseconds exact (float timestamps do not).
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _check_texts(event: UsageEvent, limits: Limits) -> None:
    """Every string of the event is storable and of bounded length (one regex pass over
    all of them; the field is named only when something is found)."""
    meta = event.metadata
    dimensions = event.dimensions
    request_id = meta.request_id
    # The common case, every text clean and short, without naming a field (per event).
    joined = "".join(
        (
            event.event_id,
            event.customer_id,
            event.metric_name,
            event.product_id,
            meta.source,
            meta.version,
            request_id or "",
            *dimensions,
            *dimensions.values(),
        )
    )
    longest = limits.max_dimension_value_chars
    if (
        _UNSTORABLE.search(joined) is None
        and len(event.product_id) <= longest
        and len(meta.source) <= longest
        and len(meta.version) <= longest
        and (request_id is None or len(request_id) <= longest)
    ):
        return
    _name_bad_text(event, limits)


def _name_bad_text(event: UsageEvent, limits: Limits) -> None:
    """Raise the EventError naming the first text `_check_texts` found at fault."""
    meta = event.metadata
    texts = [
        ("eventId", event.event_id),
        ("customerId", event.customer_id),
        ("metricName", event.metric_name),
        ("productId", event.product_id),
        ("metadata.source", meta.source),
        ("metadata.version", meta.version),
    ]
    if meta.request_id is not None:
        texts.append(("metadata.requestId", meta.request_id))
    for name, value in event.dimensions.items():
        texts.append(("dimensions", name))
        texts.append((f"dimensions.{name}", value))
    if _UNSTORABLE.search("".join(text for _, text in texts)):
        for field, text in texts:
            if field.startswith("dimensions.") and _UNSTORABLE.search(field):
                field = "dimensions"  # the key itself is at fault: do not echo it
            check_text(field, text)
    bounded = 7 if meta.request_id is not None else 6
    for field, text in texts[3:bounded]:  # productId and metadata
        if len(text) > limits.max_dimension_value_chars:
            raise EventError(f"{field}: longer than {limits.max_dimension_value_chars} characters")


def fingerprint(event: UsageEvent, quantity: Decimal, event_time_us: int) -> str:
    """What makes two sends "the same event": everything but the metadata (a retry may
    carry another request id)."""
    content = _encode(
        [
            event.customer_id,
            event.metric_name,
            event.product_id,
            format(quantity, "f"),
            event_time_us,
            sorted(event.dimensions.items()),
        ]
    )
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
    _check_texts(event, limits)
    # Read once: this runs for every event of every batch.
    event_id = event.event_id
    customer_id = event.customer_id
    dimensions = event.dimensions
    if not event_id:
        raise EventError("eventId: must not be empty")
    if event_id.isspace():
        # Accepted, it could not be told apart on a page or typed back into a search.
        raise EventError("eventId: must not be blank (spaces only)")
    if len(event_id) > limits.max_event_id_chars:
        raise EventError(f"eventId: longer than {limits.max_event_id_chars} characters")
    if "/" in event_id:
        # An event is opened, cancelled and amended by its id in a URL path, where a slash
        # cannot be told from the path's own (an accepted event no one could correct).
        raise EventError("eventId: must not contain “/”")
    if event_id in DOT_SEGMENTS:
        # The same for "." and "..": browsers resolve them as the path's own dot segments.
        raise EventError("eventId: must not be “.” or “..”")
    tz_name = zones.get(customer_id)
    if tz_name is None:
        # Known ids passed this pattern when the customer was created.
        if not _ID_RE.match(customer_id):
            raise EventError("customerId: only letters, digits and . _ : @ + - are allowed")
        raise EventError(f"customerId: unknown customer {customer_id!r}")
    meter = meters.get(event.metric_name)
    if meter is None:
        raise EventError(f"metricName: unknown meter {event.metric_name!r}")
    quantity = check_quantity(event.quantity)
    event_time_us = parse_timestamp_us(event.timestamp)
    if event_time_us < limits.oldest_us:
        as_seconds = event.timestamp * 1_000_000 if isinstance(event.timestamp, int) else None
        if as_seconds is not None and limits.oldest_us <= as_seconds <= limits.newest_us:
            raise EventError(
                "timestamp: older than the accepted lateness window (it reads as epoch seconds; "
                "this API takes epoch milliseconds)"
            )
        raise EventError("timestamp: older than the accepted lateness window")
    if event_time_us > limits.newest_us:
        raise EventError("timestamp: more than the allowed tolerance in the future")
    if dimensions:
        _check_dimensions(dimensions, limits)
    unique_value: str | None = None
    if meter.unique_by is not None:
        unique_value = dimensions.get(meter.unique_by)
        if not unique_value:
            raise EventError(
                f"dimensions.{meter.unique_by}: required by meter {meter.metric_name!r} (unique_count)"
            )
    meta = event.metadata
    metadata = {"source": meta.source, "version": meta.version}
    if meta.request_id is not None:
        metadata["requestId"] = meta.request_id
    # Positional, in AcceptedEvent's field order (its wire order too).
    return AcceptedEvent(
        customer_id,
        event_id,
        event.metric_name,
        event.product_id,
        quantity,
        event_time_us,
        dimensions,
        metadata,
        fingerprint(event, quantity, event_time_us),
        meter.aggregation,
        _hour_bucket(event_time_us / 1_000_000, tz_name),
        group_key(meter, dimensions) if meter.group_by else "",
        unique_value,
    )


# The customer's local hour of an instant, per zone and UTC quarter hour: every offset and
# transition falls on a quarter hour (as periods.utc_offset_s assumes), so all instants of
# one quarter hour share their local hour. A batch's events fall in few of them.
_buckets: dict[tuple[str, int], int] = {}


def _hour_bucket(epoch_s: float, tz_name: str) -> int:
    """`periods.hour_bucket`, looked up once per zone and quarter hour."""
    key = (tz_name, int(epoch_s // 900))
    bucket = _buckets.get(key)
    if bucket is None:
        if len(_buckets) > 100_000:
            _buckets.clear()
        bucket = _buckets[key] = hour_bucket(epoch_s, tz_name)
    return bucket


def _check_dimensions(dimensions: dict[str, str], limits: Limits) -> None:
    """At most `max_dimensions` entries, keys of 1..max_dimension_key_chars characters and
    values of at most max_dimension_value_chars; EventError naming the first at fault."""
    if len(dimensions) > limits.max_dimensions:
        raise EventError(f"dimensions: more than {limits.max_dimensions} entries")
    for name, value in dimensions.items():
        if not name or len(name) > limits.max_dimension_key_chars:
            raise EventError(
                f"dimensions: key {name[:40]!r} must have 1-{limits.max_dimension_key_chars} characters"
            )
        if len(value) > limits.max_dimension_value_chars:
            raise EventError(f"dimensions.{name}: longer than {limits.max_dimension_value_chars} characters")
