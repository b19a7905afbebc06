"""What the event page and its correction forms say about an event's corrections (issue 19):
its history in words, its state, whether it may still be corrected, what a cancel or a new
quantity would do to the period's usage and its invoice, and the forms' fields read and
checked as the API checks them (`portal/ingest/schemas.py`), each mistake worded for the form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.catalog import service as catalog
from portal.catalog.schemas import Customer, Meter
from portal.ingest import repository as ingest_repository
from portal.ingest.models import EventCorrection
from portal.ingest.repository import corrections as correction_store
from portal.ingest.validation import EventError, check_quantity
from portal.pages.formatting import instant, invoice_label, measure, metric_label
from portal.usage.combine import exact

REASON_MAX = 500
# The API's QuantityText: plain digits, at most 12 decimal places (no exponent, no sign).
QUANTITY_TEXT = re.compile(r"[0-9]{1,20}(\.[0-9]{1,12})?")
SHOWN_CHARS = 40


@dataclass(frozen=True, slots=True)
class CorrectionShown:
    """One correction as the event page lists it."""

    at: datetime
    actor: str
    what: str  # "Cancelled", "Quantity 2 → 5.125 calls"
    reason: str
    source: str  # "portal", "API", "Stripe API"
    invoice_id: int | None
    invoice: str | None  # "INV-000001": the finalized invoice whose period holds the event
    note_id: int | None
    note: str | None  # "CN-000001" once settled with a note
    settled: bool


@dataclass(frozen=True, slots=True)
class InvoiceOfEvent:
    """The invoice whose period holds the event (a finalized one wins over a draft)."""

    invoice_id: int
    status: str  # "finalized" or "draft"
    label: str


@dataclass(frozen=True, slots=True)
class EventFacts:
    """A stored event as a correction sees it."""

    customer: Customer
    event_id: str
    metric_name: str
    quantity: Decimal  # as it stands (after any amend)
    event_time: datetime
    in_ledger: bool
    meter: Meter | None
    corrections: list[EventCorrection]
    invoice: InvoiceOfEvent | None

    @property
    def unit(self) -> str:
        return self.meter.unit if self.meter else ""

    @property
    def cancel(self) -> EventCorrection | None:
        return next((c for c in self.corrections if c.kind == "cancel"), None)

    def amount(self, quantity: Decimal) -> str:
        """'2 calls'."""
        return measure(exact(quantity), self.unit)

    def at(self, when: datetime) -> str:
        return instant(when, self.customer.timezone)


async def event_facts(db: AsyncSession, customer: Customer, event_id: str) -> EventFacts | None:
    """The stored event with its corrections and invoice; None when it is not stored."""
    stored = await ingest_repository.stored_event(db, customer.id, event_id)
    if stored is None:
        return None
    ledger = await ingest_repository.ledger_entry(db, customer.id, event_id)
    covering = await invoice_store.invoices_covering(db, customer.id, stored.event_time)
    invoice = next(
        (
            InvoiceOfEvent(int(r[0]), str(r[2]), invoice_label(r[1], r[3], customer.timezone))
            for status in ("finalized", "draft")
            for r in covering
            if r[2] == status
        ),
        None,
    )
    return EventFacts(
        customer=customer,
        event_id=event_id,
        metric_name=stored.metric_name,
        quantity=Decimal(stored.quantity),
        event_time=stored.event_time,
        in_ledger=ledger is not None,
        meter=await catalog.get_meter(db, stored.metric_name),
        corrections=await correction_store.corrections_of_event(db, customer.id, event_id),
        invoice=invoice,
    )


def refusal(facts: EventFacts, *, now: datetime, lateness: timedelta) -> tuple[int, str] | None:
    """(status, why) when the event can no longer be corrected; None when it can."""
    cancel = facts.cancel
    if cancel is not None:
        assert cancel.created_at is not None
        return 409, (
            f"This event was cancelled on {facts.at(cancel.created_at)} by {cancel.actor}: "
            "it counts nowhere, and nothing more can change it."
        )
    if not facts.in_ledger or facts.event_time < now - lateness:
        return 422, (
            f"This event is older than the {lateness.days}-day window for corrections: "
            "correct its invoice with a manual note instead."
        )
    return None


def state_text(facts: EventFacts) -> str | None:
    """The event's state in one sentence, for the top of its page (None: never corrected)."""
    if not facts.corrections:
        return None
    last = facts.cancel or facts.corrections[-1]
    assert last.created_at is not None
    when = f"on {facts.at(last.created_at)} by {last.actor}: {last.reason}"
    if last.kind == "cancel":
        return f"Cancelled {when}"
    return f"Quantity changed to {facts.amount(facts.quantity)} {when}"


