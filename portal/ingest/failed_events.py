"""Events a worker cannot persist: telling them apart, and keeping them so that keeping
them cannot fail.

A persist message carries the accepted events of many requests and customers (the web
coalesces them), so one event Postgres refuses must not hold back the others, and
recording it must not fail for the very reason it failed:

- `unstorable(row)` says, without asking Postgres, why a wire row cannot be stored (a NUL
  or lone surrogate in any text, a number beyond numeric(32, 12) or not finite, a time
  out of range, a row of the wrong shape); the split (workers/persist.py) sets those
  aside first and bisects whatever still fails.
- `failed_event_record(...)` builds a `failed_events` row from the raw wire row: the
  searchable columns and the `event` fields the pages read are made safe for text and
  jsonb (NUL and lone surrogates written as `\\uXXXX`), and the exact wire row is kept for
  replay, as JSON text with every character escaped (`{"escaped": …}`) when jsonb could
  not hold it. Replay queues that form again; `decode_row` restores the exact row.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from portal.ingest import repository as ingest_repository
from portal.ingest.events import micros_to_datetime

# The wire row of an accepted event (portal/ingest/events.py `AcceptedEvent.to_wire`).
WIRE_FIELDS = 13
AGGREGATIONS = frozenset({"sum", "count", "max", "latest", "unique_count"})
# usage_events.quantity is numeric(32, 12): fewer than 20 digits before the point.
MAX_QUANTITY_DIGITS = 20
# Longest quantity text worth reading (the edge sends at most 20 + 1 + 12 characters).
MAX_QUANTITY_CHARS = 64
# Events must fall before 9999-12-01: partitions are created a month ahead.
MAX_EVENT_TIME_US = int(datetime(9999, 12, 1, tzinfo=UTC).timestamp()) * 1_000_000
MAX_REASON_CHARS = 2000
ESCAPED = "escaped"

_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def unsafe_char(text: str) -> str | None:
    """The first character of `text` that Postgres text and jsonb refuse (U+0000, a lone
    surrogate), None when there is none."""
    found = _UNSTORABLE.search(text)
    return None if found is None else found.group()


def text_safe(text: str) -> str:
    """`text` with U+0000 and lone surrogates written as `\\uXXXX`; unchanged otherwise."""
    if unsafe_char(text) is None:
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def key_safe(value: Any) -> str:
    """A customer or event id for a text column: itself when storable; otherwise escaped
    and followed by a digest of the exact value, so two ids that differ only in what was
    escaped stay two rows (failed_events is unique per message, customer and event)."""
    text = value if isinstance(value, str) else "" if value is None else _short_repr(value)
    if unsafe_char(text) is None:
        return text
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{text_safe(text)} [{digest}]"


def _short_repr(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int) and abs(value) < 10**30:
        return str(value)
    return f"<{type(value).__name__}>"


def _text_fault(field: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{field}: not text"
    bad = unsafe_char(value)
    if bad is None:
        return None
    return f"{field}: contains U+{ord(bad):04X}, which Postgres cannot store"


def _mapping_fault(field: str, value: Any) -> str | None:
    if not isinstance(value, dict):
        return f"{field}: not an object"
    for key, item in value.items():
        if _text_fault(field, key) is not None:
            return f"{field}: a key is not storable text"  # the key is at fault: not echoed
        fault = _text_fault(f"{field}.{key[:40]}", item)
        if fault is not None:
            return fault
    return None


def _quantity_fault(quantity: Any) -> str | None:
    if isinstance(quantity, bool) or not isinstance(quantity, (str, int)):
        return "quantity: not a number"
    if isinstance(quantity, int):
        return None if abs(quantity) < 10**MAX_QUANTITY_DIGITS else "quantity: beyond numeric(32, 12)"
    if len(quantity) > MAX_QUANTITY_CHARS:
        return "quantity: beyond numeric(32, 12)"
    try:
        value = Decimal(quantity)
    except InvalidOperation:
        return "quantity: not a number"
    if not value.is_finite():
        return "quantity: not a finite number"
    if value and value.adjusted() >= MAX_QUANTITY_DIGITS:
        return "quantity: beyond numeric(32, 12)"
    return None


def _micros_fault(field: str, micros: Any) -> str | None:
    # A bucket (local hour start) may lie a little before its event, even before 1970.
    if isinstance(micros, bool) or not isinstance(micros, int) or not abs(micros) < MAX_EVENT_TIME_US:
        return f"{field}: out of range"
    return None


def unstorable(row: Any) -> str | None:
    """Why this wire row cannot be persisted ("field: rule"), None when nothing is known
    to be wrong with it. Pure; never raises; never formats the values it judges (so a
    huge number's text costs nothing here)."""
    if not isinstance(row, list) or len(row) != WIRE_FIELDS:
        return "event: not an accepted event's wire row"
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
    texts = [
        ("customerId", customer_id),
        ("eventId", event_id),
        ("metricName", metric_name),
        ("productId", product_id),
        ("groupKey", group_key),
    ]
    if unique_value is not None:
        texts.append(("uniqueValue", unique_value))
    for field, value in texts:
        fault = _text_fault(field, value)
        if fault is not None:
            return fault
    for field, mapping in (("dimensions", dimensions), ("metadata", metadata)):
        fault = _mapping_fault(field, mapping)
        if fault is not None:
            return fault
    if not isinstance(aggregation, str) or aggregation not in AGGREGATIONS:
        return "aggregation: not a known aggregation"
    if not isinstance(fingerprint, str) or not _HEX.fullmatch(fingerprint):
        return "fingerprint: not hex"
    if isinstance(event_time_us, int) and event_time_us < 0:
        return "timestamp: out of range"
    return (
        _quantity_fault(quantity)
        or _micros_fault("timestamp", event_time_us)
        or _micros_fault("bucket", bucket * 1_000_000 if isinstance(bucket, int) else None)
    )


def replay_refusal(stored: Any) -> str | None:
    """Why a failed event, as failed_events stores it (`{"wire": row, ...}`), cannot be sent
    again: no stored copy (a row the worker did not write), or a copy Postgres can never
    hold (`unstorable`: a replay would only fail again). None when it can be replayed."""
    if isinstance(stored, str):
        try:
            stored = json.loads(stored)
        except ValueError:
            stored = None
    if not isinstance(stored, dict) or "wire" not in stored:
        return "it holds no stored copy to send again"
    fault = unstorable(decode_row(stored["wire"]))
    return None if fault is None else f"it can never be stored as it is ({fault})"


def decode_row(row: Any) -> Any:
    """A wire row as it is persisted: a row kept escaped in failed_events comes back from
    replay as `{"escaped": json}` and is restored exactly; any other row is returned as is."""
    if isinstance(row, dict) and isinstance(row.get(ESCAPED), str):
        try:
            return json.loads(row[ESCAPED])
        except ValueError:
            return row
    return row


def _json_storable(value: Any) -> bool:
    """Whether jsonb takes `value` exactly as it is."""
    if value is None or isinstance(value, bool):
        return True
    if isinstance(value, str):
        return unsafe_char(value) is None
    if isinstance(value, int):
        return abs(value) < 10**30
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, list):
        return all(_json_storable(item) for item in value)
    if isinstance(value, dict):
        return all(
            isinstance(k, str) and unsafe_char(k) is None and _json_storable(v) for k, v in value.items()
        )
    return False


