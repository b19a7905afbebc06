"""Late events: events persisted into a period whose invoice is already finalized.

Runs inside the persist transaction, so an event is recorded as late exactly when it is
counted. The shared billing lock (portal/billing/repository/locks.py) makes "finalized" a stable
fact for the length of the transaction: finalizing waits for us, or we see it finalized.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository.locks import share_customers
from portal.ingest.events import AcceptedEvent, micros_to_datetime


async def record_late_events(conn: Any, events: list[AcceptedEvent]) -> list[int]:
    """Record admitted events that fall in finalized periods; the invoice ids touched."""
    if not events:
        return []
    customers = sorted({e.customer_id for e in events})
    await share_customers(conn, customers)
    earliest = micros_to_datetime(min(e.bucket for e in events) * 1_000_000)
    invoices = await invoice_store.finalized_periods_reaching(conn, customers, earliest)
    if not invoices:
        return []
    periods: dict[str, list[tuple[datetime, datetime, int]]] = {}
    for row in invoices:
        periods.setdefault(row["customer_id"], []).append((row["period_start"], row["period_end"], row["id"]))
    late: list[tuple[int, str, str, str, Any, datetime]] = []
    for e in events:
        hour = micros_to_datetime(e.bucket * 1_000_000)
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
    return sorted({row[0] for row in late})
