"""The pipeline both clients share: a bounded buffer, the optional spool, and delivery
with retries. Synchronous and thread-safe; the asyncio client runs `flush` in a thread."""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any

from portal.client.errors import (
    AuthenticationError,
    BufferFull,
    DeliveryError,
    EventRejected,
    UsageClientError,
)
from portal.client.ids import new_event_id
from portal.client.quantities import Quantity, quantity_text
from portal.client.spool import Spool
from portal.client.transport import Reply, RetryPolicy, Transport

log = logging.getLogger("portal.client")

BATCH_PATH = "/v1/events/batch"
MAX_BATCH_EVENTS = 1000
# The portal's bound on a batch's body (413 beyond). It answers 413 before reading a body
# that says it is larger and closes the connection; urllib, still sending, sees a reset
# instead of the 413, so a batch is split before it is sent, not after.
MAX_BATCH_BYTES = 5 * 1024 * 1024

Event = dict[str, Any]
OnError = Callable[[Event, UsageClientError], None]


@dataclass(frozen=True, slots=True)
class ClientStats:
    """Counters since the client started.

    sent: events the server accepted as new; duplicates: events it already had (a retry
    of a delivered event, also a success); rejected: events refused as invalid and
    passed to `on_error`; retried: requests sent again after a network error, 429 or 5xx;
    dropped: events not kept because the buffer was full (`BufferFull`); buffered: events
    waiting to be sent now."""

    sent: int = 0
    duplicates: int = 0
    rejected: int = 0
    retried: int = 0
    dropped: int = 0
    buffered: int = 0


def _timestamp(value: datetime | int | str | None, now_ms: int) -> int | str:
    if value is None:
        return now_ms
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp: a datetime needs a timezone")
        return value.isoformat()
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("timestamp: epoch milliseconds, an RFC 3339 string or an aware datetime")
    return value


