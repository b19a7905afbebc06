"""The layout of an invoice or note as a PDF (the page and its fonts: `document.py`).

Pure: the bytes depend only on the arguments (the document's own dates are its creation
date; no clock is read), so the same invoice always gives the same file."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from fpdf.enums import TableBordersLayout

from portal.billing.pdf.document import FONT, GREY, Document
from portal.billing.pdf.parties import Parties
from portal.billing.pdf.text import (
    amount_text,
    day_text,
    deduction,
    grouped,
    local_date,
    money_text,
    period_text,
    settlement_text,
)
from portal.billing.views import AdjustmentView, InvoiceView, LineView

_WIDTHS = (84, 30, 32, 34)  # description, quantity, unit price, amount (mm; 180 between margins)
_RED = (190, 30, 30)


@dataclass(frozen=True, slots=True)
class Fact:
    label: str
    value: str


def _start(title: str, footer: str, created: datetime) -> Document:
    pdf = Document(footer)
    pdf.set_title(title)
    pdf.set_creation_date(created.astimezone(UTC))
    pdf.add_page()
    return pdf


def _block(pdf: Document, x: float, y: float, width: float, heading: str, lines: list[str]) -> float:
    """A heading and its lines at (x, y); returns where the block ends."""
    pdf.set_xy(x, y)
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*GREY)
    pdf.cell(width, 4.5, heading.upper(), new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    for index, line in enumerate(lines):
        pdf.set_x(x)
        pdf.set_font(FONT, "B" if index == 0 else "", 10 if index == 0 else 9)
        pdf.multi_cell(width, 5, line, new_x="LMARGIN", new_y="NEXT")
    return pdf.get_y()


def _header(pdf: Document, parties: Parties, title: str, facts: list[Fact]) -> None:
    seller = parties.issuer
    issuer_lines = [seller.name, *seller.address]
    if seller.tax_id:
        issuer_lines.append(f"Tax id: {seller.tax_id}")
    if seller.email:
        issuer_lines.append(seller.email)
    bill = parties.bill_to
    bill_lines = [bill.name, *bill.address]
    if bill.tax_id:
        bill_lines.append(f"Tax id: {bill.tax_id}")
    if bill.account:
        bill_lines.append(f"Account: {bill.account}")

    pdf.set_font(FONT, "B", 18)
    pdf.cell(0, 10, title, new_x="LMARGIN", new_y="NEXT")
    top = pdf.get_y() + 2
    issuer_end = _block(pdf, 15, top, 88, "From", issuer_lines)
    # The facts, right column: label and value on one line each.
    pdf.set_xy(110, top)
    pdf.set_font(FONT, "", 8)
    pdf.set_text_color(*GREY)
    pdf.cell(85, 4.5, "DETAILS", new_x="LMARGIN", new_y="NEXT")
    pdf.set_text_color(0, 0, 0)
    for fact in facts:
        pdf.set_x(110)
        pdf.set_font(FONT, "", 9)
        pdf.cell(32, 5, fact.label)
        pdf.set_font(FONT, "B", 9)
        pdf.multi_cell(53, 5, fact.value, new_x="LMARGIN", new_y="NEXT")
    facts_end = pdf.get_y()
    bill_end = _block(pdf, 15, max(issuer_end, facts_end) + 5, 120, "Bill to", bill_lines)
    pdf.set_y(bill_end + 6)


def _void_stamp(
    pdf: Document, voided_on: str, reason: str | None, *, with_invoice: str | None = None
) -> None:
    """A large VOID across the first page (faint, so the lines stay legible), and why,
    under the header. `with_invoice`: the number of the void invoice a note is void with."""
    y = pdf.get_y()
    with pdf.local_context(text_color=_RED, fill_opacity=0.25):
        pdf.set_font(FONT, "B", 96)
        with pdf.rotation(25, x=105, y=150):
            pdf.text(48, 175, "VOID")
    with pdf.local_context(text_color=_RED):
        pdf.set_xy(15, y)
        pdf.set_font(FONT, "B", 10)
        pdf.multi_cell(
            0,
            5,
            f"VOID: voided on {voided_on}{f' with invoice {with_invoice}' if with_invoice else ''}. "
            f"{reason or ''}".strip(),
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(3)


def _quantity(value: str) -> str:
    return grouped(value)


def _lines_table(pdf: Document, invoice: InvoiceView, tz_name: str) -> None:
    cur = invoice.currency
    pdf.set_font(FONT, "", 9)
    with pdf.table(
        col_widths=_WIDTHS,
        text_align=("LEFT", "RIGHT", "RIGHT", "RIGHT"),
        borders_layout=TableBordersLayout.HORIZONTAL_LINES,
        line_height=5.5,
        padding=1,
        width=180,
    ) as table:
        head = table.row()
        for label in ("Description", "Quantity", f"Unit price ({cur})", f"Amount ({cur})"):
            head.cell(label)
        for line in invoice.lines:
            share = line.proration_text(invoice.period_start, invoice.period_end, tz_name)
            _line_rows(table, line, cur, share)
        if not invoice.lines:
            table.row().cell("No charges in this period.", colspan=4)


def _line_rows(table: object, line: LineView, cur: str, share: str) -> None:
    """The line's rows; `share` says what part of the period a prorated line covers ("")."""
    description = f"{line.description} {share}" if share else line.description
    if line.kind == "discount":
        quantity, unit = "", (f"{line.unit_price}%" if line.unit_price else "")
    elif line.kind == "flat":
        quantity, unit = "", ""
    else:
        quantity = _quantity(line.quantity)
        unit = amount_text(line.unit_price, cur) if line.unit_price is not None else "tiered"
    row = table.row()  # type: ignore[attr-defined]
    row.cell(description)
    row.cell(quantity)
    row.cell(unit)
    row.cell(amount_text(line.amount, cur))
    if line.kind == "usage" and Decimal(line.included_quantity) != 0:
        included = table.row()  # type: ignore[attr-defined]
        billable = (
            f"{_quantity(line.included_quantity)} included, {_quantity(line.billable_quantity)} billable"
        )
        included.cell(f"    {billable}", colspan=4)
    if len(line.tiers) > 1 or (line.tiers and line.unit_price is None):
        for t in line.tiers:
            if t.upper is None:
                tier = f"    above {grouped(t.lower)}"
            else:
                tier = f"    {grouped(t.lower)} to {grouped(t.upper)}"
            if Decimal(t.flat_fee) != 0:
                tier += f" (flat fee {amount_text(t.flat_fee, cur)})"
            sub = table.row()  # type: ignore[attr-defined]
            sub.cell(tier)
            sub.cell(_quantity(t.quantity))
            sub.cell(amount_text(t.unit_price, cur))
            sub.cell(amount_text(t.amount, cur))


