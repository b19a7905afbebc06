"""`usage-portal status`: the pipeline's health at a glance, for whoever runs it.

Read-only. Queue depths come from the Dramatiq Redis broker's own keys (`dramatiq:<queue>`
is the waiting list, `.msgs` every message not yet acknowledged, `.DQ` the delayed ones,
`.XQ` dead letters), or from RabbitMQ's answers to passive declares of the queues (ready
and dead messages only: portal/infrastructure/rabbitmq_admin.py); recent persist failures
from the record the workers keep in Redis (below, also read by /readyz); which processes
run from their heartbeats (portal/operations/heartbeats.py); the rest from Postgres.

Each store is read on its own, with a timeout: when one is down (or loading its data) the
report says so and still shows what the others know.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis.exceptions
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from portal.alerting import repository as alerting_repository
from portal.billing.repository import adjustments as adjustment_store
from portal.infrastructure.broker import INGEST_QUEUE, QUEUES, redis_queue_keys
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.periods import to_datetime
from portal.infrastructure.rabbitmq_admin import RabbitmqAdmin
from portal.infrastructure.rabbitmq_broker import is_amqp_url
from portal.infrastructure.redis_client import async_client
from portal.infrastructure.settings import Settings
from portal.ingest import repository as ingest_repository
from portal.ingest.repository import archive as archive_store
from portal.live import redis_keys as keys
from portal.live import repository as live_repository
from portal.live.store import LiveStore
from portal.live.store import in_flight as live_in_flight
from portal.operations.heartbeats import BACKGROUND_ROLES, ROLES, RoleProcess, RolesSeen, read_roles

T = TypeVar("T")

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


async def record_persist_failure(
    redis: Redis, *, kind: str, message_id: str, events: int, set_aside: int = 0, reason: str = ""
) -> None:
    """Append one persist failure to the record (ids, counts and a short reason only)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xadd(
            PERSIST_FAILURES_KEY,
            {
                "kind": kind,
                "message_id": message_id[:100],
                "events": events,
                "set_aside": set_aside,
                "reason": reason[:300],
            },
            maxlen=PERSIST_FAILURES_KEPT,
            approximate=True,
        )
        pipe.expire(PERSIST_FAILURES_KEY, PERSIST_FAILURES_TTL_S)
        await pipe.execute()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _failure(entry_id: Any, fields: dict[Any, Any]) -> PersistFailure:
    got = {_text(k): _text(v) for k, v in fields.items()}
    at = to_datetime(int(_text(entry_id).split("-", 1)[0]) / 1000)
    return PersistFailure(
        at,
        got.get("kind", ""),
        got.get("message_id", ""),
        int(got.get("events", 0)),
        int(got.get("set_aside", 0)),
        got.get("reason", ""),
    )


