"""Shared pieces of the compatibility endpoints: turning foreign events into native
`UsageEvent` bodies, and submitting them all-or-nothing through the same `Ingestor`.

Every compat endpoint builds native JSON event bodies and hands them to
`Ingestor.ingest`, so validation, dedup and durability are the native ones. Before that,
each body is checked with the native rules (`decode_event` + `validate`) so that a request
with one bad event is refused whole and nothing of it is counted, as the original APIs do.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec

from portal.catalog.service import MeterSpec
from portal.infrastructure.http_errors import StoreUnavailable
from portal.infrastructure.settings import SettingsError
from portal.ingest import quality
from portal.ingest.service import CONFLICT_ERROR, IngestUnavailable
from portal.ingest.validation import (
    EventError,
    check_quantity,
    decode_event,
    decode_json_body,
    epoch_seconds_us,
    number_from_text,
    validate,
)
from portal.state import PortalState

# Meters whose events need no value: each event counts as 1.
VALUELESS = frozenset({"count", "unique_count"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class MappingError(ValueError):
    """A foreign event that cannot be expressed natively; `field` is in the foreign API's
    terms."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def decode_json(body: bytes) -> Any:
    """JSON with floats as Decimal, so 0.1 stays 0.1. Raises BodyError (→ 400) for invalid
    UTF-8, malformed JSON or nesting deeper than the documented limit."""
    return decode_json_body(body)


# --- configuration ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterMapping:
    """Where a meter's value and dimensions are found in a foreign event's data."""

    value: tuple[str, ...] | None = None  # path inside data/properties/payload
    dimensions: dict[str, tuple[str, ...]] | None = None
    customer: str | None = None  # Stripe: payload key of the customer id


def parse_path(text: str) -> tuple[str, ...]:
    """`$.a.b`, `a.b` or `data.a.b` (the `data.` prefix is optional) as ('a', 'b')."""
    path = text.strip()
    if path.startswith("$"):
        path = path[1:]
    path = path.lstrip(".")
    parts = tuple(p for p in path.split(".") if p)
    if parts and parts[0] in ("data", "properties", "payload") and len(parts) > 1:
        parts = parts[1:]
    if not parts:
        raise SettingsError(f"empty property path {text!r}")
    return parts


@lru_cache(maxsize=8)
def _parse_mapping(name: str, raw: str) -> dict[str, MeterMapping]:
    try:
        config = json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a JSON object: {exc}") from exc
    if not isinstance(config, dict):
        raise SettingsError(f"{name} must be a JSON object of meter name to mapping")
    mappings: dict[str, MeterMapping] = {}
    for meter, spec in config.items():
        if not isinstance(spec, dict):
            raise SettingsError(f"{name}: the mapping of {meter!r} must be an object")
        value = spec.get("value")
        dims = spec.get("dimensions")
        customer = spec.get("customer")
        if dims is not None and not isinstance(dims, dict):
            raise SettingsError(f"{name}: dimensions of {meter!r} must be an object")
        mappings[str(meter)] = MeterMapping(
            value=parse_path(str(value)) if value else None,
            dimensions={str(k): parse_path(str(v)) for k, v in dims.items()} if dims else None,
            customer=str(customer) if customer else None,
        )
    return mappings


def meter_mappings(env_name: str) -> dict[str, MeterMapping]:
    """The per-meter mapping in environment variable `env_name` (JSON), re-read when it
    changes."""
    raw = os.environ.get(env_name, "").strip()
    return _parse_mapping(env_name, raw) if raw else {}


# --- values --------------------------------------------------------------------------------


def lookup(data: Any, path: tuple[str, ...]) -> Any:
    node = data
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def number(value: Any, where: str) -> Decimal:
    """A JSON number or a numeric string as a Decimal, its text checked before it is
    converted (length and shape); the range is the caller's to check."""
    if isinstance(value, bool) or value is None:
        raise MappingError(where, "must be a number")
    if isinstance(value, (int, Decimal)):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, str):
        try:
            return number_from_text(value, where)
        except EventError as exc:
            raise MappingError(where, str(exc).partition(": ")[2]) from None
    raise MappingError(where, "must be a number")


