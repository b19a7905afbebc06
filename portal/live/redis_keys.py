"""The Redis keys of the live view and of operations, and how long each lives.

Keys other domains own are named in their own modules: portal sessions (`sess:<id>`,
`user-sess:<user id>`, portal/pages/sessions.py), sign-in and password-reset throttling (`login-fail:*`,
`pw-reset:*`, portal/accounts/throttle.py), revocation acknowledgements (`api-keys:revoked-ack:<nonce>`,
portal/keys/service.py) and Dramatiq's own keys in the broker's Redis (portal/operations/dead_letters.py).

Keys of one customer share the hash tag `{customer}` so a Redis Cluster keeps them in one
slot and a Lua script may touch them together. On a cluster (REDIS_URL=redis+cluster://…,
portal/infrastructure/redis_client.py):

- per customer, hash-tagged `{c}`, touched together by the live scripts: `lu:`, `ls:`, `le:`, `leu:`, `lk:`,
  `lt:`, `ld:`, `la:`, `lc:` and `alerts:debounce:{c}`;
- one hash tag for a pair touched by one script: `ops:{roles}` and `ops:{roles}:seen`;
- global single keys, each on the node owning its slot and never in a multi-key call:
  `live:inflight`, `live:built:v2`, `alerts:pending`, `drafts:refresh:<id>`,
  `live:reconcile-lock`, `quality:<day>`,
  `ops:persist_failures`, `sched:<actor>:<tick>`; and, named elsewhere, `sess:<id>`,
  `user-sess:<id>`, `login-fail:*`, `pw-reset:*`, `api-keys:revoked-ack:<nonce>`. `ops:job_success` lives in
  the broker's Redis, which is never a cluster.

- `lu:{c}:<metric>:<bucket>` HASH, one per customer, metric and local hour (bucket =
  epoch seconds of the hour's start). Fields: `=` the hour's value over all groups,
  `g|<groupKey>` the value of one group-by combination; for `latest` meters `@=` and
  `@g|<groupKey>` hold the event time (µs) of the value kept. A `sum` value is exact: it is
  kept as integer limbs added with HINCRBY, `<field>` whole units, `<field>~f` units of
  10^-12 and `<field>~h` units of 10^12 (no float anywhere; see `portal.live.store`).
- `ls:{c}:<metric>:<bucket>:<field>` SET of distinct values for `unique_count` meters.
- `le:{c}:<metric>` HASH, a meter's period accumulator for entitlement checks: `start` and
  `end` (the billing period's bounds, epoch seconds) and the period's value so far in the
  hour hashes' form (`=` with its limbs, `@=` for latest). Filled from the hours by the first
  check of a period (`INIT_PERIOD`); from then on the live scripts add every op on an
  hour's total inside the period to it too, so a check reads one key. Expires after the
  period's lateness window; reconcile deletes it when it rewrites one of its hours.
- `leu:{c}:<metric>` SET, the distinct values of a unique_count meter's period so far.
- `lk:{c}` ZSET of that customer's `lu:` keys scored by bucket: what reconcile compares.
  It has no expiry of its own: reconcile drops the members of expired hours.
- `lt:{c}:<name>` scratch keys of one script run (`scratch_key`), deleted by it.
- `ld:{c}:<slot>` HASH eventId -> the first 16 hex digits of the event's fingerprint: the
  edge's dedup markers of the events accepted in one marker window (`slot` = accepted time
  // window). An event is looked up in its window and the one before, and a window's hash
  expires two windows after it opened, so markers take memory for the rate times at most
  two windows, whatever the lateness window (Postgres' ledger is the dedup guard for that).
- `la:{c}:<batchId>` STRING, set by the live apply of one accepted batch for two minutes,
  so applying the same batch again (a retry after a lost reply) counts nothing twice.
- `lc:{c}:<messageId>` STRING, set when the persist worker corrected the live counters for
  the late duplicates of one message (a day), so a redelivery does not correct them twice.
- `live:inflight` ZSET of batch ids queued but not yet in Postgres, scored by acceptance
  time (ms): its minimum is the `completeThrough` watermark.
- `live:built:v2` STRING, present once a full reconcile has filled the live view; a flushed
  Redis loses it, which makes the next reconcile rebuild everything.
- `live:reconcile-lock` STRING, the lease of the reconcile that runs (one at a time;
  renewed while it runs, so a killed holder frees it within the lease).
- `quality:<day>` HASH of the day's accepted and rejected counts per source and reason,
  kept 40 days (`quality_key`).
- `alerts:debounce:{c}` STRING, set while an alert evaluation of the customer is scheduled.
- `drafts:refresh:<invoice id>` STRING, set while a re-rating of an ended period's draft
  that late events reached is scheduled (workers/billing.py).
- `alerts:pending` ZSET customer id -> when (ms) an alert evaluation of it was last asked
  for; removed once one that started after that has run. The alert sweep evaluates what has
  been pending for a minute (an evaluation lost with a process).

Operations (not the live view; `ops:` keys, read by `/readyz` and `usage-portal status`):

- `ops:persist_failures` STREAM, recent persist failures (below).
- `ops:{roles}` HASH `<role>|<host>|<pid>` -> JSON of the process (role, host, pid,
  started_at, beat interval, stopped), and `ops:{roles}:seen` ZSET of the same fields scored
  by the last heartbeat (Redis clock, ms). Written by every web, worker and scheduler
  process every few seconds (`portal/operations/heartbeats.py`); fields silent for a day are dropped.
- `ops:job_success` HASH, in the broker's Redis: actor name -> when (ms, the worker's clock)
  the last successful run of that periodic job started; that success also clears the dead
  letters it makes moot (`portal/operations/dead_letters.py`).
- `sched:<actor>:<tick>` STRING, the scheduler's claim of one tick of a periodic job.
"""