async def corrections_shown(db: AsyncSession, facts: EventFacts) -> list[CorrectionShown]:
    """The event's corrections, oldest first, with their invoice and note numbers."""
    numbers: dict[int, str] = {}
    notes: dict[int, str] = {}
    for invoice_id in sorted({c.invoice_id for c in facts.corrections if c.invoice_id is not None}):
        invoice = await invoice_store.invoice_by_id(db, invoice_id)
        if invoice is not None:
            numbers[invoice_id] = invoice_label(invoice.number, invoice.period_start, facts.customer.timezone)
        if any(c.adjustment_id is not None for c in facts.corrections):
            for note in await adjustment_store.adjustments_with_events(db, invoice_id):
                notes[int(note[0])] = str(note[2])
    shown = []
    for c in facts.corrections:
        assert c.created_at is not None
        what = (
            "Cancelled"
            if c.kind == "cancel"
            else f"Quantity {measure(exact(c.quantity_before), '')} → "
            f"{facts.amount(c.quantity_after or Decimal(0))}"
        )
        shown.append(
            CorrectionShown(
                at=c.created_at,
                actor=c.actor,
                what=what,
                reason=c.reason,
                source={"api": "API", "stripe": "Stripe API", "portal": "portal"}.get(c.source, c.source),
                invoice_id=c.invoice_id,
                invoice=None if c.invoice_id is None else numbers.get(c.invoice_id),
                note_id=c.adjustment_id,
                note=None if c.adjustment_id is None else notes.get(c.adjustment_id),
                settled=c.settled_at is not None,
            )
        )
    return shown


def usage_effect(facts: EventFacts, new_quantity: Decimal | None) -> str:
    """What a cancel (new_quantity None) or a new quantity does to the period's usage."""
    label = metric_label(facts.metric_name)
    aggregation = facts.meter.aggregation if facts.meter else "sum"
    if aggregation == "sum":
        change = (new_quantity or Decimal(0)) - facts.quantity
        direction = "rise" if change > 0 else "drop"
        return f"{label} this period {direction} by {facts.amount(abs(change))}."
    if aggregation == "count":
        if new_quantity is None:
            return f"{label} this period drop by {measure(1, facts.unit)}."
        return f"{label} counts events, not quantities: its totals do not change."
    if aggregation == "unique_count":
        unique_by = facts.meter.unique_by if facts.meter else None
        if new_quantity is None:
            return (
                f"Its {unique_by or 'value'} is no longer counted in that hour, "
                "unless another event carries it."
            )
        return f"{label} counts distinct values, not quantities: its totals do not change."
    peak = "highest" if aggregation == "max" else "latest"
    without = " without it" if new_quantity is None else ""
    return f"The {peak} value of {label} in that hour is taken again{without}."


def invoice_effect(facts: EventFacts, kind: str, new_quantity: Decimal | None = None) -> str:
    """What a cancel, or an amend (to `new_quantity` when known), does to the invoice of the
    event's period."""
    invoice = facts.invoice
    if invoice is None:
        return "Its period is not invoiced yet: the upcoming invoice counts the change."
    if invoice.status == "draft":
        return f"Its period's draft invoice ({invoice.label}) is rated again with the change."
    aggregation = facts.meter.aggregation if facts.meter else "sum"
    if kind == "amend" and aggregation in ("count", "unique_count"):
        return f"Its period is invoiced ({invoice.label}): the amount does not change."
    if kind == "cancel" and aggregation in ("sum", "count"):
        note = "a credit note"
    elif kind == "amend" and aggregation == "sum" and new_quantity is not None:
        note = "a debit note" if new_quantity > facts.quantity else "a credit note"
    else:
        note = "a credit or debit note"
    return f"Its period is invoiced ({invoice.label}): {note} will follow for the difference."


def read_reason(raw: str) -> tuple[str, str | None]:
    """(the reason, None) or (what was typed, the mistake): one printable line, 1 to 500 characters."""
    text = raw.strip()
    if not text:
        return text, "Reason: say why the event is corrected (it is kept in the audit log)."
    if len(text) > REASON_MAX:
        return text, f"Reason: at most {REASON_MAX} characters (this one has {len(text):,})."
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        return text, "Reason: one line of plain text, without line breaks or control characters."
    return text, None


def read_quantity(raw: str, facts: EventFacts) -> tuple[Decimal | None, str | None]:
    """(the new quantity, None) or (None, the mistake)."""
    text = raw.strip()
    if not text:
        return None, "New quantity: give the event's new quantity, such as 5.125."
    if len(text) > SHOWN_CHARS or not QUANTITY_TEXT.fullmatch(text):
        shown = text[:SHOWN_CHARS] + ("…" if len(text) > SHOWN_CHARS else "")
        return None, (
            f"New quantity: “{shown}” is not a quantity. Use digits and a point, "
            "at most 12 decimal places, such as 5.125."
        )
    try:
        quantity = check_quantity(Decimal(text))
    except EventError as exc:
        return None, f"New quantity: {str(exc).removeprefix('quantity: ')}."
    if quantity == facts.quantity:
        return None, f"New quantity: the event's quantity is {facts.amount(quantity)} already."
    return quantity, None
