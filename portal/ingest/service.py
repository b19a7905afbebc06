"""Accepting a batch: validate, dedup against the live markers, make it durable in the
broker, then count it live.

Order matters (DESIGN invariant 3): markers and counters are written only after the
broker has the batch, so a batch refused with 503 leaves nothing behind that would make
its retry look like a duplicate.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import msgspec

from portal.catalog.service import CatalogCache
from portal.infrastructure.broker import INGEST_QUEUE
from portal.infrastructure.http_errors import StoreUnavailable
from portal.infrastructure.jobs import QueueUnavailable, enqueue
from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.ingest.handoff import BatchHandoff
from portal.ingest.schemas import IngestResult, Rejection, UsageEvent
from portal.ingest.validation import (
    EventError,
    Limits,
    decode_event,
    loose_event_id,
    validate,
)
from portal.live.store import LiveStore

log = logging.getLogger(__name__)

# A batch handed to the broker whose live apply failed is applied again after 0.2, 0.4, …
# (at most 5) seconds, for up to a minute.
LIVE_RETRY_FIRST_S = 0.2
LIVE_RETRY_MAX_DELAY_S = 5.0
LIVE_RETRY_FOR_S = 60.0

PERSIST_ACTOR = "persist_events"
CONFLICT_ERROR = "eventId: already used by a different event (conflict); not counted"


class IngestUnavailable(Exception):
    """The batch could not be made durable; the client should retry (503)."""


async def _enqueue_persist(batch: dict[str, Any]) -> None:
    await enqueue(PERSIST_ACTOR, INGEST_QUEUE, batch)


@dataclass(slots=True)
class Ingestor:
    settings: Settings
    catalog: CatalogCache
    live: LiveStore
    handoff: BatchHandoff = field(default_factory=lambda: BatchHandoff(_enqueue_persist))
    # Live applies retried in the background after Redis failed between hand-off and apply.
    _live_repairs: set[asyncio.Task[None]] = field(default_factory=set)

    def _limits(self, now_s: float) -> Limits:
        now_us = int(now_s * 1_000_000)
        s = self.settings
        return Limits(
            now_us=now_us,
            oldest_us=now_us - int(s.accepted_lateness.total_seconds() * 1_000_000),
            newest_us=now_us + int(s.future_tolerance.total_seconds() * 1_000_000),
            max_dimensions=s.max_dimensions,
            max_dimension_key_chars=s.max_dimension_key_chars,
            max_dimension_value_chars=s.max_dimension_value_chars,
            max_event_id_chars=s.max_event_id_chars,
        )

    async def ingest(self, raw_events: list[msgspec.Raw] | list[bytes]) -> IngestResult:
        """Accept what can be accepted; reject the rest one by one, with reasons.

        Raises IngestUnavailable when the accepted events could not be handed to the
        broker: nothing was counted then, and a retry is safe. The callers have refused
        bodies nested deeper than MAX_JSON_DEPTH before (`json_nesting_exceeds`).
        """
        now_s = time.time()
        rejected: list[Rejection] = []
        decoded: list[tuple[int, UsageEvent]] = []
        for index, raw in enumerate(raw_events):
            body = bytes(raw)
            try:
                decoded.append((index, decode_event(body)))
            except EventError as exc:
                rejected.append(Rejection(index=index, event_id=loose_event_id(body), error=str(exc)))

        try:
            zones, meters = await self.catalog.lookup(
                {e.customer_id for _, e in decoded}, {e.metric_name for _, e in decoded}
            )
        except StoreUnavailable as exc:
            raise IngestUnavailable(str(exc)) from exc
        limits = self._limits(now_s)
        candidates: list[tuple[int, AcceptedEvent]] = []
        first_in_batch: dict[tuple[str, str], AcceptedEvent] = {}
        duplicates = 0
        for index, usage_event in decoded:
            try:
                accepted = validate(usage_event, zones=zones, meters=meters, limits=limits)
            except EventError as exc:
                rejected.append(Rejection(index=index, event_id=usage_event.event_id, error=str(exc)))
                continue
            key = (accepted.customer_id, accepted.event_id)
            earlier = first_in_batch.get(key)
            if earlier is None:
                first_in_batch[key] = accepted
                candidates.append((index, accepted))
            elif earlier.fingerprint == accepted.fingerprint:
                duplicates += 1
            else:
                rejected.append(Rejection(index=index, event_id=usage_event.event_id, error=CONFLICT_ERROR))

        fresh: list[AcceptedEvent] = []
        conflicts: list[AcceptedEvent] = []
        if candidates:
            batch_id = uuid.uuid4().hex
            accepted_ms = int(time.time() * 1000)
            try:
                status = await self.live.check_and_hold([e for _, e in candidates], batch_id, accepted_ms)
            except Exception as exc:  # Redis down: we cannot tell duplicates apart
                log.warning("live view unavailable, refusing batch: %s", exc)
                raise IngestUnavailable("the live store is unavailable") from exc
            for (index, event), state in zip(candidates, status, strict=True):
                if state == 0:
                    fresh.append(event)
                elif state == 1:
                    duplicates += 1
                else:
                    conflicts.append(event)
                    rejected.append(Rejection(index=index, event_id=event.event_id, error=CONFLICT_ERROR))
            await self._hand_off(batch_id, accepted_ms, fresh, conflicts)
            if fresh:
                try:
                    taken = await self.live.apply(fresh, batch_id, accepted_ms)
                except Exception as exc:  # durable already: count them live as soon as Redis is back
                    log.warning("live counters not updated for batch %s, retrying: %s", batch_id, exc)
                    self._apply_later(batch_id, accepted_ms, fresh)
                    taken = set()
                # Events a concurrent request carried first are duplicates of it (counted
                # live all the same: the worker subtracts the copy the ledger refuses).
                duplicates += len(taken)
                fresh = [e for i, e in enumerate(fresh) if i not in taken]

        rejected.sort(key=lambda r: r.index)
        return IngestResult(accepted=len(fresh), duplicates=duplicates, rejected=rejected)

    def _apply_later(self, batch_id: str, accepted_ms: int, events: list[AcceptedEvent]) -> None:
        """Count durable events live once Redis answers again (it restarts in about a
        second under `up`). Applying a batch is idempotent (the live store remembers the
        batch ids it applied), so a first attempt that did land is not counted twice."""
        task = asyncio.create_task(self._apply_until_counted(batch_id, accepted_ms, events))
        self._live_repairs.add(task)
        task.add_done_callback(self._live_repairs.discard)

    async def _apply_until_counted(
        self, batch_id: str, accepted_ms: int, events: list[AcceptedEvent]
    ) -> None:
        delay = LIVE_RETRY_FIRST_S
        deadline = time.monotonic() + LIVE_RETRY_FOR_S
        while True:
            await asyncio.sleep(delay)
            try:
                await self.live.apply(events, batch_id, accepted_ms)
                log.info("live counters of batch %s updated on a retry", batch_id)
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    # The hour's reconcile rewrites it from Postgres once it settles.
                    log.warning("live counters of batch %s left to the reconcile: %s", batch_id, exc)
                    return
            delay = min(delay * 2, LIVE_RETRY_MAX_DELAY_S)

    async def _hand_off(
        self,
        batch_id: str,
        accepted_ms: int,
        fresh: list[AcceptedEvent],
        conflicts: list[AcceptedEvent],
    ) -> None:
        if not fresh and not conflicts:
            await self._release_quietly(batch_id)
            return
        try:
            await self.handoff.submit(
                batch_id, accepted_ms, [e.to_wire() for e in fresh], [e.to_wire() for e in conflicts]
            )
        except QueueUnavailable as exc:
            log.warning("broker refused batch %s: %s", batch_id, exc)
            await self._release_quietly(batch_id)
            raise IngestUnavailable("the broker is unavailable") from exc

    async def _release_quietly(self, batch_id: str) -> None:
        try:
            await self.live.release(batch_id)
        except Exception as exc:
            log.warning("could not release in-flight batch %s: %s", batch_id, exc)
