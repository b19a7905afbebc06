"""Reconcile: make the live view equal to Postgres for settled hours, and say how far
apart they were (the drift report, DESIGN invariant 1).

An hour is settled when it ended before the freshness watermark (every event accepted
before the watermark is in Postgres). Only keys that differ are rewritten. A Redis that
lost the `live:built` marker (flushed, replaced) gets a full rebuild of every hour the
live view may be read for, up to now.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from portal.catalog import repository as catalog
from portal.infrastructure.periods import HOUR_S, to_datetime
from portal.live import redis_keys as keys
from portal.live import repository as live_repository
from portal.live.store import live_value, live_values, sum_fields
from portal.usage import repository as usage_repository
from portal.usage.combine import combine, exact
from workers.context import WorkerContext

log = logging.getLogger(__name__)

# The reconcile lock is a lease: held this long, renewed every third of it while the
# reconcile runs, so a worker killed mid-run (kill -9, a lost node) frees it within the lease
# instead of blocking every reconcile after it.
LOCK_LEASE_S = 15.0
# How long a reconcile waits for one already running (a reconcile takes seconds): longer
# than a lease, so a queued reconcile outlives a dead holder's lock.
LOCK_PATIENCE_S = 30.0

Desired = dict[str, str]  # hash field -> value, exactly as the live view stores it


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    window_start: datetime
    window_end: datetime
    full_rebuild: bool
    keys_written: int
    drift: dict[tuple[str, str], tuple[Decimal, Decimal]]  # (customer, metric) -> (live, billed)


def _fmt(value: Decimal) -> str:
    return exact(value)


def _value_fields(aggregation: str, fld: str, value: Decimal) -> dict[str, str]:
    """Hash fields holding `value`: sums as the integer limbs the ingest adds to."""
    return sum_fields(fld, value) if aggregation == "sum" else {fld: _fmt(value)}


async def _desired_state(
    conn: Any, start: datetime, end: datetime, meters: Mapping[str, str]
) -> tuple[dict[str, Desired], dict[str, dict[str, set[str]]], dict[str, tuple[str, str, int]]]:
    """What each live key should hold, from Postgres, for hours in [start, end); `meters`
    maps metric names to their aggregation."""
    rows = await usage_repository.hours_between(conn, start, end)
    groups: dict[str, list[Any]] = defaultdict(list)
    where: dict[str, tuple[str, str, int]] = {}
    for r in rows:
        bucket = int(r["hour"].timestamp())
        hkey = keys.hour_key(r["customer_id"], r["metric_name"], bucket)
        groups[hkey].append(r)
        where[hkey] = (r["customer_id"], r["metric_name"], bucket)
    sets: dict[str, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    for r in await usage_repository.unique_values_between(conn, start, end):
        bucket = int(r["hour"].timestamp())
        hkey = keys.hour_key(r["customer_id"], r["metric_name"], bucket)
        sets[hkey][keys.TOTAL_FIELD].add(r["value"])
        if r["group_key"]:
            sets[hkey][keys.group_field(r["group_key"])].add(r["value"])
    desired: dict[str, Desired] = {}
    for hkey, members in groups.items():
        aggregation = meters.get(members[0]["metric_name"], "sum")
        state: Desired = {}
        if aggregation == "unique_count":
            for fld, values in sets[hkey].items():
                state[fld] = str(len(values))
        elif aggregation == "latest":
            newest = max(members, key=lambda r: (r["latest_at"], r["latest_event_id"]))
            state[keys.TOTAL_FIELD] = _fmt(newest["value"])
            state[keys.LATEST_PREFIX + keys.TOTAL_FIELD] = str(
                (newest["latest_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
            )
            for r in members:
                if r["group_key"]:
                    fld = keys.group_field(r["group_key"])
                    state[fld] = _fmt(r["value"])
                    state[keys.LATEST_PREFIX + fld] = str(
                        (r["latest_at"] - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
                    )
        else:
            state.update(
                _value_fields(
                    aggregation, keys.TOTAL_FIELD, combine(aggregation, (r["value"] for r in members))
                )
            )
            for r in members:
                if r["group_key"]:
                    state.update(_value_fields(aggregation, keys.group_field(r["group_key"]), r["value"]))
        desired[hkey] = state
    return desired, sets, where


def _same(live: dict[str, str], want: Desired) -> bool:
    """Whether the hash holds the wanted values (limbs may split differently)."""
    return live_values(live) == live_values(want)


def _parse_key(hkey: str) -> tuple[str, str, int]:
    # lu:{customer}:metric:bucket
    customer = hkey[hkey.index("{") + 1 : hkey.index("}")]
    rest = hkey[hkey.index("}") + 2 :]
    metric, _, bucket = rest.rpartition(":")
    return customer, metric, int(bucket)


async def reconcile(
    ctx: WorkerContext, *, full: bool = False, now: datetime | None = None
) -> ReconcileReport | None:
    """Rewrite differing settled hours from Postgres and record the drift found.

    Waits up to `LOCK_PATIENCE_S` for another reconcile to finish; returns None if it
    still holds the lock then.
    """
    # Two queued reconciles delivered at once (ticks queued while the workers were starting)
    # both run, one after the other: a queued reconcile skipped without a run was what a
    # multi-node test saw as one never done.
    lock = ctx.redis.lock(
        keys.RECONCILE_LOCK_KEY, timeout=LOCK_LEASE_S, sleep=0.2, blocking_timeout=LOCK_PATIENCE_S
    )
    if not await lock.acquire():
        return None
    renewal = asyncio.create_task(_renew(lock))
    try:
        return await _reconcile(ctx, full=full, now=now)
    finally:
        renewal.cancel()
        with contextlib.suppress(LockError):  # lapsed (Redis lost it): nothing of ours to free
            await lock.release()


async def _renew(lock: Lock) -> None:
    """Extend the lease while the reconcile runs; a renewal Redis refuses or cannot take
    ends the renewals (the lease then lapses; at worst a second reconcile overlaps this one,
    each rewriting hours from what Postgres holds)."""
    while True:
        await asyncio.sleep(LOCK_LEASE_S / 3)
        try:
            await lock.reacquire()
        except (LockError, RedisError, OSError) as exc:
            log.warning("reconcile lock not renewed: %s", exc)
            return


async def _reconcile(ctx: WorkerContext, *, full: bool, now: datetime | None) -> ReconcileReport:
    redis = ctx.redis
    settings = ctx.settings
    started = datetime.now(UTC)
    now = now or started
    full = full or not await redis.exists(keys.BUILT_KEY)
    watermark = to_datetime(await ctx.live.watermark_ms() / 1000)
    if full:
        window_start = now - keys.live_horizon(settings.accepted_lateness)
        window_end = now + timedelta(hours=1)  # the current hour too: Redis lost it
    else:
        window_start = now - settings.reconcile_window
        window_end = watermark - timedelta(seconds=HOUR_S)  # hours ended before it
    # The catalog comes through its repository, on a session of its own: customers and
    # meters never change once created, so reading them apart from the hours changes nothing.
    async with ctx.sessions() as session:
        customers = await catalog.customer_ids(session)
        aggregations = await catalog.meter_aggregations(session)
    async with ctx.transaction() as conn:
        desired, sets, where = await _desired_state(conn, window_start, window_end, aggregations)
    lo, hi = int(window_start.timestamp()), int(window_end.timestamp())
    async with redis.pipeline(transaction=False) as pipe:
        for customer in customers:
            pipe.zrangebyscore(keys.index_key(customer), lo, f"({hi}")
        indexed = await pipe.execute()
    present = {k.decode() if isinstance(k, bytes) else k for ks in indexed for k in ks}
    # Keys may be in the window but absent from the index (only after a flush).
    candidates = sorted(present | {k for k, (_, _, b) in where.items() if lo <= b < hi})
    async with redis.pipeline(transaction=False) as pipe:
        for hkey in candidates:
            pipe.hgetall(hkey)
        current = await pipe.execute()
    live_hours: dict[tuple[str, str], list[tuple[int, Decimal | None]]] = defaultdict(list)
    billed_hours: dict[tuple[str, str], list[tuple[int, Decimal | None]]] = defaultdict(list)
    written = 0
    rewritten: set[tuple[str, str]] = set()
    async with redis.pipeline(transaction=False) as pipe:
        for hkey, raw in zip(candidates, current, strict=True):
            live = {
                (k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                for k, v in raw.items()
            }
            want = desired.get(hkey, {})
            customer, metric, bucket = where.get(hkey) or _parse_key(hkey)
            if not lo <= bucket < hi:
                continue
            live_hours[(customer, metric)].append((bucket, live_value(live, keys.TOTAL_FIELD)))
            billed_hours[(customer, metric)].append((bucket, live_value(want, keys.TOTAL_FIELD)))
            if _same(live, want):
                continue
            written += 1
            rewritten.add((customer, metric))
            pipe.delete(hkey)
            expire_at = keys.hour_key_expires_at(bucket, settings.accepted_lateness)
            for fld in list(live_values(live)) + list(live_values(want)):
                if not fld.startswith(keys.LATEST_PREFIX):
                    pipe.delete(keys.unique_key(customer, metric, bucket, fld))
            if want:
                pipe.hset(hkey, mapping=cast(Mapping[Any, Any], want))  # redis-py's Mapping is invariant
                pipe.expireat(hkey, expire_at)
                pipe.zadd(keys.index_key(customer), {hkey: bucket})
                for fld, values in sets.get(hkey, {}).items():
                    skey = keys.unique_key(customer, metric, bucket, fld)
                    pipe.sadd(skey, *sorted(values))
                    pipe.expireat(skey, expire_at)
            else:
                pipe.zrem(keys.index_key(customer), hkey)
        # The period accumulators summing a rewritten hour are refilled by their next
        # check; deleted after the hours, so a fill between the two is dropped as well.
        for customer, metric in sorted(rewritten):
            pipe.delete(keys.period_key(customer, metric), keys.period_unique_key(customer, metric))
        if full:
            pipe.set(keys.BUILT_KEY, started.isoformat())
        await pipe.execute()

    drift: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}
    for pair in set(live_hours) | set(billed_hours):
        aggregation = aggregations.get(pair[1], "sum")
        if aggregation == "unique_count":
            aggregation = "sum"  # hourly distinct counts, compared hour by hour
        live_total = combine(aggregation, (v for _, v in sorted(live_hours[pair])))
        billed_total = combine(aggregation, (v for _, v in sorted(billed_hours[pair])))
        if live_total != billed_total:
            drift[pair] = (live_total, billed_total)
    finished = datetime.now(UTC)
    async with ctx.transaction() as conn:
        run_id = await live_repository.record_run(
            conn,
            started=started,
            finished=finished,
            window_start=window_start,
            window_end=window_end,
            full=full,
            keys_written=written,
            drift=[(c, m, lv, bv) for (c, m), (lv, bv) in sorted(drift.items())],
        )
    if drift:  # a count and the first few: the drift report (GET /v1/drift) has them all
        first = sorted(drift)[:5]
        log.warning(
            "live drift found for %d customer meter(s), first %s; run %s",
            len(drift),
            json.dumps([f"{c}/{m}" for c, m in first]),
            run_id,
        )
    return ReconcileReport(window_start, window_end, full, written, drift)
