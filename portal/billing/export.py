"""CSV export of invoices and of their line items, for finance tools and spreadsheets.

Amounts are exact decimals in the currency's minor unit; instants are ISO 8601 UTC.
Adjustments appear as their own rows (invoices.csv) and lines (lines.csv), so that the
sum of an invoice's rows is what is true now. Numbers are passed to the writer as numbers
and text as text, so that text a spreadsheet would run is neutralised and a negative
amount stays a number (`portal.csv_cells`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.rating import round_money
from portal.csv_cells import Cell, csv_text
from portal.db import values
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
]

_FILTER = (
    "(CAST(:c AS text) IS NULL OR i.customer_id = :c) "
    "AND (CAST(:from_ AS timestamptz) IS NULL OR i.period_start >= :from_) "
    "AND (CAST(:to_ AS timestamptz) IS NULL OR i.period_start < :to_) "
    "AND (CAST(:status AS text) IS NULL OR i.status = :status) "
    "AND (NOT CAST(:issued_only AS boolean) OR i.status <> 'draft')"
)


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which invoices an export covers; None means any. `period_from`/`period_to` bound
    the period start: [from, to). `issued_only` leaves drafts out (what a customer sees)."""

    customer_id: str | None = None
    status: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None
    issued_only: bool = False

    def params(self) -> dict[str, Any]:
        return {
            "c": self.customer_id,
            "status": self.status,
            "from_": self.period_from,
            "to_": self.period_to,
            "issued_only": self.issued_only,
        }


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


async def invoices_csv(session: AsyncSession, selection: ExportFilter) -> str:
    params = selection.params()
    rows = await session.execute(
        text(
            "SELECT i.id, i.number, i.customer_id, i.currency, i.status, i.period_start, i.period_end, "
            "i.subtotal, i.discount_total, i.credits_applied, i.total, COALESCE(i.finalized_at, "
            "i.computed_at) "
            f"FROM invoices i WHERE {_FILTER} ORDER BY i.period_start, i.customer_id, i.id"
        ),
        params,
    )
    out: list[list[Cell]] = []
    for iid, number, cid, cur, status_, start, end, sub, disc, cred, total, issued in (
        values(r) for r in rows
    ):
        cur = str(cur).strip()
        out.append(
            [
                number or f"draft-{iid}",
                "invoice",
                iid,
                number or "",
                cid,
                cur,
                status_,
                _iso(start),
                _iso(end),
                round_money(sub, cur),
                round_money(disc, cur),
                round_money(cred, cur),
                round_money(total, cur),
                _iso(issued),
            ]
        )
    adjustments = await session.execute(
        text(
            "SELECT a.number, a.kind, i.id, i.number, i.customer_id, i.currency, i.status, i.period_start, "
            "i.period_end, a.subtotal_delta, a.discount_delta, a.amount, a.created_at FROM adjustments a "
            f"JOIN invoices i ON i.id = a.invoice_id WHERE {_FILTER} ORDER BY a.id"
        ),
        params,
    )
    for number, kind, iid, inumber, cid, cur, status_, start, end, sub, disc, amount, created in (
        values(r) for r in adjustments
    ):
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
            ]
        )
    return csv_text(INVOICE_HEADER, out)


async def lines_csv(session: AsyncSession, selection: ExportFilter) -> str:
    params = selection.params()
    rows = await session.execute(
        text(
            "SELECT i.id, i.number, i.customer_id, i.currency, l.position, l.kind, l.charge_key, l.meter, "
            "l.description, l.quantity, l.unit_price, l.amount, l.plan_id, l.segment_start, l.segment_end "
            f"FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE {_FILTER} "
            "ORDER BY i.period_start, i.customer_id, i.id, l.position"
        ),
        params,
    )
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
    ) in (values(r) for r in rows):
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
            ]
        )
    adjustments = await session.execute(
        text(
            "SELECT i.id, i.number, a.number, i.customer_id, i.currency, a.lines FROM adjustments a "
            f"JOIN invoices i ON i.id = a.invoice_id WHERE {_FILTER} ORDER BY a.id"
        ),
        params,
    )
    for iid, inumber, number, cid, cur, lines in (values(r) for r in adjustments):
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
                ]
            )
    return csv_text(LINE_HEADER, out)