def kept_wire(row: Any) -> Any:
    """The exact wire row in a form jsonb takes: the row itself, or its JSON text with
    every non-ASCII character escaped (`\\u0000` is then six ASCII characters)."""
    if _json_storable(row):
        return row
    try:
        return {ESCAPED: json.dumps(row, ensure_ascii=True)}
    except (TypeError, ValueError, RecursionError):  # nothing JSON can hold: say so
        return {"unreadable": f"<{type(row).__name__}>"}


def _shown(value: Any) -> Any:
    """A JSON value for the pages: strings made safe, numbers bounded, containers walked."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return text_safe(value)
    if isinstance(value, int) and abs(value) < 10**30:
        return value
    if isinstance(value, list):
        return [_shown(item) for item in value]
    if isinstance(value, dict):
        return {text_safe(k) if isinstance(k, str) else _short_repr(k): _shown(v) for k, v in value.items()}
    return _short_repr(value)


def event_shown(row: Any) -> dict[str, Any]:
    """The event in the public schema's shape (as `AcceptedEvent.as_json`), from a wire
    row of any shape, safe for jsonb."""
    fields = row if isinstance(row, list) else []

    def at(index: int) -> Any:
        return fields[index] if index < len(fields) else None

    quantity, event_time_us = at(4), at(5)
    return {
        "eventId": key_safe(at(1)),
        "customerId": key_safe(at(0)),
        "metricName": text_safe(at(2)) if isinstance(at(2), str) else "",
        "productId": text_safe(at(3)) if isinstance(at(3), str) else "",
        "quantity": (
            text_safe(quantity[:MAX_QUANTITY_CHARS]) if isinstance(quantity, str) else _short_repr(quantity)
        ),
        "timestamp": (
            event_time_us // 1000
            if isinstance(event_time_us, int)
            and not isinstance(event_time_us, bool)
            and abs(event_time_us) < 10**18
            else None
        ),
        "dimensions": _shown(at(6)) if isinstance(at(6), dict) else {},
        "metadata": _shown(at(7)) if isinstance(at(7), dict) else {},
    }


def failed_event_record(
    message_id: str, received_at: datetime, row: Any, reason: str
) -> tuple[str, str, str, str, datetime, str]:
    """A failed_events row (message_id, customer_id, event_id, event, received_at, reason)
    for a wire row of any shape: every text storable, the exact row kept for replay."""
    event = {**event_shown(row), "wire": kept_wire(row)}
    return (
        key_safe(message_id),
        event["customerId"],
        event["eventId"],
        json.dumps(event, ensure_ascii=False),
        received_at,
        text_safe(reason)[:MAX_REASON_CHARS],
    )


def failed_key(row: Any) -> tuple[str, str]:
    """(customer_id, event_id) as `failed_event_record` stores them."""
    fields = row if isinstance(row, list) else []
    return (key_safe(fields[0] if fields else None), key_safe(fields[1] if len(fields) > 1 else None))


def received_at_of(batch: dict[str, Any]) -> datetime:
    """The batch's acceptance time (epoch ms in the message), as a UTC datetime."""
    accepted_ms = batch.get("acceptedAt")
    if isinstance(accepted_ms, bool) or not isinstance(accepted_ms, int) or not 0 <= accepted_ms < 10**15:
        accepted_ms = 0
    return micros_to_datetime(accepted_ms * 1000)


async def record_failed_events(conn: Any, records: list[tuple[str, str, str, str, datetime, str]]) -> int:
    """Keep events that could not be persisted (rows from `failed_event_record`), in the
    caller's transaction. Idempotent per (message, customer, event): recording the same
    failure again keeps one row. Returns how many records were given."""
    if records:
        await ingest_repository.insert_failed_events(conn, records)
    return len(records)


async def already_failed(conn: Any, message_id: str) -> set[tuple[str, str]]:
    """(customer_id, event_id) of the events this message already set aside (see
    `failed_key`): a redelivered message skips them."""
    return await ingest_repository.failed_keys_of_message(conn, key_safe(message_id))


async def record_conflicts_safely(conn: Any, rows: list[Any], detected_by: str) -> None:
    """`event_conflicts` rows for wire rows of any shape (the refused event, as shown)."""
    if rows:
        shown = [event_shown(decode_row(row)) for row in rows]
        await ingest_repository.insert_conflicts(
            conn,
            [(e["customerId"], e["eventId"], json.dumps(e, ensure_ascii=False), detected_by) for e in shown],
        )
