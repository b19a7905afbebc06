"""Gauges read from the data at scrape time: what the stores hold, not what a process did.

Counters and histograms live in each process (portal/infrastructure/metrics.py); these are the same for
every process, so they are computed once per scrape from Postgres and the broker and
appended to the exposition.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from portal.billing.repository import adjustments as adjustment_store
from portal.billing.repository import invoices as invoice_store
from portal.infrastructure.broker import QUEUES
from portal.infrastructure.periods import to_datetime
from portal.ingest import repository as ingest_repository
from portal.live import repository as live_repository
from portal.operations import repository as ops_repository
from portal.operations.billing_health import billing_health
from portal.operations.status import rabbitmq_depths, redis_queue_depth
from portal.state import PortalState

Family = GaugeMetricFamily


class _Fixed(Collector):
    def __init__(self, families: list[Family]) -> None:
        self.families = families

    def collect(self) -> list[Family]:
        return self.families


async def data_families(portal: PortalState, *, grace_hours: float) -> list[Family]:
    now = datetime.now(UTC)
    queue = Family(
        "portal_broker_queue_messages", "Broker messages by queue and state.", labels=["queue", "state"]
    )
    if portal.broker_redis is None:
        # RabbitMQ: what it tells over AMQP (no in flight nor delayed: its own metrics have them).
        for depth in await asyncio.to_thread(rabbitmq_depths, portal.settings.effective_broker_url or ""):
            queue.add_metric([depth.name, "waiting"], depth.waiting)
            queue.add_metric([depth.name, "dead"], depth.dead)
    else:
        for name in QUEUES:
            depth = await redis_queue_depth(portal.broker_redis, name)
            for state, value in (
                ("waiting", depth.waiting),
                ("in_flight", (depth.unacknowledged or 0) - depth.waiting),
                ("delayed", depth.delayed or 0),
                ("dead", depth.dead),
            ):
                queue.add_metric([name, state], value)
    lag = Family("portal_completeness_lag_seconds", "How far Postgres is behind what ingest accepted.")
    lag.add_metric([], max((now - to_datetime(await portal.live.watermark_ms() / 1000)).total_seconds(), 0.0))

    async with portal.sessions() as session:
        failed, oldest = await ingest_repository.failed_events_outstanding(session)
        ahead = await ops_repository.partitions_after(session, f"usage_events_p{now:%Y%m}")
        drift_rows = await live_repository.latest_drift_by_metric(session)
        invoice_rows = await invoice_store.invoice_counts_by_state(session, grace_hours=grace_hours)
        adjustment_rows = await adjustment_store.note_totals(session)

    failed_count = Family("portal_failed_events", "Events kept in failed_events, not yet replayed.")
    failed_count.add_metric([], int(failed))
    failed_age = Family(
        "portal_failed_events_oldest_age_seconds", "Age of the oldest failed event (0: none)."
    )
    failed_age.add_metric([], 0.0 if oldest is None else (now - oldest).total_seconds())
    partitions = Family("portal_partitions_ahead", "Monthly raw-event partitions after the current month.")
    partitions.add_metric([], int(ahead))
    drift = Family(
        "portal_live_drift", "Live minus billed usage per meter in the last reconcile.", labels=["metric"]
    )
    for metric, total in drift_rows:
        drift.add_metric([metric], float(total))
    invoices = Family("portal_invoices", "Invoices by state.", labels=["state"])
    for state, count in invoice_rows:
        invoices.add_metric([state], int(count))
    notes = Family(
        "portal_adjustments", "Debit and credit notes by kind and currency.", labels=["kind", "currency"]
    )
    amounts = Family(
        "portal_adjustments_amount",
        "Sum of debit and credit notes by kind and currency.",
        labels=["kind", "currency"],
    )
    for kind, currency, count, total in adjustment_rows:
        notes.add_metric([kind, str(currency).strip()], int(count))
        amounts.add_metric([kind, str(currency).strip()], float(total))
    return [
        queue,
        lag,
        failed_count,
        failed_age,
        partitions,
        drift,
        invoices,
        notes,
        amounts,
        *await health_families(portal, now=now),
    ]


async def health_families(portal: PortalState, *, now: datetime) -> list[Family]:
    """The billing-health measures over the last 24 hours (portal/operations/billing_health.py). Processing
    latency is left out: each worker's `portal_persist_lag_seconds` histogram measures it."""
    async with portal.sessions() as session:
        h = await billing_health(session, portal.redis, now=now, window=timedelta(days=1))
    discrepancy = Family(
        "portal_health_discrepancy_rate",
        "Share of invoices finalized in the last 24 h that needed an adjustment.",
    )
    if h.discrepancy.rate is not None:
        discrepancy.add_metric([], float(h.discrepancy.rate))
    forecasts = Family(
        "portal_health_forecast_accuracy", "Share of forecast notices followed by their crossing, last 24 h."
    )
    if h.alerts.forecast_accuracy is not None:
        forecasts.add_metric([], float(h.alerts.forecast_accuracy))
    unnotified = Family(
        "portal_health_crossings_without_notice", "Crossings no channel was told about, last 24 h."
    )
    unnotified.add_metric([], h.alerts.crossings_without_notice)
    quality = Family(
        "portal_health_data_quality",
        "Share of events accepted without rejection, by source, over the UTC days of the last 24 h.",
        labels=["source"],
    )
    for q in h.data_quality:
        if q.score is not None:
            quality.add_metric([q.source], float(q.score))
    return [discrepancy, forecasts, unnotified, quality]


async def data_exposition(portal: PortalState) -> bytes:
    """The data gauges in Prometheus text format."""
    registry = CollectorRegistry()
    grace = portal.settings.invoice_grace.total_seconds() / 3600
    registry.register(_Fixed(await data_families(portal, grace_hours=grace)))
    return generate_latest(registry)
