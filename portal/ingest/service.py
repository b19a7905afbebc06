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
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import msgspec

from portal.catalog.service import CatalogCache
from portal.http.foreground import Foreground
from portal.infrastructure.broker import INGEST_QUEUE
from portal.infrastructure.http_errors import StoreUnavailable
from portal.infrastructure.jobs import QueueUnavailable, enqueue
from portal.infrastructure.settings import Settings
from portal.ingest.backlog import BacklogFull, PersistBacklog
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
class _Single:
    raw: bytes
    done: asyncio.Future[IngestResult]


@dataclass(frozen=True, slots=True)
class _Outcome:
    result: IngestResult
    duplicates: set[int]  # the indexes of the events answered as duplicates


# A 1000-event batch decodes and validates for several milliseconds of one process's event
# loop; every request sharing that process (an entitlement check, a dashboard poll) waited
# behind all of it. Yielding every this many events keeps each wait near a millisecond, and
# lets the pages in flight finish first (portal/http/foreground.py).
_SLICE_EVENTS = 200

# Groups of single events in flight at once: while one waits for the broker, the next forms.
MAX_SINGLE_WRITERS = 2


@dataclass(slots=True)
class Ingestor:
    settings: Settings
    catalog: CatalogCache
    live: LiveStore
    handoff: BatchHandoff = field(default_factory=lambda: BatchHandoff(_enqueue_persist))
    # The door kept while the persist workers are behind (portal/ingest/backlog.py); None: none.
    backlog: PersistBacklog | None = None
    # The pages this process is serving, which a batch lets finish between its slices.
    foreground: Foreground = field(default_factory=Foreground)
    # Tasks kept from the GC: live applies retried after Redis failed between hand-off and
    # apply, and the writers of single events.
    _background: set[asyncio.Task[None]] = field(default_factory=set)
    _singles: list[_Single] = field(default_factory=list)  # waiting to be ingested together
    _single_writers: int = 0

    def __post_init__(self) -> None:
        if self.backlog is not None:
            self.handoff.on_message = self.backlog.note_message

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
        return (await self._ingest(raw_events)).result

    async def ingest_one(self, raw_event: bytes) -> IngestResult:
        """One event, answered exactly as `ingest([raw_event])` would be (index 0).

        Single events that arrive together are ingested together: one catalog lookup, one
        marker check, one hand-off and one apply for all of them instead of one each (about
        an eighth of the web's CPU per single event, measured in docs/performance.md). Between
        them the batch rules apply, which are the rules of requests in a row: the second of
        two sends of one event is a duplicate, a second with other content a conflict.
        """
        done: asyncio.Future[IngestResult] = asyncio.get_running_loop().create_future()
        self._singles.append(_Single(raw_event, done))
        if self._single_writers < MAX_SINGLE_WRITERS:
            self._single_writers += 1
            task = asyncio.get_running_loop().create_task(self._ingest_singles())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return await done

    async def _ingest_singles(self) -> None:
        try:
            while self._singles:
                taken = self._singles[: self.settings.max_batch_events]
                del self._singles[: len(taken)]
                try:
                    outcome = await self._ingest([single.raw for single in taken])
                except Exception as exc:  # IngestUnavailable above all: each caller gets it
                    for single in taken:
                        if not single.done.done():
                            single.done.set_exception(exc)
                    continue
                rejections = {r.index: r for r in outcome.result.rejected}
                for index, single in enumerate(taken):
                    if single.done.done():
                        continue
                    rejection = rejections.get(index)
                    if rejection is not None:
                        one = IngestResult(0, 0, [Rejection(0, rejection.event_id, rejection.error)])
                    elif index in outcome.duplicates:
                        one = IngestResult(accepted=0, duplicates=1, rejected=[])
                    else:
                        one = IngestResult(accepted=1, duplicates=0, rejected=[])
                    single.done.set_result(one)
        finally:
            self._single_writers -= 1

    async def _ingest(self, raw_events: list[msgspec.Raw] | list[bytes]) -> _Outcome:
        if self.backlog is not None:
            try:
                await self.backlog.admit()  # before anything of the request is read
            except BacklogFull as exc:
                raise IngestUnavailable(str(exc)) from exc
        now_s = time.time()
        deferral = self.foreground.deferral()  # pages first, between slices
        rejected: list[Rejection] = []
        decoded: list[tuple[int, UsageEvent]] = []
        for index, raw in enumerate(raw_events):
            if index and not index % _SLICE_EVENTS:
                await deferral.wait()  # let the requests sharing this process go on
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
        duplicates: set[int] = set()  # indexes
        for position, (index, usage_event) in enumerate(decoded):
            if position and not position % _SLICE_EVENTS:
                await deferral.wait()
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
                duplicates.add(index)
            else:
                rejected.append(Rejection(index=index, event_id=usage_event.event_id, error=CONFLICT_ERROR))

        fresh: list[AcceptedEvent] = []
        fresh_indexes: list[int] = []
        conflicts: list[AcceptedEvent] = []
        if candidates:
            batch_id = uuid.uuid4().hex
            accepted_ms = int(time.time() * 1000)
            try:
                status = await self.live.check_and_hold([e for _, e in candidates], batch_id, accepted_ms)
            except Exception as exc:  # Redis down: we cannot tell duplicates apart
                log.warning("live view unavailable, refusing batch: %s", exc)
                # A Redis that paused rather than failed runs the check once it resumes,
                # hold included, after we answered 503: take that hold back when it answers.
                self._release_later(batch_id)
                raise IngestUnavailable("the live store is unavailable") from exc
            for (index, event), state in zip(candidates, status, strict=True):
                if state == 0:
                    fresh.append(event)
                    fresh_indexes.append(index)
                elif state == 1:
                    duplicates.add(index)
                else:
                    conflicts.append(event)
                    rejected.append(Rejection(index=index, event_id=event.event_id, error=CONFLICT_ERROR))
            # Encoding a big batch's hand-off and building its apply are a slice each.
            sliced = len(candidates) > _SLICE_EVENTS
            if sliced:
                await deferral.wait()
            await self._hand_off(batch_id, accepted_ms, fresh, conflicts)
            if fresh:
                if sliced:
                    await deferral.wait()
                try:
                    taken = await self.live.apply(fresh, batch_id, accepted_ms)
                except Exception as exc:  # durable already: count them live as soon as Redis is back
                    log.warning("live counters not updated for batch %s, retrying: %s", batch_id, exc)
                    self._apply_later(batch_id, accepted_ms, fresh)
                    taken = set()
                # Events a concurrent request carried first are duplicates of it (counted
                # live all the same: the worker subtracts the copy the ledger refuses).
                duplicates.update(fresh_indexes[i] for i in taken)
                fresh = [e for i, e in enumerate(fresh) if i not in taken]

        rejected.sort(key=lambda r: r.index)
        result = IngestResult(accepted=len(fresh), duplicates=len(duplicates), rejected=rejected)
        return _Outcome(result, duplicates)

    def _release_later(self, batch_id: str) -> None:
        """Release a hold the batch may have taken, once Redis answers (a release of a hold
        never taken changes nothing). Given up after LIVE_RETRY_FOR_S: the reconcile's
        sweep of orphan holds (portal/operations/orphan_holds.py) is the backstop."""

        async def release() -> None:
            await self.live.release(batch_id)
            # Once more a moment later: a resumed Redis may run this release before the late
            # hold it undoes, which came on another connection.
            await asyncio.sleep(1.0)
            await self.live.release(batch_id)

        self._in_background(self._until_redis_answers(release, batch_id, gives_up="hold left to the sweep"))

    def _apply_later(self, batch_id: str, accepted_ms: int, events: list[AcceptedEvent]) -> None:
        """Count durable events live once Redis answers again (it restarts in about a
        second under `up`). Applying a batch is idempotent (the live store remembers the
        batch ids it applied), so a first attempt that did land is not counted twice.
        Given up after LIVE_RETRY_FOR_S: the hour's reconcile rewrites it from Postgres."""

        async def apply() -> None:
            await self.live.apply(events, batch_id, accepted_ms)
            log.info("live counters of batch %s updated on a retry", batch_id)

        self._in_background(
            self._until_redis_answers(apply, batch_id, gives_up="live counters left to the reconcile")
        )

    def _in_background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @staticmethod
    async def _until_redis_answers(
        action: Callable[[], Awaitable[None]], batch_id: str, *, gives_up: str
    ) -> None:
        """`action` again, backing off from LIVE_RETRY_FIRST_S, until it succeeds or
        LIVE_RETRY_FOR_S have passed (then one warning saying what is left to whom)."""
        delay = LIVE_RETRY_FIRST_S
        deadline = time.monotonic() + LIVE_RETRY_FOR_S
        while True:
            await asyncio.sleep(delay)
            try:
                await action()
                return
            except Exception as exc:
                if time.monotonic() >= deadline:
                    log.warning("batch %s: %s: %s", batch_id, gives_up, exc)
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
            log.warning("could not release in-flight batch %s, retrying: %s", batch_id, exc)
            self._release_later(batch_id)
