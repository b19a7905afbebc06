"""The scheduler role: queues periodic jobs. Several schedulers may run (one per
machine, say): a Redis lock per job and tick makes each tick run once.

It survives its stores: while Redis or the broker is down, restarting or loading its data,
a tick is skipped (logged once per outage, with how long it lasted when it ends) and the
next one tries again. A job's tick stays claimable for its whole period, so an outage
shorter than the period delays the job without losing it.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis import Redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from portal.infrastructure.broker import ALERTS_QUEUE, MAINTENANCE_QUEUE, setup_broker
from portal.infrastructure.jobs import enqueue_sync
from portal.infrastructure.redis_client import sync_client
from portal.infrastructure.settings import Settings
from portal.live import redis_keys as keys
from portal.operations.heartbeats import HeartbeatThread, Identity

log = logging.getLogger(__name__)

TICK_S = 1.0
# A hung Redis must not hang the scheduler: give up on a call after this long.
REDIS_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Job:
    actor_name: str
    every_s: int
    queue: str = MAINTENANCE_QUEUE


def jobs(settings: Settings) -> list[Job]:
    return [
        Job("reconcile_live", max(5, int(settings.reconcile_interval.total_seconds()))),
        Job("maintain_storage", 3600),
        # Daily, from 00:00 UTC (and at once when no scheduler ran it today).
        Job("archive_raw_events", 86_400),
        Job("sweep_late_events", 120),
        Job("sweep_document_emails", 300),
        Job("draft_ended_periods", 3600),
        Job("draft_current_periods", 900),
        Job("sweep_alerts", 60, ALERTS_QUEUE),
        Job("sweep_webhooks", 60, ALERTS_QUEUE),
    ]


def due_ticks(now_s: float, schedule: list[Job]) -> list[tuple[Job, int]]:
    """The (job, tick number) pairs due at `now_s`; a tick is claimed once cluster-wide."""
    return [(job, int(now_s // job.every_s)) for job in schedule]


class Scheduler:
    """Claims and queues the due ticks of `schedule`, one `tick()` at a time."""

    def __init__(
        self, client: Redis, schedule: list[Job], enqueue: Callable[[str, str], Any] = enqueue_sync
    ) -> None:
        self.client = client
        self.schedule = schedule
        self.enqueue = enqueue
        self.outage_since: float | None = None  # epoch s of the first skipped tick
        self.skipped = 0  # ticks skipped in the current outage

    def tick(self, now_s: float) -> list[str] | None:
        """Queue every job whose tick at `now_s` (epoch seconds) nobody claimed yet.

        Returns the actor names queued, or None when the tick was skipped because Redis or
        the broker could not be used (what was queued before the failure stays queued; the
        rest is claimed by a later tick of the same period). Never raises."""
        queued: list[str] = []
        try:
            for job, tick in due_ticks(now_s, self.schedule):
                claim = keys.schedule_claim_key(job.actor_name, tick)
                if not self.client.set(claim, "1", nx=True, ex=job.every_s * 2):
                    continue
                try:
                    self.enqueue(job.actor_name, job.queue)
                except Exception:
                    with contextlib.suppress(Exception):  # else the claim expires by itself
                        self.client.delete(claim)
                    raise
                queued.append(job.actor_name)
                # Which scheduler queued which tick: with several, each tick is in one log.
                log.info("scheduler: queued %s for tick %d", job.actor_name, tick)
        except Exception as exc:
            self._skipped(exc, now_s)
            return None
        self._ran(now_s)
        return queued

    def _skipped(self, exc: Exception, now_s: float) -> None:
        self.skipped += 1
        if self.outage_since is not None:
            return
        self.outage_since = now_s
        if isinstance(exc, redis.RedisError):
            log.warning(
                "scheduler: Redis or the broker is unavailable (%s: %s); skipping ticks until it is back",
                type(exc).__name__,
                exc,
            )
        else:  # not an outage we know: say where, once, and keep going
            log.exception("scheduler: a tick failed; skipping ticks until one succeeds")

    def _ran(self, now_s: float) -> None:
        if self.outage_since is None:
            return
        log.warning(
            "scheduler: ticking again after %.1f s (%d tick(s) skipped)",
            now_s - self.outage_since,
            self.skipped,
        )
        self.outage_since = None
        self.skipped = 0


def scheduler_client(url: str) -> Redis:
    """The scheduler's Redis client: it fails at once rather than retrying inside a tick
    (redis-py retries a command for seconds by default, and then raised all the same when
    Valkey loaded for longer); the next tick is the retry."""
    return sync_client(
        url,
        socket_timeout=REDIS_TIMEOUT_S,
        socket_connect_timeout=REDIS_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),
    )


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """Tick every second until SIGTERM/SIGINT (or `stop` is set, for callers that run it in
    a thread). Starts whether or not Redis is up yet."""
    assert settings.redis_url
    setup_broker(settings)
    client = scheduler_client(settings.redis_url)
    stopping = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def on_signal(*_: Any) -> None:
            stopping.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    heartbeat = HeartbeatThread(client, Identity.of_this_process("scheduler"), settings.heartbeat_seconds)
    heartbeat.start()
    scheduler = Scheduler(client, jobs(settings))
    try:
        while not stopping.is_set():
            scheduler.tick(time.time())
            stopping.wait(TICK_S)
    finally:
        heartbeat.stop()
        client.close()
