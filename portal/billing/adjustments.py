"""Automatic adjustments: late events re-rate a finalized invoice, and the difference
becomes a debit note (more is owed) or a credit note (less is owed).

The finalized invoice never changes. What is true now = the invoice + its adjustments:
each adjustment carries the per-line differences and links the late events behind it.
Credits drawn by the invoice stay as they were; a note's amount is settled on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements
from portal.billing.documents import owe_email
from portal.billing.invoices import PeriodToRate, line_rows, rate_periods
from portal.billing.lifecycle import locked_invoice, next_number
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.views import money_text
from portal.ingest.models import EventCorrection
from portal.ingest.repository import corrections as correction_store
from portal.usage.combine import exact

LineKey = tuple[str, str, str]  # segment start, kind, charge key


def _key(kind: str, charge_key: str | None, segment_start: datetime) -> LineKey:
    return (segment_start.astimezone(UTC).isoformat(), kind, charge_key or "")


def line_deltas(
    invoiced: dict[LineKey, tuple[Decimal, Decimal, dict[str, Any]]],
    now_true: dict[LineKey, tuple[Decimal, Decimal, dict[str, Any]]],
    currency: str,
) -> list[dict[str, Any]]:
    """Per line, (quantity, amount) now true minus what has been invoiced so far (pure)."""
    out = []
    for key in sorted(invoiced.keys() | now_true.keys()):
        old_q, old_a, meta = invoiced.get(key) or (Decimal(0), Decimal(0), now_true[key][2])
        new_q, new_a, _ = now_true.get(key) or (Decimal(0), Decimal(0), meta)
        if new_q != old_q or new_a != old_a:
            out.append(
                {
                    **meta,
                    "segmentStart": key[0],
                    "quantityDelta": exact(new_q - old_q),
                    "amountDelta": money_text(new_a - old_a, currency),
                }
            )
    return out


async def settle_late_events(session: AsyncSession, invoice_id: int, *, now: datetime) -> int | None:
    """Re-rate a finalized invoice and record what changed as an adjustment; settle its
    late events. Returns the adjustment id (None when nothing changed the amount or
    the invoice is no longer finalized). Safe to run twice."""
    invoice = await locked_invoice(session, invoice_id)
    if invoice.status != "finalized":
        return None
    pending = await adjustment_store.unsettled_late_event_count(session, invoice_id)
    corrections = await correction_store.unsettled_corrections(session, invoice_id)
    if not pending and not corrections:
        return None
    item = PeriodToRate(
        invoice.customer_id,
        invoice.currency,
        invoice.period,
        invoice.planned_segments(),
        invoice.credits_applied,
    )
    rating = (await rate_periods(session, [item]))[0]
    now_true = {
        _key(r[2], r[3], r[14]): (
            r[6],
            r[12],
            {"kind": r[2], "chargeKey": r[3], "meter": r[4], "description": r[5]},
        )
        for r in line_rows(invoice.id, rating)
    }
    invoiced: dict[LineKey, tuple[Decimal, Decimal, dict[str, Any]]] = {}
    stored = await invoice_store.line_amounts(session, invoice_id)
    for kind, charge_key, meter, description, seg_start, quantity, amount in stored:
        meta = {"kind": kind, "chargeKey": charge_key, "meter": meter, "description": description}
        invoiced[_key(kind, charge_key, seg_start)] = (quantity, amount, meta)
    for lines in await adjustment_store.adjustment_lines(session, invoice_id):
        for line in lines:
            key = (line["segmentStart"], line["kind"], line["chargeKey"] or "")
            quantity, amount, meta = invoiced.get(key) or (Decimal(0), Decimal(0), line)
            invoiced[key] = (
                quantity + Decimal(line["quantityDelta"]),
                amount + Decimal(line["amountDelta"]),
                meta,
            )
    deltas = line_deltas(invoiced, now_true, invoice.currency)
    amount = sum((Decimal(d["amountDelta"]) for d in deltas), Decimal(0))
    subtotal_delta = sum((Decimal(d["amountDelta"]) for d in deltas if d["kind"] != "discount"), Decimal(0))
    adjustment_id = None
    if amount != 0:
        kind = "debit" if amount > 0 else "credit"
        # Late events settled before without a note changed no amount then; this note's
        # quantities include theirs, so it names them too.
        carried = await adjustment_store.noteless_late_event_count(session, invoice_id)
        reason = _reason(pending + carried, corrections, invoice.number or "")
        number = await next_number(session, "DN" if kind == "debit" else "CN")
        adjustment_id = await adjustment_store.insert_adjustment(
            session,
            invoice_id=invoice_id,
            number=number,
            kind=kind,
            subtotal_delta=subtotal_delta,
            discount_delta=-(amount - subtotal_delta),
            amount=amount,
            lines=msgspec.to_builtins(deltas),
            reason=reason,
        )
        await owe_email(
            session,
            number=number,
            customer_id=invoice.customer_id,
            invoice_id=invoice_id,
            adjustment_id=adjustment_id,
        )
        await announcements.adjustment_created(
            session,
            invoice,
            adjustment_id=adjustment_id,
            number=number,
            kind=kind,
            amount=amount,
            reason=reason,  # the note's own, word for word
            # A note that settles late events says so (its reason lists any corrections too).
            origin="late_events" if pending else "event_corrections",
            now=now,
        )
    await adjustment_store.settle_late_events_of(
        session, invoice_id, settled_at=now, adjustment_id=adjustment_id
    )
    await correction_store.settle_corrections_of(
        session, invoice_id, settled_at=now, adjustment_id=adjustment_id
    )
    return adjustment_id


def _reason(late: int, corrections: list[EventCorrection], number: str) -> str:
    """Why the note exists, in words: late events, and each correction with its own reason."""
    parts = []
    if late:
        parts.append(f"{late} event{'' if late == 1 else 's'} arrived after {number} was finalized")
    for c in corrections:
        what = (
            "cancelled"
            if c.kind == "cancel"
            else f"amended from {exact(c.quantity_before)} to {exact(c.quantity_after or Decimal(0))}"
        )
        parts.append(f"event {c.event_id} {what} after {number} was finalized: {c.reason}")
    return "; ".join(parts)
