"""CSV export of invoices and of their line items, for finance tools and spreadsheets.

Amounts are exact decimals in the currency's minor unit; instants are ISO 8601 UTC.
Adjustments appear as their own rows (invoices.csv) and lines (lines.csv), so that the
sum of an invoice's rows is what is true now. Numbers are passed to the writer as numbers
and text as text, so that text a spreadsheet would run is neutralised and a negative
amount stays a number (`portal.http.csv_cells`).

lines.csv's columns that are not what their names say for every kind of line:
`unit_price` is a usage line's price per unit (empty when tiered), a percentage
discount's percent, and a minimum true-up's minimum (the amount is the top-up to it);
`proration` is the share of the period a flat fee, a minimum or a fixed discount was
prorated to (1: all of it), so that `amount` can be rebuilt from the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.invoices import state_of
from portal.billing.rating import round_money
from portal.billing.repository import exports as export_store
from portal.http.csv_cells import Cell, csv_text
from portal.usage.combine import trimmed

INVOICE_HEADER = [
    "document",
    "kind",
    "invoice_id",
    "invoice_number",
    "customer_id",
    "currency",
    "status",
    "period_start",
    "period_end",
    "subtotal",
    "discount_total",
    "credits_applied",
    "total",
    "issued_at",
    "computed_at",
]
LINE_HEADER = [
    "invoice_id",
    "invoice_number",
    "document",
    "customer_id",
    "currency",
    "position",
    "kind",
    "charge_key",
    "meter",
    "description",
    "quantity",
    "unit_price",
    "amount",
    "plan_id",
    "segment_start",
    "segment_end",
    "proration",
]


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which invoices an export covers; None means any. `period_from`/`period_to` bound
    the period start: [from, to). `issued_only` leaves drafts out (what a customer sees)."""

    customer_id: str | None = None
    status: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None
    issued_only: bool = False

    def scope(self) -> dict[str, Any]:
        """The filter as `portal.billing.repository.invoices`' export reads take it."""
        return {
            "customer_id": self.customer_id,
            "status": self.status,
            "period_from": self.period_from,
            "period_to": self.period_to,
            "issued_only": self.issued_only,
        }


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


async def invoices_csv(
    session: AsyncSession, selection: ExportFilter, *, now: datetime, grace: timedelta
) -> str:
    """The invoices and their notes. `status` is the state the API and pages show (a draft
    of a period ended more than `grace` before `now` is awaiting_review); `issued_at` is
    when an invoice was finalized or a note issued, empty for a draft, whose `computed_at`
    says when its figures were rated (a running period's draft is re-rated on a schedule)."""
    scope = selection.scope()
    rows = await export_store.exported_invoices(session, **scope)
    out: list[list[Cell]] = []
    for iid, number, cid, cur, status_, start, end, sub, disc, cred, total, finalized, computed in rows:
        cur = str(cur).strip()
        out.append(
            [
                number or f"draft-{iid}",
                "invoice",
                iid,
                number or "",
                cid,
                cur,
                state_of(status_, end, now, grace),
                _iso(start),
                _iso(end),
                round_money(sub, cur),
                round_money(disc, cur),
                round_money(cred, cur),
                round_money(total, cur),
                _iso(finalized),
                _iso(computed),
            ]
        )
    adjustments = await export_store.exported_notes(session, **scope)
    for number, kind, iid, inumber, cid, cur, status_, start, end, sub, disc, amount, created in adjustments:
        cur = str(cur).strip()
        out.append(
            [
                number,
                f"{kind}_note",
                iid,
                inumber or "",
                cid,
                cur,
                status_,
                _iso(start),
                _iso(end),
                round_money(sub, cur),
                round_money(disc, cur),
                round_money(Decimal(0), cur),
                round_money(amount, cur),
                _iso(created),
                _iso(created),
            ]
        )
    return csv_text(INVOICE_HEADER, out)


async def lines_csv(session: AsyncSession, selection: ExportFilter) -> str:
    scope = selection.scope()
    rows = await export_store.exported_lines(session, **scope)
    out: list[list[Cell]] = []
    for (
        iid,
        number,
        cid,
        cur,
        position,
        kind,
        key,
        meter,
        description,
        quantity,
        unit_price,
        amount,
        plan_id,
        seg_start,
        seg_end,
        proration,
    ) in rows:
        cur = str(cur).strip()
        out.append(
            [
                iid,
                number or "",
                number or f"draft-{iid}",
                cid,
                cur,
                position,
                kind,
                key or "",
                meter or "",
                description,
                trimmed(quantity),
                None if unit_price is None else trimmed(unit_price),
                round_money(amount, cur),
                plan_id,
                _iso(seg_start),
                _iso(seg_end),
                trimmed(proration),
            ]
        )
    adjustments = await export_store.exported_note_lines(session, **scope)
    for iid, inumber, number, cid, cur, lines in adjustments:
        cur = str(cur).strip()
        for position, line in enumerate(lines):
            out.append(
                [
                    iid,
                    inumber or "",
                    number,
                    cid,
                    cur,
                    position,
                    line["kind"],
                    line["chargeKey"] or "",
                    line["meter"] or "",
                    line["description"],
                    Decimal(line["quantityDelta"]),
                    None,
                    round_money(Decimal(line["amountDelta"]), cur),
                    None,
                    line["segmentStart"],
                    None,
                    None,
                ]
            )
    return csv_text(LINE_HEADER, out)
