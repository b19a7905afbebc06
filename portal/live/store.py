"""Reads and writes of the live view. Live numbers are approximate by design (Redis
floats, in-flight batches); bills never read them."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from portal.ingest.events import AcceptedEvent
from portal.live import keys, scripts


def live_decimal(raw: str | bytes | None) -> Decimal:
    """A Redis float as a decimal, with binary-float noise (1.0000000000000002) removed."""
    if raw is None:
        return Decimal(0)
    value = Decimal(raw.decode() if isinstance(raw, bytes) else raw)
    return value.quantize(Decimal("1e-9")).normalize() + Decimal(0)


def _ops_for(events: list[AcceptedEvent], lateness: timedelta) -> list[list[Any]]:
    """Counter updates for `events` (one customer), aggregated per key and field so a
    batch costs one Redis command per hour and group, not one per event."""
    sums: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    counts: dict[tuple[str, str], int] = defaultdict(int)
    maxima: dict[tuple[str, str], Decimal] = {}
    latest: dict[tuple[str, str], tuple[int, str, Decimal]] = {}
    uniques: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    buckets: dict[str, int] = {}
    for event in events:
        hkey = keys.hour_key(event.customer_id, event.metric_name, event.bucket)
        buckets[hkey] = event.bucket
        fields = [keys.TOTAL_FIELD]
        if event.group_key:
            fields.append(keys.group_field(event.group_key))
        for fld in fields:
            slot = (hkey, fld)
            if event.aggregation == "sum":
                sums[slot] += event.quantity
            elif event.aggregation == "count":
                counts[slot] += 1
            elif event.aggregation == "max":
                if slot not in maxima or event.quantity > maxima[slot]:
                    maxima[slot] = event.quantity
            elif event.aggregation == "latest":
                candidate = (event.event_time_us, event.event_id, event.quantity)
                if slot not in latest or candidate[:2] >= latest[slot][:2]:
                    latest[slot] = candidate
            elif event.aggregation == "unique_count" and event.unique_value is not None:
                skey = keys.unique_key(event.customer_id, event.metric_name, event.bucket, fld)
                uniques[(hkey, fld, skey)].add(event.unique_value)
    ops: list[list[Any]] = []
    ops += (["s", hkey, fld, format(amount, "f")] for (hkey, fld), amount in sums.items())
    ops += (["c", hkey, fld, n] for (hkey, fld), n in counts.items())
    ops += (["m", hkey, fld, format(value, "f")] for (hkey, fld), value in maxima.items())
    ops += (["l", hkey, fld, format(value, "f"), micros]
            for (hkey, fld), (micros, _, value) in latest.items())
    for (hkey, fld, skey), members in uniques.items():
        ops.append(["u", hkey, fld, skey, sorted(members)])
        ops.append(["x", skey, keys.hour_key_expires_at(buckets[hkey], lateness)])
    ops += (["e", hkey, keys.hour_key_expires_at(bucket, lateness), bucket]
            for hkey, bucket in buckets.items())
    return ops


_pack = msgspec.msgpack.Encoder().encode


@lru_cache(maxsize=8)
def _sha(script: str) -> str:
    return hashlib.sha1(script.encode()).hexdigest()  # what Redis names a script by


class LiveStore:
    """The live view over one Redis connection pool."""

    def __init__(self, redis: Redis, *, accepted_lateness: timedelta, marker_ttl: timedelta) -> None:
        self.redis = redis
        self.accepted_lateness = accepted_lateness
        self.marker_ttl_s = int(marker_ttl.total_seconds())
        self._union = redis.register_script(scripts.UNION_COUNT)

    async def check_and_hold(
        self, events: list[AcceptedEvent], batch_id: str, accepted_ms: int
    ) -> list[int]:
        """Marker status of each event (0 new, 1 duplicate, 2 conflict), and the batch
        registered as in flight, in one round trip."""
        by_customer: dict[str, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_customer[event.customer_id].append(index)
        calls = [
            (scripts.CHECK_MARKERS, keys.index_key(customer_id), keys.marker_prefix(customer_id),
             _pack([(events[i].event_id, events[i].fingerprint) for i in indexes]))
            for customer_id, indexes in by_customer.items()
        ]
        replies = await self._run_scripts(
            calls, then=lambda pipe: pipe.zadd(keys.INFLIGHT_KEY, {batch_id: accepted_ms}))
        status = [0] * len(events)
        for (_, indexes), reply in zip(by_customer.items(), replies, strict=False):
            for i, value in zip(indexes, reply, strict=True):
                status[i] = int(value)
        return status

    async def _run_scripts(
        self, calls: list[tuple[Any, ...]], then: Callable[[Any], Any] | None = None
    ) -> list[Any]:
        """Run one-key scripts `(script, key, *args)` in one pipelined round trip, by SHA.

        redis-py's Script objects check `SCRIPT EXISTS` before every pipeline, a second
        round trip per request; instead the scripts are loaded once, and again only when
        Redis answers that it lost them (a restart or SCRIPT FLUSH).
        """
        for attempt in (1, 2):
            async with self.redis.pipeline(transaction=False) as pipe:
                for script, key, *args in calls:
                    pipe.evalsha(_sha(script), 1, key, *args)
                if then is not None:
                    then(pipe)
                try:
                    return list(await pipe.execute())
                except NoScriptError:
                    if attempt == 2:
                        raise
            for script in {call[0] for call in calls}:
                await self.redis.script_load(script)
        raise AssertionError("unreachable")

    async def release(self, *batch_ids: str) -> None:
        """The batches are in Postgres (or given up on): they no longer hold back freshness."""
        if batch_ids:
            await self.redis.zrem(keys.INFLIGHT_KEY, *batch_ids)

    async def apply(self, events: list[AcceptedEvent]) -> set[int]:
        """Set the dedup markers and add `events` to the hourly counters.

        Returns the indexes of events whose marker another request set first (between
        our check and now); those were left out of the counters.
        """
        by_customer: dict[str, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_customer[event.customer_id].append(index)
        taken: set[int] = set()
        pending = dict(by_customer)
        while pending:
            order = list(pending.items())
            replies = await self._run_scripts([
                (scripts.APPLY_BATCH, keys.index_key(customer_id), keys.marker_prefix(customer_id),
                 self.marker_ttl_s,
                 _pack([(events[i].event_id, events[i].fingerprint) for i in indexes]),
                 _pack(_ops_for([events[i] for i in indexes], self.accepted_lateness)))
                for customer_id, indexes in order
            ])
            pending = {}
            for (customer_id, indexes), reply in zip(order, replies, strict=True):
                if reply:
                    lost = {indexes[int(position) - 1] for position in reply}
                    taken |= lost
                    remaining = [i for i in indexes if i not in lost]
                    if remaining:
                        pending[customer_id] = remaining
        return taken

    async def watermark_ms(self) -> int:
        """`completeThrough` in epoch ms: every event accepted before it is in Postgres."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zrange(keys.INFLIGHT_KEY, 0, 0, withscores=True)
            pipe.time()
            oldest, (seconds, micros) = await pipe.execute()
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        if oldest:
            return min(int(oldest[0][1]), now_ms)
        return now_ms

    async def read_hours(
        self, customer_id: str, metric_name: str, buckets: list[int]
    ) -> list[dict[str, str]]:
        """The raw hash of each hour (field -> value), {} for hours with no usage."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for bucket in buckets:
                pipe.hgetall(keys.hour_key(customer_id, metric_name, bucket))
            replies: list[dict[Any, Any]] = await pipe.execute()
        return [{_s(k): _s(v) for k, v in reply.items()} for reply in replies]

    async def unique_count(
        self, customer_id: str, metric_name: str, buckets: list[int], fld: str = keys.TOTAL_FIELD
    ) -> int:
        """Distinct values across `buckets` (not the sum of hourly distinct counts)."""
        set_keys = [keys.unique_key(customer_id, metric_name, b, fld) for b in buckets]
        scratch = keys.scratch_key(customer_id, f"union:{time.monotonic_ns()}")
        return int(await self._union(keys=[*set_keys, scratch], args=[]))


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
