"""How long an enqueue waits for a broker that is down, restarting or loading: the same for
the Redis and the RabbitMQ broker (`broker.py`, `rabbitmq_broker.py`).

Patience matters in workers: Dramatiq schedules a retry by enqueueing it from the worker
thread, and when that enqueue failed the message was acknowledged anyway, with no retry
queued. The web and the scheduler keep none (0): the web answers 503 at once, the scheduler
skips a tick."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class EnqueuePatience:
    """Runs an enqueue again, with backoff from 0.1 s up to 2 s, for up to `patience_s`
    seconds while it raises one of `unavailable`; logs when the waiting starts and ends."""

    def __init__(self, patience_s: float, unavailable: tuple[type[BaseException], ...]) -> None:
        self.patience_s = patience_s
        self.unavailable = unavailable
        self._waiting_since: float | None = None
        self._lock = threading.Lock()

    def send(self, enqueue: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.patience_s
        pause = 0.1
        while True:
            try:
                sent = enqueue()
            except self.unavailable as exc:
                if time.monotonic() + pause > deadline:
                    raise
                self._note_wait(exc)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if self._waiting_since is not None:
                self._note_back()
            return sent

    def _note_wait(self, exc: BaseException) -> None:
        with self._lock:
            if self._waiting_since is None:
                self._waiting_since = time.monotonic()
                log.warning(
                    "broker unavailable (%s); enqueues wait up to %.0f s for it",
                    type(exc).__name__,
                    self.patience_s,
                )

    def _note_back(self) -> None:
        with self._lock:
            if self._waiting_since is not None:
                log.warning("broker available again after %.1f s", time.monotonic() - self._waiting_since)
                self._waiting_since = None
