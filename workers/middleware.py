"""Dramatiq middleware of the worker role (added by workers/main.py).

- `RoleHeartbeat`: each worker process beats under `ops:{roles}` (portal/operations/heartbeats.py) from
  boot to shutdown, so `/readyz` and `usage-portal status` know which workers are alive.
- `JobOutcomes`: after a successful run of a periodic job, remember when it started and
  drop the dead letters it makes moot; age out old ones (portal/operations/dead_letters.py),
  in the broker's Redis or in RabbitMQ's dead-letter queues.

Neither ever fails a message: when a store is unavailable they skip their bookkeeping.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from portal.infrastructure.collector import keep_startup_out_of_collections
from portal.infrastructure.rabbitmq_admin import RabbitmqAdmin
from portal.infrastructure.rabbitmq_broker import ResilientRabbitmqBroker
from portal.infrastructure.redis_client import sync_client
from portal.operations import dead_letters
from portal.operations.heartbeats import HeartbeatThread, Identity
from workers.outages import SKIPPED_OPTION

log = logging.getLogger(__name__)


class SettledCollector(Middleware):
    """Once the worker has booted (actors, pools and threads made), keeps what it holds
    out of the cyclic collector's full passes (portal/infrastructure/collector.py)."""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        keep_startup_out_of_collections()


class RoleHeartbeat(Middleware):
    """Beats for this worker process while it runs."""

    def __init__(self, redis_url: str, every_s: float) -> None:
        self.redis_url = redis_url
        self.every_s = every_s
        self.thread: HeartbeatThread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        client = sync_client(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
        queues = tuple(sorted(worker.consumer_whitelist or ()))
        self.thread = HeartbeatThread(client, Identity.of_this_process("worker", queues), self.every_s)
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread.client.close()
            self.thread = None


class JobOutcomes(Middleware):
    """Records successful runs of the periodic jobs and clears what they make moot.

    On the Redis broker both live in the broker's Redis. On RabbitMQ the dead letters are
    in its queues and the successes go to the live view's Redis (`redis_url`)."""

    def __init__(self, redis_url: str | None = None) -> None:
        self._started: dict[str, int] = {}  # message id -> epoch ms its run started
        self._lock = threading.Lock()
        self.redis_url = redis_url
        self._live: redis.Redis | None = None

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.actor_name in dead_letters.SUPERSEDING:
            with self._lock:
                self._started[message.message_id] = int(time.time() * 1000)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        with self._lock:
            self._started.pop(message.message_id, None)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        with self._lock:
            started_ms = self._started.pop(message.message_id, None)
        if started_ms is None or exception is not None or message.options.get(SKIPPED_OPTION):
            return
        try:
            if isinstance(broker, ResilientRabbitmqBroker):
                cleared, aged = self._on_rabbitmq(broker, message.actor_name, started_ms)
            else:
                client: redis.Redis = broker.client  # type: ignore[attr-defined]
                dead_letters.record_success(client, message.actor_name, started_ms)
                cleared = dead_letters.clear_superseded(client, message.actor_name, started_ms)
                aged = dead_letters.age_out(client, int(time.time() * 1000))
        except Exception as exc:  # Redis unavailable: the next success does it
            log.info("job outcome of %s not recorded: %s", message.actor_name, type(exc).__name__)
            return
        if cleared or aged:
            log.info(
                "%s succeeded: cleared %d dead letter(s) it makes moot, aged out %d",
                message.actor_name,
                cleared,
                aged,
            )

    def _on_rabbitmq(self, broker: ResilientRabbitmqBroker, actor: str, started_ms: int) -> tuple[int, int]:
        if self.redis_url:
            if self._live is None:
                self._live = sync_client(self.redis_url, socket_timeout=5, socket_connect_timeout=5)
            dead_letters.record_success(self._live, actor, started_ms)
        # Its own connection: the broker's belong to the threads that made them.
        with RabbitmqAdmin(broker.url) as admin:
            cleared = dead_letters.clear_superseded(admin, actor, started_ms)
            aged = dead_letters.age_out(admin, int(time.time() * 1000))
        return cleared, aged
