"""`usage-portal status`: the pipeline's health at a glance, for whoever runs it.

Read-only. Queue depths come from the Dramatiq Redis broker's own keys (`dramatiq:<queue>`
is the waiting list, `.msgs` every message not yet acknowledged, `.DQ` the delayed ones,
`.XQ` dead letters); recent persist failures from the record the workers keep in Redis
(below, also read by /readyz); the rest from Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import text

from portal.broker import ALERTS_QUEUE, INGEST_QUEUE, MAINTENANCE_QUEUE
from portal.db import create_engine, session_factory, transaction, values
from portal.live import keys
from portal.live.store import LiveStore
from portal.periods import to_datetime
from portal.settings import Settings

QUEUES = (INGEST_QUEUE, MAINTENANCE_QUEUE, ALERTS_QUEUE)

PERSIST_FAILURES_KEY = keys.PERSIST_FAILURES_KEY
PERSIST_FAILURES_KEPT = 1000
PERSIST_FAILURES_TTL_S = int(keys.PERSIST_FAILURES_TTL.total_seconds())
# "Recent" for /readyz and status: a failure this young makes the pipeline degraded.
PERSIST_FAILURE_WINDOW_S = 300
PERSIST_FAILURE_KINDS = ("outage", "retry", "set_aside")


@dataclass(frozen=True, slots=True)
class PersistFailure:
    at: datetime
    kind: str  # one of PERSIST_FAILURE_KINDS
    message_id: str
    events: int  # in the message
    set_aside: int  # of them kept in failed_events (kind set_aside)
    reason: str  # "Type: message" or "field: rule", short

    def describe(self) -> str:
        if self.kind == "set_aside":
            what = f"set aside {self.set_aside} of {self.events} event(s) of message {self.message_id}"
        elif self.kind == "outage":
            what = f"message {self.message_id} ({self.events} event(s)) waits for a store"
        else:
            what = f"message {self.message_id} ({self.events} event(s)) failed and is retried"
        return f"{what}: {self.reason}"


async def record_persist_failure(redis: Redis, *, kind: str, message_id: str, events: int,
                                 set_aside: int = 0, reason: str = "") -> None:
    """Append one persist failure to the record (ids, counts and a short reason only)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(PERSIST_FAILURES_KEY, {
            "kind": kind, "message_id": message_id[:100], "events": events, "set_aside": set_aside,
            "reason": reason[:300]}, maxlen=PERSIST_FAILURES_KEPT, approximate=True)
        pipe.expire(PERSIST_FAILURES_KEY, PERSIST_FAILURES_TTL_S)
        await pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _failure(entry_id: Any, fields: dict[Any, Any]) -> PersistFailure:
    got = {_text(k): _text(v) for k, v in fields.items()}
    at = to_datetime(int(_text(entry_id).split("-", 1)[0]) / 1000)
    return PersistFailure(at, got.get("kind", ""), got.get("message_id", ""), int(got.get("events", 0)),
                          int(got.get("set_aside", 0)), got.get("reason", ""))


async def recent_persist_failures(redis: Redis, *, window_s: int = PERSIST_FAILURE_WINDOW_S,
                                  ) -> tuple[int, PersistFailure | None]:
    """How many persist failures the last `window_s` seconds (Redis's clock) saw, and the
    newest failure ever recorded (None if there is none)."""
    seconds, micros = await redis.time()
    since_ms = int(seconds) * 1000 + int(micros) // 1000 - window_s * 1000
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xrange(PERSIST_FAILURES_KEY, min=str(since_ms), max="+", count=PERSIST_FAILURES_KEPT + 1)
        pipe.xrevrange(PERSIST_FAILURES_KEY, max="+", min="-", count=1)
        recent, newest = await pipe.execute()
    return len(recent), (_failure(*newest[0]) if newest else None)


@dataclass(frozen=True, slots=True)
class QueueDepth:
    name: str
    waiting: int
    unacknowledged: int
    delayed: int
    dead: int


