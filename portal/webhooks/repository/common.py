"""What the repository's modules share."""

from __future__ import annotations

from typing import Any

from sqlmodel import col

from portal.infrastructure.db import values
from portal.webhooks.models import WebhookEndpoint as EndpointRow
from portal.webhooks.schemas import Endpoint

# Only columns are read and written here, never objects a session would have to keep in step.
NO_SYNC = {"synchronize_session": False}

ENDPOINT_COLUMNS = (
    col(EndpointRow.id),
    col(EndpointRow.url),
    col(EndpointRow.description),
    col(EndpointRow.event_types),
    col(EndpointRow.enabled),
    col(EndpointRow.created_at),
    col(EndpointRow.updated_at),
)


def ids(found: Any) -> list[int]:
    """A result's single column of ids, as ints."""
    return [int(i) for i in found.all()]


def first_id(result: Any) -> int | None:
    row = result.first()
    return None if row is None else int(row[0])


def endpoint_of(row: Any) -> Endpoint:
    id_, url, description, types, enabled, created, updated = values(row)
    return Endpoint(int(id_), url, description, list(types), bool(enabled), created, updated)
