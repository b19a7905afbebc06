"""`AsyncUsageClient`: `record` from coroutines; a task sends, in a worker thread."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from portal.client.buffer import ClientStats, OnError, build_event, open_pipeline
from portal.client.corrections import Correction, amend_body, send_correction
from portal.client.entitlements import Entitlement, EntitlementChecker
from portal.client.errors import AuthenticationError, UsageClientError
from portal.client.quantities import Quantity, quantity_text
from portal.client.transport import RetryPolicy, Transport, UrllibTransport

log = logging.getLogger("portal.client")


class AsyncUsageClient:
    """The asyncio flavour of `UsageClient`: same options, same pipeline.

    `record` is a plain (non-async) method that never waits: when `max_buffered` events
    are waiting it raises BufferFull at once (`block_timeout` defaults to 0). The
    blocking HTTP calls run in a worker thread (`asyncio.to_thread`), so the event loop
    is never blocked by the network. With a spool, `record` writes (and by default
    fsyncs) one line in the calling thread.

    Use `async with AsyncUsageClient(...) as usage:` or `await usage.close()`; at
    interpreter exit, a client not closed flushes synchronously.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        batch_size: int = 1000,
        flush_interval: float = 5.0,
        max_buffered: int = 100_000,
        block_timeout: float = 0.0,
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
        self._pipeline.batch_ready = self._on_batch_ready
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._batch_ready = False
        self._closed = False
        atexit.register(self._at_exit)

    # -- public API ------------------------------------------------------------------

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
        """Buffer one event and return its id (see `UsageClient.record`)."""
        if self._closed:
            raise UsageClientError("the usage client is closed")
        self._ensure_task()
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

    async def start(self) -> None:
        """Start the background task now (otherwise the first `record` does)."""
        self._ensure_task()

    async def check(self, customer_id: str, meter: str, quantity: Quantity | None = None) -> Entitlement:
        """`UsageClient.check`: a cached answer at once, else one request in a worker thread."""
        return (await self.check_many([(customer_id, meter, quantity)]))[0]

    async def cancel(self, customer_id: str, event_id: str, reason: str) -> Correction:
        """`UsageClient.cancel`, the request in a worker thread."""
        body = {"customerId": customer_id, "reason": reason}
        return await asyncio.to_thread(send_correction, self._transport, event_id, "cancel", body)

    async def amend(self, customer_id: str, event_id: str, quantity: Quantity, reason: str) -> Correction:
        """`UsageClient.amend`, the request in a worker thread (a bad quantity raises at once)."""
        body = amend_body(customer_id, quantity, reason)
        return await asyncio.to_thread(send_correction, self._transport, event_id, "amend", body)

    async def check_many(self, asks: list[tuple[str, str, Quantity | None]]) -> list[Entitlement]:
        """`UsageClient.check_many`; a bad quantity raises at once, in the calling thread."""
        wanted = [(c, m, None if q is None else quantity_text(q)) for c, m, q in asks]
        return await asyncio.to_thread(self._checker.check_many, wanted)

    async def flush(self) -> None:
        """Send everything buffered now; see `UsageClient.flush`."""
        await asyncio.to_thread(self._pipeline.flush)

    async def close(self) -> None:
        """Stop the task, send what is buffered, close the spool; see `UsageClient.close`."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self._at_exit)
        task = self._task
        if task is not None and self._wake is not None:
            self._wake.set()
            # The task finishes the flush it may be in (a worker thread cannot be cancelled).
            await task
        try:
            await asyncio.to_thread(self._pipeline.flush)
        finally:
            self._pipeline.close()

    @property
    def stats(self) -> ClientStats:
        return self._pipeline.stats()

    async def __aenter__(self) -> AsyncUsageClient:
        self._ensure_task()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- background task -------------------------------------------------------------

    def _ensure_task(self) -> None:
        if self._task is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop yet: the atexit flush or a later call in a loop sends
        self._loop = loop
        self._wake = asyncio.Event()
        self._task = loop.create_task(self._run(), name="usage-client-flush")

    def _on_batch_ready(self) -> None:
        loop, wake = self._loop, self._wake
        if loop is None or wake is None or loop.is_closed():
            return

        def mark() -> None:
            self._batch_ready = True
            wake.set()

        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            mark()
        else:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(mark)

    async def _run(self) -> None:
        assert self._wake is not None
        wake = self._wake
        next_interval = time.monotonic() + self.flush_interval
        while not self._closed:
            remaining = next_interval - time.monotonic()
            if remaining > 0 and not self._batch_ready:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), remaining)
            wake.clear()
            if self._closed:
                return
            full_only = self._batch_ready and time.monotonic() < next_interval
            self._batch_ready = False
            if not full_only:
                next_interval = time.monotonic() + self.flush_interval
            try:
                await asyncio.to_thread(self._pipeline.flush, full_batches_only=full_only)
            except AuthenticationError:
                return
            except UsageClientError as exc:
                log.warning("usage client: background flush failed: %s", exc)
            except Exception:
                log.exception("usage client: background flush failed")

    def _at_exit(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._pipeline.flush()
        except UsageClientError as exc:
            log.error("usage client: at exit, %s (%d events unsent)", exc, self._pipeline.buffered())
        finally:
            self._pipeline.close()
