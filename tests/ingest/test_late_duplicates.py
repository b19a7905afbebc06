"""Dedup markers are short-lived (issue 15): an event resent after its marker expired is
answered `accepted` and counted live at once, and the persist worker takes it out of the
live counters again when the ledger refuses it. So the live view equals the bill as soon as
the batch is persisted, whatever the resend, the race or the redelivery."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.broker import INGEST_QUEUE
from portal.infrastructure.jobs import enqueue
from portal.infrastructure.redis_client import keys_matching
from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.ingest.service import PERSIST_ACTOR, Ingestor
from portal.live import redis_keys as live_keys
from portal.live.store import LiveStore, SettledBatch, live_value
from tests.conftest import RUNNING_WORKERS, WorkerProcess, wait_until_persisted
from tests.factories import event
from tests.ingest.test_pipeline import catalog, send, usage
from tests.ingest.test_poison_batches import hand_off, wire

__all__ = ["catalog"]  # the fixture, shared with the pipeline's tests


async def forget_markers(redis: Redis, customer: str = "acme") -> None:
    """What the end of the marker window does."""
    await redis.delete(*await keys_matching(redis, live_keys.marker_pattern(customer)))


async def live_and_billed(client: AsyncTestClient[Any], key: str, metric: str) -> tuple[str, str]:
    live = await usage(client, key, metric, "live")
    billed = await usage(client, key, metric, "billed")
    return live["total"], billed["total"]


async def group_fields(redis: Redis, metric: str) -> dict[str, Decimal | None]:
    """Each field of the metric's live hours, summed over hours (the group values)."""
    out: dict[str, Decimal] = {}
    for hkey in await keys_matching(redis, f"lu:{{acme}}:{metric}:*"):
        hour = await redis.hgetall(hkey)
        for fld in hour:
            if fld.endswith(("~f", "~h")) or fld.startswith("@"):
                continue
            out[fld] = out.get(fld, Decimal(0)) + (live_value(hour, fld) or Decimal(0))
    return dict(out)