from __future__ import annotations

from datetime import timedelta

TOTAL_FIELD = "="
GROUP_PREFIX = "g|"
LATEST_PREFIX = "@"
INFLIGHT_KEY = "live:inflight"
ALERTS_PENDING_KEY = "alerts:pending"
# v2: sums became integer limbs; a view built in the float format is rebuilt once.
BUILT_KEY = "live:built:v2"
FRACTION_LIMB = "~f"
HIGH_LIMB = "~h"
RECONCILE_LOCK_KEY = "live:reconcile-lock"

# A billing period is at most 31 days; live reads cover the current and the previous one.
MAX_PERIOD = timedelta(days=31)


def hour_key(customer_id: str, metric_name: str, bucket: int) -> str:
    return f"{hour_key_prefix(customer_id, metric_name)}{bucket}"


def hour_key_prefix(customer_id: str, metric_name: str) -> str:
    """What every hour key of the customer's meter starts with (the hour's bucket follows)."""
    return f"lu:{{{customer_id}}}:{metric_name}:"


def unique_key(customer_id: str, metric_name: str, bucket: int, field: str) -> str:
    return f"ls:{{{customer_id}}}:{metric_name}:{bucket}:{field}"


def period_key(customer_id: str, metric_name: str) -> str:
    return f"le:{{{customer_id}}}:{metric_name}"


def period_unique_key(customer_id: str, metric_name: str) -> str:
    return f"leu:{{{customer_id}}}:{metric_name}"


def index_key(customer_id: str) -> str:
    return f"lk:{{{customer_id}}}"


def marker_slot(accepted_ms: int, window: timedelta) -> int:
    """The marker window an event accepted at `accepted_ms` (epoch ms) is remembered in."""
    return accepted_ms // int(window.total_seconds() * 1000)


def marker_key(customer_id: str, slot: int) -> str:
    return f"ld:{{{customer_id}}}:{slot}"


def marker_pattern(customer_id: str) -> str:
    """Every marker window of a customer (for tests and operators that forget them)."""
    return f"ld:{{{customer_id}}}:*"


