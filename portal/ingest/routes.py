"""Ingest API: `POST /v1/events` (one event) and `POST /v1/events/batch`."""

from __future__ import annotations

import asyncio
import time
import weakref
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.exceptions import ClientException, NotFoundException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED
from redis.asyncio import Redis

from portal.dependencies import Db, Portal
from portal.http import short_way
from portal.http.json_nesting import MAX_JSON_DEPTH, json_nesting_exceeds
from portal.http.openapi_answers import error_answers
from portal.infrastructure import metrics
from portal.infrastructure.http_errors import ServiceUnavailable
from portal.ingest import quality
from portal.ingest.corrections import CorrectionAsked, accepted_recently, correct_and_apply
from portal.ingest.models import EventCorrection
from portal.ingest.openapi import EventBatchOperation, SingleEventOperation
from portal.ingest.repository import corrections as correction_store
from portal.ingest.schemas import AmendIn, CancelIn, CorrectionOut, EventBatch, IngestResult
from portal.ingest.service import CONFLICT_ERROR, IngestUnavailable
from portal.ingest.validation import json_error_words, rejection_reason
from portal.keys.guard import key_actor
from portal.state import PortalState
from portal.usage.combine import exact

INGEST = {"scope": "ingest"}

# What the document says besides the 202: the same per-event result, when nothing was taken.
INGEST_ANSWERS = {
    409: ResponseSpec(
        IngestResult,
        description="Every event conflicts with an earlier one of the same "
        "id and different content; `rejected` names each.",
        generate_examples=False,
    ),
    422: ResponseSpec(
        IngestResult,
        description="No event was accepted; `rejected` gives each event's index and reason.",
        generate_examples=False,
    ),
}


class PayloadTooLarge(ClientException):
    status_code = 413


def _status(result: IngestResult) -> int:
    """202 when anything was accepted or was already known (a retry is a success);
    409 when every event conflicted with an earlier one; 422 otherwise."""
    if result.accepted or result.duplicates:
        return HTTP_202_ACCEPTED
    if result.rejected and all(r.error == CONFLICT_ERROR for r in result.rejected):
        return 409
    return 422


def unavailable_message(exc: IngestUnavailable) -> str:
    return f"{exc}; nothing was accepted, retry later"


async def ingest_counted(
    portal: PortalState, raw_events: list[bytes] | list[msgspec.Raw], *, single: bool = False
) -> tuple[IngestResult, int]:
    """The events ingested, counted in the metrics and the data-quality counts: the result
    and its status. Raises IngestUnavailable (counted as a 503) when nothing was accepted."""
    started = time.perf_counter()
    try:
        if single:  # ingested together with the single events that arrive meanwhile
            result = await portal.ingestor.ingest_one(bytes(raw_events[0]))
        else:
            result = await portal.ingestor.ingest(raw_events)
    except IngestUnavailable:
        metrics.INGEST_REQUESTS.labels("503").inc()
        raise
    status = _status(result)
    count(result, status, len(raw_events), time.perf_counter() - started)
    await _quality_counts(portal.redis).record(
        result.accepted + result.duplicates, [r.error for r in result.rejected], datetime.now(UTC)
    )
    return result, status


async def _run(
    portal: Portal, raw_events: list[bytes] | list[msgspec.Raw], *, single: bool = False
) -> Response[IngestResult]:
    try:
        result, status = await ingest_counted(portal, raw_events, single=single)
    except IngestUnavailable as exc:
        raise ServiceUnavailable(unavailable_message(exc)) from exc
    return Response(result, status_code=status)


@dataclass(slots=True)
class _QualityCount:
    accepted: int
    rejected: list[str]
    now: datetime
    done: asyncio.Future[None]


