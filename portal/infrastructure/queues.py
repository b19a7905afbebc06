"""The broker's queue names, in a module of their own so the command line can name them
without importing the broker (and Dramatiq) at start."""

from __future__ import annotations

INGEST_QUEUE = "ingest"
MAINTENANCE_QUEUE = "maintenance"
# Alert evaluation and delivery, billing webhooks: never stuck behind a backlog of ingest or
# maintenance (`up` runs them in a worker of their own).
ALERTS_QUEUE = "alerts"
QUEUES = (INGEST_QUEUE, MAINTENANCE_QUEUE, ALERTS_QUEUE)
