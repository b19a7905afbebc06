"""Every query on `invoices`, `invoice_lines` and `document_numbers`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import and_, case, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.billing.models import (
    Adjustment,
    DocumentNumber,
    Invoice,
    InvoiceLine,
)
from portal.billing.repository import NO_SYNC
from portal.billing.schemas import InvoiceRow

# --- invoices


async def finalized_number_after(session: AsyncSession, customer_id: str, at: datetime) -> str | None:
    """The number of the customer's latest finalized invoice whose period ends after `at`."""
    statement = (
        select(col(Invoice.number))
        .where(
            col(Invoice.customer_id) == customer_id,
            col(Invoice.status) == "finalized",
            col(Invoice.period_end) > at,
        )
        .order_by(col(Invoice.period_end).desc())
        .limit(1)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else row[0]


# The columns of an InvoiceRow, in its field order (derived, so the two cannot drift apart).
_INVOICE = tuple(col(getattr(Invoice, f.name)) for f in fields(InvoiceRow))


def _invoice(row: Any) -> InvoiceRow:
    data = list(row)
    data[3] = str(data[3]).strip()  # char(3)
    return InvoiceRow(*data)


def _adjusted_total() -> Any:
    """The invoice's total plus every adjustment of it: what is owed now. A void invoice's
    notes are void with it and add nothing."""
    adjustments = (
        select(func.sum(col(Adjustment.amount)))
        .where(col(Adjustment.invoice_id) == col(Invoice.id), col(Invoice.status) != "void")
        .scalar_subquery()
    )
    return col(Invoice.total) + func.coalesce(adjustments, 0)


async def invoice_by_id(
    session: AsyncSession, invoice_id: int, *, for_update: bool = False
) -> InvoiceRow | None:
    """The invoice, or None; `for_update` takes its row lock until the transaction ends."""
    statement = select(*_INVOICE).where(col(Invoice.id) == invoice_id)
    if for_update:
        statement = statement.with_for_update()
    row = (await session.execute(statement)).first()
    return _invoice(row) if row else None


async def live_invoice_id(session: AsyncSession, customer_id: str, period_start: datetime) -> int:
    """The id of the customer's unvoided invoice for the period starting at `period_start`
    (there is one at most); raises NoResultFound when there is none."""
    statement = select(col(Invoice.id)).where(
        col(Invoice.customer_id) == customer_id,
        col(Invoice.period_start) == period_start,
        col(Invoice.status) != "void",
    )
    invoice_id: Any = (await session.execute(statement)).scalar_one()
    return int(invoice_id)


async def replacement_id(session: AsyncSession, invoice_id: int) -> int | None:
    """The latest invoice that replaces this one (reissued after a void), or None."""
    statement = (
        select(col(Invoice.id))
        .where(col(Invoice.replaces_id) == invoice_id)
        .order_by(col(Invoice.id).desc())
        .limit(1)
    )
    found = (await session.execute(statement)).scalar_one_or_none()
    return None if found is None else int(found)


async def invoices_page(
    session: AsyncSession,
    *,
    customer_id: str | None,
    status: str | None,
    due_at: datetime | None,
    due: bool | None,
    grace: timedelta,
    period_start_from: datetime | None,
    period_start_to: datetime | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[InvoiceRow, Decimal]]:
    """Invoices newest first, each with its adjusted total; every filter that is not None
    applies. `due`: whether the period plus `grace` has ended by `due_at` (True) or not."""
    statement = select(*_INVOICE, _adjusted_total()).order_by(col(Invoice.id).desc()).limit(limit)
    if customer_id is not None:
        statement = statement.where(col(Invoice.customer_id) == customer_id)
    if status is not None:
        statement = statement.where(col(Invoice.status) == status)
    if due is not None:
        assert due_at is not None
        ended = col(Invoice.period_end) + grace <= due_at
        statement = statement.where(ended if due else ~ended)
    if period_start_from is not None:
        statement = statement.where(col(Invoice.period_start) >= period_start_from)
    if period_start_to is not None:
        statement = statement.where(col(Invoice.period_start) < period_start_to)
    if before_id is not None:
        statement = statement.where(col(Invoice.id) < before_id)
    rows: Any = await session.execute(statement)
    return [(_invoice(row[:-1]), row[-1]) for row in rows]


async def finalized_invoices(
    session: AsyncSession, *, visible: str, params: dict[str, Any], limit: int
) -> list[tuple[InvoiceRow, Decimal]]:
    """The latest finalized invoices (by finalization) of the customers in `visible` (a raw SQL
    subquery of customer ids bound by `params`), each with its adjusted total."""
    # The scope is raw SQL: the same subquery limits the pages' raw report queries.
    statement = (
        select(*_INVOICE, _adjusted_total())
        .where(col(Invoice.status) == "finalized", text(f"invoices.customer_id IN {visible}"))
        .order_by(col(Invoice.finalized_at).desc(), col(Invoice.id).desc())
        .limit(limit)
    )
    rows: Any = await session.execute(statement, params)
    return [(_invoice(row[:-1]), row[-1]) for row in rows]


async def drafts_due(
    session: AsyncSession,
    *,
    due_at: datetime,
    grace: timedelta,
    limit: int,
    customers_sql: str | None = None,
    customers_params: dict[str, Any] | None = None,
) -> list[InvoiceRow]:
    """Drafts whose period plus `grace` ended by `due_at`, oldest period first; only those of
    the customers in `customers_sql` (a raw SQL subquery of ids, bound by `customers_params`)
    when it is given."""
    statement = (
        select(*_INVOICE)
        .where(col(Invoice.status) == "draft", col(Invoice.period_end) + grace <= due_at)
        .order_by(col(Invoice.period_end), col(Invoice.customer_id))
        .limit(limit)
    )
    if customers_sql:
        # Raw SQL: the scope subquery comes from the pages' access rules.
        statement = statement.where(text(f"invoices.customer_id IN {customers_sql}"))
    return [_invoice(row) for row in await session.execute(statement, customers_params or {})]


async def previous_finalized_total(
    session: AsyncSession, customer_id: str, before: datetime
) -> Decimal | None:
    """The adjusted total of the customer's latest finalized invoice whose period ended by
    `before`, or None."""
    statement = (
        select(_adjusted_total())
        .where(
            col(Invoice.customer_id) == customer_id,
            col(Invoice.status) == "finalized",
            col(Invoice.period_end) <= before,
        )
        .order_by(col(Invoice.period_end).desc())
        .limit(1)
    )
    row = (await session.execute(statement)).first()
    return None if row is None else Decimal(row[0])


class Draft(NamedTuple):
    """A draft's rating, to be stored (amounts exact; `segments` the JSON of its basis)."""

    customer_id: str
    period_start: datetime
    period_end: datetime
    currency: str
    subtotal: Decimal
    discount_total: Decimal
    credits_applied: Decimal
    total: Decimal
    segments: str
    replaces_id: int | None


async def upsert_drafts(
    session: AsyncSession, drafts: Sequence[Draft], *, complete_through: datetime | None
) -> list[tuple[int, str, bool]]:
    """Create or refresh these drafts; a period whose invoice is finalized is left alone.
    Returns (invoice id, customer id, created) of each draft written."""
    # Raw SQL: one statement for a whole chunk of the invoice run (unnest of arrays), and
    # `xmax = 0` tells a created row from an updated one, which SQLAlchemy cannot express.
    rows = await session.execute(
        text(
            "INSERT INTO invoices AS i (customer_id, period_start, period_end, currency, subtotal, "
            "discount_total, credits_applied, total, segments, complete_through, replaces_id) "
            "SELECT * FROM unnest(CAST(:c AS text[]), CAST(:s AS timestamptz[]), "
            "CAST(:e AS timestamptz[]), CAST(:cur AS text[]), CAST(:sub AS numeric[]), "
            "CAST(:disc AS numeric[]), CAST(:cred AS numeric[]), CAST(:tot AS numeric[]), "
            "CAST(:seg AS jsonb[]), CAST(:ct AS timestamptz[]), CAST(:rep AS bigint[])) "
            "ON CONFLICT (customer_id, period_start) WHERE status <> 'void' DO UPDATE SET "
            "subtotal = EXCLUDED.subtotal, discount_total = EXCLUDED.discount_total, "
            "credits_applied = EXCLUDED.credits_applied, total = EXCLUDED.total, "
            "segments = EXCLUDED.segments, complete_through = EXCLUDED.complete_through, "
            "period_end = EXCLUDED.period_end, computed_at = now() "
            "WHERE i.status = 'draft' RETURNING i.id, i.customer_id, (xmax = 0) AS created"
        ),
        {
            "c": [d.customer_id for d in drafts],
            "s": [d.period_start for d in drafts],
            "e": [d.period_end for d in drafts],
            "cur": [d.currency for d in drafts],
            "sub": [d.subtotal for d in drafts],
            "disc": [d.discount_total for d in drafts],
            "cred": [d.credits_applied for d in drafts],
            "tot": [d.total for d in drafts],
            "seg": [d.segments for d in drafts],
            "ct": [complete_through] * len(drafts),
            "rep": [d.replaces_id for d in drafts],
        },
    )
    written: Any = rows
    return [(int(i), str(c), bool(created)) for i, c, created in written]


async def finalize_invoice(
    session: AsyncSession, invoice_id: int, *, number: str, finalized_at: datetime, approved_by: str
) -> None:
    statement = (
        update(Invoice)
        .where(col(Invoice.id) == invoice_id)
        .values(status="finalized", number=number, finalized_at=finalized_at, approved_by=approved_by)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def void_invoice(session: AsyncSession, invoice_id: int, *, voided_at: datetime, reason: str) -> None:
    statement = (
        update(Invoice)
        .where(col(Invoice.id) == invoice_id)
        .values(status="void", voided_at=voided_at, void_reason=reason)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def set_replaces(session: AsyncSession, invoice_id: int, replaces_id: int) -> None:
    """Record that the invoice is the reissue of the voided `replaces_id`."""
    statement = (
        update(Invoice)
        .where(col(Invoice.id) == invoice_id)
        .values(replaces_id=replaces_id)
        .execution_options(**NO_SYNC)
    )
    await session.execute(statement)


async def invoices_covering(session: AsyncSession, customer_id: str, at: datetime) -> list[tuple[Any, ...]]:
    """(id, number, status, period start, period end, currency) of the customer's invoices,
    void ones too, whose period holds the instant `at`; newest first."""
    statement = (
        select(
            col(Invoice.id),
            col(Invoice.number),
            col(Invoice.status),
            col(Invoice.period_start),
            col(Invoice.period_end),
            col(Invoice.currency),
        )
        .where(
            col(Invoice.customer_id) == customer_id,
            col(Invoice.period_start) <= at,
            col(Invoice.period_end) > at,
        )
        .order_by(col(Invoice.id).desc())
    )
    return [tuple(row) for row in await session.execute(statement)]


# --- reports (health, metrics)


async def invoice_counts_by_state(session: AsyncSession, *, grace_hours: float) -> list[tuple[str, int]]:
    """(state, how many) of all invoices by state, a draft whose period plus `grace_hours`
    has ended counted as awaiting_review."""
    # make_interval's seconds take a fraction; its hours do not.
    grace = func.make_interval(0, 0, 0, 0, 0, 0, grace_hours * 3600)
    awaiting = and_(col(Invoice.status) == "draft", col(Invoice.period_end) + grace <= func.now())
    states = select(case((awaiting, "awaiting_review"), else_=col(Invoice.status)).label("state")).subquery()
    statement = select(states.c.state, func.count()).group_by(states.c.state).order_by(states.c.state)
    rows: Any = await session.execute(statement)
    return [(str(state), int(count)) for state, count in rows]


async def finalized_with_notes(session: AsyncSession, *, start: datetime, end: datetime) -> tuple[int, int]:
    """(invoices finalized in [start, end), void ones too; how many of them have a note)."""
    has_note = select(col(Adjustment.id)).where(col(Adjustment.invoice_id) == col(Invoice.id)).exists()
    statement = (
        select(func.count(), func.count().filter(has_note))
        .select_from(Invoice)
        .where(
            col(Invoice.finalized_at) >= start,
            col(Invoice.finalized_at) < end,
            col(Invoice.status).in_(("finalized", "void")),
        )
    )
    finalized, noted = (await session.execute(statement)).one()
    return int(finalized), int(noted)


# --- invoice_lines

# The order of the columns of a line row (`invoices.line_rows`), as `replace_lines` takes them.
LINE_COLUMNS = (
    "invoice_id",
    "position",
    "kind",
    "charge_key",
    "meter",
    "description",
    "quantity",
    "included_quantity",
    "billable_quantity",
    "unit_price",
    "tiers",
    "proration",
    "amount",
    "plan_id",
    "segment_start",
    "segment_end",
)
_LINE_CASTS = (
    "bigint",
    "int",
    "text",
    "text",
    "text",
    "text",
    "numeric",
    "numeric",
    "numeric",
    "numeric",
    "jsonb",
    "numeric",
    "numeric",
    "text",
    "timestamptz",
    "timestamptz",
)


async def replace_lines(session: AsyncSession, invoice_ids: list[int], rows: list[tuple[Any, ...]]) -> None:
    """Replace the lines of these invoices with `rows` (in LINE_COLUMNS order, `tiers` as
    JSON text), in one statement each way."""
    await session.execute(
        delete(InvoiceLine).where(col(InvoiceLine.invoice_id).in_(invoice_ids)).execution_options(**NO_SYNC)
    )
    if not rows:
        return
    columns = list(zip(*rows, strict=True))
    selects = ", ".join(f"CAST(:c{i} AS {cast}[])" for i, cast in enumerate(_LINE_CASTS))
    # Raw SQL: a whole chunk of the invoice run's lines in one statement (unnest of arrays),
    # each with its invoice's customer (the table is keyed by customer: migration 0008).
    names = ", ".join(LINE_COLUMNS)
    await session.execute(
        text(
            f"INSERT INTO invoice_lines ({names}, customer_id) "
            f"SELECT u.*, i.customer_id FROM unnest({selects}) AS u({names}) "
            "JOIN invoices i ON i.id = u.invoice_id"
        ),
        {f"c{i}": list(column) for i, column in enumerate(columns)},
    )


async def invoice_lines(session: AsyncSession, invoice_id: int) -> list[tuple[Any, ...]]:
    """The invoice's lines by position: every column of LINE_COLUMNS but `invoice_id`."""
    statement = (
        select(
            col(InvoiceLine.position),
            col(InvoiceLine.kind),
            col(InvoiceLine.charge_key),
            col(InvoiceLine.meter),
            col(InvoiceLine.description),
            col(InvoiceLine.quantity),
            col(InvoiceLine.included_quantity),
            col(InvoiceLine.billable_quantity),
            col(InvoiceLine.unit_price),
            col(InvoiceLine.tiers),
            col(InvoiceLine.proration),
            col(InvoiceLine.amount),
            col(InvoiceLine.plan_id),
            col(InvoiceLine.segment_start),
            col(InvoiceLine.segment_end),
        )
        .where(col(InvoiceLine.invoice_id) == invoice_id)
        .order_by(col(InvoiceLine.position))
    )
    return [tuple(row) for row in await session.execute(statement)]


async def line_amounts(session: AsyncSession, invoice_id: int) -> list[tuple[Any, ...]]:
    """(kind, charge key, meter, description, segment start, quantity, amount) of each of the
    invoice's lines, in no particular order."""
    statement = select(
        col(InvoiceLine.kind),
        col(InvoiceLine.charge_key),
        col(InvoiceLine.meter),
        col(InvoiceLine.description),
        col(InvoiceLine.segment_start),
        col(InvoiceLine.quantity),
        col(InvoiceLine.amount),
    ).where(col(InvoiceLine.invoice_id) == invoice_id)
    return [tuple(row) for row in await session.execute(statement)]


async def meter_lines_at(
    session: AsyncSession, invoice_ids: Sequence[int], metric_name: str, at: datetime
) -> list[tuple[Any, ...]]:
    """(invoice id, description, quantity, amount) of these invoices' lines that price the
    meter in a segment holding the instant `at`; newest invoice first, then by position."""
    statement = (
        select(
            col(InvoiceLine.invoice_id),
            col(InvoiceLine.description),
            col(InvoiceLine.quantity),
            col(InvoiceLine.amount),
        )
        .where(
            col(InvoiceLine.invoice_id).in_(list(invoice_ids)),
            col(InvoiceLine.meter) == metric_name,
            col(InvoiceLine.segment_start) <= at,
            col(InvoiceLine.segment_end) > at,
        )
        .order_by(col(InvoiceLine.invoice_id).desc(), col(InvoiceLine.position))
    )
    return [tuple(row) for row in await session.execute(statement)]


# --- document_numbers: gapless series


async def next_document_number(session: AsyncSession, series: str) -> int:
    """Take the next number of the series (1 for a new one). The row stays locked until the
    caller's transaction ends, so numbers are gapless: a rollback gives the number back."""
    statement = (
        pg_insert(DocumentNumber)
        .values(series=series, last=1)
        .on_conflict_do_update(
            index_elements=[col(DocumentNumber.series)], set_={"last": col(DocumentNumber.last) + 1}
        )
        .returning(col(DocumentNumber.last))
    )
    return int((await session.execute(statement)).scalar_one())


# --- on the ingest worker's connection, inside its persist transaction


async def draft_ids(session: AsyncSession, customer_id: str) -> list[int]:
    """The customer's drafts: of ended periods (awaiting review, or in grace) and of the
    running one."""
    statement = select(col(Invoice.id)).where(
        col(Invoice.customer_id) == customer_id, col(Invoice.status) == "draft"
    )
    return [int(i) for i in (await session.scalars(statement)).all() if i is not None]


async def finalized_periods_reaching(
    conn: Any, customer_ids: Sequence[str], since: datetime, *, drafts_ended_by: datetime | None = None
) -> list[Any]:
    """(id, customer_id, status, period_start, period_end) records of these customers'
    finalized invoices whose period ends after `since`, and, with `drafts_ended_by`, their
    drafts of periods that ended by then too; read on the persist transaction's asyncpg
    connection `conn`.

    Raw asyncpg, not the session: it runs inside the ingest worker's per-batch transaction,
    on the connection that holds it (and its shared billing locks)."""
    records: list[Any] = await conn.fetch(_PERIODS_REACHING, customer_ids, since, drafts_ended_by)
    return records


# Two selects, not one with OR, so each keeps its index: finalized invoices by
# `invoices_finalized`, drafts by `invoices_one_per_period` (this runs in every persist).
_PERIODS_REACHING = """
    SELECT id, customer_id, status, period_start, period_end FROM invoices
        WHERE status = 'finalized' AND customer_id = ANY($1) AND period_end > $2
    UNION ALL
    SELECT id, customer_id, status, period_start, period_end FROM invoices
        WHERE status = 'draft' AND customer_id = ANY($1) AND period_end > $2 AND period_end <= $3
"""


async def invoices_starting(
    session: AsyncSession, customer_ids: Sequence[str], start: datetime, end: datetime
) -> list[tuple[InvoiceRow, Decimal]]:
    """The customers' invoices (every status) whose period starts in [start, end], each
    with its adjusted total, oldest first (a void invoice before its reissue)."""
    if not customer_ids:
        return []
    statement = (
        select(*_INVOICE, _adjusted_total())
        .where(
            col(Invoice.customer_id).in_(list(customer_ids)),
            col(Invoice.period_start) >= start,
            col(Invoice.period_start) <= end,
        )
        .order_by(col(Invoice.id))
    )
    rows: Any = await session.execute(statement)
    return [(_invoice(row[:-1]), row[-1]) for row in rows]
