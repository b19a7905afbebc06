"""Webhook request and response bodies (camelCase, validated at the edge), and the read
shapes the repository answers to the service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec

from portal.http.schemas import NO_NUL, CamelStruct
from portal.webhooks.events import EventType
from portal.webhooks.urls import MAX_URL_LENGTH

Url = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
Description = Annotated[str, msgspec.Meta(max_length=500, pattern=NO_NUL)]
EventTypes = Annotated[list[EventType], msgspec.Meta(min_length=1, max_length=20)]
DeliveryStatus = Literal["pending", "delivered", "failed"]
DELIVERY_STATUSES: tuple[DeliveryStatus, ...] = ("pending", "delivered", "failed")


class EndpointCreate(CamelStruct):
    """An endpoint: the URL the portal POSTs to (https://, a public host), the event types
    it receives, a description for people. Its signing secret is in the answer only."""

    url: Url
    event_types: EventTypes
    description: Description = ""
    enabled: bool = True


class EndpointUpdate(CamelStruct):
    """What to change; fields left out stay as they are."""

    url: Url | None = None
    event_types: EventTypes | None = None
    description: Description | None = None
    enabled: bool | None = None


class Endpoint(CamelStruct):
    id: int
    url: str
    description: str
    event_types: list[str]
    enabled: bool
    created_at: datetime
    updated_at: datetime
    # Only in the answer that creates the endpoint: the key to verify signatures with.
    signing_secret: str | None = None


class Event(CamelStruct):
    id: str
    type: str
    api_version: str
    customer_id: str | None
    created_at: datetime
    # The body every delivery sends, parsed.
    payload: Any


class Attempt(CamelStruct):
    attempt: int
    started_at: datetime
    duration_ms: int
    http_status: int | None
    error: str | None


class Delivery(CamelStruct):
    id: int
    event_id: str
    event_type: str
    customer_id: str | None
    endpoint_id: int
    endpoint_url: str
    replay_of_id: int | None
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    failed_at: datetime | None
    attempts: list[Attempt] = msgspec.field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery a worker leased, with what it needs to send it (the secret encrypted)."""

    delivery_id: int
    attempt: int
    event_id: str
    body: str
    endpoint_id: int
    url: str
    signing_secret_encrypted: bytes
    usable: str | None  # None, or why the endpoint no longer receives ("deleted", "disabled")


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """How one POST went: ok on a 2xx answer; `http_status` when there was an answer,
    `error` when it failed (never the URL's path or the secret)."""

    ok: bool
    http_status: int | None
    error: str | None
    duration_ms: int
