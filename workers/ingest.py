"""The persist actor: one message per accepted batch."""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, NoReturn

import asyncpg
import dramatiq
import msgspec
import structlog
from dramatiq.middleware import CurrentMessage

from portal.infrastructure import metrics
from portal.infrastructure.broker import INGEST_QUEUE
from portal.infrastructure.settings import get_settings
from portal.ingest.corrections import APPLY_ACTOR as APPLY_CORRECTION_ACTOR
from portal.ingest.corrections import live_ops
from portal.ingest.events import AcceptedEvent
from portal.ingest.failed_events import decode_row, key_safe, received_at_of
from portal.ingest.handoff import holds
from portal.ingest.partitions import forget_known
from portal.ingest.repository import corrections as correction_store
from portal.live.store import SettledBatch
from portal.operations.status import record_persist_failure
from workers import log_filters
from workers.alerting import request_evaluation
from workers.billing import request_draft_refresh, settle_late_events_actor
from workers.context import WorkerContext, get_context
from workers.outages import STORE_UNAVAILABLE
from workers.persist import PersistOutcome, error_summary, persist_batch, persist_split

log = logging.getLogger(__name__)
_settings = get_settings()

# Errors that mean "a store is unreachable", not "this batch is bad". Waiting them out is
# always right (the broker holds the batch), so they never use up the batch's retries.
UNAVAILABLE = STORE_UNAVAILABLE
# Errors that mean "these events cannot be stored as they are": Postgres refusing a value
# (class 22 data exceptions: NUL bytes, numbers out of range, bad text; class 23: a
# constraint), a value our code cannot encode or decode (UnicodeEncodeError is a
# ValueError), a wire row of the wrong shape. Retrying cannot help, so the batch is split
# at once. Checked after UNAVAILABLE.
DATA_ERRORS = (
    asyncpg.exceptions.DataError,
    asyncpg.exceptions.IntegrityConstraintViolationError,
    ValueError,
    TypeError,
    LookupError,
    ArithmeticError,
    msgspec.MsgspecError,
)
FAILURES_OPTION = "persist_failures"


def retry_when(retries: int, exception: BaseException) -> bool:
    # The actor splits a batch that fails for a reason of its data, and sets aside what
    # keeps failing for another reason; whatever it still raises is retried with capped
    # backoff until it succeeds (an outage ends; recording a failure cannot fail on data).
    return True


def is_data_error(exc: BaseException) -> bool:
    return not isinstance(exc, UNAVAILABLE) and isinstance(exc, DATA_ERRORS)


def _count_failure() -> int:
    """Failures of this batch that were not outages, kept in the message across retries."""
    message = CurrentMessage.get_current_message()
    if message is None:
        return _settings.persist_max_retries + 1
    failures = int(message.options.get(FAILURES_OPTION, 0)) + 1
    message.options[FAILURES_OPTION] = failures
    return failures


def _event_count(batch: dict[str, Any]) -> int:
    events = batch.get("events")
    return len(events) if isinstance(events, list) else 0


async def _note(ctx: WorkerContext, **failure: Any) -> None:
    """Record a persist failure for /readyz and `usage-portal status` (best effort: when
    Redis is the store that is down, readyz names Redis already)."""
    metrics.PERSIST_FAILURES.labels(failure["kind"]).inc()
    try:
        await record_persist_failure(ctx.redis, **failure)
    except Exception as exc:
        log.warning("could not record the persist failure: %s", type(exc).__name__)


def _where(exc: BaseException) -> str:
    """Where our code raised `exc` (" at workers/persist.py:123", its innermost frame):
    a traceback's worth of debugging help in a few characters."""
    found = ""
    tb = exc.__traceback__
    while tb is not None:
        path = tb.tb_frame.f_code.co_filename
        for root in ("/workers/", "/portal/"):
            if root in path:
                found = f" at {root[1:]}{path.rsplit(root, 1)[1]}:{tb.tb_lineno}"
        tb = tb.tb_next
    return found


async def _retry(ctx: WorkerContext, batch: dict[str, Any], message_id: str, exc: BaseException) -> NoReturn:
    """Have Dramatiq deliver the message again after its backoff. Raised as `Retry`, which
    Dramatiq does not log: its own line would print the whole message."""
    kind = "outage" if isinstance(exc, UNAVAILABLE) else "retry"
    reason = error_summary(exc)
    log.warning(
        "persist of message %s (%d event(s)) failed, retrying (%s): %s%s",
        message_id,
        _event_count(batch),
        kind,
        reason,
        _where(exc),
    )
    await _note(ctx, kind=kind, message_id=message_id, events=_event_count(batch), reason=reason)
    raise dramatiq.Retry(f"{kind}: {reason}") from None


