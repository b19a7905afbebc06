"""`GET /v1/archive/events/{eventId}?customerId=`: an event whose month was archived
(portal/ingest/archive.py), read back from the archive's files, with the admin key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from anyio import to_thread
from litestar import Controller, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, QueryParameter

from portal.dependencies import Portal
from portal.http.openapi_answers import error_answers
from portal.http.schemas import CamelStruct
from portal.ingest.archive import find_archived_event
from portal.usage.combine import exact

ADMIN = {"scope": "admin"}


class ArchivedEventOut(CamelStruct, kw_only=True):
    customer_id: str
    event_id: str
    metric_name: str
    product_id: str
    quantity: str
    event_time: datetime
    dimensions: dict[str, Any]
    metadata: dict[str, Any]
    received_at: datetime
    persisted_at: datetime
    cancelled_at: datetime | None
    # The archived month, `YYYY-MM`, and the folder of its files under the archive dir.
    archived_month: str
    archive_partition: str


class ArchiveController(Controller):
    """Raw events past their retention, read from the archive (docs/data-lifecycle.md)."""

    path = "/v1/archive"
    tags = ["operations"]
    opt = ADMIN

    @get("/events/{event_id:str}", responses=error_answers(404))
    async def archived_event(
        self,
        event_id: FromPath[str],
        customer_id: Annotated[str, QueryParameter(name="customerId", min_length=1, max_length=128)],
        portal: Portal,
    ) -> ArchivedEventOut:
        """The event as it was stored before its month was archived; 404 when no archived
        month holds it (an event still in Postgres is under the event explorer)."""
        found = await to_thread.run_sync(
            find_archived_event, portal.settings.archive_path, customer_id, event_id
        )
        if found is None:
            raise NotFoundException(f"the archive holds no event {event_id!r} of customer {customer_id!r}")
        row = found.row
        return ArchivedEventOut(
            customer_id=row["customer_id"],
            event_id=row["event_id"],
            metric_name=row["metric_name"],
            product_id=row["product_id"],
            quantity=exact(row["quantity"]),
            event_time=row["event_time"],
            dimensions=row["dimensions"],
            metadata=row["metadata"],
            received_at=row["received_at"],
            persisted_at=row["persisted_at"],
            cancelled_at=row["cancelled_at"],
            archived_month=f"{found.month:%Y-%m}",
            archive_partition=found.partition,
        )
