"""Late events: events persisted into a period whose invoice is already finalized.

Runs inside the persist transaction, so an event is recorded as late exactly when it is
counted. The shared billing lock (portal/billing/repository/locks.py) makes "finalized" a stable
fact for the length of the transaction: finalizing waits for us, or we see it finalized.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository.locks import share_customers
from portal.ingest.events import AcceptedEvent, micros_to_datetime


@dataclass(frozen=True, slots=True)
class LateEvents:
    """What admitted events changed in periods already billed: the finalized invoices they
    reached (their late events recorded, to be settled by a note) and the drafts of ended
    periods they reached (awaiting review with a total rated before them)."""

    invoices: list[int]
    stale_drafts: list[int]


async def record_late_events(conn: Any, events: list[AcceptedEvent], *, now: datetime) -> LateEvents:
    """Record admitted events that fall in finalized periods; the invoices and the drafts of
    periods ended by `now` they reach."""
    if not events:
        return LateEvents([], [])
    customers = sorted({e.customer_id for e in events})
    await share_customers(conn, customers)
    earliest = micros_to_datetime(min(e.bucket for e in events) * 1_000_000)
    invoices = await invoice_store.finalized_periods_reaching(conn, customers, earliest, drafts_ended_by=now)
    if not invoices:
        return LateEvents([], [])
    periods: dict[str, list[tuple[datetime, datetime, int]]] = {}
    drafts: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for row in invoices:
        into = periods if row["status"] == "finalized" else drafts
        into.setdefault(row["customer_id"], []).append((row["period_start"], row["period_end"], row["id"]))
    stale: set[int] = set()
    late: list[tuple[int, str, str, str, Any, datetime]] = []
    for e in events:
        hour = micros_to_datetime(e.bucket * 1_000_000)
        stale.update(i for start, end, i in drafts.get(e.customer_id, ()) if start <= hour < end)
        for start, end, invoice_id in periods.get(e.customer_id, ()):
            if start <= hour < end:
                late.append(
                    (
                        invoice_id,
                        e.customer_id,
                        e.event_id,
                        e.metric_name,
                        e.quantity,
                        micros_to_datetime(e.event_time_us),
                    )
                )
    if late:
        await adjustment_store.insert_late_events(conn, late)
    return LateEvents(sorted({row[0] for row in late}), sorted(stale))