@dramatiq.actor(
    actor_name="persist_events",
    queue_name=INGEST_QUEUE,
    retry_when=retry_when,
    min_backoff=_settings.persist_min_backoff_ms,
    max_backoff=_settings.persist_max_backoff_ms,
    time_limit=120_000,
)
async def persist_events(batch: dict[str, Any]) -> None:
    """Write an accepted batch to Postgres, exactly once, however often it is delivered.

    While Postgres or Redis is unreachable the batch waits in the broker. A batch that
    fails for a reason of its data (Postgres refuses a value) is split at once: every
    event that can be persisted is, and the others go to `failed_events` with the reason.
    One that fails for another reason is retried `persist_max_retries` times, then split
    the same way. Either way the message's holds on `completeThrough` are released.
    """
    if not isinstance(batch, dict):  # nothing in it could be kept or released
        log.error("persist message of type %s dropped: not a batch", type(batch).__name__)
        return
    ctx = await get_context()
    message_id = key_safe(batch.get("id"))[:100]
    structlog.contextvars.bind_contextvars(message_id=message_id)
    try:
        async with ctx.transaction() as conn:
            outcome = await persist_batch(conn, batch)
    except Exception as exc:
        forget_known()
        outcome = await _recover(ctx, batch, message_id, exc)
    else:
        log.debug(
            "message %s: %d persisted, %d duplicate(s), %d conflict(s)",
            message_id,
            outcome.persisted,
            outcome.duplicates,
            outcome.conflicts,
        )
    metrics.PERSISTED_EVENTS.inc(outcome.persisted)
    metrics.PERSIST_LAG.observe(max(time.time() - received_at_of(batch).timestamp(), 0.0))
    for invoice_id in outcome.late_invoices:
        # After the commit: the adjustment job must see the late events it settles.
        # If this process dies first, the scheduler's late-event sweep settles them.
        settle_late_events_actor.send(invoice_id)
    try:
        await _after_commit(ctx, batch, message_id, outcome)
    except UNAVAILABLE as exc:
        # Redis down after the commit: delivered again later, one warning line, no traceback.
        # The redelivery admits nothing anew; it settles and releases what this one could not.
        await _retry(ctx, batch, message_id, exc)


async def _after_commit(
    ctx: WorkerContext, batch: dict[str, Any], message_id: str, outcome: PersistOutcome
) -> None:
    """The live view's part of a committed message: alerts asked to evaluate, ended drafts
    the events reached asked to be re-rated (the hourly run does it if this is lost), the
    batches settled, the holds on `completeThrough` released."""
    if outcome.alert_customers:
        await request_evaluation(ctx, list(outcome.alert_customers))
    if outcome.stale_drafts:
        await request_draft_refresh(ctx, list(outcome.stale_drafts))
    if batch.get("countedLive") is True:
        # After the commit, before the holds go: once the batch counts as persisted, the
        # live view counts each of its events once. If Redis fails here the message is
        # delivered again; the ledger names the same copies again, and admits nothing anew.
        settled = settled_batches(batch, outcome)
        if settled is not None:
            await ctx.live.settle(message_id, settled, _accepted_ms(batch))
        elif outcome.live_corrections:  # a message from before `heldEvents`
            await ctx.live.correct(message_id, outcome.live_corrections)
    try:
        held = holds(batch)
    except (KeyError, TypeError):  # a message without id or holds holds nothing
        held = []
    await ctx.live.release(*held)


def _accepted_ms(batch: dict[str, Any]) -> int:
    """When the message's first batch was accepted (epoch ms): the window its markers go in."""
    accepted = batch.get("acceptedAt")
    return accepted if isinstance(accepted, int) else int(time.time() * 1000)


