"""`UsageClient`: record from any thread; a background thread sends."""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from portal.client.buffer import ClientStats, OnError, build_event, open_pipeline
from portal.client.corrections import Correction, amend_body, send_correction
from portal.client.entitlements import Entitlement, EntitlementChecker
from portal.client.errors import AuthenticationError, UsageClientError
from portal.client.quantities import Quantity
from portal.client.transport import RetryPolicy, Transport, UrllibTransport

log = logging.getLogger("portal.client")


def _close_at_exit(ref: weakref.ref[UsageClient]) -> None:
    client = ref()
    if client is not None:
        try:
            client.close()
        except UsageClientError as exc:
            log.error("usage client: at exit, %s (%d events unsent)", exc, client.stats.buffered)


class UsageClient:
    """Buffers usage events and sends them to `POST /v1/events/batch` in batches.

    Sends when `batch_size` events are buffered, every `flush_interval` seconds, on
    `flush()`, on `close()` and at interpreter exit. See docs/client.md.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 1000,
        flush_interval: float = 5.0,
        max_buffered: int = 100_000,
        block_timeout: float = 1.0,
        retry: RetryPolicy | None = None,
        on_error: OnError | None = None,
        spool_path: str | Path | None = None,
        spool_fsync: bool = True,
        timeout: float = 10.0,
        transport: Transport | None = None,
        check_cache_seconds: float = 0.5,
    ) -> None:
        self.flush_interval = flush_interval
        self.block_timeout = block_timeout
        transport = transport or UrllibTransport(base_url, api_key, timeout=timeout)
        self._checker = EntitlementChecker(transport, cache_seconds=check_cache_seconds)
        self._transport = transport
        self._pipeline = open_pipeline(
            transport,
            batch_size=batch_size,
            max_buffered=max_buffered,
            retry=retry,
            on_error=on_error,
            spool_path=spool_path,
            spool_fsync=spool_fsync,
        )
        self._wake = threading.Condition()
        self._batch_ready = False
        self._stopping = False
        self._closed = False
        self._pipeline.batch_ready = self._on_batch_ready
        self._thread = threading.Thread(target=self._run, name="usage-client-flush", daemon=True)
        self._thread.start()
        self._atexit = _make_atexit(self)
        atexit.register(self._atexit)

    # -- public API ------------------------------------------------------------------

    def check(self, customer_id: str, meter: str, quantity: Quantity | None = None) -> Entitlement:
        """May `customer_id` use `quantity` more of `meter` (None: any more)? Answered by the
        portal from its live counters, or from this client's cache of the last answer (at most
        `check_cache_seconds` old; `lag_ms` includes its age). Raises EntitlementUnavailable
        when there is no answer: serving or refusing then is the application's choice; a
        quantity the portal would refuse raises ValueError at once (as `record` does)."""
        return self._checker.check_many([(customer_id, meter, quantity)])[0]

    def cancel(self, customer_id: str, event_id: str, reason: str) -> Correction:
        """Cancel an event sent before (within the lateness window): it counts nowhere from
        now on, and an invoice already issued for its period gets a credit note. Raises
        CorrectionRefused (unknown, already cancelled, too old) or CorrectionUnavailable."""
        body = {"customerId": customer_id, "reason": reason}
        return send_correction(self._transport, event_id, "cancel", body)

    def amend(self, customer_id: str, event_id: str, quantity: Quantity, reason: str) -> Correction:
        """Give an event sent before a new quantity (totals change by the difference). A
        quantity the portal would refuse raises ValueError at once (as `record` does)."""
        return send_correction(self._transport, event_id, "amend", amend_body(customer_id, quantity, reason))

    def check_many(self, asks: list[tuple[str, str, Quantity | None]]) -> list[Entitlement]:
        """Several checks in one request (cached answers are not asked again), in order."""
        return self._checker.check_many(asks)

    def record(
        self,
        customer_id: str,
        metric_name: str,
        quantity: Quantity,
        *,
        dimensions: Mapping[str, str] | None = None,
        timestamp: datetime | int | str | None = None,
        event_id: str | None = None,
        product_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> str:
        """Buffer one event (spooled first, if a spool is set) and return its id.

        Raises BufferFull when `max_buffered` events wait for longer than `block_timeout`,
        AuthenticationError once the server has refused the key."""
        if self._closed:
            raise UsageClientError("the usage client is closed")
        event = build_event(
            customer_id,
            metric_name,
            quantity,
            dimensions=dimensions,
            timestamp=timestamp,
            event_id=event_id,
            product_id=product_id,
            metadata=metadata,
        )
        self._pipeline.add(event, self.block_timeout)
        return str(event["eventId"])

    def flush(self) -> None:
        """Send everything buffered now; return when it is delivered. Raises DeliveryError
        (retry budget spent; the events stay buffered) or AuthenticationError."""
        self._pipeline.flush()

    def close(self) -> None:
        """Stop the background thread, send what is buffered, close the spool. Raises
        like `flush` if events could not be delivered (they stay in the spool, if any)."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._atexit)
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        self._thread.join()
        try:
            self._pipeline.flush()
        finally:
            self._pipeline.close()

    @property
    def stats(self) -> ClientStats:
        return self._pipeline.stats()

    def __enter__(self) -> UsageClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- background thread -----------------------------------------------------------

    def _on_batch_ready(self) -> None:
        with self._wake:
            self._batch_ready = True
            self._wake.notify_all()

    def _run(self) -> None:
        next_interval = time.monotonic() + self.flush_interval
        while True:
            with self._wake:
                while not (self._stopping or self._batch_ready):
                    remaining = next_interval - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                if self._stopping:
                    return
                full_only = self._batch_ready and time.monotonic() < next_interval
                self._batch_ready = False
            if not full_only:
                next_interval = time.monotonic() + self.flush_interval
            try:
                self._pipeline.flush(full_batches_only=full_only)
            except AuthenticationError:
                return  # logged by the pipeline; record/flush/close raise it from now on
            except UsageClientError as exc:
                log.warning("usage client: background flush failed: %s", exc)
            except Exception:
                log.exception("usage client: background flush failed")


def _make_atexit(client: UsageClient) -> Any:
    ref = weakref.ref(client)

    def handler() -> None:
        _close_at_exit(ref)

    return handler
