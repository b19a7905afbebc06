"""Persisting an accepted batch: raw events and hourly aggregates in one transaction.

Exactly once (DESIGN invariant 2): the event ledger's primary key (customer, event id)
admits each event once, whatever redelivers it; the raw rows and the aggregate deltas are
computed only from the events the ledger admitted, and all of it commits together.
Rows are locked in a fixed order (ledger by key, aggregates by key) so concurrent
batches cannot deadlock.

A batch that fails for a reason of its data is split (`persist_split`): every event that
can be persisted is, in parts of their own transactions, and only the events that fail
alone are kept in failed_events (portal/ingest/failed_events.py).

The SQL is in the owning domains' repositories (`portal/ingest/repository/` for the
ledger, raw events and conflicts, `portal/usage/repository.py` for the hourly aggregates):
raw asyncpg unnest statements and COPY on this transaction's connection, the hot path.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from operator import attrgetter
from typing import Any

from portal.alerting import repository as alerting_repository
from portal.billing.late_events import record_late_events
from portal.ingest import repository as ingest_repository
from portal.ingest.events import AcceptedEvent, micros_to_datetime
from portal.ingest.failed_events import (
    already_failed,
    decode_row,
    failed_event_record,
    failed_key,
    received_at_of,
    record_conflicts_safely,
    record_failed_events,
    text_safe,
    unstorable,
)
from portal.ingest.partitions import ensure_partitions, forget_known, month_start, months_between
from portal.usage import repository as usage_repository
from portal.usage.repository import AggKey, HourDelta


@dataclass(frozen=True, slots=True)
class PersistOutcome:
    persisted: int
    duplicates: int
    conflicts: int
    # Finalized invoices these events arrived late for: to be adjusted after commit.
    late_invoices: tuple[int, ...] = ()
    # Drafts of ended periods these events changed: to be re-rated after commit.
    stale_drafts: tuple[int, ...] = ()
    # Customers of the batch with alert rules: to be evaluated after commit.
    alert_customers: tuple[str, ...] = ()
    # Copies of events the ledger already held from another message, or held twice in this
    # one, that the ingest counted live: to be taken out of the live view after commit.
    live_corrections: tuple[AcceptedEvent, ...] = ()
    # The events this commit admitted (not those an earlier delivery of the message did):
    # what the live view lacks if the web never counted their batch (`LiveStore.settle`).
    admitted: tuple[AcceptedEvent, ...] = ()


def hourly_deltas(events: list[AcceptedEvent]) -> dict[str, dict[AggKey, HourDelta]]:
    """Per aggregation, the change each event set makes to its hourly rows (pure).

    unique_count is left out: its deltas depend on which values are new to the hour,
    which only the database knows.
    """
    with localcontext(prec=80):  # sums of quantities up to 10^20 stay exact (default: 28 digits)
        return _hourly_deltas(events)


def _hourly_deltas(events: list[AcceptedEvent]) -> dict[str, dict[AggKey, HourDelta]]:
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
                    current.value, current.latest_at, current.latest_event_id = (e.quantity, at, e.event_id)
    return out


# Fixed statement order keeps lock order fixed across concurrent batches.
AGGREGATION_ORDER = ("sum", "count", "max", "latest", "unique_count")


async def _unique_deltas(conn: Any, events: list[AcceptedEvent]) -> dict[AggKey, HourDelta]:
    """Insert unique_count values; each value new to its hour adds one to the count."""
    distinct = sorted(
        {(e.customer_id, e.metric_name, e.bucket, e.group_key, e.unique_value or "") for e in events}
    )
    counts: dict[AggKey, HourDelta] = {}
    for e in events:
        key = (e.customer_id, e.metric_name, e.bucket, e.group_key)
        counts.setdefault(key, HourDelta(Decimal(0), 0)).event_count += 1
    if not distinct:
        return counts
    for row in await usage_repository.insert_unique_values(conn, distinct):
        key = (row["customer_id"], row["metric_name"], int(row["hour"].timestamp()), row["group_key"])
        counts[key].value += 1
    return counts


async def _record_conflicts(conn: Any, events: list[AcceptedEvent], detected_by: str) -> None:
    if not events:
        return
    await ingest_repository.insert_conflicts(
        conn, [(e.customer_id, e.event_id, json.dumps(e.as_json()), detected_by) for e in events]
    )


async def persist_batch(conn: Any, batch: dict[str, Any]) -> PersistOutcome:
    """Write one accepted batch (asyncpg connection inside the caller's transaction)."""
    await _record_conflicts(
        conn, [AcceptedEvent.from_wire(decode_row(r)) for r in batch.get("conflicts") or []], "ingest"
    )
    return await persist_rows(conn, str(batch["id"]), received_at_of(batch), batch["events"])


_BY_KEY = attrgetter("customer_id", "event_id")  # the ledger's key: rows are locked in its order


def _first_of_each(events: list[AcceptedEvent]) -> tuple[list[AcceptedEvent], list[AcceptedEvent]]:
    """Events sorted by key, split into the first of each (customer, event id) and the
    repeats. One message can carry an event twice: two requests that sent it at once
    both pass the live check, and the hand-off may merge them."""
    ordered = sorted(events, key=_BY_KEY)
    first: list[AcceptedEvent] = []
    repeats: list[AcceptedEvent] = []
    for e in ordered:
        if first and (first[-1].customer_id, first[-1].event_id) == (e.customer_id, e.event_id):
            repeats.append(e)
        else:
            first.append(e)
    return first, repeats


async def persist_rows(conn: Any, message_id: str, received_at: datetime, rows: list[Any]) -> PersistOutcome:
    """Write accepted events (wire rows) in the caller's transaction; the ledger admits
    each (customer, event id) once, and only admitted events reach raw rows and aggregates."""
    events, repeats = _first_of_each([AcceptedEvent.from_wire(decode_row(row)) for row in rows])
    if not events:
        return PersistOutcome(0, 0, 0)
    event_times = [micros_to_datetime(e.event_time_us) for e in events]

    message = ingest_repository.message_key(message_id)
    admitted = events
    admitted_times = event_times
    refused: list[AcceptedEvent] = []
    conflicts: list[AcceptedEvent] = []
    # Every repeat was counted live once more; a refused event too, unless this very
    # message admitted it on an earlier delivery.
    copies: list[AcceptedEvent] = list(repeats)
    if await ingest_repository.admit_to_ledger(conn, events, event_times, received_at, message) < len(events):
        held = await ingest_repository.ledger_holdings(conn, events)
        admitted, admitted_times = [], []
        for e, at in zip(events, event_times, strict=True):
            holding = held.get((e.customer_id, e.event_id))
            if holding is not None and holding.admitted_now:
                admitted.append(e)
                admitted_times.append(at)
                continue
            refused.append(e)
            if holding is None or holding.fingerprint != e.fingerprint:
                conflicts.append(e)
            if holding is None or holding.message != message:
                copies.append(e)
    if repeats:
        first_print = {(e.customer_id, e.event_id): e.fingerprint for e in events}
        conflicts += [e for e in repeats if first_print[(e.customer_id, e.event_id)] != e.fingerprint]
    await _record_conflicts(conn, conflicts, "worker")

    if admitted:
        first = micros_to_datetime(min(e.event_time_us for e in admitted))
        last = micros_to_datetime(max(e.event_time_us for e in admitted))
        await ensure_partitions(conn, months_between(month_start(first), month_start(last)))
        await ingest_repository.copy_usage_events(
            conn, admitted, admitted_times, received_at=received_at, message_id=message_id
        )
        deltas = hourly_deltas(admitted)
        uniques = [e for e in admitted if e.aggregation == "unique_count"]
        if uniques:
            deltas["unique_count"] = await _unique_deltas(conn, uniques)
        for aggregation in AGGREGATION_ORDER:
            await usage_repository.upsert_hours(conn, aggregation, deltas.get(aggregation, {}))
    # Drafts of periods ended when the events were received (the message's own clock).
    late = await record_late_events(conn, admitted, now=received_at)
    watched = (
        await alerting_repository.customers_watched_among(conn, {e.customer_id for e in admitted})
        if admitted
        else []
    )
    if admitted:
        # The days last, just before the commit: a day's row is hotter than its hours' (every
        # message of the day adds to it), so it is held for the shortest time; and every
        # transaction locks hours before days, so two persists never deadlock.
        await usage_repository.upsert_days(conn, deltas)

    return PersistOutcome(
        persisted=len(admitted),
        duplicates=len(refused) + len(repeats) - len(conflicts),
        conflicts=len(conflicts),
        late_invoices=tuple(late.invoices),
        stale_drafts=tuple(late.stale_drafts),
        alert_customers=tuple(watched),
        live_corrections=tuple(copies),
        admitted=tuple(admitted),
    )


def combined(outcomes: list[PersistOutcome]) -> PersistOutcome:
    """One outcome for the parts of a split batch."""
    return PersistOutcome(
        persisted=sum(o.persisted for o in outcomes),
        duplicates=sum(o.duplicates for o in outcomes),
        conflicts=sum(o.conflicts for o in outcomes),
        late_invoices=tuple(sorted({i for o in outcomes for i in o.late_invoices})),
        stale_drafts=tuple(sorted({i for o in outcomes for i in o.stale_drafts})),
        alert_customers=tuple(sorted({c for o in outcomes for c in o.alert_customers})),
        live_corrections=tuple(e for o in outcomes for e in o.live_corrections),
        admitted=tuple(e for o in outcomes for e in o.admitted),
    )


@dataclass(frozen=True, slots=True)
class SplitOutcome:
    persisted: PersistOutcome  # what the parts that committed wrote
    events: int  # events in the message
    set_aside: int  # events kept in failed_events by this run
    reason: str  # why the first of them failed ("" when none did)


# Opens the unit of work: an asyncpg connection inside one transaction.
Transaction = Callable[[], AbstractAsyncContextManager[Any]]
# Events isolated by bisection are recorded in groups this size as the split goes, so a
# run cut short (time limit, worker killed) leaves progress the next delivery keeps.
RECORD_EVERY = 100


async def persist_split(
    transaction: Transaction,
    batch: dict[str, Any],
    *,
    error: Exception,
    may_set_aside: Callable[[Exception], bool],
) -> SplitOutcome:
    """Persist every event of a batch that can be persisted, and keep the others in
    failed_events with their reason, after the batch failed as a whole with `error`.

    Events `unstorable` recognizes are set aside at once; the rest is tried in one
    transaction, then, if that fails, in halves, each in its own transaction, down to the
    single events that fail (an error `may_set_aside` refuses is raised instead: the
    message is delivered again). Each part that commits does so once: when a redelivered
    message runs this again, the ledger admits nothing twice (aggregates are written only
    for what it admits, in the same transaction) and the events this message already set
    aside are skipped. The message's conflicts are recorded with the failures, last.
    """
    message_id = str(batch.get("id"))
    received_at = received_at_of(batch)
    given = batch.get("events")
    rows = [decode_row(row) for row in given] if isinstance(given, list) else []
    conflicts = batch.get("conflicts")
    conflicts = conflicts if isinstance(conflicts, list) else []
    async with transaction() as conn:
        skipped = await already_failed(conn, message_id)
    pending = [row for row in rows if failed_key(row) not in skipped] if skipped else rows
    failures: list[tuple[Any, str]] = []
    good: list[Any] = []
    for row in pending:
        fault = unstorable(row)
        if fault is None:
            good.append(row)
        else:
            failures.append((row, fault))
    outcomes: list[PersistOutcome] = []
    isolated: list[tuple[Any, str]] = []
    recorded = 0
    first_reason = failures[0][1] if failures else ""

    async def record(found: list[tuple[Any, str]]) -> None:
        nonlocal recorded
        async with transaction() as conn:
            recorded += await record_failed_events(
                conn, [failed_event_record(message_id, received_at, row, why) for row, why in found]
            )

    async def attempt(part: list[Any], known: Exception | None) -> None:
        nonlocal first_reason
        failed = known
        if failed is None:
            try:
                async with transaction() as conn:
                    outcomes.append(await persist_rows(conn, message_id, received_at, part))
                return
            except Exception as exc:
                forget_known()  # partitions created in the rolled-back part are gone
                if not may_set_aside(exc):
                    raise
                failed = exc
        if len(part) == 1:
            isolated.append((part[0], error_summary(failed)))
            first_reason = first_reason or isolated[-1][1]
            if len(isolated) >= RECORD_EVERY:  # progress a redelivery keeps
                await record(isolated)
                isolated.clear()
            return
        half = len(part) // 2
        await attempt(part[:half], None)
        await attempt(part[half:], None)

    if good:
        # The whole batch already failed with `error` if nothing was taken out of it.
        await attempt(good, error if len(good) == len(rows) and not conflicts else None)
    failures += isolated
    async with transaction() as conn:
        await record_conflicts_safely(conn, conflicts, "ingest")
        recorded += await record_failed_events(
            conn, [failed_event_record(message_id, received_at, row, why) for row, why in failures]
        )
    return SplitOutcome(combined(outcomes), len(rows), recorded, first_reason)


_ARGUMENT_VALUE = re.compile(r"(invalid input for query argument \$\d+): .*? \((.*)\)$", re.S)


def error_summary(exc: BaseException, limit: int = 300) -> str:
    """The error as "Type: first line of its message", short and storable; never the rows a
    statement carried (asyncpg quotes an argument it cannot encode: that quote is dropped)."""
    text = str(exc)
    quoted = _ARGUMENT_VALUE.match(text)
    if quoted:
        text = f"{quoted.group(1)} ({quoted.group(2)})"
    first = text.splitlines()[0] if text else ""
    return text_safe(f"{type(exc).__name__}: {first}" if first else type(exc).__name__)[:limit]
