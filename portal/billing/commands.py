"""The billing CLI commands' work (`usage-portal catalog|invoices ...`), each a transaction.

They print for a person at a terminal: progress on stderr, results on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec
from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tqdm import tqdm  # type: ignore[import-untyped]  # tqdm ships no type hints

from portal.billing import export, invoices, lifecycle
from portal.billing.catalog_file import ApplyReport, apply_catalog, read_catalog
from portal.billing.run import RunSummary, run_invoices
from portal.billing.views import InvoiceState, money_text
from portal.entitlements.service import VERSION_KEY
from portal.infrastructure.clock import system_clock
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.periods import to_datetime
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.live.store import LiveStore


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
    redis = async_client(settings.redis_url)
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    try:
        return to_datetime(await live.watermark_ms() / 1000)
    except Exception:
        return None
    finally:
        await redis.aclose()


# The finished bar reads as before: `[##############################] 1000/1000 customers`.
_BAR = "[{bar:30}] {n_fmt}/{total_fmt} customers"
_CHARS = ".#"  # tqdm's bar characters: empty, full


def progress_bar() -> Callable[[int, int], None]:
    """The invoice run's progress on stderr, drawn by tqdm: `[#####.....] 500/1000 customers`.

    On a terminal the bar is redrawn in place as chunks commit. Anywhere else (a pipe, CI, a
    log file) only the finished bar is written, once, as one line: no carriage-return updates
    in a log. Nothing is written for a run with no subscribed customers."""
    if not sys.stderr.isatty():

        def finished(done: int, total: int) -> None:
            if done >= total:
                line = tqdm.format_meter(done, total, 0, bar_format=_BAR, ascii=_CHARS)
                print(line, file=sys.stderr, flush=True)

        return finished

    bar: Any = None

    def show(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            # The screen is not measured (the line is under 60 characters): a terminal that
            # reports 0x0, as a fresh pty does, would make tqdm hide the bar.
            bar = tqdm(
                total=total, initial=done, file=sys.stderr, bar_format=_BAR, ascii=_CHARS, ncols=80, nrows=24
            )
        else:
            bar.update(done - bar.n)
        if done >= total:
            bar.close()  # leaves the finished bar and ends its line

    return show


async def apply_catalog_file(settings: Settings, path: Path) -> ApplyReport:
    catalog = read_catalog(path)
    async with _sessions(settings) as sessions, transaction(sessions) as session:
        report = await apply_catalog(session, catalog, now=system_clock())
    await entitlements_changed(settings)
    return report


async def entitlements_changed(settings: Settings) -> None:
    """Tell the web processes that subscriptions may have changed: they read customers'
    plans and limits again (portal/entitlements/service.py `VERSION_KEY`)."""
    if not settings.redis_url:
        return
    redis = async_client(settings.redis_url)
    try:
        with contextlib.suppress(RedisError, OSError):  # their cache expires by itself then
            await redis.incr(VERSION_KEY)
    finally:
        await redis.aclose()


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
        selection = export.ExportFilter(customer_id=customer_id)
        if lines:
            return await export.lines_csv(session, selection)
        return await export.invoices_csv(session, selection, now=system_clock(), grace=settings.invoice_grace)
