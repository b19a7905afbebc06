"""The billing CLI commands' work (`usage-portal catalog|invoices ...`), each a transaction.

They print for a person at a terminal: progress on stderr, results on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

import msgspec
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.billing import export, invoices, lifecycle
from portal.billing.run import RunSummary, run_invoices
from portal.billing.views import InvoiceState, money_text
from portal.catalog.file import ApplyReport, apply_catalog, read_catalog
from portal.clock import system_clock
from portal.db import create_engine, session_factory, transaction
from portal.live.store import LiveStore
from portal.periods import to_datetime
from portal.settings import Settings


@asynccontextmanager
async def _sessions(settings: Settings) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _complete_through(settings: Settings) -> datetime | None:
    """Every event accepted before this instant is in Postgres (None if Redis is down)."""
    assert settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_ttl=settings.dedup_marker_ttl
    )
    try:
        return to_datetime(await live.watermark_ms() / 1000)
    except Exception:
        return None
    finally:
        await redis.aclose()


def progress_bar(width: int = 30) -> Callable[[int, int], None]:
    """A one-line progress bar on stderr: `[#####.....] 500/1000 customers`."""

    def show(done: int, total: int) -> None:
        filled = width * done // total if total else width
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} customers")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


async def apply_catalog_file(settings: Settings, path: Path) -> ApplyReport:
    catalog = read_catalog(path)
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        return await apply_catalog(session, catalog, now=system_clock())


async def invoice_run(settings: Settings, month: str) -> RunSummary:
    async with _sessions(settings) as sessions:
        return await run_invoices(
            sessions,
            month=month,
            now=system_clock(),
            complete_through=await _complete_through(settings),
            progress=progress_bar(),
        )


def summary_lines(summary: RunSummary) -> list[str]:
    totals = ", ".join(f"{amount:f} {currency}" for currency, amount in sorted(summary.totals.items()))
    lines = [
        f"invoice run {summary.period}: {summary.customers} customers",
        f"  drafts created    {summary.created}",
        f"  drafts refreshed  {summary.refreshed}",
        f"  already finalized {summary.skipped_finalized} (late events adjust them)",
        f"  no subscription   {summary.without_subscription}",
        f"  draft totals      {totals or '-'}",
    ]
    lines += [f"  error: {error}" for error in summary.errors]
    return lines


def _json(value: msgspec.Struct | list[msgspec.Struct]) -> str:
    return json.dumps(msgspec.to_builtins(value), indent=2, default=str)


async def show_invoice(settings: Settings, invoice_id: int) -> str:
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        view = await invoices.get_invoice(
            session,
            invoice_id,
            now=system_clock(),
            grace=settings.invoice_grace,
            complete_through=await _complete_through(settings),
        )
        return _json(view)


async def list_invoices(settings: Settings, *, customer_id: str | None, state: InvoiceState | None) -> str:
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        rows = await invoices.list_invoices(
            session,
            now=system_clock(),
            grace=settings.invoice_grace,
            customer_id=customer_id,
            state=state,
            limit=1000,
        )
    lines = [f"{'id':>6}  {'number':<11} {'customer':<20} {'period start':<25} {'state':<16} {'total':>12}"]
    for r in rows:
        lines.append(
            f"{r.id:>6}  {r.number or '-':<11} {r.customer_id:<20} {r.period_start.isoformat():<25} "
            f"{r.state:<16} {r.adjusted_total:>12} {r.currency}"
        )
    return "\n".join(lines)


async def approve_invoice(settings: Settings, invoice_id: int, *, approved_by: str) -> str:
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        invoice = await lifecycle.approve(
            session,
            invoice_id,
            approved_by=approved_by,
            now=system_clock(),
            grace=settings.invoice_grace,
            complete_through=await _complete_through(settings),
        )
        total = money_text(invoice.total, invoice.currency)
        return f"{invoice.number}: finalized, total {total} {invoice.currency}"


async def void_invoice(settings: Settings, invoice_id: int, *, reason: str) -> str:
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        voided, reissued = await lifecycle.void(
            session,
            invoice_id,
            reason=reason,
            now=system_clock(),
            complete_through=await _complete_through(settings),
        )
    again = f"; reissued as draft {reissued.id}" if reissued else ""
    return f"{voided.number}: void{again}"


async def export_csv(settings: Settings, *, lines: bool, customer_id: str | None) -> str:
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        writer = export.lines_csv if lines else export.invoices_csv
        return await writer(session, export.ExportFilter(customer_id=customer_id))
