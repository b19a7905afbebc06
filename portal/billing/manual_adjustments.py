"""Manual adjustments: a credit or debit note an account manager writes on a finalized invoice
(a goodwill credit, a missed fee), with an amount and a reason.

The note goes into the same `adjustments` table, numbered in the same gapless series
(`CN-…` / `DN-…`) as the late-event notes, so it counts in the invoice's adjusted total and
in `GET /v1/invoices/{id}/adjustments` like any other. It carries no lines: it corrects the
amount, not the usage, and `settle_late_events` re-rates usage from the invoice lines plus
earlier notes' line deltas, so an empty line list keeps a later re-rating from "undoing" it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import announcements
from portal.billing.currencies import minor_units
from portal.billing.documents import owe_email
from portal.billing.lifecycle import locked_invoice, next_number
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.schemas import InvoiceRow
from portal.infrastructure.domain_errors import Conflict, Invalid
from portal.infrastructure.typed_numbers import number_hint, typed_decimal

NoteKind = Literal["credit", "debit"]
SERIES: dict[str, str] = {"credit": "CN", "debit": "DN"}
# A note larger than this is almost surely a typo (an amount pasted twice, a missing point).
MAX_AMOUNT = Decimal("1000000000")


def parse_amount(raw: str, currency: str) -> Decimal:
    """A positive amount in the currency's minor unit ("12.50" in EUR); Invalid otherwise."""
    three = minor_units(currency) == 3
    amount = typed_decimal(raw, three_decimals=three)
    if amount is None:
        hint = number_hint(raw, three_decimals=three) or "write a number such as 12.50"
        raise Invalid(f"amount: {hint}")
    if amount <= 0:
        raise Invalid("amount: must be more than zero (choose credit or debit for the direction)")
    if amount > MAX_AMOUNT:
        raise Invalid(f"amount: more than {MAX_AMOUNT:,} {currency} cannot be right")
    places = minor_units(currency)
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > places:
        decimals = "no decimals" if places == 0 else f"at most {places} decimals"
        raise Invalid(f"amount: {currency} amounts have {decimals}")
    return amount


@dataclass(frozen=True, slots=True)
class PlannedNote:
    """A manual note as it would be issued: checked, not written."""

    invoice: InvoiceRow
    kind: str
    amount: Decimal  # signed: negative for a credit note
    reason: str
    amount_due_after: Decimal  # the invoice's adjusted total once it is issued


async def plan_manual_adjustment(
    session: AsyncSession, invoice_id: int, *, kind: str, amount: str, reason: str
) -> PlannedNote:
    """Check a credit note (less is owed) or debit note (more is owed) on a finalized
    invoice, under the customer's billing lock, without writing it: what the confirmation
    shows and what `add_manual_adjustment` issues. Raises Invalid for a bad kind, amount (a
    credit beyond what the invoice charged after its notes) or an empty reason, Conflict
    unless the invoice is finalized."""
    if kind not in SERIES:
        raise Invalid("kind: choose credit (less is owed) or debit (more is owed)")
    if not reason.strip():
        raise Invalid("reason: say why the invoice is adjusted")
    if "\x00" in reason:
        raise Invalid("reason: must not contain NUL characters")
    invoice = await locked_invoice(session, invoice_id)
    if invoice.status != "finalized":
        raise Conflict(
            f"invoice {invoice.number or invoice.id} is {invoice.status}; only finalized "
            "invoices are adjusted (a draft is simply recomputed)"
        )
    value = parse_amount(amount, invoice.currency)
    notes = await adjustment_store.notes_sum(session, invoice.id)
    if kind == "credit":
        # A credit note gives back part of what the invoice charged, never more: its total
        # (prepaid credit drawn included: that was paid too) after the earlier notes. A
        # larger goodwill gesture is prepaid credit for later periods.
        left = invoice.total + invoice.credits_applied + notes
        if value > left:
            raise Invalid(
                f"amount: at most {invoice.currency} {max(left, Decimal(0)):,f} can be credited: that "
                "is what the invoice charged, less its earlier notes (grant prepaid credit for more)"
            )
    signed = value if kind == "debit" else -value
    return PlannedNote(invoice, kind, signed, reason.strip(), invoice.total + notes + signed)


async def add_manual_adjustment(
    session: AsyncSession, invoice_id: int, *, kind: str, amount: str, reason: str
) -> tuple[int, str, str]:
    """Issue the note `plan_manual_adjustment` checks. Returns (adjustment id, note number,
    customer id)."""
    note = await plan_manual_adjustment(session, invoice_id, kind=kind, amount=amount, reason=reason)
    invoice, signed = note.invoice, note.amount
    number = await next_number(session, SERIES[kind])
    adjustment_id = await adjustment_store.insert_adjustment(
        session,
        invoice_id=invoice.id,
        number=number,
        kind=kind,
        subtotal_delta=signed,
        discount_delta=Decimal(0),
        amount=signed,
        lines=[],
        reason=note.reason,
    )
    await owe_email(
        session,
        number=number,
        customer_id=invoice.customer_id,
        invoice_id=invoice.id,
        adjustment_id=adjustment_id,
    )
    await announcements.adjustment_created(
        session,
        invoice,
        adjustment_id=adjustment_id,
        number=number,
        kind=kind,
        amount=signed,
        reason=note.reason,
        origin="manual",
    )
    return adjustment_id, number, invoice.customer_id