def markers_expire_at(slot: int, window: timedelta) -> int:
    """EXPIREAT (epoch seconds) of window `slot`'s markers: the end of the window after it,
    the last time a lookup reads it."""
    return (slot + 2) * int(window.total_seconds())


# Fingerprint digits a marker keeps: 64 bits tell a resent event from a different one sharing
# its id (the ledger compares the whole fingerprint), in a quarter of the memory.
MARKER_FINGERPRINT_CHARS = 16
# A batch's applied key says who counted it live: "1" the web (every event it accepted),
# "w" the persist worker (the events the ledger admitted, when the web had not counted the
# batch: it died between the broker and the live view). The web's stays until the worker
# settles the batch (in flight only; a week covers any backlog); then both stay as long as
# the web may still retry its apply (a minute), so that retry counts nothing twice.
APPLIED_TTL = timedelta(minutes=2)
APPLIED_UNSETTLED_TTL = timedelta(days=7)
CORRECTED_TTL = timedelta(days=1)  # longer than a persist message's redeliveries


def applied_key(customer_id: str, batch_id: str) -> str:
    return f"la:{{{customer_id}}}:{batch_id}"


def corrected_key(customer_id: str, message_id: str) -> str:
    return f"lc:{{{customer_id}}}:{message_id}"


def scratch_key(customer_id: str, name: str) -> str:
    return f"lt:{{{customer_id}}}:{name}"


QUALITY_TTL = timedelta(days=40)


def quality_key(day: str) -> str:
    """Per UTC day ("2026-11-24"): accepted and rejected event counts by ingest source and
    rejection reason, for the data-quality measure. Kept `QUALITY_TTL`."""
    return f"quality:{day}"


# Persist failures, newest last: a Redis stream the persist actor appends to whenever a
# message fails (an outage or another error: it will be retried) or has events set aside
# in failed_events (portal/operations/status.py reads it). Bounded (about the last 1000 entries) and
# gone after a quiet day.
PERSIST_FAILURES_KEY = "ops:persist_failures"
PERSIST_FAILURES_TTL = timedelta(days=1)


# Role heartbeats (portal/operations/heartbeats.py). One hash tag: the heartbeat script touches both keys.
ROLES_KEY = "ops:{roles}"
ROLES_SEEN_KEY = "ops:{roles}:seen"
ROLES_FORGET_AFTER = timedelta(days=1)

# The last success of each actor (portal/operations/dead_letters.py).
JOB_SUCCESS_KEY = "ops:job_success"


def schedule_claim_key(actor_name: str, tick: int) -> str:
    """Set (NX) by the scheduler that queues `actor_name` for its `tick`-th period, so
    several schedulers queue each tick once; expires after two periods."""
    return f"sched:{actor_name}:{tick}"


def draft_refresh_key(invoice_id: int) -> str:
    """Set while a re-rating of an ended period's draft is scheduled (expires by itself if
    it is lost, so later events schedule another)."""
    return f"drafts:refresh:{invoice_id}"


def alert_debounce_key(customer_id: str) -> str:
    """Set while an alert evaluation of the customer is scheduled (expires by itself if
    that evaluation is lost, so the next usage schedules another)."""
    return f"alerts:debounce:{{{customer_id}}}"


def group_field(group_key: str) -> str:
    return GROUP_PREFIX + group_key if group_key else TOTAL_FIELD


def live_horizon(accepted_lateness: timedelta) -> timedelta:
    """How long an hour's keys must live after the hour starts: the current and previous
    billing period are read from them, and late events may still update them."""
    return 2 * MAX_PERIOD + accepted_lateness + timedelta(days=1)


def hour_key_expires_at(bucket: int, accepted_lateness: timedelta) -> int:
    """EXPIREAT (epoch seconds) for every key of the hour starting at `bucket`."""
    return bucket + int(live_horizon(accepted_lateness).total_seconds())