def quantity(value: Any, where: str) -> Decimal:
    """A quantity by the native rules (0 ≤ q < 10^20, at most 12 decimal places), checked
    before anything formats it: a value like 1e1000000000 is refused, never expanded."""
    try:
        return check_quantity(number(value, where), where)
    except EventError as exc:
        raise MappingError(where, str(exc).partition(": ")[2]) from None


def meter_value(
    payload: dict[str, Any],
    meter_name: str,
    meters: Any,
    *,
    mapping_env: str,
    field: str,
    required_by: Callable[[Any], str],
    label: str | None = None,
) -> Decimal:
    """The quantity of a foreign event: the value at the meter's configured path (default
    `value`) in `payload`; 1 for count meters that carry none. A missing value for a meter
    that needs one is a MappingError on `field` saying it is required by `required_by(spec)`;
    a bad one names `label` (default `field.path`)."""
    spec = meters.get(meter_name)
    config = meter_mappings(mapping_env).get(meter_name)
    path = (config.value if config else None) or ("value",)
    raw = lookup(payload, path)
    if raw is None:
        if spec is not None and spec.aggregation not in VALUELESS:
            raise MappingError(field, f"{'.'.join(path)} is required by {required_by(spec)}")
        return Decimal(1)
    return quantity(raw, label or f"{field}.{'.'.join(path)}")


def dimension_text(value: Any) -> str | None:
    """Dimension values are strings natively; numbers and booleans are spelled as JSON."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        # Plain notation only for ordinary magnitudes: expanding 1e1000000000 would take
        # seconds and gigabytes (a dimension value that long is refused anyway).
        if value.is_finite() and -30 < value.adjusted() < 30 and value == value.to_integral_value():
            return format(value, "f")
        return str(value)
    if isinstance(value, int | float):
        return str(value)
    return msgspec.json.encode(value).decode()


def epoch_seconds_to_rfc3339(value: Any, where: str) -> str:
    """Unix seconds (int, float or numeric string) as RFC 3339 with microseconds; a
    MappingError when not a time between 1970 and 9999."""
    try:
        return rfc3339(epoch_seconds_us(number(value, where), where))
    except EventError as exc:
        raise MappingError(where, str(exc).partition(": ")[2]) from None


def rfc3339(micros: int) -> str:
    moment = _EPOCH + timedelta(microseconds=micros)
    return moment.isoformat().replace("+00:00", "Z")


def now_ms() -> int:
    return int(time.time() * 1000)


def new_id() -> str:
    return uuid.uuid4().hex


def native(
    *,
    event_id: str,
    timestamp: int | str,
    customer_id: str,
    metric: str,
    value: Decimal,
    dimensions: dict[str, str],
    source: str,
    version: str = "",
) -> bytes:
    body = {
        "eventId": event_id,
        "timestamp": timestamp,
        "customerId": customer_id,
        "metricName": metric,
        "quantity": format(value, "f"),
        "dimensions": dimensions,
        "metadata": {"source": source, "version": version},
    }
    try:
        return msgspec.json.encode(body)
    except UnicodeEncodeError:  # a lone surrogate: no UTF-8 exists for it
        raise MappingError("event", "contains a lone surrogate (not valid Unicode text)") from None


async def meter_specs(state: PortalState, names: set[str]) -> dict[str, MeterSpec]:
    try:
        _, meters = await state.catalog.lookup(set(), names)
    except StoreUnavailable as exc:
        raise IngestUnavailable(str(exc)) from exc
    return meters


# --- submission ----------------------------------------------------------------------------


@dataclass(slots=True)
class Outcome:
    """What happened to a request's events. `errors` maps an event's index to its message
    ("field: reason", native or foreign field names). When the checks before ingest found
    errors, nothing was ingested; errors the ingestor itself reports (a reused id with other
    content, `conflicts`) leave the request's other events counted."""

    accepted: int = 0
    duplicates: int = 0
    dropped: int = 0  # reused an id with other content: dropped like the original APIs do
    errors: dict[int, str] = field(default_factory=dict)
    conflicts: list[int] = field(default_factory=list)