@dataclass(frozen=True, slots=True)
class Status:
    checked_at: datetime
    queues: tuple[QueueDepth, ...]
    complete_through: datetime
    failed_events: int
    oldest_failed_at: datetime | None
    last_reconcile_at: datetime | None
    drift_rows: int
    unsettled_late_events: int
    deliveries_pending: int
    deliveries_failed: int
    persist_failures: int = 0  # in the last PERSIST_FAILURE_WINDOW_S
    last_persist_failure: PersistFailure | None = None

    @property
    def lag_s(self) -> float:
        """How far Postgres is behind what ingest accepted (0 when nothing is in flight)."""
        return max((self.checked_at - self.complete_through).total_seconds(), 0.0)


async def _queue(broker: Redis, name: str) -> QueueDepth:
    async with broker.pipeline(transaction=False) as pipe:
        pipe.llen(f"dramatiq:{name}")
        pipe.hlen(f"dramatiq:{name}.msgs")
        pipe.hlen(f"dramatiq:{name}.DQ.msgs")
        pipe.hlen(f"dramatiq:{name}.XQ.msgs")
        waiting, unacked, delayed, dead = await pipe.execute()
    return QueueDepth(name, int(waiting), int(unacked), int(delayed), int(dead))


async def _count(session: Any, sql: str) -> Any:
    return values((await session.execute(text(sql))).one())


async def gather_status(settings: Settings) -> Status:
    assert settings.database_url and settings.redis_url
    redis = Redis.from_url(settings.redis_url)
    broker = Redis.from_url(settings.effective_broker_url or settings.redis_url)
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        queues = tuple([await _queue(broker, name) for name in QUEUES])
        live = LiveStore(redis, accepted_lateness=settings.accepted_lateness,
                         marker_ttl=settings.dedup_marker_ttl)
        complete = to_datetime(await live.watermark_ms() / 1000)
        persist_failures, last_persist_failure = await recent_persist_failures(redis)
        async with transaction(session_factory(engine)) as session:
            failed, oldest = await _count(
                session, "SELECT count(*), min(failed_at) FROM failed_events WHERE status = 'failed'")
            last_run, drift = await _count(
                session, "SELECT max(finished_at), (SELECT count(*) FROM live_drift "
                "WHERE run_id = (SELECT max(id) FROM reconcile_runs)) FROM reconcile_runs")
            (late,) = await _count(session, "SELECT count(*) FROM late_events WHERE settled_at IS NULL")
            pending, failed_deliveries = await _count(
                session, "SELECT count(*) FILTER (WHERE status = 'pending'), "
                "count(*) FILTER (WHERE status = 'failed') FROM alert_deliveries")
        return Status(datetime.now(UTC), queues, complete, int(failed), oldest, last_run, int(drift),
                      int(late), int(pending), int(failed_deliveries), persist_failures,
                      last_persist_failure)
    finally:
        await redis.aclose()
        await broker.aclose()
        await engine.dispose()


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    seconds = int((now - at).total_seconds())
    return f"{at.isoformat(timespec='seconds')} ({seconds} s ago)"


def _persist_line(status: Status) -> str:
    last = status.last_persist_failure
    counted = (f"{status.persist_failures} failure(s)" if status.persist_failures else "no failures")
    line = f"persist         {counted} in the last {PERSIST_FAILURE_WINDOW_S} s"
    if last is not None:
        line += f" (last {_ago(last.at, status.checked_at)}: {last.describe()})"
    return line


def render(status: Status) -> str:
    now = status.checked_at
    lines = [f"usage portal status at {now.isoformat(timespec='seconds')}", "",
             f"{'queue':<13}{'waiting':>9}{'in flight':>11}{'delayed':>9}{'dead':>6}"]
    for q in status.queues:
        lines.append(f"{q.name:<13}{q.waiting:>9}{q.unacknowledged - q.waiting:>11}{q.delayed:>9}{q.dead:>6}")
    lines += [
        "",
        f"lag             {status.lag_s:.1f} s (complete through {status.complete_through.isoformat()})",
        f"failed events   {status.failed_events} (oldest {_ago(status.oldest_failed_at, now)})",
        _persist_line(status),
        f"last reconcile  {_ago(status.last_reconcile_at, now)}",
        f"drift           {status.drift_rows} customer/meter pair(s) off in the last reconcile",
        f"late events     {status.unsettled_late_events} waiting for an adjustment",
        f"alert delivery  {status.deliveries_pending} pending, {status.deliveries_failed} failed",
    ]
    return "\n".join(lines)
