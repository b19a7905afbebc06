"""Queries on `webhook_endpoints`, `webhook_events`, `webhook_deliveries` and
`webhook_delivery_attempts`, one module per group; nothing here commits."""

from portal.webhooks.repository.deliveries import (
    claim_delivery,
    delivery_schedule,
    due_delivery_ids,
    insert_attempt,
    insert_deliveries,
    insert_events,
    insert_replay,
    mark_delivered,
    mark_failed,
    schedule_retry,
)
from portal.webhooks.repository.endpoints import (
    delete_endpoint,
    enabled_endpoint_types,
    endpoint_by_id,
    endpoints,
    insert_endpoint,
    update_endpoint,
)
from portal.webhooks.repository.reads import EventPosition, deliveries, event_by_id, event_position, events

__all__ = [
    "EventPosition",
    "claim_delivery",
    "delete_endpoint",
    "deliveries",
    "delivery_schedule",
    "due_delivery_ids",
    "enabled_endpoint_types",
    "endpoint_by_id",
    "endpoints",
    "event_by_id",
    "event_position",
    "events",
    "insert_attempt",
    "insert_deliveries",
    "insert_endpoint",
    "insert_events",
    "insert_replay",
    "mark_delivered",
    "mark_failed",
    "schedule_retry",
    "update_endpoint",
]
