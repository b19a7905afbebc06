"""Event ingest: validate at the edge, update the live view, hand batches to the workers.

`POST /v1/events` and `POST /v1/events/batch` (`routes.py`): each event is checked on its
own (`validation.py`), duplicates are found against the live markers, the batch is made
durable in the broker (`handoff.py`, concurrent requests coalesced into one message) and
then counted live (`service.py`). While the workers are too far behind, `backlog.py` holds
new requests back and then refuses them (503) before anything is read. `events.py` is the
accepted event's wire form, shared with the workers that persist it; `portal/compat/`
feeds the same path.

Tables (`models.py`): `event_ledger` (one row per accepted (customer, eventId), with its
fingerprint: the dedup guard, pruned after the lateness window), `usage_events` (the raw
events, in monthly partitions `usage_events_pYYYYMM` made by `partitions.py`),
`failed_events` (events the workers gave up on, later marked replayed or discarded) and
`event_conflicts` (eventIds re-used with other content). Every statement on them is in
`repository/` (one module per table; the partitions' DDL aside); other modules call it,
never the tables. The worker's persist transaction writes them through it
(`workers/persist.py`: raw asyncpg unnest and COPY, the hot path; `failed_events.py` tells
unstorable events apart and builds their text-safe rows), `maintain_storage` prunes the
ledger and makes partitions ahead, `usage-portal failed replay`
(`portal/operations/operator_tasks.py`) and the failed-events page
(`portal/pages/manager/failed.py`) mark failed events replayed or discarded, and the event
explorer (`portal/pages/manager/events.py`) reads them.

Redis keys: none of its own. The markers `ld:{c}:<eventId>`, `live:inflight` and the hour
counters are written through `portal.live.store.LiveStore` (owned by `portal/live/`), and
each request's data-quality counts through `portal/ingest/quality.py` (`quality:<day>`).
"""