def _totals(pdf: Document, rows: list[tuple[str, str]], *, last_bold: bool = True) -> None:
    pdf.ln(4)
    for index, (label, value) in enumerate(rows):
        bold = last_bold and index == len(rows) - 1
        pdf.set_x(95)
        pdf.set_font(FONT, "B" if bold else "", 11 if bold else 9)
        pdf.cell(60, 6.5 if bold else 5.5, label, border="T" if bold else 0)
        pdf.cell(
            40,
            6.5 if bold else 5.5,
            value,
            align="R",
            border="T" if bold else 0,
            new_x="LMARGIN",
            new_y="NEXT",
        )


def _payment(pdf: Document, parties: Parties, due_line: str | None) -> None:
    pdf.ln(6)
    pdf.set_font(FONT, "", 9)
    if due_line:
        pdf.set_font(FONT, "B", 10)
        pdf.multi_cell(0, 5.5, due_line, new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 5, f"Payment terms: {parties.payment_terms}.", new_x="LMARGIN", new_y="NEXT")
    if parties.payment_instructions:
        pdf.ln(2)
        pdf.set_font(FONT, "B", 9)
        pdf.cell(0, 5, "How to pay", new_x="LMARGIN", new_y="NEXT")
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(0, 5, parties.payment_instructions, new_x="LMARGIN", new_y="NEXT")


def due_date(issued: datetime, tz_name: str, terms_days: int) -> str:
    """The issue day in the customer's zone plus the payment terms (days), as printed."""
    return day_text(local_date(issued, tz_name) + timedelta(days=terms_days))


