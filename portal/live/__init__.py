"""The live view: Redis hourly counters, dedup markers and the freshness watermark.

Events are counted here when they are accepted, before they reach Postgres: the ingest
edge finds duplicates here and people see usage so far; bills never read it. `keys.py`
names the keys and their lifetimes, `store.py` (with the Lua of `scripts.py`) reads and
writes them, and the reconcile job (`workers/reconcile.py`) repairs them from Postgres.

Tables (`models.py`): `reconcile_runs` (one row per reconcile, kept 7 days) and
`live_drift` (per customer and metric, live minus billed as a run found it; deleted with
its run). `workers/reconcile.py` writes them; `GET /v1/drift`, the drift page, bill
review, `usage-portal status` and the metrics read them, all through `repository.py`
(save the drift page's read scoped by the viewer's customers).

Redis keys it owns (`{c}` is the customer's hash tag):

- `lu:{c}:<metric>:<bucket>` HASH, one per customer, metric and local hour, and
  `ls:{c}:<metric>:<bucket>:<field>` SET of distinct values (`unique_count` meters): they
  expire 2 x 31 days + the lateness window + 1 day after their hour starts.
- `lk:{c}` ZSET, the customer's `lu:` keys scored by hour: no expiry.
- `ld:{c}:<slot>` HASH, the dedup markers of one marker window (`PORTAL_DEDUP_MARKER_MINUTES`,
  30): each expires two windows after its window opened.
- `la:{c}:<batchId>` STRING: who counted this batch live, `1` the web or `w` the persist
  worker (idempotent applies; the worker's settle). Until the worker settles it (at most
  7 days), then 2 minutes.
- `lc:{c}:<messageId>` STRING, a day: the worker corrected this message's late duplicates.
- `lt:{c}:union:<n>` SET, scratch for a distinct count across hours, deleted by the script
  that makes it.
- `live:inflight` ZSET of batches accepted but not yet in Postgres, scored by acceptance
  time (ms): no expiry; a batch leaves it when the worker is done with it, or at once when
  it was not queued.
- `live:built:v2` STRING, set by a full reconcile (no expiry), and `live:reconcile-lock`
  STRING, a 15-second lease the running reconcile renews: both written only by
  `workers/reconcile.py`.

On a Redis Cluster (`REDIS_URL=redis+cluster://…`) the `{c}`-tagged keys of a customer are
in one slot, so its scripts (`scripts.py`: KEYS[1] is the customer's `lk:{c}`, which routes
the call, and every other key they touch carries the same tag) run on one node; the
`live:` keys are global single keys, each on the node owning its slot, touched by no
multi-key call (the watermark reads `live:inflight` with the server's clock in a one-key
script).

`redis_keys.py` also names keys that other modules own: `ops:persist_failures`
(`portal/operations/status.py`), `ops:{roles}` and `ops:{roles}:seen`
(`portal/operations/heartbeats.py`), `ops:job_success` (`portal/operations/dead_letters.py`),
`sched:<actor>:<tick>` (`portal/operations/scheduler.py`), `quality:<day>`
(`portal/ingest/quality.py`) and `alerts:debounce:{c}` (`workers/alerting.py`).
"""