def map_events(
    events: list[Any],
    to_native: Callable[[Any, Any], bytes],
    meters: Any,
) -> tuple[list[bytes | None], dict[int, str]]:
    """Each foreign event as a native body, or None with its mapping error by index."""
    bodies: list[bytes | None] = []
    errors: dict[int, str] = {}
    for index, event in enumerate(events):
        try:
            bodies.append(to_native(event, meters))
        except MappingError as exc:
            bodies.append(None)
            errors[index] = str(exc)
    return bodies, errors


async def submit(
    state: PortalState,
    bodies: list[bytes | None],
    *,
    drop_conflicts: bool,
    source: str,
    errors: dict[int, str] | None = None,
) -> Outcome:
    outcome = await _submit(state, bodies, drop_conflicts=drop_conflicts, errors=errors)
    # An event refused for reusing an id (and dropped as the original API would) is a
    # data problem too; duplicates are not.
    await quality.record(
        state.redis,
        source,
        accepted=outcome.accepted + outcome.duplicates,
        rejected=list(outcome.errors.values()) + ["eventId"] * outcome.dropped,
        now=datetime.now(UTC),
    )
    return outcome


async def _submit(
    state: PortalState,
    bodies: list[bytes | None],
    *,
    drop_conflicts: bool,
    errors: dict[int, str] | None = None,
) -> Outcome:
    """Check every body by the native rules; if all pass, ingest them together.

    `errors` are the events that could not be mapped (their bodies are None): the others
    are still checked, so the answer names every bad event; nothing is ingested then.
    Raises IngestUnavailable (→ 503) when the stores or the broker are down.
    `drop_conflicts`: an event id reused with other content is silently dropped (OpenMeter,
    Stripe: the first event with an id wins) instead of being an error (Lago)."""
    errors = dict(errors or {})  # mapping errors, by index; their bodies are None
    decoded = []
    for index, body in enumerate(bodies):
        if body is None:
            continue
        try:
            decoded.append((index, decode_event(body)))
        except EventError as exc:
            errors[index] = str(exc)
    try:
        zones, meters = await state.catalog.lookup(
            {e.customer_id for _, e in decoded}, {e.metric_name for _, e in decoded}
        )
    except StoreUnavailable as exc:
        raise IngestUnavailable(str(exc)) from exc
    # The ingestor's own limits (lateness window, sizes): the same rules, the same clock.
    limits = state.ingestor._limits(time.time())
    for index, event in decoded:
        try:
            validate(event, zones=zones, meters=meters, limits=limits)
        except EventError as exc:
            errors[index] = str(exc)
    if errors:
        return Outcome(errors=errors)
    result = await state.ingestor.ingest([b for b in bodies if b is not None])
    outcome = Outcome(accepted=result.accepted, duplicates=result.duplicates)
    for rejection in result.rejected:
        if rejection.error == CONFLICT_ERROR:
            if drop_conflicts:
                outcome.dropped += 1
            else:
                outcome.conflicts.append(rejection.index)
                outcome.errors[rejection.index] = rejection.error
        else:
            outcome.errors[rejection.index] = rejection.error
    return outcome


def split_error(message: str) -> tuple[str, str]:
    """ "customerId: unknown customer 'x'" → ("customerId", "unknown customer 'x'")."""
    name, sep, rest = message.partition(": ")
    if sep and " " not in name:
        return name.split(".", 1)[0].split("[", 1)[0], rest
    return "", message
