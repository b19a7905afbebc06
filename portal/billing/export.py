"""CSV export of invoices and of their line items, for finance tools and spreadsheets.

Amounts are exact decimal strings in the currency's minor unit; instants are ISO 8601 UTC.
Adjustments appear as their own rows (invoices.csv) and lines (lines.csv), so that the
sum of an invoice's rows is what is true now.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.views import money_text
from portal.db import values
from portal.usage.combine import exact

INVOICE_HEADER = ["document", "kind", "invoice_id", "invoice_number", "customer_id", "currency", "status",
                  "period_start", "period_end", "subtotal", "discount_total", "credits_applied", "total",
                  "issued_at"]
LINE_HEADER = ["invoice_id", "invoice_number", "document", "customer_id", "currency", "position", "kind",
               "charge_key", "meter", "description", "quantity", "unit_price", "amount", "plan_id",
               "segment_start", "segment_end"]

_FILTER = ("(CAST(:c AS text) IS NULL OR i.customer_id = :c) "
           "AND (CAST(:from_ AS timestamptz) IS NULL OR i.period_start >= :from_) "
           "AND (CAST(:to_ AS timestamptz) IS NULL OR i.period_start < :to_) "
           "AND (CAST(:status AS text) IS NULL OR i.status = :status)")


@dataclass(frozen=True, slots=True)
class ExportFilter:
    """Which invoices an export covers; None means any. `period_from`/`period_to` bound
    the period start: [from, to)."""

    customer_id: str | None = None
    status: str | None = None
    period_from: datetime | None = None
    period_to: datetime | None = None

    def params(self) -> dict[str, Any]:
        return {"c": self.customer_id, "status": self.status, "from_": self.period_from,
                "to_": self.period_to}


def _iso(value: datetime | None) -> str:
    return "" if value is None else value.isoformat()


def _csv(header: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


async def invoices_csv(session: AsyncSession, selection: ExportFilter) -> str:
    params = selection.params()
    rows = await session.execute(text(
        "SELECT i.id, i.number, i.customer_id, i.currency, i.status, i.period_start, i.period_end, "
        "i.subtotal, i.discount_total, i.credits_applied, i.total, COALESCE(i.finalized_at, i.computed_at) "
        f"FROM invoices i WHERE {_FILTER} ORDER BY i.period_start, i.customer_id, i.id"), params)
    out: list[list[str]] = []
    for (iid, number, cid, cur, status_, start, end, sub, disc, cred, total,
         issued) in (values(r) for r in rows):
        cur = str(cur).strip()
        out.append([number or f"draft-{iid}", "invoice", str(iid), number or "", cid, cur, status_,
                    _iso(start), _iso(end), money_text(sub, cur), money_text(disc, cur),
                    money_text(cred, cur), money_text(total, cur), _iso(issued)])
    adjustments = await session.execute(text(
        "SELECT a.number, a.kind, i.id, i.number, i.customer_id, i.currency, i.status, i.period_start, "
        "i.period_end, a.subtotal_delta, a.discount_delta, a.amount, a.created_at FROM adjustments a "
        f"JOIN invoices i ON i.id = a.invoice_id WHERE {_FILTER} ORDER BY a.id"), params)
    for (number, kind, iid, inumber, cid, cur, status_, start, end, sub, disc, amount,
         created) in (values(r) for r in adjustments):
        cur = str(cur).strip()
        out.append([number, f"{kind}_note", str(iid), inumber or "", cid, cur, status_, _iso(start),
                    _iso(end), money_text(sub, cur), money_text(disc, cur), money_text(Decimal(0), cur),
                    money_text(amount, cur), _iso(created)])
    return _csv(INVOICE_HEADER, out)


async def lines_csv(session: AsyncSession, selection: ExportFilter) -> str:
    params = selection.params()
    rows = await session.execute(text(
        "SELECT i.id, i.number, i.customer_id, i.currency, l.position, l.kind, l.charge_key, l.meter, "
        "l.description, l.quantity, l.unit_price, l.amount, l.plan_id, l.segment_start, l.segment_end "
        f"FROM invoice_lines l JOIN invoices i ON i.id = l.invoice_id WHERE {_FILTER} "
        "ORDER BY i.period_start, i.customer_id, i.id, l.position"), params)
    out: list[list[str]] = []
    for (iid, number, cid, cur, position, kind, key, meter, description, quantity, unit_price, amount,
         plan_id, seg_start, seg_end) in (values(r) for r in rows):
        cur = str(cur).strip()
        out.append([str(iid), number or "", number or f"draft-{iid}", cid, cur, str(position), kind,
                    key or "", meter or "", description, exact(quantity),
                    "" if unit_price is None else exact(unit_price), money_text(amount, cur),
                    plan_id, _iso(seg_start), _iso(seg_end)])
    adjustments = await session.execute(text(
        "SELECT i.id, i.number, a.number, i.customer_id, i.currency, a.lines FROM adjustments a "
        f"JOIN invoices i ON i.id = a.invoice_id WHERE {_FILTER} ORDER BY a.id"), params)
    for iid, inumber, number, cid, cur, lines in (values(r) for r in adjustments):
        cur = str(cur).strip()
        for position, line in enumerate(lines):
            out.append([str(iid), inumber or "", number, cid, cur, str(position), line["kind"],
                        line["chargeKey"] or "", line["meter"] or "", line["description"],
                        line["quantityDelta"], "", money_text(Decimal(line["amountDelta"]), cur), "",
                        line["segmentStart"], ""])
    return _csv(LINE_HEADER, out)
