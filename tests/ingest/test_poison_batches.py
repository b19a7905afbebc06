"""A persist message carrying events Postgres refuses (issue 12): the good events of every
customer are billed exactly, only the bad ones are set aside with a reason, the message's
holds on `completeThrough` are released, it is not retried forever, and readyz and
`usage-portal status` say it happened.

The edge refuses such text, so these tests put the message on the broker themselves, the
way the web's hand-off does (portal/ingest/handoff.py), with holds in `live:inflight`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.broker import INGEST_QUEUE
from portal.infrastructure.jobs import enqueue
from portal.infrastructure.settings import Settings
from portal.ingest.events import AcceptedEvent
from portal.ingest.service import PERSIST_ACTOR
from portal.live import redis_keys as live_keys
from portal.operations.status import gather_status, render
from tests.conftest import WorkerProcess, wait_for, wait_until_persisted
from tests.factories import make_customer, make_meter
from tests.ingest.test_pipeline import usage


@pytest.fixture
async def catalog(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_meter(client, admin_key, metric="api_calls", aggregation="sum", group_by=["region"])


def wire(
    *,
    customer: str,
    quantity: str,
    event_id: str | None = None,
    region: str = "eu",
    product_id: str = "",
    metadata: dict[str, str] | None = None,
) -> list[Any]:
    """An accepted event's wire row as the web builds it (UTC customers, meter api_calls:
    sum grouped by region)."""
    now_us = int(time.time() * 1_000_000)
    return AcceptedEvent(
        customer_id=customer,
        event_id=event_id or uuid.uuid4().hex,
        metric_name="api_calls",
        product_id=product_id,
        quantity=Decimal(quantity),
        event_time_us=now_us,
        dimensions={"region": region},
        metadata=metadata or {"source": "api", "version": "1"},
        fingerprint=uuid.uuid4().hex,
        aggregation="sum",
        bucket=now_us // 3_600_000_000 * 3600,
        group_key=msgspec.json.encode({"region": region}).decode(),
        unique_value=None,
    ).to_wire()


async def hand_off(
    redis: Redis,
    events: list[list[Any]],
    *,
    holds: int = 2,
    message_id: str | None = None,
    counted_live: bool = False,
) -> dict[str, Any]:
    """Queue one coalesced persist message holding `completeThrough` like the web does
    (saying, when `counted_live`, that its events were counted live)."""
    accepted_ms = int(time.time() * 1000)
    hold_ids = [uuid.uuid4().hex for _ in range(holds)]
    await redis.zadd(live_keys.INFLIGHT_KEY, dict.fromkeys(hold_ids, accepted_ms))
    message = {
        "id": message_id or uuid.uuid4().hex,
        "holds": hold_ids,
        "acceptedAt": accepted_ms,
        "events": events,
        "conflicts": [],
    }
    if counted_live:
        message["countedLive"] = True
    await enqueue(PERSIST_ACTOR, INGEST_QUEUE, message)
    return message


async def billed(client: AsyncTestClient[Any], key: str, customer: str) -> str:
    return str((await usage(client, key, "api_calls", "billed", customer=customer))["total"])


async def failed_rows(pg: asyncpg.Connection) -> list[asyncpg.Record]:
    return list(
        await pg.fetch(
            "SELECT message_id, customer_id, event_id, event, reason FROM failed_events ORDER BY id"
        )
    )


def stored_wire(event: str) -> list[Any]:
    """The exact wire row a failed_events row keeps (what replay queues again)."""
    kept = json.loads(event)["wire"]
    return list(json.loads(kept["escaped"])) if isinstance(kept, dict) else list(kept)


# Events Postgres refuses (or would store as nonsense), by the field at fault.
BAD: dict[str, Callable[[], list[Any]]] = {
    "eventId": lambda: wire(customer="acme", quantity="100", event_id="evt\x00nul"),
    "productId": lambda: wire(customer="globex", quantity="200", product_id="pro\x00duct"),
    "dimensions.region": lambda: wire(customer="acme", quantity="300", region="e\x00u"),
    "metadata.source": lambda: wire(
        customer="globex", quantity="400", metadata={"source": "api\x00", "version": "1"}
    ),
    "quantity": lambda: wire(customer="acme", quantity="1" + "0" * 24),  # beyond numeric(32, 12)
    "quantity (NaN)": lambda: wire(customer="globex", quantity="NaN"),  # would poison a sum
}


async def test_bad_events_are_set_aside_and_everyone_elses_are_billed_exactly(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    good = [wire(customer="acme", quantity=q) for q in ("1", "2", "3.5")] + [
        wire(customer="globex", quantity=q) for q in ("10", "20.25")
    ]
    bad = {field: make() for field, make in BAD.items()}
    rows = [
        good[0],
        bad["eventId"],
        good[3],
        bad["productId"],
        good[1],
        bad["dimensions.region"],
        bad["metadata.source"],
        good[2],
        bad["quantity"],
        bad["quantity (NaN)"],
        good[4],
    ]

    message = await hand_off(redis, rows)

    await wait_until_persisted(redis)  # every hold released: completeThrough moves on
    assert await billed(client, admin_key, "acme") == "6.5"
    assert await billed(client, admin_key, "globex") == "30.25"
    assert await pg.fetchval("SELECT count(*) FROM event_ledger") == len(good)
    kept = await failed_rows(pg)
    assert len(kept) == len(bad)
    for field, row in bad.items():
        [found] = [r for r in kept if stored_wire(r["event"]) == row]  # exactly, for replay
        assert found["message_id"] == message["id"]
        assert found["reason"].startswith(f"{field.split()[0]}: "), found["reason"]
        assert "\x00" not in found["customer_id"] + found["event_id"]


async def test_a_poison_message_is_not_retried_and_logs_no_events(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    log_start = len(worker.output())
    good = [wire(customer="globex", quantity="5") for _ in range(50)]
    message = await hand_off(redis, [*good, BAD["eventId"]()])
    await wait_until_persisted(redis)
    await asyncio.sleep(1.5)  # several test backoffs (100-300 ms): a retry would show

    broker = Redis.from_url(settings.broker_url or "")
    try:
        assert await broker.hlen(f"dramatiq:{INGEST_QUEUE}.msgs") == 0  # acknowledged
        assert await broker.hlen(f"dramatiq:{INGEST_QUEUE}.DQ.msgs") == 0  # no retry waiting
        assert await broker.hlen(f"dramatiq:{INGEST_QUEUE}.XQ.msgs") == 0  # not dead-lettered
    finally:
        await broker.aclose()
    lines = [line for line in worker.output()[log_start:].splitlines() if message["id"] in line]
    assert len(lines) == 1, lines  # one line says what was set aside, once
    assert "1 of 51 event(s)" in lines[0]
    assert all(row[1] not in lines[0] for row in good)  # ids and counts, never events
    assert max(len(line) for line in worker.output()[log_start:].splitlines()) < 2000
    assert await billed(client, admin_key, "globex") == "250"


async def test_readyz_and_status_report_the_set_aside_persist(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    settings: Settings,
) -> None:
    assert (await client.get("/readyz")).json() == {"status": "ready"}
    message = await hand_off(redis, [wire(customer="acme", quantity="1"), BAD["productId"]()])
    await wait_until_persisted(redis)

    ready = await client.get("/readyz")
    # Still serving (the broker holds batches whatever the worker does), but not healthy.
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert ready.json()["persist"].startswith("1 persist failure(s) in the last 300 s; last: ")
    assert message["id"] in ready.json()["persist"]
    status = await gather_status(settings)
    assert status.persist_failures == 1
    assert status.last_persist_failure is not None
    assert status.last_persist_failure.kind == "set_aside"
    assert status.last_persist_failure.message_id == message["id"]
    text = render(status)
    # Not an operator's emergency (no exit 1), but not "all well" either: what /readyz says
    assert text.splitlines()[0].endswith(": degraded: 1 persist failure(s) in the last 5 min")
    assert "persist         1 failure(s) in the last 300 s" in text
    assert "set aside 1 of 2 event(s)" in text
    assert "productId: " in text


async def test_a_message_of_bad_events_only_is_set_aside_whole(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    bad = [make() for make in BAD.values()]
    await hand_off(redis, bad, holds=3)
    await wait_until_persisted(redis)
    assert [await billed(client, admin_key, c) for c in ("acme", "globex")] == ["0", "0"]
    assert await pg.fetchval("SELECT count(*) FROM event_ledger") == 0
    kept = await failed_rows(pg)
    assert sorted(map(tuple, (stored_wire(r["event"]) for r in kept))) == sorted(map(tuple, bad))


async def test_a_redelivered_poison_message_counts_nothing_twice(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given a poison message whose good part committed (as if the worker died after
    # that commit, before the acknowledgement)...
    good = [wire(customer="acme", quantity="7"), wire(customer="globex", quantity="8")]
    rows = [good[0], BAD["eventId"](), good[1], BAD["dimensions.region"]()]
    first = await hand_off(redis, rows)
    await wait_until_persisted(redis)
    # ...when the broker delivers the same message again,
    await hand_off(redis, rows, message_id=first["id"])
    await wait_until_persisted(redis)
    # then nothing is billed or set aside twice.
    assert [await billed(client, admin_key, c) for c in ("acme", "globex")] == ["7", "8"]
    assert await pg.fetchval("SELECT sum(event_count) FROM hourly_usage") == 2
    assert len(await failed_rows(pg)) == 2


async def test_the_same_event_twice_in_one_message_counts_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Two concurrent requests carrying one event both pass the live check and can be
    # coalesced into one message.
    twin = wire(customer="acme", quantity="4")
    await hand_off(redis, [twin, wire(customer="acme", quantity="1"), twin])
    await wait_until_persisted(redis)
    assert await billed(client, admin_key, "acme") == "5"
    assert await pg.fetchval("SELECT count(*) FROM usage_events") == 2


REFUSE_IDS = """
    CREATE FUNCTION refuse_ids() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.event_id LIKE 'refused-%' THEN
            RAISE EXCEPTION 'event % refused', NEW.event_id USING ERRCODE = '{code}';
        END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_ids BEFORE INSERT ON event_ledger FOR EACH ROW EXECUTE FUNCTION refuse_ids();