@dataclass(slots=True)
class QualityCounts:
    """The native API's data-quality counts (`quality.record`), written for many requests
    at once: a request that finishes while a write is in flight waits for the next write,
    which carries the counts of every request that arrived meanwhile. Each request is still
    answered only once its counts are in Redis (or the write failed, which `quality.record`
    logs and never raises). One write per request cost a Redis round trip each, ~6% of the
    web's CPU for single events."""

    redis: Redis
    _pending: list[_QualityCount] = field(default_factory=list)
    _writer: asyncio.Task[None] | None = None

    async def record(self, accepted: int, rejected: list[str], now: datetime) -> None:
        if not accepted and not rejected:
            return  # nothing to count (`quality.record` writes nothing either)
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append(_QualityCount(accepted, rejected, now, done))
        if self._writer is None:
            self._writer = loop.create_task(self._write())
        await done  # a client that leaves cancels only its own wait (the write checks)

    async def _write(self) -> None:
        try:
            while self._pending:
                taken, self._pending = self._pending, []
                try:
                    # Counters are per UTC day: a write around midnight may hold two.
                    days: dict[date, tuple[datetime, list[_QualityCount]]] = {}
                    for item in taken:
                        days.setdefault(item.now.date(), (item.now, []))[1].append(item)
                    for now, items in days.values():
                        await quality.record(
                            self.redis,
                            "native",
                            accepted=sum(item.accepted for item in items),
                            rejected=[error for item in items for error in item.rejected],
                            now=now,
                        )
                finally:
                    for item in taken:
                        if not item.done.done():
                            item.done.set_result(None)
        finally:
            self._writer = None


# One per Redis client (so per app and event loop), dropped with it.
_quality_by_redis: weakref.WeakKeyDictionary[Redis, QualityCounts] = weakref.WeakKeyDictionary()


def _quality_counts(redis: Redis) -> QualityCounts:
    counts = _quality_by_redis.get(redis)
    if counts is None:
        counts = _quality_by_redis[redis] = QualityCounts(redis)
    return counts


def count(result: IngestResult, status: int, events: int, seconds: float) -> None:
    """Ingest metrics of one answered request (also used by the compatible endpoints)."""
    metrics.INGEST_REQUESTS.labels(str(status)).inc()
    metrics.INGEST_SECONDS.observe(seconds)
    metrics.INGEST_BATCH_EVENTS.observe(events)
    metrics.INGEST_EVENTS.labels("accepted").inc(result.accepted)
    metrics.INGEST_EVENTS.labels("duplicate").inc(result.duplicates)
    metrics.INGEST_EVENTS.labels("rejected").inc(len(result.rejected))
    for rejection in result.rejected:
        metrics.INGEST_REJECTIONS.labels(rejection_reason(rejection.error)).inc()