def build_event(
    customer_id: str,
    metric_name: str,
    quantity: Quantity,
    *,
    dimensions: Mapping[str, str] | None = None,
    timestamp: datetime | int | str | None = None,
    event_id: str | None = None,
    product_id: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Event:
    """The event as the server takes it, with an id and a timestamp fixed now, so that
    every (re)send of it is the same event. A quantity the portal would refuse raises
    ValueError (TypeError for a non-number) here: see `quantity_text`."""
    now_ms = int(time.time() * 1000)
    event: Event = {
        "eventId": event_id if event_id is not None else new_event_id(now_ms),
        "timestamp": _timestamp(timestamp, now_ms),
        "customerId": customer_id,
        "metricName": metric_name,
        "quantity": quantity_text(quantity),
        "dimensions": {str(k): str(v) for k, v in (dimensions or {}).items()},
    }
    if product_id is not None:
        event["productId"] = product_id
    if metadata is not None:
        event["metadata"] = dict(metadata)
    return event


class Pipeline:
    """Buffer → batches of at most `batch_size` → the server, one batch at a time.

    Events leave the buffer only when the server answered for them (accepted, duplicate
    or rejected), so a batch that failed is resent, with the same ids, at the next flush.
    """

    def __init__(
        self,
        transport: Transport,
        *,
        batch_size: int = MAX_BATCH_EVENTS,
        max_buffered: int = 100_000,
        retry: RetryPolicy | None = None,
        on_error: OnError | None = None,
        spool: Spool | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH_EVENTS:
            raise ValueError(f"batch_size must be 1..{MAX_BATCH_EVENTS}")
        if max_buffered < batch_size:
            raise ValueError("max_buffered must be at least batch_size")
        self.transport = transport
        self.batch_size = batch_size
        self.max_buffered = max_buffered
        self.retry = retry or RetryPolicy()
        self.on_error = on_error
        self.spool = spool
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.batch_ready: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._space = threading.Condition(self._lock)
        self._send_lock = threading.Lock()
        self._buffer: deque[Event] = deque()
        self._counts = {"sent": 0, "duplicates": 0, "rejected": 0, "retried": 0, "dropped": 0}
        self.auth_error: AuthenticationError | None = None
        if spool is not None:
            self._buffer.extend(spool.load())
            if self._buffer:
                log.info(
                    "usage client: %d unsent events loaded from the spool %s", len(self._buffer), spool.path
                )

    # -- buffering -------------------------------------------------------------------

    def add(self, event: Event, block_timeout: float) -> None:
        """Buffer (and spool) one event; wait up to `block_timeout` seconds for room."""
        with self._lock:
            if self.auth_error is not None:
                raise self.auth_error
            deadline = time.monotonic() + block_timeout
            while len(self._buffer) >= self.max_buffered:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self._counts["dropped"] += 1
                    raise BufferFull(
                        f"{len(self._buffer)} events are waiting to be sent "
                        f"(max_buffered={self.max_buffered}); event not recorded"
                    )
                self._space.wait(remaining)
                if self.auth_error is not None:
                    raise self.auth_error
            if self.spool is not None:
                self.spool.append([event])
            self._buffer.append(event)
            ready = len(self._buffer) >= self.batch_size
        if ready and self.batch_ready is not None:
            self.batch_ready()

    def buffered(self) -> int:
        with self._lock:
            return len(self._buffer)

    def stats(self) -> ClientStats:
        with self._lock:
            return ClientStats(buffered=len(self._buffer), **self._counts)

    # -- sending ---------------------------------------------------------------------

    def flush(self, *, full_batches_only: bool = False) -> None:
        """Send what is buffered now (or only the full batches), batch by batch.

        Raises AuthenticationError (never retried) or DeliveryError (the retry budget of
        a batch ran out; it and later events stay buffered)."""
        with self._send_lock:
            with self._lock:
                target = len(self._buffer)
            done = 0
            while True:
                with self._lock:
                    if self.auth_error is not None:
                        raise self.auth_error
                    waiting = len(self._buffer)
                    if waiting == 0 or (full_batches_only and waiting < self.batch_size):
                        return
                    if not full_batches_only and done >= target:
                        return
                    batch = list(islice(self._buffer, 0, min(self.batch_size, waiting)))
                self._deliver(batch)
                done += len(batch)

    def _deliver(self, batch: list[Event]) -> None:
        body = json.dumps({"events": batch}, separators=(",", ":"), ensure_ascii=False).encode()
        if len(body) > MAX_BATCH_BYTES:
            if len(batch) > 1:
                half = len(batch) // 2
                self._deliver(batch[:half])
                self._deliver(batch[half:])
            else:
                self._settle(
                    batch,
                    {
                        "accepted": 0,
                        "duplicates": 0,
                        "rejected": [
                            {
                                "index": 0,
                                "error": f"the event is {len(body):,} bytes as JSON; the portal takes at "
                                f"most {MAX_BATCH_BYTES:,} in a batch (fewer or shorter dimensions)",
                            }
                        ],
                    },
                    status=413,
                )
            return
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            retry_after: float | None = None
            try:
                reply = self.transport.post(BATCH_PATH, body)
            except OSError as exc:
                reason = f"network error: {exc}"
            else:
                result = self._result(reply)
                if result is not None:
                    self._settle(batch, result)
                    return
                if reply.status in (401, 403):
                    detail = reply.body.decode("utf-8", "replace")[:500]
                    error = AuthenticationError(reply.status, detail)
                    with self._lock:
                        self.auth_error = error
                        self._space.notify_all()
                    log.error("usage client: %s; nothing more is sent by this client", error)
                    raise error
                if reply.status == 413 and len(batch) > 1:
                    half = len(batch) // 2
                    self._deliver(batch[:half])
                    self._deliver(batch[half:])
                    return
                if not (reply.status in (408, 425, 429) or reply.status >= 500):
                    # Any other answer refuses the batch itself (413 for one event, 400):
                    # resending the same bytes would be refused again.
                    detail = reply.body.decode("utf-8", "replace")[:500]
                    self._settle(
                        batch,
                        {
                            "accepted": 0,
                            "duplicates": 0,
                            "rejected": [
                                {"index": i, "error": f"HTTP {reply.status}: {detail}"}
                                for i in range(len(batch))
                            ],
                        },
                        status=reply.status,
                    )
                    return
                reason = f"HTTP {reply.status}"
                retry_after = reply.retry_after
            delay = self.retry.delay(attempts, retry_after, self.rng)
            elapsed = time.monotonic() - started
            if self.retry.gives_up(attempts, elapsed, delay):
                log.warning(
                    "usage client: giving up on a batch of %d events after %d attempts (%s); "
                    "they stay buffered",
                    len(batch),
                    attempts,
                    reason,
                )
                raise DeliveryError(
                    f"batch of {len(batch)} events not delivered after {attempts} attempts: {reason}",
                    unsent=self.buffered(),
                )
            with self._lock:
                self._counts["retried"] += 1
            log.info("usage client: %s; retrying a batch of %d events in %.2fs", reason, len(batch), delay)
            self.sleep(delay)

    @staticmethod
    def _result(reply: Reply) -> dict[str, Any] | None:
        """The ingest answer, when the reply is one (202, 409, 422 with its body)."""
        if not (200 <= reply.status < 300 or reply.status in (409, 422)):
            return None
        try:
            data = reply.json()
        except ValueError:
            return None
        if isinstance(data, dict) and isinstance(data.get("rejected"), list) and "accepted" in data:
            return data
        return None

    def _settle(self, batch: list[Event], result: Mapping[str, Any], status: int | None = None) -> None:
        """The server answered for every event of the batch: drop them from the buffer
        and the spool, count them, report the rejected ones."""
        rejected = [(int(r["index"]), str(r.get("error", ""))) for r in result["rejected"]]
        with self._lock:
            for event in batch:
                head = self._buffer.popleft()
                assert head is event, "the buffer head changed under the sender"
            self._counts["sent"] += int(result.get("accepted", 0))
            self._counts["duplicates"] += int(result.get("duplicates", 0))
            self._counts["rejected"] += len(rejected)
            if self.spool is not None:
                self.spool.acknowledge([e["eventId"] for e in batch], self._buffer)
            self._space.notify_all()
        for index, error in rejected:
            if not 0 <= index < len(batch):
                continue
            event = batch[index]
            exc = EventRejected(str(event.get("eventId")), error, status)
            log.warning("usage client: %s", exc)
            if self.on_error is not None:
                try:
                    self.on_error(event, exc)
                except Exception:
                    log.exception("usage client: the on_error callback failed")

    def close(self) -> None:
        with self._lock:
            if self.spool is not None:
                self.spool.close()


def open_pipeline(
    transport: Transport,
    *,
    batch_size: int,
    max_buffered: int,
    retry: RetryPolicy | None,
    on_error: OnError | None,
    spool_path: str | Path | None,
    spool_fsync: bool,
) -> Pipeline:
    """The pipeline both clients share, with its spool opened (and closed again if the
    pipeline cannot be built, so the spool's lock is not left behind)."""
    spool = Spool(spool_path, fsync=spool_fsync) if spool_path is not None else None
    try:
        return Pipeline(
            transport,
            batch_size=batch_size,
            max_buffered=max_buffered,
            retry=retry,
            on_error=on_error,
            spool=spool,
        )
    except BaseException:
        if spool is not None:
            spool.close()
        raise
