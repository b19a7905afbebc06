"""Reads and writes of the live view. Live numbers may lag (batches in flight) or be lost
with Redis, and reconcile repairs them; but their arithmetic is exact (integer limbs, no
float), so a settled hour equals Postgres to the last decimal. Bills never read them."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Context, Decimal, InvalidOperation, Overflow, localcontext
from typing import Any, Protocol

import msgspec
from redis.asyncio import Redis

from portal.live import redis_keys as keys
from portal.live import scripts
from portal.live.pipelining import SharedPipeline
from portal.live.quick_reads import QuickReads


class CountedEvent(Protocol):
    """What the live view reads of an accepted event (the ingest's `AcceptedEvent` is one):
    the live store sits below the ingest and does not import it."""

    @property
    def customer_id(self) -> str: ...
    @property
    def event_id(self) -> str: ...
    @property
    def metric_name(self) -> str: ...
    @property
    def quantity(self) -> Decimal: ...
    @property
    def event_time_us(self) -> int: ...
    @property
    def fingerprint(self) -> str: ...
    @property
    def aggregation(self) -> str: ...
    @property
    def bucket(self) -> int: ...
    @property
    def group_key(self) -> str: ...
    @property
    def unique_value(self) -> str | None: ...


# Live values are exact decimals of any size the ingest accepts (quantities below 10^20
# with 12 decimal places, summed over many events): arithmetic on them runs in this context.
EXACT = Context(prec=80, traps=[InvalidOperation, Overflow])
_LIMB = 10**12


def sum_limbs(amount: Decimal) -> tuple[int, int, int]:
    """An amount with at most 12 decimal places as integer limbs (whole units below 10^12,
    10^-12 units below 10^12, 10^12 units; each negative for a negative amount), the form the
    live view adds with HINCRBY: exact, unlike Redis' float increments."""
    scaled = int(amount.scaleb(12, EXACT))
    if scaled < 0:
        whole, fraction, high = sum_limbs(-amount)
        return -whole, -fraction, -high
    high, rest = divmod(scaled, _LIMB * _LIMB)
    whole, fraction = divmod(rest, _LIMB)
    return whole, fraction, high


def sum_fields(fld: str, amount: Decimal) -> dict[str, str]:
    """The hash fields that hold `amount` in field `fld` (for writers that set a sum)."""
    whole, fraction, high = sum_limbs(amount)
    fields = {fld: str(whole)}
    if fraction:
        fields[fld + keys.FRACTION_LIMB] = str(fraction)
    if high:
        fields[fld + keys.HIGH_LIMB] = str(high)
    return fields


def live_value(hour: dict[str, str], fld: str) -> Decimal | None:
    """The exact value of field `fld` of an hour's hash (None when the hour has none),
    adding up its limbs where it is a sum."""
    whole = hour.get(fld)
    fraction = hour.get(fld + keys.FRACTION_LIMB)
    high = hour.get(fld + keys.HIGH_LIMB)
    if whole is None and fraction is None and high is None:
        return None
    with localcontext(EXACT):
        value = Decimal(whole or 0)
        if fraction is not None:
            value += Decimal(fraction).scaleb(-12)
        if high is not None:
            value += Decimal(high).scaleb(12)
        return value.normalize() + Decimal(0)


def _period_value(limbs: Sequence[Any]) -> Decimal:
    """A period accumulator's value from its total's limbs as Redis gave them (bytes, or
    None where absent): the whole alone is most of them, read at once."""
    whole, fraction, high = limbs
    if fraction is None and high is None:
        return Decimal(0) if whole is None else Decimal(_s(whole))
    hour = {f: _s(v) for f, v in zip(_VALUE_FIELDS, limbs, strict=True) if v is not None}
    return live_value(hour, keys.TOTAL_FIELD) or Decimal(0)


def live_values(hour: dict[str, str]) -> dict[str, Decimal | int]:
    """Every logical field of an hour's hash: limbs added up, `@` event times as ints."""
    out: dict[str, Decimal | int] = {}
    for fld, raw in hour.items():
        if fld.startswith(keys.LATEST_PREFIX):
            out[fld] = int(raw)
        elif not fld.endswith((keys.FRACTION_LIMB, keys.HIGH_LIMB)):
            out[fld] = live_value(hour, fld) or Decimal(0)
    for fld in hour:  # sums with only a fraction or high limb so far
        if fld.endswith((keys.FRACTION_LIMB, keys.HIGH_LIMB)):
            base = fld[: -len(keys.FRACTION_LIMB)]
            if base not in out:
                out[base] = live_value(hour, base) or Decimal(0)
    return out


def _ops_for(events: Sequence[CountedEvent], lateness: timedelta) -> list[list[Any]]:
    """Counter updates for `events` (one customer), aggregated per key and field so a
    batch costs one Redis command per hour and group, not one per event."""
    with localcontext(EXACT):  # sums of quantities up to 10^20 stay exact
        return _aggregate_ops(events, lateness)


def _aggregate_ops(events: Sequence[CountedEvent], lateness: timedelta) -> list[list[Any]]:
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
    ops += (["s", hkey, fld, *sum_limbs(amount)] for (hkey, fld), amount in sums.items())
    ops += (["c", hkey, fld, n] for (hkey, fld), n in counts.items())
    ops += (["m", hkey, fld, format(value, "f")] for (hkey, fld), value in maxima.items())
    ops += (
        ["l", hkey, fld, format(value, "f"), micros] for (hkey, fld), (micros, _, value) in latest.items()
    )
    for (hkey, fld, skey), members in uniques.items():
        ops.append(["u", hkey, fld, skey, sorted(members)])
        ops.append(["x", skey, keys.hour_key_expires_at(buckets[hkey], lateness)])
    ops += (
        ["e", hkey, keys.hour_key_expires_at(bucket, lateness), bucket] for hkey, bucket in buckets.items()
    )
    return ops


def _correction_ops(events: Sequence[CountedEvent], lateness: timedelta) -> list[list[Any]]:
    """Counter updates that take `events` (one customer) out of the live view again: the
    ops that counted their sums and counts, negated. A duplicate changes no max, latest or
    distinct count it was counted in (the same event again), so those are left alone."""
    ops = _ops_for([e for e in events if e.aggregation in ("sum", "count")], lateness)
    negated: list[list[Any]] = []
    for kind, key, *rest in ops:
        if kind in ("s", "c"):  # ['s', key, field, whole, fraction, high] / ['c', key, field, n]
            negated.append([kind, key, rest[0], *(-amount for amount in rest[1:])])
        else:  # the hour key's expiry and index entry, as when it was counted
            negated.append([kind, key, *rest])
    return negated


_pack = msgspec.msgpack.Encoder().encode


@dataclass(frozen=True, slots=True)
class SettledBatch:
    """One customer's part of one accepted batch in a persist message, after its commit:
    the events the commit admitted, and the copies the ledger refused (`LiveStore.settle`)."""

    customer_id: str
    batch_id: str
    admitted: Sequence[CountedEvent]
    refused_copies: Sequence[CountedEvent]


def _by_customer(events: Sequence[CountedEvent]) -> dict[str, list[int]]:
    by_customer: dict[str, list[int]] = defaultdict(list)
    for index, event in enumerate(events):
        by_customer[event.customer_id].append(index)
    return by_customer


def _markers(events: Sequence[CountedEvent], indexes: list[int]) -> bytes:
    """The events' ids and fingerprint digits, the form the marker scripts read."""
    return _pack(
        [
            [events[i].event_id for i in indexes],
            [events[i].fingerprint[: keys.MARKER_FINGERPRINT_CHARS] for i in indexes],
        ]
    )


@dataclass(frozen=True, slots=True)
class PeriodAsk:
    """One meter's billing period, as a check asks the live view for its value so far:
    `start` and `end` are epoch seconds, `buckets` the period's local hours."""

    metric_name: str
    aggregation: str
    start: int
    end: int
    buckets: Sequence[int]


# The hours one READ_HOUR_TOTALS call reads at most: a 31-day period's.
_HOURS_PER_READ = 31 * 24
_VALUE_FIELDS = (keys.TOTAL_FIELD, keys.TOTAL_FIELD + keys.FRACTION_LIMB, keys.TOTAL_FIELD + keys.HIGH_LIMB)
_PERIOD_FIELDS = ["start", "end", *_VALUE_FIELDS]


class LiveStore:
    """The live view over one Redis connection pool."""

    def __init__(
        self,
        redis: Redis,
        *,
        accepted_lateness: timedelta,
        marker_window: timedelta,
        quick: QuickReads | None = None,
    ) -> None:
        self.redis = redis
        # Single reads in a request's path (entitlement checks) on their own connection.
        self.quick = quick
        self.accepted_lateness = accepted_lateness
        self.marker_window = marker_window
        # The marker checks, applies and corrections of concurrent requests share round trips.
        self._pipeline = SharedPipeline(redis)
        # Reads in a request's path: on the quick connection when there is one.
        self._reads: SharedPipeline | QuickReads = quick or self._pipeline
        self._union = redis.register_script(scripts.UNION_COUNT)
        self._init_period = redis.register_script(scripts.INIT_PERIOD)

    def _marker_hashes(self, customer_id: str, accepted_ms: int) -> tuple[str, str, int]:
        """The customer's marker hashes of the window of `accepted_ms` and the one before,
        and when the first expires."""
        slot = keys.marker_slot(accepted_ms, self.marker_window)
        return (
            keys.marker_key(customer_id, slot),
            keys.marker_key(customer_id, slot - 1),
            keys.markers_expire_at(slot, self.marker_window),
        )

    async def accepted_recently(self, customer_id: str, event_id: str, now_ms: int) -> bool:
        """Whether the edge accepted this event id within the marker window (its marker is
        still held): an event that is accepted but may not be in Postgres yet."""
        current, previous, _ = self._marker_hashes(customer_id, now_ms)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hexists(current, event_id)
            pipe.hexists(previous, event_id)
            found = await pipe.execute()
        return any(found)

    async def check_and_hold(
        self, events: Sequence[CountedEvent], batch_id: str, accepted_ms: int
    ) -> list[int]:
        """Marker status of each event (0 new, 1 duplicate, 2 conflict), and the batch
        registered as in flight, in one round trip."""
        by_customer = _by_customer(events)
        calls = [
            (
                scripts.CHECK_MARKERS,
                keys.index_key(customer_id),
                *self._marker_hashes(customer_id, accepted_ms)[:2],
                _markers(events, indexes),
            )
            for customer_id, indexes in by_customer.items()
        ]
        replies = await self._pipeline.run(calls, [("ZADD", keys.INFLIGHT_KEY, accepted_ms, batch_id)])
        status = [0] * len(events)
        for (_, indexes), reply in zip(by_customer.items(), replies, strict=False):
            for i, value in zip(indexes, reply, strict=True):
                status[i] = int(value)
        return status

    async def release(self, *batch_ids: str) -> None:
        """The batches are in Postgres (or given up on): they no longer hold back freshness."""
        if batch_ids:
            await self.redis.zrem(keys.INFLIGHT_KEY, *batch_ids)

    async def apply(self, events: Sequence[CountedEvent], batch_id: str, accepted_ms: int) -> set[int]:
        """Set the dedup markers of batch `batch_id` and add its `events` to the hourly
        counters; applying the same batch again changes nothing, and after the persist
        worker counted it (`settle`) only the markers are set.

        Returns the indexes of events whose marker another request set first (between our
        check and now). They are counted too: both copies are in the broker, and the
        persist worker subtracts the copy the ledger refuses (`settle`).
        """
        by_customer = _by_customer(events)
        # Until the persist worker settles the batch (`settle`), which shortens it.
        applied_ttl_s = int(keys.APPLIED_UNSETTLED_TTL.total_seconds())
        calls = []
        for customer_id, indexes in by_customer.items():
            current, previous, expire_at = self._marker_hashes(customer_id, accepted_ms)
            calls.append(
                (
                    scripts.APPLY_BATCH,
                    keys.index_key(customer_id),
                    current,
                    previous,
                    expire_at,
                    _markers(events, indexes),
                    _pack(_ops_for([events[i] for i in indexes], self.accepted_lateness)),
                    keys.applied_key(customer_id, batch_id),
                    applied_ttl_s,
                )
            )
        replies = await self._pipeline.run(calls)
        taken: set[int] = set()
        for indexes, reply in zip(by_customer.values(), replies, strict=True):
            positions = [int(position) for position in reply]
            if positions != [-1]:  # -1: applied before
                taken.update(indexes[p - 1] for p in positions)
        return taken

    async def correct(self, message_id: str, events: Sequence[CountedEvent]) -> None:
        """For persist messages from before `heldEvents` (`settle` does it for the others):
        take `events` out of the live counters: copies of events the ledger already held,
        which the ingest counted live (a resend after its marker expired, or two requests
        racing). Once per message and customer, however often the message is delivered."""
        if not events:
            return
        corrected_ttl_s = int(keys.CORRECTED_TTL.total_seconds())
        calls = []
        for customer_id, indexes in _by_customer(events).items():
            ops = _correction_ops([events[i] for i in indexes], self.accepted_lateness)
            if ops:
                calls.append(
                    (
                        scripts.CORRECT_BATCH,
                        keys.index_key(customer_id),
                        keys.corrected_key(customer_id, message_id),
                        corrected_ttl_s,
                        _pack(ops),
                    )
                )
        if calls:
            await self._pipeline.run(calls)

    async def apply_correction(self, customer_id: str, correction_id: int, ops: list[list[Any]]) -> bool:
        """Apply an event correction's counter updates (`portal.ingest.corrections.live_ops`),
        once per correction however often its job runs. True when this call applied them."""
        if not ops:
            return False
        corrected_ttl_s = int(keys.CORRECTED_TTL.total_seconds())
        (applied,) = await self._pipeline.run(
            [
                (
                    scripts.CORRECT_BATCH,
                    keys.index_key(customer_id),
                    keys.corrected_key(customer_id, f"correction:{correction_id}"),
                    corrected_ttl_s,
                    _pack(ops),
                )
            ]
        )
        return bool(int(applied))

    async def settle(self, message_id: str, batches: Sequence[SettledBatch], accepted_ms: int) -> None:
        """After a persist message's commit, make the live view count each of its batches
        once: a batch the web counted keeps its count, less the copies the ledger refused
        (once per message); a batch nobody counted yet (the web died between the broker and
        the live view, or is still retrying) gets what the ledger admitted, and the web's
        late apply then counts nothing. A batch the worker counts also gets its dedup markers
        (in the window of `accepted_ms`, epoch ms), so a resend is answered as a duplicate.
        One script call per customer."""
        by_customer: dict[str, list[list[Any]]] = defaultdict(list)
        for batch in batches:
            marker_hash, _, expire_at = self._marker_hashes(batch.customer_id, accepted_ms)
            by_customer[batch.customer_id].append(
                [
                    keys.applied_key(batch.customer_id, batch.batch_id),
                    _ops_for(batch.admitted, self.accepted_lateness),
                    _correction_ops(batch.refused_copies, self.accepted_lateness),
                    marker_hash,
                    expire_at,
                    [e.event_id for e in batch.admitted],
                    [e.fingerprint[: keys.MARKER_FINGERPRINT_CHARS] for e in batch.admitted],
                ]
            )
        settled_ttl_s = int(keys.APPLIED_TTL.total_seconds())
        corrected_ttl_s = int(keys.CORRECTED_TTL.total_seconds())
        calls = [
            (
                scripts.SETTLE_BATCHES,
                keys.index_key(customer_id),
                keys.corrected_key(customer_id, message_id),
                corrected_ttl_s,
                settled_ttl_s,
                _pack(entries),
            )
            for customer_id, entries in by_customer.items()
        ]
        if calls:
            await self._pipeline.run(calls)

    async def watermark_ms(self) -> int:
        """`completeThrough` in epoch ms: every event accepted before it is in Postgres."""
        _, oldest_ms, now_ms = await in_flight(self.redis)
        return now_ms if oldest_ms is None else min(oldest_ms, now_ms)

    async def hour_totals(self, customer_id: str, metric_name: str, buckets: list[int]) -> dict[int, Decimal]:
        """The meter's total in each of `buckets` that has usage (bucket -> exact value), in
        one script call; hours without usage are left out."""
        prefix = keys.hour_key_prefix(customer_id, metric_name)
        # A script runs alone on the server: a 400-day range is read a month at a time, so no
        # call keeps the others waiting for more than a period's hours.
        chunks = [buckets[i : i + _HOURS_PER_READ] for i in range(0, len(buckets), _HOURS_PER_READ)]
        calls = [
            (scripts.READ_HOUR_TOTALS, keys.hour_key(customer_id, metric_name, chunk[0]), prefix, *chunk)
            for chunk in chunks
        ]
        totals: dict[int, Decimal] = {}
        for chunk, reply in zip(chunks, await self._reads.run(calls) if calls else [], strict=True):
            for i in range(0, len(reply), 4):
                limbs = zip(_VALUE_FIELDS, reply[i + 1 : i + 4], strict=True)
                hour = {f: _s(v) for f, v in limbs if v is not None}
                totals[chunk[int(reply[i]) - 1]] = live_value(hour, keys.TOTAL_FIELD) or Decimal(0)
        return totals

    async def period_values(self, periods: Sequence[tuple[str, PeriodAsk]]) -> list[Decimal]:
        """Each (customer, meter period) value so far: one pipelined read of the meters' period
        accumulators, and for an accumulator not yet covering its period, one script call
        that fills it from the hours (the first check of a period)."""
        replies: list[list[Any]]
        if len(periods) == 1:  # one check: one HMGET, pipelined with the concurrent ones
            customer_id, ask = periods[0]
            command = ("HMGET", keys.period_key(customer_id, ask.metric_name), *_PERIOD_FIELDS)
            replies = await self._reads.run([], [command])
        else:  # one script call per customer (its keys share a slot): far fewer commands
            by_customer: dict[str, list[int]] = defaultdict(list)
            for index, (customer_id, _) in enumerate(periods):
                by_customer[customer_id].append(index)
            calls = [
                (
                    scripts.READ_PERIODS,
                    keys.index_key(customer_id),
                    *(keys.period_key(customer_id, periods[i][1].metric_name) for i in indexes),
                )
                for customer_id, indexes in by_customer.items()
            ]
            replies = [[]] * len(periods)
            for indexes, reply in zip(by_customer.values(), await self._reads.run(calls), strict=True):
                for i, fields in zip(indexes, reply, strict=True):
                    replies[i] = fields
        values: list[Decimal] = []
        for (customer_id, ask), reply in zip(periods, replies, strict=True):
            start, end, *limbs = reply
            if start is None or end is None or int(start) != ask.start or int(end) != ask.end:
                limbs = await self._fill_period(customer_id, ask)
            values.append(_period_value(limbs))
        return values

    async def _fill_period(self, customer_id: str, ask: PeriodAsk) -> list[Any]:
        hour_keys = [keys.hour_key(customer_id, ask.metric_name, b) for b in ask.buckets]
        set_keys = (
            [keys.unique_key(customer_id, ask.metric_name, b, keys.TOTAL_FIELD) for b in ask.buckets]
            if ask.aggregation == "unique_count"
            else []
        )
        expire_at = ask.end + int(self.accepted_lateness.total_seconds()) + 86_400
        reply: list[Any] = await self._init_period(
            keys=[keys.index_key(customer_id)],
            args=[
                keys.period_key(customer_id, ask.metric_name),
                keys.period_unique_key(customer_id, ask.metric_name),
                str(ask.start),
                str(ask.end),
                ask.aggregation,
                expire_at,
                _pack(hour_keys),
                _pack(set_keys),
            ],
        )
        return reply

    async def unique_count(
        self, customer_id: str, metric_name: str, buckets: list[int], fld: str = keys.TOTAL_FIELD
    ) -> int:
        """Distinct values across `buckets` (not the sum of hourly distinct counts)."""
        set_keys = [keys.unique_key(customer_id, metric_name, b, fld) for b in buckets]
        scratch = keys.scratch_key(customer_id, f"union:{time.monotonic_ns()}")
        return int(await self._union(keys=[*set_keys, scratch], args=[]))


async def in_flight(redis: Redis) -> tuple[int, int | None, int]:
    """Batches in flight, the acceptance time (ms) of the oldest (None: none) and Redis's
    clock (ms), read together on the node holding `live:inflight`."""
    count, oldest, seconds, micros = await redis.eval(scripts.IN_FLIGHT, 1, keys.INFLIGHT_KEY)
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    return int(count), None if oldest is None else int(float(oldest)), now_ms


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
