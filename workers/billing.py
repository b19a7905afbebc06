"""Billing actors: turn late events into adjustments of finalized invoices; email issued
invoices and notes to the customer's billing contacts."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import dramatiq

from portal.billing.adjustments import settle_late_events
from portal.billing.credits import REFRESH_DRAFT_ACTOR
from portal.billing.document_email import send_document_email
from portal.billing.documents import EMAIL_ACTOR
from portal.billing.invoices import refresh_draft
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import documents as document_store
from portal.billing.repository import invoices as invoice_store
from portal.billing.run import run_current_periods, run_ended_periods
from portal.catalog.service import get_customer
from portal.infrastructure.broker import MAINTENANCE_QUEUE
from portal.infrastructure.db import transaction
from portal.infrastructure.periods import BillingPeriod
from portal.ingest.repository import corrections as correction_store
from portal.live import redis_keys as live_keys
from workers.context import WorkerContext, get_context
from workers.debounce import send_debounced
from workers.outages import periodic

SETTLE_ACTOR = "settle_late_events"
# Late events arrive in bursts: one re-rating of a draft for each few seconds of them.
DRAFT_REFRESH_DELAY_MS = 2_000
log = logging.getLogger(__name__)


@dramatiq.actor(
    actor_name=SETTLE_ACTOR,
    queue_name=MAINTENANCE_QUEUE,
    max_retries=10,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=300_000,
)
async def settle_late_events_actor(invoice_id: int) -> None:
    """Re-rate a finalized invoice that received late events; record the adjustment.
    Safe to run twice: settled events are not counted again."""
    ctx = await get_context()
    async with transaction(ctx.sessions) as session:
        await settle_late_events(session, invoice_id, now=datetime.now(UTC))


@dramatiq.actor(
    actor_name=REFRESH_DRAFT_ACTOR,
    queue_name=MAINTENANCE_QUEUE,
    max_retries=10,
    min_backoff=1_000,
    max_backoff=60_000,
    time_limit=300_000,
)
async def refresh_ended_draft(invoice_id: int) -> None:
    """Re-rate a draft that events (or a credit grant) reached after it was rated, so the
    review queue and its flags show what approving it would issue. A no-op once it is
    approved or voided. If this is lost, the hourly `draft_ended_periods` (or the running
    periods' scheduled refresh) re-rates it."""
    ctx = await get_context()
    await ctx.redis.delete(live_keys.draft_refresh_key(invoice_id))  # later events ask again
    async with transaction(ctx.sessions) as session:
        invoice = await invoice_store.invoice_by_id(session, invoice_id)
        if invoice is None or invoice.status != "draft":
            return
        customer = await get_customer(session, invoice.customer_id)
        if customer is None:
            return
        period = BillingPeriod(invoice.period_start, invoice.period_end)
        await refresh_draft(session, customer, period, complete_through=None)


async def request_draft_refresh(ctx: WorkerContext, invoice_ids: Sequence[int]) -> None:
    """Ask for a re-rating of each draft, debounced: the first request schedules one a few
    seconds later; events persisted until it starts are rated by it."""
    await send_debounced(
        ctx.redis,
        refresh_ended_draft,
        [(live_keys.draft_refresh_key(i), i) for i in invoice_ids],
        delay_ms=DRAFT_REFRESH_DELAY_MS,
    )


@dramatiq.actor(
    actor_name="sweep_late_events", queue_name=MAINTENANCE_QUEUE, max_retries=0, time_limit=300_000
)
@periodic
async def sweep_late_events() -> None:
    """Settle late events whose adjustment job was lost (e.g. a worker died between the
    commit and the enqueue). Not retried: the scheduler runs it again."""
    ctx = await get_context()
    async with transaction(ctx.sessions) as session:
        invoice_ids = await adjustment_store.invoices_with_unsettled_late_events(
            session, older_than=timedelta(minutes=1)
        )
        invoice_ids += await correction_store.invoices_with_unsettled_corrections(
            session, older_than=timedelta(minutes=1)
        )
    for invoice_id in sorted(set(invoice_ids)):
        async with transaction(ctx.sessions) as session:
            await settle_late_events(session, invoice_id, now=datetime.now(UTC))


@dramatiq.actor(
    actor_name="draft_current_periods", queue_name=MAINTENANCE_QUEUE, max_retries=0, time_limit=1_800_000
)
@periodic
async def draft_current_periods() -> None:
    """Keep every customer's draft of its running period current (spend so far for the
    account managers' table). Not retried: the scheduler runs it again."""
    ctx = await get_context()
    summary = await run_current_periods(ctx.sessions, now=datetime.now(UTC))
    for error in summary.errors:
        log.error("drafting current periods: %s", error)


@dramatiq.actor(
    actor_name="draft_ended_periods", queue_name=MAINTENANCE_QUEUE, max_retries=0, time_limit=1_800_000
)
@periodic
async def draft_ended_periods() -> None:
    """Keep every customer's draft of its last ended period current, so the review queue
    fills by itself when periods end. Not retried: the scheduler runs it again."""
    ctx = await get_context()
    summary = await run_ended_periods(ctx.sessions, now=datetime.now(UTC))
    for error in summary.errors:
        log.error("drafting ended periods: %s", error)


@dramatiq.actor(
    actor_name=EMAIL_ACTOR,
    queue_name=MAINTENANCE_QUEUE,
    max_retries=4,
    min_backoff=5_000,
    max_backoff=300_000,
    time_limit=120_000,
)
async def email_document(customer_id: str, number: str) -> None:
    """Email an issued invoice or note (PDF attached) to the customer's billing contacts.
    Safe to run twice: a document marked sent is not sent again (document_email.py)."""
    ctx = await get_context()
    outcome = await send_document_email(
        ctx.sessions, ctx.settings, customer_id, number, now=datetime.now(UTC)
    )
    log.info("document %s of %s: %s", number, customer_id, outcome)


@dramatiq.actor(
    actor_name="sweep_document_emails", queue_name=MAINTENANCE_QUEUE, max_retries=0, time_limit=300_000
)
@periodic
async def sweep_document_emails() -> None:
    """Send the document emails still owed a while after they were recorded (a job lost
    between the commit and the enqueue, or one whose retries ran out while the SMTP server
    was down). Not retried: the scheduler runs it again."""
    ctx = await get_context()
    async with transaction(ctx.sessions) as session:
        owed = await document_store.pending_emails(
            session, now=datetime.now(UTC), older_than=timedelta(minutes=5)
        )
    for customer_id, number in owed:
        try:
            await send_document_email(ctx.sessions, ctx.settings, customer_id, number, now=datetime.now(UTC))
        except Exception as exc:  # one failing email must not stop the others
            log.warning("document %s of %s not sent: %s", number, customer_id, exc)
