"""The event explorer's look into the raw event archive (portal/ingest/archive.py): an id
search Postgres does not answer is asked of the archive, and an archived event keeps its
own page. Kept apart from events.py, which calls these two functions and nothing else."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from anyio import to_thread

from portal.infrastructure.settings import Settings
from portal.ingest import archive_files
from portal.ingest.archive import find_archived_event, month_of
from portal.usage.combine import exact


@dataclass(frozen=True, slots=True)
class ArchivedView:
    """An archived event as the explorer shows it."""

    customer_id: str
    event_id: str
    metric_name: str
    quantity: str
    event_time: datetime
    received_at: datetime
    persisted_at: datetime
    cancelled_at: datetime | None
    dimensions: dict[str, Any]
    month: date


@dataclass(frozen=True, slots=True)
class ArchiveAnswer:
    """What the archive says to an id search: the event, or why it was not looked for."""

    event: ArchivedView | None
    # The last archived month: older events are only in the archive.
    through: date
    needs_customer: bool


def _view(settings: Settings, customer_id: str, event_id: str) -> ArchivedView | None:
    found = find_archived_event(settings.archive_path, customer_id, event_id)
    if found is None:
        return None
    row = found.row
    return ArchivedView(
        customer_id=row["customer_id"],
        event_id=row["event_id"],
        metric_name=row["metric_name"],
        quantity=exact(row["quantity"]),
        event_time=row["event_time"],
        received_at=row["received_at"],
        persisted_at=row["persisted_at"],
        cancelled_at=row["cancelled_at"],
        dimensions=row["dimensions"],
        month=found.month,
    )


async def archived_event(settings: Settings, customer_id: str, event_id: str) -> ArchivedView | None:
    """The event from the archive, or None (a customer the viewer may see, checked before)."""
    return await to_thread.run_sync(_view, settings, customer_id, event_id)


async def archive_search(
    settings: Settings, customer_id: str | None, event_id: str | None
) -> ArchiveAnswer | None:
    """For an id search that found nothing stored: None when there is no archive (or no id);
    else the archived event of the chosen customer, or that a customer must be chosen
    (an id is looked up in the archive per customer)."""
    if event_id is None:
        return None
    index = await to_thread.run_sync(archive_files.read_index, settings.archive_path)
    if not index:
        return None
    through = month_of(index[-1]["partition"])
    if customer_id is None:
        return ArchiveAnswer(None, through, needs_customer=True)
    return ArchiveAnswer(await archived_event(settings, customer_id, event_id), through, needs_customer=False)
