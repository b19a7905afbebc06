"""Valkey memory around the batch phase, and the projection issue 15's target 5 is judged
on: Valkey memory at 1,000 events/s for 35 days must fit in 2 GB.

Before and after the phase (each after its backlog is persisted, so the broker's queue is
empty) it reads INFO memory (used_memory) and INFO keyspace, and SCANs the live view's db
counting keys by prefix (the text before the first ':'), with MEMORY USAGE of a sample of
each prefix. The projection:

- the part that grows with the rate: the memory the phase added minus what the live
  view's hour keys (`lu:`, `ls:`, `lk:`) added, divided by the events still held at the
  end (every accepted event, or rate x marker lifetime if markers expire within the
  phase), times 1,000 events/s times how long an event's marker is held (the portal's
  setting, read at run time: markers are being changed to short-lived per-window hashes);
- the fixed part: everything else at the end, with the hour keys projected to 35 days of
  hours for the benchmark's customers and meters (they do not grow with the rate).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis

from bench.config import VALKEY_PROJECTION_DAYS, VALKEY_PROJECTION_EPS

LIVE_VIEW_PREFIXES = ("lu", "ls", "lk")
HOUR_KEY_PREFIX = "lu"
SAMPLE_PER_PREFIX = 64
# The setting names, newest first, with how many of it an event's marker is held at most:
# a per-window hash lives through its window and the next (one to two windows); the older
# per-event markers lived for their TTL.
MARKER_SETTINGS = (("dedup_marker_window", 2), ("dedup_marker_ttl", 1))


@dataclass(slots=True)
class ValkeySnapshot:
    used_memory: int
    keys_by_db: dict[str, int]
    prefix_keys: Counter[str] = field(default_factory=Counter)
    prefix_bytes: dict[str, float] = field(default_factory=dict)  # estimated from samples

    @property
    def live_view_bytes(self) -> float:
        return sum(self.prefix_bytes.get(p, 0.0) for p in LIVE_VIEW_PREFIXES)


async def snapshot(redis: Redis) -> ValkeySnapshot:
    memory: dict[str, Any] = await redis.info("memory")
    keyspace: dict[str, Any] = await redis.info("keyspace")
    keys_by_db = {db: int(v["keys"]) for db, v in keyspace.items() if isinstance(v, dict) and "keys" in v}
    counts: Counter[str] = Counter()
    samples: dict[str, list[bytes]] = {}
    # SCAN, not KEYS: Valkey stays responsive while millions of markers are counted.
    async for raw in redis.scan_iter(count=5000):
        key = raw if isinstance(raw, bytes) else str(raw).encode()
        prefix = key.split(b":", 1)[0].decode(errors="replace")
        counts[prefix] += 1
        bucket = samples.setdefault(prefix, [])
        if len(bucket) < SAMPLE_PER_PREFIX:
            bucket.append(key)
    prefix_bytes: dict[str, float] = {}
    for prefix, keys in samples.items():
        sizes = []
        for key in keys:
            with contextlib.suppress(Exception):  # expired between SCAN and now
                size = await redis.memory_usage(key, samples=0)
                if size:
                    sizes.append(int(size))
        if sizes:
            prefix_bytes[prefix] = counts[prefix] * sum(sizes) / len(sizes)
    return ValkeySnapshot(int(memory["used_memory"]), keys_by_db, counts, prefix_bytes)


def marker_lifetime() -> tuple[timedelta, str]:
    """How long a dedup marker is held, from the portal's settings at run time."""
    try:
        from portal.infrastructure.settings import Settings, from_environment
    except ImportError as exc:
        return timedelta(days=35), f"portal settings not importable ({exc}); assumed 35 days"
    candidates: list[Any] = []
    with contextlib.suppress(Exception):
        candidates.append(from_environment())
    with contextlib.suppress(Exception):
        candidates.append(Settings())
    for settings in candidates:
        for name, factor in MARKER_SETTINGS:
            value = getattr(settings, name, None)
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = timedelta(seconds=float(value))
            if isinstance(value, timedelta):
                times = f" x {factor} (held one to two windows: the worst case)" if factor > 1 else ""
                return value * factor, f"Settings.{name} = {value}{times}"
    return timedelta(days=35), "no dedup marker setting found; assumed 35 days"


