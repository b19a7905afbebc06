"""Event corrections: cancel or amend an accepted event, with a reason (issue 19). Never commits.

A correction runs in one transaction: the event's ledger entry is locked (corrections of an
event run one at a time), the raw event is changed (a cancelled event is kept, counted
nowhere), its hour in `hourly_usage` changes by exactly the difference (sum, count) or is
recomputed from the hour's remaining events (max, latest, distinct values), the correction
is recorded and audited. After commit, a job applies the same change to the live view, once
per correction (`LiveStore.apply_correction`), and for a period whose invoice is finalized
the settle job issues the credit or debit note linked to the correction
(`portal.billing.adjustments.settle_late_events`). Drafts pick it up by themselves: they are
rated from `hourly_usage`.

Corrections are taken within the lateness window, as late events are: older events are past
the ledger (which is what makes a correction once-only) and are corrected with a manual note.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from redis.exceptions import RedisError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.accounts import audit
from portal.billing.repository import invoices as invoice_store
from portal.billing.repository.locks import share_customers
from portal.catalog.service import get_meter
from portal.infrastructure.broker import INGEST_QUEUE, MAINTENANCE_QUEUE
from portal.infrastructure.db import transaction
from portal.infrastructure.domain_errors import Conflict, Invalid, NotFound, NotYet
from portal.infrastructure.jobs import after_commit
from portal.infrastructure.settings import Settings
from portal.ingest.models import EventCorrection
from portal.ingest.repository import corrections as store
from portal.ingest.validation import EventError, check_quantity
from portal.live import redis_keys as keys
from portal.live.store import LiveStore, sum_limbs
from portal.usage import repository as usage_store
from portal.usage.combine import exact
from portal.webhooks.service import announce

Kind = Literal["cancel", "amend"]
Source = Literal["api", "stripe", "portal"]
log = logging.getLogger(__name__)
APPLY_ACTOR = "apply_event_correction"
SETTLE_ACTOR = "settle_late_events"


@dataclass(frozen=True, slots=True)
class CorrectionAsked:
    customer_id: str
    event_id: str
    kind: Kind
    reason: str
    actor: str
    source: Source
    quantity: Decimal | None = None  # the new quantity of an amend
    user_id: int | None = None


async def correct_event(
    session: AsyncSession, asked: CorrectionAsked, *, now: datetime, settings: Settings
) -> EventCorrection:
    """Cancel or amend the event; the correction recorded. NotFound for an event never
    accepted (or past the ledger), NotYet (a Conflict: 409 with Retry-After) for one not
    recorded yet, Conflict for one already cancelled, Invalid outside the lateness window
    or for an amend that changes nothing."""
    event_time = await store.lock_ledger_entry(session, asked.customer_id, asked.event_id)
    if event_time is None:
        raise NotFound(
            f"no event {asked.event_id!r} of customer {asked.customer_id!r} within the lateness window"
        )
    event = await store.recorded_event(session, asked.customer_id, asked.event_id, event_time)
    if event is None:
        raise NotYet(NOT_RECORDED_YET.format(event_id=asked.event_id))
    if event.cancelled_at is not None:
        raise Conflict(f"event {asked.event_id!r} was cancelled already")
    if event.event_time < now - settings.accepted_lateness:
        raise Invalid(
            f"event {asked.event_id!r} is older than the lateness window "
            f"({settings.accepted_lateness.days} days): correct its invoice with a manual note"
        )
    meter = await get_meter(session, event.metric_name)
    if meter is None:  # meters are never deleted
        raise NotFound(f"no meter {event.metric_name!r}")
    new_quantity: Decimal | None = None
    if asked.kind == "amend":
        if asked.quantity is None:
            raise Invalid("quantity: an amend needs the new quantity")
        try:
            new_quantity = check_quantity(asked.quantity)
        except EventError as exc:
            raise Invalid(str(exc)) from None
        if new_quantity == event.quantity:
            raise Invalid(f"quantity: the event's quantity is {exact(event.quantity)} already")
    # Finalizing an invoice waits for us, or we see it finalized (as the persist worker does).
    conn = await _connection(session)
    await share_customers(conn, [asked.customer_id])
    finalized = await invoice_store.finalized_periods_reaching(conn, [asked.customer_id], event.hour)
    invoice_id = next(
        (int(r["id"]) for r in finalized if r["period_start"] <= event.hour < r["period_end"]), None
    )

    key = (asked.customer_id, event.metric_name, event.hour, event.group_key)
    await usage_store.lock_hour(session, *key)
    if asked.kind == "cancel":
        await store.change_event(
            session, asked.customer_id, asked.event_id, event.event_time, cancelled_at=now
        )
    else:
        await store.change_event(
            session, asked.customer_id, asked.event_id, event.event_time, quantity=new_quantity
        )
    await _correct_hour(session, meter.aggregation, meter.unique_by, key, event, new_quantity, asked.kind)

    correction_id = await store.insert_correction(
        session,
        customer_id=asked.customer_id,
        event_id=asked.event_id,
        kind=asked.kind,
        metric_name=event.metric_name,
        event_time=event.event_time,
        hour=event.hour,
        group_key=event.group_key,
        quantity_before=event.quantity,
        quantity_after=new_quantity,
        reason=asked.reason,
        actor=asked.actor,
        user_id=asked.user_id,
        source=asked.source,
        created_at=now,
        invoice_id=invoice_id,
    )
    await audit.record(
        session,
        user_id=asked.user_id,
        actor=asked.actor,
        action=f"event.{asked.kind}",
        object_type="event",
        object_id=asked.event_id,
        customer_id=asked.customer_id,
        reason=asked.reason,
        detail={
            "correction": correction_id,
            "meter": event.metric_name,
            "quantityBefore": format(event.quantity, "f"),
            "quantityAfter": None if new_quantity is None else format(new_quantity, "f"),
            "source": asked.source,
        },
    )
    await announce(
        session,
        "event.corrected",
        {
            "correctionId": correction_id,
            "customerId": asked.customer_id,
            "eventId": asked.event_id,
            "kind": asked.kind,
            "meter": event.metric_name,
            "eventTime": event.event_time,
            "quantityBefore": event.quantity,
            "quantityAfter": new_quantity,
            "reason": asked.reason,
            "source": asked.source,
            "invoiceId": invoice_id,
        },
        customer_id=asked.customer_id,
        now=now,
    )
    after_commit(session, APPLY_ACTOR, INGEST_QUEUE, asked.customer_id, correction_id)
    if invoice_id is not None:
        after_commit(session, SETTLE_ACTOR, MAINTENANCE_QUEUE, invoice_id)
    correction = await store.correction_by_id(session, asked.customer_id, correction_id)
    assert correction is not None
    return correction


async def correct_and_apply(
    sessions: async_sessionmaker[AsyncSession],
    live: LiveStore,
    asked: CorrectionAsked,
    *,
    now: datetime,
    settings: Settings,
) -> EventCorrection:
    """Correct the event in its own transaction, then carry it into the live view at once, so
    the caller's next read of live totals has it (the job owed to the commit does it if this
    fails, and changes nothing if this succeeded)."""
    try:
        async with transaction(sessions) as session:
            correction = await correct_event(session, asked, now=now, settings=settings)
    except NotFound:
        # Not in the ledger yet may mean not persisted yet: the edge's marker says whether
        # it was accepted a moment ago (a 409 to retry, not a 404 to give up on).
        if await accepted_recently(live, asked.customer_id, asked.event_id, now):
            raise NotYet(NOT_RECORDED_YET.format(event_id=asked.event_id)) from None
        raise
    assert correction.id is not None
    try:
        async with sessions() as session:
            ops = await live_ops(session, correction)
        await live.apply_correction(asked.customer_id, correction.id, ops)
    except Exception as exc:  # the correction is made; its job repairs the live view
        log.warning("event correction %s: live update left to its job: %s", correction.id, exc)
    return correction


NOT_RECORDED_YET = "event {event_id!r} is accepted but not recorded yet: try again in a few seconds"


async def accepted_recently(live: LiveStore, customer_id: str, event_id: str, now: datetime) -> bool:
    """Whether the edge accepted this event id within its marker window (so it may not be
    persisted yet); False when Redis cannot say (the ledger's answer stands)."""
    try:
        return await live.accepted_recently(customer_id, event_id, int(now.timestamp() * 1000))
    except (RedisError, OSError):
        return False


async def _connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session (the billing repository's raw reads take one)."""
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def _correct_hour(
    session: AsyncSession,
    aggregation: str,
    unique_by: str | None,
    key: tuple[str, str, datetime, str],
    event: store.RecordedEvent,
    new_quantity: Decimal | None,
    kind: Kind,
) -> None:
    """Change the event's hour and group in `hourly_usage` (and `hourly_unique_values`), and
    its day in `daily_usage`."""
    customer_id, metric_name, hour, group_key = key
    if aggregation == "sum":
        after = Decimal(0) if kind == "cancel" else (new_quantity or Decimal(0))
        events = -1 if kind == "cancel" else 0
        await usage_store.add_to_hour(session, *key, value=after - event.quantity, events=events)
    elif aggregation == "count":
        if kind == "cancel":
            await usage_store.add_to_hour(session, *key, value=Decimal(-1), events=-1)
    elif aggregation in ("max", "latest"):
        left = await store.hour_aggregate(session, *key)
        kept = left.maximum if aggregation == "max" else left.latest_value
        await usage_store.set_hour(
            session,
            *key,
            value=kept,
            events=left.events,
            latest_at=left.latest_at if aggregation == "latest" else None,
            latest_event_id=left.latest_event_id if aggregation == "latest" else None,
        )
    elif aggregation == "unique_count" and kind == "cancel" and unique_by is not None:
        distinct = str(event.dimensions.get(unique_by, ""))
        holding = await store.groups_still_holding(
            session, customer_id, metric_name, hour, unique_by, distinct
        )
        if group_key not in holding and await usage_store.drop_unique_value(session, *key, distinct):
            await usage_store.add_to_hour(session, *key, value=Decimal(-1), events=-1)
        else:
            await usage_store.add_to_hour(session, *key, value=Decimal(0), events=-1)
    await usage_store.refresh_day(session, *key, aggregation)


async def live_ops(session: AsyncSession, correction: EventCorrection) -> list[list[Any]]:
    """The live view's counter updates for a committed correction: exact differences for sum
    and count; for max, latest and distinct values, the hour's fields set to what Postgres holds
    now (and the meter's period accumulator dropped, to be refilled by the next check)."""
    meter = await get_meter(session, correction.metric_name)
    if meter is None:
        return []
    bucket = int(correction.hour.timestamp())
    hkey = keys.hour_key(correction.customer_id, correction.metric_name, bucket)
    fields = [keys.TOTAL_FIELD] + ([keys.group_field(correction.group_key)] if correction.group_key else [])
    ops: list[list[Any]] = []
    if meter.aggregation == "sum":
        delta = (correction.quantity_after or Decimal(0)) - correction.quantity_before
        ops += [["s", hkey, fld, *sum_limbs(delta)] for fld in fields]
    elif meter.aggregation == "count":
        if correction.kind == "cancel":
            ops += [["c", hkey, fld, -1] for fld in fields]
    elif meter.aggregation in ("max", "latest"):
        rows = await usage_store.hour_values(
            session,
            customer_id=correction.customer_id,
            metric_name=correction.metric_name,
            start=correction.hour,
            end=correction.hour + timedelta(hours=1),
        )
        by_group = {r[1]: r for r in rows}
        chosen: dict[str, Any] = {}
        if rows:
            if meter.aggregation == "max":
                chosen[keys.TOTAL_FIELD] = max(rows, key=lambda r: r[2])
            else:
                chosen[keys.TOTAL_FIELD] = max(rows, key=lambda r: (r[3], r[4] or ""))
        if correction.group_key and correction.group_key in by_group:
            chosen[keys.group_field(correction.group_key)] = by_group[correction.group_key]
        for fld in fields:
            row = chosen.get(fld)
            if row is None:
                ops.append(["S", hkey, fld, False])
            elif meter.aggregation == "max":
                ops.append(["S", hkey, fld, format(row[2], "f")])
            else:
                micros = int(row[3].timestamp() * 1_000_000) if row[3] is not None else 0
                ops.append(["T", hkey, fld, format(row[2], "f"), micros])
    elif meter.aggregation == "unique_count" and correction.kind == "cancel" and meter.unique_by:
        event = await store.recorded_event(
            session, correction.customer_id, correction.event_id, correction.event_time
        )
        value = "" if event is None else str(event.dimensions.get(meter.unique_by, ""))
        holding = await store.groups_still_holding(
            session, correction.customer_id, correction.metric_name, correction.hour, meter.unique_by, value
        )
        for fld in fields:
            still = bool(holding) if fld == keys.TOTAL_FIELD else correction.group_key in holding
            if not still:
                skey = keys.unique_key(correction.customer_id, correction.metric_name, bucket, fld)
                ops.append(["r", hkey, fld, skey, [value]])
    return ops
