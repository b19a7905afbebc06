"""Prometheus metrics of every process, served at GET /metrics.

With several processes (`usage-portal up` runs web and worker processes), each writes its
samples under PROMETHEUS_MULTIPROC_DIR (prometheus-client's multiprocess mode) and any web
process's /metrics sums them, so one scrape sees the whole machine. Without that variable
(one process, or tests) the process's own registry is served. No label carries a customer
id: metrics stay small and free of customer data.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

# The exposition's type without its charset: the response adds "; charset=utf-8" to every
# text/* type itself, and a type naming it twice fails Prometheus 3's scrape (Go's
# mime.ParseMediaType refuses a repeated parameter).
CONTENT_TYPE = "; ".join(
    p.strip() for p in CONTENT_TYPE_LATEST.split(";") if not p.strip().startswith("charset=")
)
_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

INGEST_REQUESTS = Counter("portal_ingest_requests_total", "Ingest requests by HTTP status.", ["status"])
INGEST_EVENTS = Counter("portal_ingest_events_total", "Events in ingest requests by outcome.", ["outcome"])
INGEST_REJECTIONS = Counter(
    "portal_ingest_rejections_total", "Rejected events by the field at fault.", ["field"]
)
INGEST_SECONDS = Histogram("portal_ingest_request_seconds", "Ingest request latency.", buckets=_SECONDS)
INGEST_BATCH_EVENTS = Histogram(
    "portal_ingest_batch_events", "Events per ingest request.", buckets=(1, 10, 50, 100, 250, 500, 1000)
)
INGEST_PAGE_WAIT_SECONDS = Counter(
    "portal_ingest_page_wait_seconds_total",
    "Time batches waited for pages served by the same web process (at most 20 ms a batch).",
)
PERSISTED_EVENTS = Counter("portal_persisted_events_total", "Events written to Postgres (exactly once).")
PERSIST_LAG = Histogram(
    "portal_persist_lag_seconds", "From acceptance (202) to the Postgres commit.", buckets=_SECONDS
)
FAILED_EVENTS = Counter("portal_failed_events_total", "Events kept in failed_events after retries.")
PERSIST_FAILURES = Counter(
    "portal_persist_failures_total",
    "Persist messages that failed: outage or retry (delivered again), set_aside "
    "(some events kept in failed_events).",
    ["kind"],
)
ALERT_FIRINGS = Counter("portal_alert_firings_total", "Alert notices fired, by kind.", ["kind"])
ALERT_DELIVERIES = Counter(
    "portal_alert_deliveries_total",
    "Alert delivery attempts by channel kind and outcome.",
    ["channel", "outcome"],
)
ALERT_DELIVERY_SECONDS = Histogram(
    "portal_alert_delivery_seconds", "From firing to a successful delivery.", ["channel"], buckets=_SECONDS
)
UNHANDLED_ERRORS = Counter(
    "portal_unhandled_errors_total",
    "Requests answered 500 by an unexpected exception, by its type.",
    ["exception"],
)


def scrape() -> bytes:
    """The exposition text of this machine's processes (or of this process alone)."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()