@dataclass(frozen=True, slots=True)
class Projection:
    before: ValkeySnapshot
    after: ValkeySnapshot
    accepted: int
    phase_s: float
    marker_hold: timedelta
    marker_source: str
    customer_meters: int

    @property
    def growth(self) -> int:
        return self.after.used_memory - self.before.used_memory

    @property
    def per_event_growth(self) -> float:
        return max(0.0, self.growth - (self.after.live_view_bytes - self.before.live_view_bytes))

    @property
    def events_held(self) -> float:
        hold_s = self.marker_hold.total_seconds()
        if self.phase_s > 0 and hold_s < self.phase_s:
            return self.accepted * hold_s / self.phase_s
        return float(self.accepted)

    @property
    def bytes_per_event(self) -> float:
        return self.per_event_growth / self.events_held if self.events_held else 0.0

    @property
    def held_s(self) -> float:
        return min(self.marker_hold, timedelta(days=VALKEY_PROJECTION_DAYS)).total_seconds()

    @property
    def growing_bytes(self) -> float:
        return self.bytes_per_event * VALKEY_PROJECTION_EPS * self.held_s

    @property
    def hour_key_bytes(self) -> float:
        """Mean memory of one customer-meter-hour key (`lu:`) at the end."""
        n = self.after.prefix_keys.get(HOUR_KEY_PREFIX, 0)
        return self.after.prefix_bytes.get(HOUR_KEY_PREFIX, 0.0) / n if n else 0.0

    @property
    def hour_keys_projected(self) -> float:
        """The live view for 35 days of hours of the benchmark's customers and meters
        (hour keys live longer than that: the current and previous period plus lateness)."""
        per_hour = self.after.live_view_bytes / max(1, self.after.prefix_keys.get(HOUR_KEY_PREFIX, 0))
        return per_hour * self.customer_meters * 24 * VALKEY_PROJECTION_DAYS

    @property
    def fixed_bytes(self) -> float:
        rest = self.after.used_memory - self.per_event_growth - self.after.live_view_bytes
        return max(0.0, rest) + self.hour_keys_projected

    @property
    def projected_bytes(self) -> float:
        return self.fixed_bytes + self.growing_bytes

    def lines(self) -> list[str]:
        def mb(value: float) -> str:
            return f"{value / 2**20:,.1f} MiB"

        def keys(snap: ValkeySnapshot) -> str:
            dbs = ", ".join(f"{db} {n:,}" for db, n in sorted(snap.keys_by_db.items())) or "none"
            top = ", ".join(f"{p}: {n:,}" for p, n in snap.prefix_keys.most_common(6))
            return f"keys per db {dbs}; by prefix {top or '-'}"

        return [
            f"   used_memory   before {mb(self.before.used_memory)}, after {mb(self.after.used_memory)} "
            f"(+{mb(self.growth)} for {self.accepted:,} events accepted in {self.phase_s:.0f} s)",
            f"   before        {keys(self.before)}",
            f"   after         {keys(self.after)}",
            f"   per event     {self.bytes_per_event:,.1f} bytes still held at the end "
            f"(growth minus the live view's hour keys, over {self.events_held:,.0f} events held)",
            f"   marker hold   {self.marker_hold} ({self.marker_source})",
            f"   fixed part    {mb(self.fixed_bytes)} (server and other keys "
            f"{mb(self.fixed_bytes - self.hour_keys_projected)}; hour keys for 35 days x "
            f"{self.customer_meters} customer-meters {mb(self.hour_keys_projected)})",
            f"   growing part  {mb(self.growing_bytes)} = {self.bytes_per_event:,.1f} B x "
            f"{VALKEY_PROJECTION_EPS:,}/s x {self.held_s / 86400:,.2f} days",
        ]
