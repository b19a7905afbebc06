"""A void invoice's credit and debit notes are void with it on paper: stamped VOID, nothing
due or credited, and no total after adjustments on the invoice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from portal.billing.pdf.render import invoice_pdf, note_pdf
from portal.billing.views import AdjustmentLineView, AdjustmentView, InvoiceView
from tests.billing.test_invoice_documents import (
    BERLIN,
    DEC_START,
    ISSUED,
    PARTIES,
    credit_note,
    invoice,
    text_of,
)

VOIDED = ISSUED + timedelta(days=12)  # 14 Jan 2027


def debit_note() -> AdjustmentView:
    """DN-000002: EUR 0.48 for one late event on INV-000001."""
    return AdjustmentView(
        id=3,
        invoice_id=7,
        number="DN-000002",
        kind="debit",
        amount="0.48",
        subtotal_delta="0.48",
        discount_delta="0.00",
        lines=[AdjustmentLineView("usage", "calls", "api_calls", "API calls", DEC_START, "960", "0.48")],
        reason="1 late event for INV-000001",
        event_count=1,
        event_ids=["late-1"],
        created_at=datetime(2027, 1, 5, 8, 0, tzinfo=UTC),
    )


def void_invoice(*notes: AdjustmentView) -> InvoiceView:
    return invoice(
        state="void",
        adjustments=list(notes),
        adjusted_total="580.08",
        voided_at=VOIDED,
        void_reason="Reissued with the late usage",
    )


def test_the_debit_note_of_a_void_invoice_is_void_and_owes_nothing() -> None:
    # Given DN-000002 (EUR 0.48) on INV-000001, which was then voided
    # When the note is printed
    text = text_of(note_pdf(debit_note(), void_invoice(debit_note()), PARTIES, BERLIN))
    lines = text.splitlines()
    # Then it is stamped VOID with its invoice, and nothing is due on it
    assert lines[0] == "Debit note DN-000002"
    assert "VOID" in lines
    assert "VOID: voided on 14 Jan 2027 with invoice INV-000001. Reissued with the late usage" in lines
    assert "Total EUR 0.48" in lines
    assert "Nothing is due on a void note." in lines
    assert "Total due" not in text and "Amount due" not in text
    assert not any(entry.startswith("Due date") for entry in lines)


def test_the_credit_note_of_a_void_invoice_credits_nothing() -> None:
    note = credit_note([])
    lines = text_of(note_pdf(note, void_invoice(note), PARTIES, BERLIN)).splitlines()
    assert "VOID: voided on 14 Jan 2027 with invoice INV-000001. Reissued with the late usage" in lines
    assert "Total EUR -12.50" in lines
    assert "Nothing is credited by a void note." in lines
    assert not any("is credited against invoice" in entry for entry in lines)


def test_the_note_of_an_issued_invoice_is_still_due() -> None:
    lines = text_of(note_pdf(debit_note(), invoice(adjustments=[debit_note()]), PARTIES, BERLIN)).splitlines()
    assert "Total due EUR 0.48" in lines
    assert "Amount due: EUR 0.48 by 4 Feb 2027" in lines
    assert "VOID" not in lines


def test_a_void_invoice_lists_its_notes_as_void_and_no_adjusted_total() -> None:
    text = text_of(invoice_pdf(void_invoice(debit_note()), PARTIES, BERLIN))
    lines = text.splitlines()
    assert "Debit note DN-000002: EUR 0.48 (void with this invoice). 1 late event for INV-000001" in lines
    assert "Total EUR 579.60" in lines
    assert "Nothing is due on a void invoice." in lines
    assert "Total after adjustments" not in text
    assert "580.08" not in text