"""
DROP_REFUSE_IDS = "DROP TRIGGER refuse_ids ON event_ledger; DROP FUNCTION refuse_ids()"


async def test_a_data_error_the_worker_cannot_foresee_is_isolated_by_bisection(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given Postgres refuses two events for a data reason no screening knows (22023).
    await pg.execute(REFUSE_IDS.replace("{code}", "22023"))
    try:
        log_start = len(worker.output())
        good = [wire(customer="acme" if i % 3 else "globex", quantity="1") for i in range(40)]
        rows = [
            *good[:7],
            wire(customer="acme", quantity="9", event_id="refused-1"),
            *good[7:29],
            wire(customer="globex", quantity="9", event_id="refused-2"),
            *good[29:],
        ]
        message = await hand_off(redis, rows)
        await wait_until_persisted(redis)
    finally:
        await pg.execute(DROP_REFUSE_IDS)
    assert [await billed(client, admin_key, c) for c in ("acme", "globex")] == ["26", "14"]
    kept = await failed_rows(pg)
    assert sorted(r["event_id"] for r in kept) == ["refused-1", "refused-2"]
    assert all(r["reason"].startswith("InvalidParameterValueError: event refused-") for r in kept)
    # A data error is not retried: the message was split at once.
    lines = [line for line in worker.output()[log_start:].splitlines() if message["id"] in line]
    assert [("retrying" in line, "set aside 2 of 42 event(s)" in line) for line in lines] == [(False, True)]


async def test_an_unknown_error_is_retried_then_only_its_events_are_set_aside(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given Postgres refuses one event with an error that says nothing about data (P0001).
    await pg.execute(REFUSE_IDS.replace("{code}", "P0001"))
    try:
        log_start = len(worker.output())
        rows = [
            wire(customer="acme", quantity="2"),
            wire(customer="globex", quantity="3", event_id="refused-1"),
            wire(customer="globex", quantity="4"),
        ]
        message = await hand_off(redis, rows)
        await wait_until_persisted(redis)
    finally:
        await pg.execute(DROP_REFUSE_IDS)
    assert [await billed(client, admin_key, c) for c in ("acme", "globex")] == ["2", "4"]
    [kept] = await failed_rows(pg)
    assert (kept["event_id"], kept["reason"]) == ("refused-1", "RaiseError: event refused-1 refused")
    # Retried PORTAL_PERSIST_MAX_RETRIES (2) times, one short line each, then split.
    lines = [line for line in worker.output()[log_start:].splitlines() if message["id"] in line]
    assert ["retrying (retry)" in line for line in lines] == [True, True, False]
    assert "set aside 1 of 3 event(s)" in lines[-1]


async def test_a_set_aside_event_replays_exactly_and_good_ones_stay_counted_once(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    from portal.operations.operator_tasks import replay_failed

    bad = BAD["metadata.source"]()
    first = await hand_off(redis, [wire(customer="globex", quantity="3"), bad])
    await wait_until_persisted(redis)
    response = await client.get("/v1/failed-events", headers={"Authorization": f"Bearer {admin_key}"})
    assert response.status_code == 200
    [shown] = response.json()
    assert (shown["customerId"], shown["event"]["metadata"]) == (
        "globex",
        {"source": "api\\u0000", "version": "1"},
    )

    assert await replay_failed(settings, ids=None) == 1
    await wait_until_persisted(redis)
    # The replayed event is the same event (byte for byte) and fails again, by itself.
    kept = await failed_rows(pg)
    assert [r["message_id"] == first["id"] for r in kept] == [True, False]
    assert stored_wire(kept[1]["event"]) == bad
    assert await billed(client, admin_key, "globex") == "3"


async def test_a_lone_surrogate_no_broker_can_carry_is_set_aside_too(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    pg: asyncpg.Connection,
    settings: Settings,
) -> None:
    # The broker's JSON refuses lone surrogates both ways, so no message carries one; the
    # split is run in this process to show it would still cope.
    from collections.abc import AsyncIterator
    from contextlib import asynccontextmanager

    from workers.persist import persist_split

    pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2)

    @asynccontextmanager
    async def transaction() -> AsyncIterator[Any]:
        async with pool.acquire() as conn, conn.transaction():
            yield conn

    odd = wire(customer="acme", quantity="5", event_id="lone-\ud800")
    batch = {
        "id": "m-1",
        "holds": ["h"],
        "acceptedAt": int(time.time() * 1000),
        "events": [wire(customer="acme", quantity="2"), odd],
        "conflicts": [odd],
    }
    try:
        split = await persist_split(
            transaction,
            batch,
            error=UnicodeEncodeError("utf-8", "", 0, 1, "x"),
            may_set_aside=lambda exc: True,
        )
    finally:
        await pool.close()
    assert (split.events, split.set_aside, split.persisted.persisted) == (2, 1, 1)
    assert split.reason == "eventId: contains U+D800, which Postgres cannot store"
    [kept] = await failed_rows(pg)
    assert kept["event_id"].startswith("lone-\\ud800 [")
    assert stored_wire(kept["event"]) == odd
    assert await pg.fetchval("SELECT event_id FROM event_conflicts") == kept["event_id"]
    assert await billed(client, admin_key, "acme") == "2"


async def test_a_worker_killed_mid_split_loses_and_doubles_nothing(
    client: AsyncTestClient[Any],
    admin_key: str,
    catalog: None,
    own_worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given Postgres refuses one of acme's events (a data error only Postgres knows), and
    # one of globex's events waits for a lock this test holds...
    await pg.execute(
        REFUSE_IDS.replace("{code}", "22023")
        + """
        CREATE FUNCTION wait_for_test() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.event_id LIKE 'slow-%' THEN PERFORM pg_advisory_xact_lock(4242); END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER wait_for_test BEFORE INSERT ON event_ledger
            FOR EACH ROW EXECUTE FUNCTION wait_for_test();
    """
    )
    await pg.execute("SELECT pg_advisory_lock(4242)")
    try:
        acme = [wire(customer="acme", quantity="1") for _ in range(4)]
        globex = [wire(customer="globex", quantity="10") for _ in range(4)]
        slow = wire(customer="globex", quantity="100", event_id="slow-1")
        # ...the split commits acme's good events in parts (the first half, bisected),
        # then blocks in the second half (globex's).
        rows = [
            *acme[:2],
            wire(customer="acme", quantity="9", event_id="refused-1"),
            *acme[2:],
            *globex,
            slow,
        ]
        await hand_off(redis, rows)

        async def split_blocked() -> bool:
            return bool(
                await pg.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO event_ledger%'"
                )
            )

        await wait_for(split_blocked, what="the split to block in its second half")
        assert await pg.fetchval("SELECT count(*) FROM event_ledger") == 4  # acme's, committed
        # When the worker dies there and another takes the message up again,
        own_worker.kill()
    finally:
        await pg.execute("SELECT pg_advisory_unlock(4242)")
    try:
        own_worker.start()
        await wait_until_persisted(redis, timeout=60)
    finally:
        await pg.execute(
            DROP_REFUSE_IDS + "; DROP TRIGGER wait_for_test ON event_ledger; DROP FUNCTION wait_for_test()"
        )
    # then every good event is counted once, and only the refused one is set aside.
    assert [await billed(client, admin_key, c) for c in ("acme", "globex")] == ["4", "140"]
    assert await pg.fetchval("SELECT sum(event_count) FROM hourly_usage") == 9
    assert await pg.fetchval("SELECT count(*) FROM usage_events") == 9
    assert [r["event_id"] for r in await failed_rows(pg)] == ["refused-1"]
