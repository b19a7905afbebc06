"""The scheduler role: queues periodic jobs. Several schedulers may run (one per
machine, say): a Redis lock per job and tick makes each tick run once."""

from __future__ import annotations

import logging
import signal
import time
from dataclasses import dataclass
from typing import Any

from redis import Redis

from portal.broker import ALERTS_QUEUE, MAINTENANCE_QUEUE, setup_broker
from portal.jobs import enqueue_sync
from portal.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Job:
    actor_name: str
    every_s: int
    queue: str = MAINTENANCE_QUEUE


def jobs(settings: Settings) -> list[Job]:
    return [
        Job("reconcile_live", max(5, int(settings.reconcile_interval.total_seconds()))),
        Job("maintain_storage", 3600),
        Job("sweep_late_events", 120),
        Job("draft_ended_periods", 3600),
        Job("draft_current_periods", 900),
        Job("sweep_alerts", 60, ALERTS_QUEUE),
    ]


def due_ticks(now_s: float, schedule: list[Job]) -> list[tuple[Job, int]]:
    """The (job, tick number) pairs due at `now_s`; a tick is claimed once cluster-wide."""
    return [(job, int(now_s // job.every_s)) for job in schedule]


def run_scheduler(settings: Settings) -> None:
    assert settings.redis_url
    setup_broker(settings)
    redis = Redis.from_url(settings.redis_url)
    running = True

    def stop(*_: Any) -> None:
        nonlocal running
        running = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    schedule = jobs(settings)
    while running:
        for job, tick in due_ticks(time.time(), schedule):
            if redis.set(f"sched:{job.actor_name}:{tick}", "1", nx=True, ex=job.every_s * 2):
                try:
                    enqueue_sync(job.actor_name, job.queue)
                except Exception as exc:  # broker down: the next tick tries again
                    log.warning("could not queue %s: %s", job.actor_name, exc)
                    redis.delete(f"sched:{job.actor_name}:{tick}")
        time.sleep(1.0)
