"""Persisting an accepted batch: raw events and hourly aggregates in one transaction.

Exactly once (DESIGN invariant 2): the event ledger's primary key (customer, event id)
admits each event once, whatever redelivers it; the raw rows and the aggregate deltas are
computed only from the events the ledger admitted, and all of it commits together.
Rows are locked in a fixed order (ledger by key, aggregates by key) so concurrent
batches cannot deadlock.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import msgspec

from portal.ingest.events import AcceptedEvent, micros_to_datetime
from workers.late_events import record_late_events
from workers.partitions import ensure_partitions, month_start, months_between

EVENT_COLUMNS = [
    "customer_id", "event_id", "metric_name", "product_id", "quantity", "event_time", "hour",
    "group_key", "dimensions", "metadata", "received_at", "message_id",
]


def _json(value: Any) -> str:
    return _encode(value).decode()


_encode = msgspec.json.Encoder().encode


@dataclass(frozen=True, slots=True)
class PersistOutcome:
    persisted: int
    duplicates: int
    conflicts: int
    # Finalized invoices these events arrived late for: to be adjusted after commit.
    late_invoices: tuple[int, ...] = ()
    # Customers of the batch with alert rules: to be evaluated after commit.
    alert_customers: tuple[str, ...] = ()


@dataclass(slots=True)
class HourDelta:
    """What a batch adds to one hourly_usage row."""

    value: Decimal
    event_count: int
    latest_at: datetime | None = None
    latest_event_id: str | None = None


AggKey = tuple[str, str, int, str]  # customer, metric, bucket, group key


def hourly_deltas(events: list[AcceptedEvent]) -> dict[str, dict[AggKey, HourDelta]]:
    """Per aggregation, the change each event set makes to its hourly rows (pure).

    unique_count is left out: its deltas depend on which values are new to the hour,
    which only the database knows.
    """
    out: dict[str, dict[AggKey, HourDelta]] = defaultdict(dict)
    for e in events:
        key: AggKey = (e.customer_id, e.metric_name, e.bucket, e.group_key)
        rows = out[e.aggregation]
        current = rows.get(key)
        if e.aggregation == "sum":
            if current is None:
                rows[key] = HourDelta(e.quantity, 1)
            else:
                current.value += e.quantity
                current.event_count += 1
        elif e.aggregation == "count":
            if current is None:
                rows[key] = HourDelta(Decimal(1), 1)
            else:
                current.value += 1
                current.event_count += 1
        elif e.aggregation == "max":
            if current is None:
                rows[key] = HourDelta(e.quantity, 1)
            else:
                current.value = max(current.value, e.quantity)
                current.event_count += 1
        elif e.aggregation == "latest":
            at = micros_to_datetime(e.event_time_us)
            if current is None:
                rows[key] = HourDelta(e.quantity, 1, at, e.event_id)
            else:
                current.event_count += 1
                assert current.latest_at is not None and current.latest_event_id is not None
                if (at, e.event_id) > (current.latest_at, current.latest_event_id):
                    current.value, current.latest_at, current.latest_event_id = (
                        e.quantity, at, e.event_id)
    return out


_UPSERT = {
    "sum": "value = h.value + EXCLUDED.value, event_count = h.event_count + EXCLUDED.event_count",
    "count": "value = h.value + EXCLUDED.value, event_count = h.event_count + EXCLUDED.event_count",
    "unique_count": "value = h.value + EXCLUDED.value, "
                    "event_count = h.event_count + EXCLUDED.event_count",
    "max": "value = GREATEST(h.value, EXCLUDED.value), "
           "event_count = h.event_count + EXCLUDED.event_count",
    "latest": "value = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) "
              "> (h.latest_at, h.latest_event_id) THEN EXCLUDED.value ELSE h.value END, "
              "latest_event_id = CASE WHEN (EXCLUDED.latest_at, EXCLUDED.latest_event_id) "
              "> (h.latest_at, h.latest_event_id) THEN EXCLUDED.latest_event_id "
              "ELSE h.latest_event_id END, "
              "latest_at = GREATEST(h.latest_at, EXCLUDED.latest_at), "
              "event_count = h.event_count + EXCLUDED.event_count",
}
# Fixed statement order keeps lock order fixed across concurrent batches.
AGGREGATION_ORDER = ("sum", "count", "max", "latest", "unique_count")


async def _upsert_hours(conn: Any, aggregation: str, rows: dict[AggKey, HourDelta]) -> None:
    if not rows:
        return
    ordered = sorted(rows.items())
    await conn.execute(
        "INSERT INTO hourly_usage AS h (customer_id, metric_name, hour, group_key, value, "
        "event_count, latest_at, latest_event_id) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], "
        "$5::numeric[], $6::bigint[], $7::timestamptz[], $8::text[]) "
        "ON CONFLICT (customer_id, metric_name, hour, group_key) DO UPDATE SET "
        f"{_UPSERT[aggregation]}, updated_at = now()",
        [k[0] for k, _ in ordered], [k[1] for k, _ in ordered],
        [micros_to_datetime(k[2] * 1_000_000) for k, _ in ordered], [k[3] for k, _ in ordered],
        [d.value for _, d in ordered], [d.event_count for _, d in ordered],
        [d.latest_at for _, d in ordered], [d.latest_event_id for _, d in ordered],
    )


async def _unique_deltas(conn: Any, events: list[AcceptedEvent]) -> dict[AggKey, HourDelta]:
    """Insert unique_count values; each value new to its hour adds one to the count."""
    distinct = sorted({(e.customer_id, e.metric_name, e.bucket, e.group_key, e.unique_value or "")
                       for e in events})
    counts: dict[AggKey, HourDelta] = {}
    for e in events:
        key = (e.customer_id, e.metric_name, e.bucket, e.group_key)
        counts.setdefault(key, HourDelta(Decimal(0), 0)).event_count += 1
    if not distinct:
        return counts
    new = await conn.fetch(
        "INSERT INTO hourly_unique_values (customer_id, metric_name, hour, group_key, value) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::text[]) "
        "ON CONFLICT DO NOTHING RETURNING customer_id, metric_name, hour, group_key",
        [d[0] for d in distinct], [d[1] for d in distinct],
        [micros_to_datetime(d[2] * 1_000_000) for d in distinct], [d[3] for d in distinct],
        [d[4] for d in distinct],
    )
    for row in new:
        key = (row["customer_id"], row["metric_name"], int(row["hour"].timestamp()), row["group_key"])
        counts[key].value += 1
    return counts


async def _record_conflicts(conn: Any, events: list[AcceptedEvent], detected_by: str) -> None:
    if not events:
        return
    await conn.executemany(
        "INSERT INTO event_conflicts (customer_id, event_id, event, detected_by) "
        "VALUES ($1, $2, $3::jsonb, $4)",
        [(e.customer_id, e.event_id, json.dumps(e.as_json()), detected_by) for e in events],
    )


async def persist_batch(conn: Any, batch: dict[str, Any]) -> PersistOutcome:
    """Write one accepted batch (asyncpg connection inside the caller's transaction)."""
    message_id = str(batch["id"])
    received_at = micros_to_datetime(int(batch["acceptedAt"]) * 1000)
    events = sorted((AcceptedEvent.from_wire(row) for row in batch["events"]),
                    key=lambda e: (e.customer_id, e.event_id))
    await _record_conflicts(conn, [AcceptedEvent.from_wire(r) for r in batch.get("conflicts", [])],
                            "ingest")
    if not events:
        return PersistOutcome(0, 0, 0)
    event_times = {(e.customer_id, e.event_id): micros_to_datetime(e.event_time_us) for e in events}

    admitted_rows = await conn.fetch(
        "INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, received_at) "
        "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::timestamptz[], "
        "$5::timestamptz[]) ON CONFLICT DO NOTHING RETURNING customer_id, event_id",
        [e.customer_id for e in events], [e.event_id for e in events],
        [bytes.fromhex(e.fingerprint) for e in events],
        list(event_times.values()), [received_at] * len(events),
    )
    admitted_keys = {(r["customer_id"], r["event_id"]) for r in admitted_rows}
    admitted = [e for e in events if (e.customer_id, e.event_id) in admitted_keys]
    refused = [e for e in events if (e.customer_id, e.event_id) not in admitted_keys]

    conflicts: list[AcceptedEvent] = []
    if refused:
        known = await conn.fetch(
            "SELECT l.customer_id, l.event_id, l.fingerprint FROM event_ledger l "
            "JOIN unnest($1::text[], $2::text[]) AS k(customer_id, event_id) "
            "USING (customer_id, event_id)",
            [e.customer_id for e in refused], [e.event_id for e in refused],
        )
        fingerprints = {(r["customer_id"], r["event_id"]): bytes(r["fingerprint"]).hex()
                        for r in known}
        conflicts = [e for e in refused
                     if fingerprints.get((e.customer_id, e.event_id)) != e.fingerprint]
        await _record_conflicts(conn, conflicts, "worker")

    if admitted:
        first = micros_to_datetime(min(e.event_time_us for e in admitted))
        last = micros_to_datetime(max(e.event_time_us for e in admitted))
        await ensure_partitions(conn, months_between(month_start(first), month_start(last)))
        hours: dict[int, datetime] = {}
        await conn.copy_records_to_table(
            "usage_events",
            columns=EVENT_COLUMNS,
            records=[
                (e.customer_id, e.event_id, e.metric_name, e.product_id, e.quantity,
                 event_times[(e.customer_id, e.event_id)],
                 hours.get(e.bucket) or hours.setdefault(e.bucket, micros_to_datetime(e.bucket * 1_000_000)),
                 e.group_key, _json(e.dimensions), _json(e.metadata), received_at, message_id)
                for e in admitted
            ],
        )
        deltas = hourly_deltas(admitted)
        uniques = [e for e in admitted if e.aggregation == "unique_count"]
        if uniques:
            deltas["unique_count"] = await _unique_deltas(conn, uniques)
        for aggregation in AGGREGATION_ORDER:
            await _upsert_hours(conn, aggregation, deltas.get(aggregation, {}))
    late = await record_late_events(conn, admitted)
    watched = await conn.fetch(
        "SELECT DISTINCT customer_id FROM alert_rules WHERE disabled_at IS NULL AND customer_id = ANY($1)",
        sorted({e.customer_id for e in admitted})) if admitted else []

    return PersistOutcome(persisted=len(admitted), duplicates=len(refused) - len(conflicts),
                          conflicts=len(conflicts), late_invoices=tuple(late),
                          alert_customers=tuple(r["customer_id"] for r in watched))


async def record_failed_batch(conn: Any, batch: dict[str, Any], reason: str) -> int:
    """Keep every event of a batch that could not be persisted, with the reason.

    Idempotent per (message, event): recording the same failure twice keeps one row.
    """
    message_id = str(batch["id"])
    received_at = micros_to_datetime(int(batch["acceptedAt"]) * 1000)
    events = [AcceptedEvent.from_wire(row) for row in batch["events"]]
    if not events:
        return 0
    await conn.executemany(
        "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason) "
        "VALUES ($1, $2, $3, $4::jsonb, $5, $6) "
        "ON CONFLICT (message_id, customer_id, event_id) DO NOTHING",
        [(message_id, e.customer_id, e.event_id, json.dumps({"wire": e.to_wire(),
                                                             **e.as_json()}),
          received_at, reason[:2000]) for e in events],
    )
    return len(events)