def settled_batches(batch: dict[str, Any], outcome: PersistOutcome) -> list[SettledBatch] | None:
    """Each customer's part of each accepted batch in the message, with the events this
    commit admitted and the copies the ledger refused (pure). None for a message that does
    not say which events each batch brought.

    Rows are matched by (customer, event id): the first row of an event the commit admitted
    is admitted; the last n rows of an event with n refused copies are the copies (a repeat
    within the message follows the row the ledger kept)."""
    sizes, hold_ids, rows = batch.get("heldEvents"), batch.get("holds"), batch.get("events")
    if not (isinstance(sizes, list) and isinstance(hold_ids, list) and isinstance(rows, list)):
        return None
    if len(sizes) != len(hold_ids) or sum(sizes) != len(rows):
        return None
    decoded = [decode_row(row) for row in rows]
    keys = [(str(row[0]), str(row[1])) for row in decoded]
    admitted = {(e.customer_id, e.event_id): e for e in outcome.admitted}
    copies = Counter((e.customer_id, e.event_id) for e in outcome.live_corrections)
    occurrences = Counter(keys)
    seen: Counter[tuple[str, str]] = Counter()
    parts: dict[tuple[str, str], tuple[list[AcceptedEvent], list[AcceptedEvent]]] = {}
    position = 0
    for hold, size in zip(hold_ids, sizes, strict=True):
        for index in range(position, position + int(size)):
            key = keys[index]
            nth = seen[key]
            seen[key] += 1
            admitted_here, refused_here = parts.setdefault((key[0], str(hold)), ([], []))
            if nth == 0 and key in admitted:
                admitted_here.append(admitted[key])
            elif nth >= occurrences[key] - copies[key]:
                refused_here.append(AcceptedEvent.from_wire(decoded[index]))
        position += int(size)
    return [
        SettledBatch(customer_id, batch_id, tuple(admitted_here), tuple(refused_here))
        for (customer_id, batch_id), (admitted_here, refused_here) in parts.items()
    ]


async def _recover(
    ctx: WorkerContext, batch: dict[str, Any], message_id: str, exc: Exception
) -> PersistOutcome:
    """After the whole batch failed: retry it later, or persist it in parts now."""
    if isinstance(exc, UNAVAILABLE):
        await _retry(ctx, batch, message_id, exc)
    exhausted = False
    if not is_data_error(exc):
        if _count_failure() <= _settings.persist_max_retries:
            await _retry(ctx, batch, message_id, exc)
        exhausted = True  # an error of its own that retries did not cure: set it aside

    def may_set_aside(error: Exception) -> bool:
        return not isinstance(error, UNAVAILABLE) and (exhausted or is_data_error(error))

    try:
        split = await persist_split(ctx.transaction, batch, error=exc, may_set_aside=may_set_aside)
    except Exception as again:  # an outage, or a part failing for another reason: later
        forget_known()
        if not isinstance(again, UNAVAILABLE):
            _count_failure()
        await _retry(ctx, batch, message_id, again)
    if split.set_aside:
        log.error(
            "message %s: set aside %d of %d event(s) in failed_events, persisted %d (%s)",
            message_id,
            split.set_aside,
            split.events,
            split.persisted.persisted,
            split.reason,
        )
        metrics.FAILED_EVENTS.inc(split.set_aside)
        await _note(
            ctx,
            kind="set_aside",
            message_id=message_id,
            events=split.events,
            set_aside=split.set_aside,
            reason=split.reason,
        )
    else:  # in parts, all went through (or what failed was set aside by an earlier delivery)
        log.warning(
            "message %s: persisted in parts after %s; %d of %d event(s) new, nothing (more) to set aside",
            message_id,
            error_summary(exc),
            split.persisted.persisted,
            split.events,
        )
    return split.persisted


# Dramatiq would log a failing persist message with its whole batch (see the module).
log_filters.install()


@dramatiq.actor(
    actor_name=APPLY_CORRECTION_ACTOR,
    queue_name=INGEST_QUEUE,
    max_retries=20,
    min_backoff=500,
    max_backoff=30_000,
    time_limit=60_000,
)
async def apply_event_correction(customer_id: str, correction_id: int) -> None:
    """Carry a committed event correction into the live view, once (its key in Redis makes a
    second run change nothing), and have the customer's alerts and crossings evaluated again."""
    ctx = await get_context()
    async with ctx.sessions() as session:
        correction = await correction_store.correction_by_id(session, customer_id, correction_id)
        if correction is None:  # rolled back, or another database
            return
        ops = await live_ops(session, correction)
    await ctx.live.apply_correction(customer_id, correction_id, ops)
    await request_evaluation(ctx, [customer_id])
