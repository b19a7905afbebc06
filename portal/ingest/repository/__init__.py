"""Every query on ingest's tables, `event_ledger`, `usage_events`, `event_conflicts` and
`failed_events`; other modules call these functions, never the tables. (The monthly
partitions of `usage_events` are made by `portal/ingest/partitions.py`.)

Two kinds of caller. The persist worker writes on a bare asyncpg connection inside its
per-batch transaction: those functions are raw asyncpg SQL (unnest, COPY, executemany)
because they are the ingest hot path, one round trip per statement whatever the batch size.
The pages and operator tasks read and write on a session, with SQLAlchemy expressions,
except where a comment says why not. Reads select columns rather than whole models, so
nothing lands in the session's identity map. None of them commits.

One module per table: `ledger` (`event_ledger`), `events` (`usage_events`), `conflicts`
(`event_conflicts`), `failed` (`failed_events`). Callers use the names below
(`ingest_repository.admit_to_ledger(...)`).
"""

from __future__ import annotations

from portal.ingest.repository.conflicts import (
    ConflictRecord,
    ConflictSeen,
    conflicts_of_event,
    conflicts_since,
    insert_conflicts,
)
from portal.ingest.repository.events import (
    USAGE_EVENT_COLUMNS,
    EventRow,
    StoredEvent,
    copy_usage_events,
    events_page,
    stored_event,
)
from portal.ingest.repository.failed import (
    FAILED_EVENT_STATUSES,
    FailedAttempt,
    FailedListed,
    FailedPosition,
    FailedRecord,
    failed_event_key,
    failed_event_position,
    failed_events_in_period,
    failed_events_listing,
    failed_events_outstanding,
    failed_keys_of_message,
    failed_of_event,
    failed_page,
    failed_to_replay,
    insert_failed_events,
    mark_discarded,
    mark_replayed,
)
from portal.ingest.repository.ledger import (
    LedgerEntry,
    LedgerHolding,
    admit_to_ledger,
    ledger_entry,
    ledger_holdings,
    message_key,
    persist_latency,
    prune_ledger,
)

__all__ = [
    "FAILED_EVENT_STATUSES",
    "USAGE_EVENT_COLUMNS",
    "ConflictRecord",
    "ConflictSeen",
    "EventRow",
    "FailedAttempt",
    "FailedListed",
    "FailedPosition",
    "FailedRecord",
    "LedgerEntry",
    "LedgerHolding",
    "StoredEvent",
    "admit_to_ledger",
    "conflicts_of_event",
    "conflicts_since",
    "copy_usage_events",
    "events_page",
    "failed_event_key",
    "failed_event_position",
    "failed_events_in_period",
    "failed_events_listing",
    "failed_events_outstanding",
    "failed_keys_of_message",
    "failed_of_event",
    "failed_page",
    "failed_to_replay",
    "insert_conflicts",
    "insert_failed_events",
    "ledger_entry",
    "ledger_holdings",
    "mark_discarded",
    "mark_replayed",
    "message_key",
    "persist_latency",
    "prune_ledger",
    "stored_event",
]