def invoice_pdf(invoice: InvoiceView, parties: Parties, tz_name: str) -> bytes:
    """The finalized (or void) invoice as a PDF; raises ValueError for a draft."""
    if invoice.number is None or invoice.finalized_at is None:
        raise ValueError("a draft is not a document: only finalized and void invoices are printed")
    cur = invoice.currency
    issued = invoice.finalized_at
    due = due_date(issued, tz_name, parties.payment_terms_days)
    pdf = _start(f"Invoice {invoice.number}", f"Invoice {invoice.number}", issued)
    _header(
        pdf,
        parties,
        f"Invoice {invoice.number}",
        [
            Fact("Invoice number", invoice.number),
            Fact("Issue date", day_text(local_date(issued, tz_name))),
            Fact("Service period", period_text(invoice.period_start, invoice.period_end, tz_name)),
            *([] if invoice.state == "void" else [Fact("Due date", due)]),
            Fact("Payment terms", parties.payment_terms.split(" (")[0]),
            Fact("Currency", cur),
        ],
    )
    if invoice.state == "void" and invoice.voided_at is not None:
        _void_stamp(pdf, day_text(local_date(invoice.voided_at, tz_name)), invoice.void_reason)
    _lines_table(pdf, invoice, tz_name)
    rows = [
        ("Subtotal", money_text(invoice.subtotal, cur)),
        ("Discounts", money_text(deduction(invoice.discount_total), cur)),
        ("Prepaid credit applied", money_text(deduction(invoice.credits_applied), cur)),
        ("Total", money_text(invoice.total, cur)),
    ]
    _totals(pdf, rows)
    void = invoice.state == "void"
    if invoice.adjustments:
        pdf.ln(2)
        pdf.set_font(FONT, "", 9)
        for a in invoice.adjustments:
            kind = "Debit note" if a.kind == "debit" else "Credit note"
            # A void invoice's notes are void with it: its period is reissued, rated afresh.
            state = " (void with this invoice)" if void else ""
            pdf.multi_cell(
                0,
                5,
                f"{kind} {a.number}: {money_text(a.amount, cur)}{state}. {a.reason}",
                new_x="LMARGIN",
                new_y="NEXT",
            )
        if not void:
            pdf.set_font(FONT, "B", 9)
            pdf.multi_cell(
                0,
                5,
                f"Total after adjustments: {money_text(invoice.adjusted_total, cur)}",
                new_x="LMARGIN",
                new_y="NEXT",
            )
    if void:
        pdf.ln(6)
        pdf.set_font(FONT, "B", 10)
        pdf.multi_cell(0, 5.5, "Nothing is due on a void invoice.", new_x="LMARGIN", new_y="NEXT")
    else:
        # As on the invoice page: what is owed once its credit and debit notes are counted.
        _payment(pdf, parties, settlement_text(invoice.adjusted_total, cur, due))
    return bytes(pdf.output())


def note_pdf(note: AdjustmentView, invoice: InvoiceView, parties: Parties, tz_name: str) -> bytes:
    """A credit or debit note on an issued invoice, as a PDF. The note of a void invoice is
    void with it (its period is reissued, rated afresh): stamped VOID, nothing due or credited."""
    cur = invoice.currency
    credit = note.kind == "credit"
    void = invoice.state == "void"
    name = "Credit note" if credit else "Debit note"
    issued = note.created_at
    facts = [
        Fact("Note number", note.number),
        Fact("Issue date", day_text(local_date(issued, tz_name))),
        Fact("Corrects invoice", invoice.number or ""),
        Fact("Service period", period_text(invoice.period_start, invoice.period_end, tz_name)),
    ]
    if not credit and not void:
        facts.append(Fact("Due date", due_date(issued, tz_name, parties.payment_terms_days)))
    facts.append(Fact("Currency", cur))
    pdf = _start(f"{name} {note.number}", f"{name} {note.number}", issued)
    _header(pdf, parties, f"{name} {note.number}", facts)
    if void and invoice.voided_at is not None:
        voided_on = day_text(local_date(invoice.voided_at, tz_name))
        _void_stamp(pdf, voided_on, invoice.void_reason, with_invoice=invoice.number)
    pdf.set_font(FONT, "B", 9)
    pdf.cell(0, 5, "Reason", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, "", 9)
    pdf.multi_cell(0, 5, note.reason, new_x="LMARGIN", new_y="NEXT")
    if note.event_count:
        late = "late event" if note.event_count == 1 else "late events"
        pdf.multi_cell(
            0,
            5,
            f"Usage recorded after the invoice was issued: {grouped(note.event_count)} {late}.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    pdf.ln(3)
    if note.lines:
        pdf.set_font(FONT, "", 9)
        with pdf.table(
            col_widths=(100, 36, 44),
            text_align=("LEFT", "RIGHT", "RIGHT"),
            borders_layout=TableBordersLayout.HORIZONTAL_LINES,
            line_height=5.5,
            padding=1,
            width=180,
        ) as table:
            head = table.row()
            for label in ("Description", "Quantity change", f"Amount change ({cur})"):
                head.cell(label)
            for line in note.lines:
                row = table.row()
                row.cell(line.description)
                row.cell(grouped(line.quantity_delta))
                row.cell(amount_text(line.amount_delta, cur))
    total_label = "Total" if void else "Total credited" if credit else "Total due"
    _totals(pdf, [(total_label, money_text(note.amount, cur))])
    if void:
        pdf.ln(6)
        pdf.set_font(FONT, "B", 10)
        nothing = "Nothing is credited by a void note." if credit else "Nothing is due on a void note."
        pdf.multi_cell(0, 5.5, nothing, new_x="LMARGIN", new_y="NEXT")
    elif credit:
        pdf.ln(4)
        pdf.set_font(FONT, "", 9)
        pdf.multi_cell(
            0,
            5,
            f"{money_text(note.amount.lstrip('-'), cur)} is credited against invoice {invoice.number}.",
            new_x="LMARGIN",
            new_y="NEXT",
        )
    else:
        due = due_date(issued, tz_name, parties.payment_terms_days)
        _payment(pdf, parties, f"Amount due: {money_text(note.amount, cur)} by {due}")
    return bytes(pdf.output())