async def recent_persist_failures(
    redis: Redis,
    *,
    window_s: int = PERSIST_FAILURE_WINDOW_S,
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
    unacknowledged: int | None  # None: the broker does not tell (RabbitMQ over AMQP)
    delayed: int | None  # idem
    dead: int


# How long a report waits for one store before calling it unavailable.
STORE_TIMEOUT_S = 5.0
# An accepted batch still not in Postgres after this long means persisting is stalled.
STALLED_AFTER_S = 60


def store_problem(exc: BaseException, *, detail: bool = False) -> str:
    """What is wrong with a store, from the error reaching it: the error's type (what
    `/readyz` shows anyone), and with `detail` its message too (for the operator)."""
    name = type(exc).__name__
    if isinstance(exc, redis.exceptions.BusyLoadingError):
        name = f"loading its data ({name})"
    elif isinstance(exc, TimeoutError):
        name = f"no answer within {STORE_TIMEOUT_S:.0f} s ({name})"
    text_ = str(exc).strip()
    return f"{name}: {text_[:200]}" if detail and text_ else name


async def within(awaitable: Awaitable[T], timeout_s: float = STORE_TIMEOUT_S) -> T:
    return await asyncio.wait_for(awaitable, timeout_s)


def probe_client(url: str, *, max_connections: int | None = None) -> Redis:
    """A Redis client for health checks: it reports an unavailable or loading server at
    once (redis-py retries a command for seconds by default), and gives up on a server that
    does not answer within STORE_TIMEOUT_S."""
    return Redis.from_url(
        url,
        socket_timeout=STORE_TIMEOUT_S,
        socket_connect_timeout=STORE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
    )


def live_probe_client(url: str, *, max_connections: int | None = None) -> Redis:
    """`probe_client` for REDIS_URL, which may name a Redis Cluster
    (portal/infrastructure/redis_client.py)."""
    return async_client(
        url,
        socket_timeout=STORE_TIMEOUT_S,
        socket_connect_timeout=STORE_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
        max_connections=max_connections,
    )


@dataclass(frozen=True, slots=True)
class InFlight:
    """Accepted batches not yet in Postgres (`live:inflight`)."""

    batches: int
    oldest_age_s: float  # 0 when there is none; by Redis's clock


async def in_flight(client: Redis) -> InFlight:
    count, oldest_ms, now_ms = await live_in_flight(client)
    age = max((now_ms - oldest_ms) / 1000, 0.0) if oldest_ms is not None else 0.0
    return InFlight(count, age)


def persist_stall(*, postgres_down: bool, waiting: InFlight | None, roles: RolesSeen | None) -> str | None:
    """Why accepted events are not reaching Postgres, or None when nothing says so.

    Ingest goes on answering 202 meanwhile (the broker holds the batches); this is what
    tells an operator that billing is not being fed."""
    count = f"{waiting.batches} accepted batch(es) wait in the broker" if waiting else "batches wait"
    if waiting and waiting.batches:
        count += f", the oldest for {waiting.oldest_age_s:.0f} s"
    if postgres_down:
        return (
            f"stalled: Postgres is down; {count}"
            if not waiting or waiting.batches
            else ("stalled: Postgres is down; nothing accepted is waiting yet")
        )
    if not waiting or not waiting.batches:
        return None
    if roles is not None and roles.problem("worker") is not None:
        return f"stalled: no worker alive; {count}"
    if waiting.oldest_age_s >= STALLED_AFTER_S:
        return f"stalled: {count}"
    return None


@dataclass(frozen=True, slots=True)
class Status:
    checked_at: datetime
    queues: tuple[QueueDepth, ...]  # empty when the broker is unavailable
    complete_through: datetime | None  # None: Redis unavailable
    # From Postgres; None when it is unavailable.
    failed_events: int | None
    oldest_failed_at: datetime | None
    last_reconcile_at: datetime | None
    drift_rows: int | None
    unsettled_late_events: int | None
    deliveries_pending: int | None
    deliveries_failed: int | None
    persist_failures: int = 0  # in the last PERSIST_FAILURE_WINDOW_S
    last_persist_failure: PersistFailure | None = None
    # "postgres", "redis", "broker" -> what is wrong; a store not named is up.
    stores_down: dict[str, str] = field(default_factory=dict)
    roles: RolesSeen | None = None  # None: Redis unavailable
    waiting: InFlight | None = None
    # periodic job -> when its last successful run started
    job_successes: dict[str, datetime] = field(default_factory=dict)
    # Raw events archived (portal/ingest/archive.py): (months, events, bytes of files).
    archived: tuple[int, int, int] | None = None

    @property
    def lag_s(self) -> float | None:
        """How far Postgres is behind what ingest accepted (0 when nothing is in flight;
        None when Redis cannot say)."""
        if self.complete_through is None:
            return None
        return max((self.checked_at - self.complete_through).total_seconds(), 0.0)

    @property
    def persist_stall(self) -> str | None:
        return persist_stall(
            postgres_down="postgres" in self.stores_down, waiting=self.waiting, roles=self.roles
        )

    @property
    def attention(self) -> list[str]:
        """What needs an operator now (`usage-portal status` exits 1 when anything does):
        a store down, a role seen before and alive no more, persisting stalled,
        accepted events dead-lettered. Failed events and drift are shown but are the billing
        health's business (/v1/billing-health), not an outage."""
        problems = [f"{name} is down" for name in ("postgres", "redis", "broker") if name in self.stores_down]
        if self.roles is not None:
            # The web too: `status` runs beside it, and a web seen and alive no more is an
            # ingest outage (/readyz, answered by a web, watches the background roles only).
            problems += [p for p in (self.roles.problem(role) for role in ROLES) if p]
            if (unread := self.roles.queue_problem()) is not None:
                problems.append(unread)
        if (stall := self.persist_stall) is not None:
            problems.append(f"persisting {stall}")
        if self.ingest_dead:
            problems.append(f"{self.ingest_dead} ingest message(s) dead-lettered")
        return problems

    @property
    def ingest_dead(self) -> int:
        """Dead-lettered ingest messages: accepted events not in Postgres until replayed."""
        return next((q.dead for q in self.queues if q.name == INGEST_QUEUE), 0)


async def redis_queue_depth(broker: Redis, name: str) -> QueueDepth:
    """A queue of Dramatiq's Redis broker: its messages waiting, not acknowledged, delayed, dead."""
    async with broker.pipeline(transaction=False) as pipe:
        keys = redis_queue_keys(name)
        pipe.llen(keys.waiting)
        pipe.hlen(keys.messages)
        pipe.hlen(keys.delayed)
        pipe.hlen(keys.dead)
        waiting, unacked, delayed, dead = await pipe.execute()
    return QueueDepth(name, int(waiting), int(unacked), int(delayed), int(dead))


@dataclass(slots=True)
class _FromRedis:
    complete_through: datetime
    persist_failures: int
    last_persist_failure: PersistFailure | None
    roles: RolesSeen
    waiting: InFlight


async def _from_redis(settings: Settings, client: Redis) -> _FromRedis:
    live = LiveStore(
        client, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    complete = to_datetime(await live.watermark_ms() / 1000)
    failures, last = await recent_persist_failures(client)
    return _FromRedis(complete, failures, last, await read_roles(client), await in_flight(client))


async def _from_broker(broker: Redis) -> tuple[tuple[QueueDepth, ...], dict[str, datetime]]:
    queues = tuple([await redis_queue_depth(broker, name) for name in QUEUES])
    return queues, await _job_successes(broker)


async def _job_successes(client: Redis) -> dict[str, datetime]:
    raw = await client.hgetall(keys.JOB_SUCCESS_KEY)
    return {
        (k.decode() if isinstance(k, bytes) else str(k)): to_datetime(int(v) / 1000) for k, v in raw.items()
    }


def rabbitmq_depths(url: str) -> tuple[QueueDepth, ...]:
    """The queues' depths from RabbitMQ (blocking): waiting and dead; in flight and
    delayed are not visible over AMQP (None)."""
    with RabbitmqAdmin(url) as admin:
        return tuple(
            QueueDepth(name, counts.ready, None, None, counts.dead)
            for name, counts in ((name, admin.counts(name)) for name in QUEUES)
        )


async def _from_rabbitmq(url: str, live: Redis) -> tuple[tuple[QueueDepth, ...], dict[str, datetime]]:
    # With RabbitMQ the workers keep the jobs' last successes in the live view's Redis.
    queues = await asyncio.to_thread(rabbitmq_depths, url)
    return queues, await _job_successes(live)


async def _from_postgres(settings: Settings) -> tuple[Any, ...]:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            failed, oldest = await ingest_repository.failed_events_outstanding(session)
            last_run, drift = await live_repository.last_reconcile(session)
            late = await adjustment_store.unsettled_late_events_total(session)
            pending, failed_deliveries = await alerting_repository.delivery_counts(session)
            archived = await archive_store.archive_totals(session)
    finally:
        await engine.dispose()
    return (
        int(failed),
        oldest,
        last_run,
        int(drift),
        int(late),
        int(pending),
        int(failed_deliveries),
        archived,
    )


async def gather_status(settings: Settings) -> Status:
    """Read every store; one that is down or loading is named in `stores_down` and the
    figures it holds are None. Never raises for an unavailable store."""
    assert settings.database_url and settings.redis_url
    down: dict[str, str] = {}
    client = live_probe_client(settings.redis_url)
    broker_url = settings.effective_broker_url or settings.redis_url
    broker = None if is_amqp_url(broker_url) else probe_client(broker_url)
    try:
        try:
            from_redis: _FromRedis | None = await within(_from_redis(settings, client))
        except Exception as exc:
            from_redis = None
            down["redis"] = store_problem(exc, detail=True)
        try:
            queues, successes = await within(
                _from_broker(broker) if broker is not None else _from_rabbitmq(broker_url, client)
            )
        except Exception as exc:
            queues, successes = (), {}
            down["broker"] = store_problem(exc, detail=True)
    finally:
        await client.aclose()
        if broker is not None:
            await broker.aclose()
    try:
        counts: tuple[Any, ...] = await within(_from_postgres(settings))
    except Exception as exc:
        counts = (None,) * 8
        down["postgres"] = store_problem(exc, detail=True)
    failed, oldest, last_run, drift, late, pending, failed_deliveries, archived = counts
    return Status(
        checked_at=datetime.now(UTC),
        queues=queues,
        complete_through=from_redis.complete_through if from_redis else None,
        failed_events=failed,
        oldest_failed_at=oldest,
        last_reconcile_at=last_run,
        drift_rows=drift,
        unsettled_late_events=late,
        deliveries_pending=pending,
        deliveries_failed=failed_deliveries,
        persist_failures=from_redis.persist_failures if from_redis else 0,
        last_persist_failure=from_redis.last_persist_failure if from_redis else None,
        stores_down=down,
        roles=from_redis.roles if from_redis else None,
        waiting=from_redis.waiting if from_redis else None,
        job_successes=successes,
        archived=archived,
    )


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return "never"
    seconds = int((now - at).total_seconds())
    return f"{at.isoformat(timespec='seconds')} ({seconds} s ago)"


def _persist_line(status: Status) -> str:
    if "redis" in status.stores_down:
        return "persist         unknown (Redis unavailable)"
    last = status.last_persist_failure
    counted = f"{status.persist_failures} failure(s)" if status.persist_failures else "no failures"
    line = f"persist         {counted} in the last {PERSIST_FAILURE_WINDOW_S} s"
    if last is not None:
        line += f" (last {_ago(last.at, status.checked_at)}: {last.describe()})"
    stall = status.persist_stall
    if stall:
        line += f"\n                {stall}"
    return line


def _store_lines(status: Status) -> list[str]:
    lines = ["stores"]
    for name in ("postgres", "redis", "broker"):
        problem = status.stores_down.get(name)
        lines.append(f"  {name:<12}{'DOWN: ' + problem if problem else 'up'}")
    return lines


def _queues_of(process: RoleProcess) -> str:
    return f" [{', '.join(process.queues)}]" if process.queues else ""


def _since(process: RoleProcess) -> str:
    return process.started_at.isoformat(timespec="seconds")


def _role_lines(status: Status) -> list[str]:
    lines = ["roles"]
    roles = status.roles
    if roles is None:
        return [*lines, "  unknown (Redis unavailable: processes report there)"]
    for role in ROLES:
        alive = roles.alive(role)
        gone = [p for p in roles.of(role) if not p.alive(roles.now)]
        if alive:
            text_ = f"{len(alive)} alive: " + ", ".join(
                f"pid {p.pid} on {p.host}{_queues_of(p)} (up since {_since(p)})" for p in alive
            )
            if gone:
                last = max(gone, key=lambda p: p.seen_at)
                text_ += (
                    f"; {len(gone)} gone, the last {last.state(roles.now)} since "
                    f"{_ago(last.seen_at, roles.now)}"
                )
        elif gone:
            problem = roles.problem(role) or ""
            text_ = "NONE ALIVE: " + problem.split("; last: ", 1)[-1]
        else:
            text_ = "none seen" + (" (expected: run it)" if role in BACKGROUND_ROLES else "")
        lines.append(f"  {role:<12}{text_}")
    if (unread := roles.queue_problem()) is not None:
        lines.append(f"  {'':<12}{unread}")
    return lines


def _queue_lines(status: Status) -> list[str]:
    if not status.queues:
        return ["queues          unknown (broker unavailable)"]
    lines = [f"{'queue':<13}{'waiting':>9}{'in flight':>11}{'delayed':>9}{'dead':>6}"]
    for q in status.queues:
        in_flight_ = "-" if q.unacknowledged is None else q.unacknowledged - q.waiting
        delayed = "-" if q.delayed is None else q.delayed
        lines.append(f"{q.name:<13}{q.waiting:>9}{in_flight_:>11}{delayed:>9}{q.dead:>6}")
    if any(q.unacknowledged is None for q in status.queues):
        lines.append(
            "  in flight, delayed: not told by RabbitMQ over AMQP (its management plugin shows them)"
        )
    if status.ingest_dead:
        lines.append(
            f"  {status.ingest_dead} ingest message(s) dead-lettered: accepted events not in "
            "Postgres, kept until replayed (usage-portal dead-letters replay)"
        )
    return lines


def _postgres_lines(status: Status) -> list[str]:
    now = status.checked_at
    labels = ("failed events", "last reconcile", "drift", "late events", "alert delivery")
    if "postgres" in status.stores_down:
        return [f"{label:<16}unknown (Postgres unavailable)" for label in labels]
    texts = (
        f"{status.failed_events} (oldest {_ago(status.oldest_failed_at, now)})",
        _ago(status.last_reconcile_at, now),
        f"{status.drift_rows} customer/meter pair(s) off in the last reconcile",
        f"{status.unsettled_late_events} waiting for an adjustment",
        f"{status.deliveries_pending} pending, {status.deliveries_failed} failed",
    )
    return [f"{label:<16}{text_}" for label, text_ in zip(labels, texts, strict=True)]


def render(status: Status) -> str:
    now = status.checked_at
    lag = status.lag_s
    if lag is not None and status.complete_through is not None:
        lag_line = f"lag             {lag:.1f} s (complete through {status.complete_through.isoformat()})"
    else:
        lag_line = "lag             unknown (Redis unavailable)"
    failed, reconcile, *others = _postgres_lines(status)
    attention = status.attention
    if attention:
        verdict = "NEEDS ATTENTION: " + "; ".join(attention)
    elif status.persist_failures:
        # Not an operator's job yet (outages heal, set-aside events are listed below), but
        # not "all well" either: /readyz says "degraded" for the same failures.
        minutes = PERSIST_FAILURE_WINDOW_S // 60
        verdict = f"degraded: {status.persist_failures} persist failure(s) in the last {minutes} min"
    else:
        verdict = "all well"
    lines = [
        f"usage portal status at {now.isoformat(timespec='seconds')}: {verdict}",
        "",
        *_store_lines(status),
        "",
        *_role_lines(status),
        "",
        *_queue_lines(status),
        "",
        lag_line,
        failed,
        _persist_line(status),
        reconcile,
        *others,
    ]
    if status.archived and status.archived[0]:
        months, events, size = status.archived
        lines.append(f"raw archive     {months} month(s), {events:,} events, {size:,} bytes of gzip CSV")
    if status.job_successes:
        lines.append(
            "last success    "
            + ", ".join(
                f"{name} {int((now - at).total_seconds())} s ago"
                for name, at in sorted(status.job_successes.items())
            )
        )
    return "\n".join(lines)