async def test_a_resend_after_the_marker_window_is_counted_live_until_persisted_then_taken_out(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    first = [
        event(quantity="1.5", dimensions={"region": "eu"}),
        event(quantity="0.000000000001", dimensions={"region": "us"}),
        event(metric="requests", quantity=1),
    ]
    assert await send(client, ingest_key, first) == {"accepted": 3, "duplicates": 0, "rejected": []}
    await wait_until_persisted(redis)
    await forget_markers(redis)
    # The edge no longer knows them: the resend is answered as new, with one new event.
    again = [*first, event(quantity=2, dimensions={"region": "eu"})]
    assert await send(client, ingest_key, again) == {"accepted": 4, "duplicates": 0, "rejected": []}
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("3.500000000001", "3.500000000001")
    assert await live_and_billed(client, admin_key, "requests") == ("1", "1")
    assert await group_fields(redis, "api_calls") == {
        "=": Decimal("3.500000000001"),
        'g|{"region":"eu"}': Decimal("3.5"),
        'g|{"region":"us"}': Decimal("0.000000000001"),
    }
    # Within the window a resend is a duplicate again, and nothing changes.
    assert await send(client, ingest_key, again) == {"accepted": 0, "duplicates": 4, "rejected": []}
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("3.500000000001", "3.500000000001")


async def test_two_requests_racing_with_one_event_count_it_once_live_and_billed(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    shared = event(quantity=5, dimensions={"region": "eu"})
    assert (await send(client, ingest_key, [shared]))["accepted"] == 1
    # The second request's check ran before the first one's apply (both saw no marker).
    real_check = LiveStore.check_and_hold

    async def check_before_the_other_applied(
        self: LiveStore, events: Any, batch_id: str, accepted_ms: int
    ) -> list[int]:
        await real_check(self, events, batch_id, accepted_ms)
        return [0] * len(events)

    monkeypatch.setattr(LiveStore, "check_and_hold", check_before_the_other_applied)
    answer = await send(client, ingest_key, [shared, event(quantity=1, dimensions={"region": "us"})])
    # Its apply finds the marker: a duplicate for the client, in the broker all the same.
    assert answer == {"accepted": 1, "duplicates": 1, "rejected": []}
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("6", "6")


def counted_live(quantity: str, event_id: str) -> AcceptedEvent:
    return AcceptedEvent.from_wire(wire(customer="acme", quantity=quantity, event_id=event_id))


async def test_a_redelivered_message_corrects_the_live_view_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    events = [counted_live("10", "evt-a"), counted_live("0.25", "evt-b")]
    rows = [e.to_wire() for e in events]
    accepted_ms = int(time.time() * 1000)
    # The first message, counted live, delivered twice: its own entries are not copies.
    await live.apply(events, "batch-1", accepted_ms)
    first = await hand_off(redis, rows, message_id="message-1", counted_live=True)
    await hand_off(redis, rows, message_id="message-1", counted_live=True)
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("10.25", "10.25")
    # The same events in another message (a resend after the marker window), counted live
    # again and delivered twice: taken out of the live view once.
    await forget_markers(redis)
    await live.apply(events, "batch-2", accepted_ms)
    assert (await live_and_billed(client, admin_key, "api_calls"))[0] == "20.5"
    for _ in range(2):
        await hand_off(redis, rows, message_id="message-2", counted_live=True)
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("10.25", "10.25")
    owners = await pg.fetch("SELECT DISTINCT message_key FROM event_ledger")
    assert len(owners) == 1 and owners[0]["message_key"] != 0
    assert first["id"] == "message-1"


class WebDiesBeforeCounting:
    """The web process's live apply, as if the process died once the batch was in the broker
    and before it counted it live: the apply fails and nothing retries it. Each batch kept
    is (batch id, accepted ms, events), for a test that brings the web's retry back later."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, batches: int = 1) -> None:
        self.left = batches
        self.kept: list[tuple[str, int, list[AcceptedEvent]]] = []
        real_apply = LiveStore.apply
        dying = self

        async def apply(self: LiveStore, events: Any, batch_id: str, accepted_ms: int) -> set[int]:
            if dying.left > 0:
                dying.left -= 1
                raise ConnectionError("the web process died here")
            return await real_apply(self, events, batch_id, accepted_ms)

        def keep(_: Ingestor, batch_id: str, accepted_ms: int, events: list[AcceptedEvent]) -> None:
            dying.kept.append((batch_id, accepted_ms, events))

        monkeypatch.setattr(LiveStore, "apply", apply)
        monkeypatch.setattr(Ingestor, "_apply_later", keep)


async def test_a_batch_the_web_never_counted_live_is_counted_once_when_resent(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    shared_worker: WorkerProcess,
    redis: Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a web node that put a batch in the broker and died before counting it live, and
    # no worker persisting yet (one that settled the batch first would set its markers, and
    # the resend below would be answered as a duplicate)
    for running in list(RUNNING_WORKERS):
        running.stop()
    WebDiesBeforeCounting(monkeypatch)
    batch = [event(quantity="2.5", dimensions={"region": "eu"}), event(metric="requests", quantity=1)]
    assert await send(client, ingest_key, batch) == {"accepted": 2, "duplicates": 0, "rejected": []}
    # When the client, having no answer, sends it again (through another node): no marker
    # says it was seen, so it is accepted and counted live, and both copies are persisted
    assert await send(client, ingest_key, batch) == {"accepted": 2, "duplicates": 0, "rejected": []}
    shared_worker.start()
    await wait_until_persisted(redis)
    # Then live equals billed: the copy the ledger kept is counted once, the other not at all
    assert await live_and_billed(client, admin_key, "api_calls") == ("2.5", "2.5")
    assert await live_and_billed(client, admin_key, "requests") == ("1", "1")


async def test_the_webs_late_apply_after_the_worker_settled_the_batch_counts_nothing(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a batch whose live apply failed (Redis blinked), persisted before the web's retry
    dying = WebDiesBeforeCounting(monkeypatch)
    batch = [
        event(quantity="4", dimensions={"region": "us"}),
        event(quantity="0.5", dimensions={"region": "eu"}),
    ]
    assert await send(client, ingest_key, batch) == {"accepted": 2, "duplicates": 0, "rejected": []}
    await wait_until_persisted(redis)
    assert await live_and_billed(client, admin_key, "api_calls") == ("4.5", "4.5")
    # When the web's retry of the apply comes after all
    [(batch_id, accepted_ms, events)] = dying.kept
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    # Then none of the batch's own events is taken for another request's (the markers it
    # finds are the ones the worker set when it settled this very batch: under load the
    # web answered "duplicate" for an event it was first to send)
    assert await live.apply(events, batch_id, accepted_ms) == set()
    # And it counts nothing (the worker counted the batch and said so), and sets the markers:
    # a resend is answered as a duplicate
    assert await live_and_billed(client, admin_key, "api_calls") == ("4.5", "4.5")
    assert await send(client, ingest_key, batch) == {"accepted": 0, "duplicates": 2, "rejected": []}


async def test_a_message_the_web_never_counted_is_counted_once_however_often_delivered(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
) -> None:
    # Given a persist message of two batches that the web never counted live
    rows = [wire(customer="acme", quantity=q) for q in ("1", "2", "3.25")]
    message = {
        "id": "message-uncounted",
        "holds": ["batch-a", "batch-b"],
        "heldEvents": [2, 1],
        "acceptedAt": int(time.time() * 1000),
        "events": rows,
        "conflicts": [],
        "countedLive": True,
    }
    await redis.zadd(live_keys.INFLIGHT_KEY, dict.fromkeys(message["holds"], message["acceptedAt"]))
    # When it is delivered three times
    for _ in range(3):
        await enqueue(PERSIST_ACTOR, INGEST_QUEUE, message)
    await wait_until_persisted(redis)
    # Then the live view counts each event once, as the bill does
    assert await live_and_billed(client, admin_key, "api_calls") == ("6.25", "6.25")


async def test_deliveries_whose_transactions_began_in_the_same_microsecond_admit_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    settings: Settings,
) -> None:
    # Given a delivery that persisted a message's events in a transaction that began in
    # the very microsecond a second delivery's transaction began (it happened in CI: the
    # second took the ledger's entries for its own and billed them again)
    from workers.persist import persist_rows

    rows = [wire(customer="acme", quantity=q) for q in ("1", "2", "3.25")]
    received = datetime.now(UTC)
    first = await asyncpg.connect(settings.database_url)
    second = await asyncpg.connect(settings.database_url)
    try:
        later = second.transaction()
        await later.start()
        began = await second.fetchval("SELECT now()")
        async with first.transaction():
            assert (await persist_rows(first, "message-same-instant", received, rows)).persisted == 3
            await first.execute("UPDATE event_ledger SET persisted_at = $1", began)
        # When the second delivery persists the same message
        outcome = await persist_rows(second, "message-same-instant", received, rows)
        await later.commit()
    finally:
        await first.close()
        await second.close()
    # Then it admits nothing and corrects nothing live (the same message's own events)
    assert (outcome.persisted, outcome.admitted, outcome.live_corrections) == (0, (), ())
    assert (await usage(client, admin_key, "api_calls", "billed"))["total"] == "6.25"


async def test_two_deliveries_settling_out_of_order_count_the_batch_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
    catalog: None,
    redis: Redis,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a batch the web never counted, delivered twice at once: one delivery's commit
    # admits the events, the other's (waiting on the first) admits nothing. The deliveries
    # are this test's own: a worker left running by an earlier test would settle the batch
    # a third time, with its events (and count them twice, whenever it got there first).
    for running in list(RUNNING_WORKERS):
        running.stop()
    dying = WebDiesBeforeCounting(monkeypatch)
    batch = [event(quantity="4", dimensions={"region": "us"}), event(quantity="0.5")]
    assert await send(client, ingest_key, batch) == {"accepted": 2, "duplicates": 0, "rejected": []}
    [(batch_id, accepted_ms, events)] = dying.kept
    live = LiveStore(
        redis, accepted_lateness=settings.accepted_lateness, marker_window=settings.dedup_marker_window
    )
    # When the delivery that admitted nothing settles first, then the one that admitted both
    await live.settle("message-raced", [SettledBatch("acme", batch_id, (), ())], accepted_ms)
    await live.settle("message-raced", [SettledBatch("acme", batch_id, tuple(events), ())], accepted_ms)
    await live.settle("message-raced", [SettledBatch("acme", batch_id, (), ())], accepted_ms)
    # Then the live view counts each event once, and a resend is a duplicate
    assert (await usage(client, admin_key, "api_calls", "live"))["total"] == "4.5"
    assert await send(client, ingest_key, batch) == {"accepted": 0, "duplicates": 2, "rejected": []}
