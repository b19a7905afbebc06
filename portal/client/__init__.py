"""Client SDK for the usage portal's ingest API (`POST /v1/events/batch`).

    from portal.client import UsageClient

    usage = UsageClient("https://portal.example", "ingest-key")
    usage.record("acme", "api_calls", 1, dimensions={"region": "eu"})
    if not usage.check("acme", "api_calls").allowed: ...  # past a hard limit

See docs/client.md.
"""

from portal.client.aio import AsyncUsageClient
from portal.client.buffer import ClientStats, build_event
from portal.client.corrections import Correction, CorrectionRefused, CorrectionUnavailable
from portal.client.entitlements import Entitlement, EntitlementUnavailable
from portal.client.errors import (
    AuthenticationError,
    BufferFull,
    DeliveryError,
    EventRejected,
    UsageClientError,
)
from portal.client.ids import new_event_id
from portal.client.spool import SpoolInUse
from portal.client.sync import UsageClient
from portal.client.transport import Reply, RetryPolicy, Transport, UrllibTransport

__all__ = [
    "AsyncUsageClient",
    "AuthenticationError",
    "BufferFull",
    "ClientStats",
    "Correction",
    "CorrectionRefused",
    "CorrectionUnavailable",
    "DeliveryError",
    "Entitlement",
    "EntitlementUnavailable",
    "EventRejected",
    "Reply",
    "RetryPolicy",
    "SpoolInUse",
    "Transport",
    "UrllibTransport",
    "UsageClient",
    "UsageClientError",
    "build_event",
    "new_event_id",
]