def unreadable(body: bytes) -> str | None:
    """Why no event of `body` can be read (not UTF-8 at all, or nested deeper than
    MAX_JSON_DEPTH), or None."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"the body is not valid UTF-8 (byte {exc.start})"
    if json_nesting_exceeds(body):
        return f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
    return None


def readable_body(body: bytes) -> bytes:
    """The body, if it can be read at all (400 otherwise)."""
    problem = unreadable(body)
    if problem is not None:
        raise ClientException(problem)
    return body


class EventController(Controller):
    """Usage events, with the ingest (or admin) key."""

    path = "/v1/events"
    tags = ["ingest"]
    opt = INGEST

    @post(
        "/",
        request_max_body_size=64 * 1024,
        summary="Submit one usage event",
        status_code=HTTP_202_ACCEPTED,
        responses=INGEST_ANSWERS,
        operation_class=SingleEventOperation,
    )
    async def one(
        self,
        request: Request[Any, Any, Any],
        portal: Portal,
    ) -> Response[IngestResult]:
        """One event (the seed's UsageEvent). 202 when accepted or a duplicate; 422 with
        the reason otherwise. The body is decoded by the same per-event rules as a batch."""
        outage = short_way.told_outage(request.scope)  # the short way could not hand it on
        if outage is not None:
            raise ServiceUnavailable(outage)
        return await _run(portal, [readable_body(await request.body())], single=True)

    @post(
        "/batch",
        summary="Submit up to 1000 usage events",
        request_max_body_size=5 * 1024 * 1024,
        status_code=HTTP_202_ACCEPTED,
        responses=INGEST_ANSWERS,
        operation_class=EventBatchOperation,
    )
    async def batch(
        self,
        request: Request[Any, Any, Any],
        portal: Portal,
    ) -> Response[IngestResult]:
        """`{"events": [...]}`, at most 1000 events and 5 MiB (413 beyond). Each event is
        accepted, a duplicate, or rejected with its index and reason."""
        body = readable_body(await request.body())
        try:
            envelope = msgspec.json.decode(body, type=EventBatch)
        except (msgspec.ValidationError, msgspec.DecodeError) as exc:
            raise ClientException(f'body must be {{"events": [...]}}: {json_error_words(exc, body)}') from exc
        except RecursionError:
            raise ClientException(f"JSON nested deeper than {MAX_JSON_DEPTH} levels") from None
        limit = portal.settings.max_batch_events
        if len(envelope.events) > limit:
            raise PayloadTooLarge(f"a batch holds at most {limit} events, got {len(envelope.events)}")
        if not envelope.events:
            raise ClientException("events: the batch is empty")
        return await _run(portal, envelope.events)


def correction_out(row: EventCorrection) -> CorrectionOut:
    assert row.id is not None and row.created_at is not None
    return CorrectionOut(
        id=row.id,
        customer_id=row.customer_id,
        event_id=row.event_id,
        kind=row.kind,
        meter=row.metric_name,
        event_time=row.event_time,
        quantity_before=exact(row.quantity_before),
        quantity_after=None if row.quantity_after is None else exact(row.quantity_after),
        reason=row.reason,
        actor=row.actor,
        source=row.source,
        created_at=row.created_at,
        invoice_id=row.invoice_id,
        adjustment_id=row.adjustment_id,
    )


class EventCorrectionController(Controller):
    """Corrections of accepted events, with the ingest (or admin) key: within the lateness
    window, for open and finalized periods alike (a finalized one gets a note)."""

    path = "/v1/events/{event_id:str}"
    tags = ["ingest"]
    opt = INGEST

    @post("/cancel", status_code=200, responses=error_answers(404, 409, 422))
    async def cancel(
        self,
        event_id: FromPath[str],
        data: JSONBody[CancelIn],
        portal: Portal,
        request: Request[Any, Any, Any],
    ) -> CorrectionOut:
        """Cancel an accepted event: it stays stored but counts nowhere; live and billed
        totals drop by it once (cancelling again answers 409). 409 also while the event is
        accepted but not recorded yet (seconds)."""
        asked = CorrectionAsked(data.customer_id, event_id, "cancel", data.reason, key_actor(request), "api")
        return correction_out(
            await correct_and_apply(
                portal.sessions, portal.live, asked, now=portal.now(), settings=portal.settings
            )
        )

    @post("/amend", status_code=200, responses=error_answers(404, 409, 422))
    async def amend(
        self,
        event_id: FromPath[str],
        data: JSONBody[AmendIn],
        portal: Portal,
        request: Request[Any, Any, Any],
    ) -> CorrectionOut:
        """Give an accepted event a new quantity; totals change by the difference, once."""
        asked = CorrectionAsked(
            data.customer_id,
            event_id,
            "amend",
            data.reason,
            key_actor(request),
            "api",
            quantity=Decimal(data.quantity),
        )
        return correction_out(
            await correct_and_apply(
                portal.sessions, portal.live, asked, now=portal.now(), settings=portal.settings
            )
        )

    @get("/corrections", responses=error_answers(404))
    async def corrections(
        self,
        event_id: FromPath[str],
        customer_id: Annotated[str, QueryParameter(name="customerId", max_length=128)],
        db: Db,
        portal: Portal,
    ) -> list[CorrectionOut]:
        """The event's corrections, oldest first (an empty list for an event never corrected,
        also one accepted a moment ago and not persisted yet; 404 for an event the portal
        never accepted, or no longer holds)."""
        rows = await correction_store.corrections_of_event(db, customer_id, event_id)
        if (
            not rows
            and await correction_store.recorded_event(db, customer_id, event_id) is None
            and not await accepted_recently(portal.live, customer_id, event_id, portal.now())
        ):
            raise NotFoundException(f"no event {event_id!r} of customer {customer_id!r}")
        return [correction_out(r) for r in rows]
