"""The client without a server: ids, event building, the spool, the pipeline's retry and
overflow rules against a scripted transport."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from portal.client import (
    AsyncUsageClient,
    AuthenticationError,
    BufferFull,
    DeliveryError,
    EventRejected,
    Reply,
    RetryPolicy,
    UsageClient,
    UsageClientError,
    build_event,
    new_event_id,
)
from portal.client.buffer import Pipeline
from portal.client.ids import IdGenerator, event_id_time_ms
from portal.client.spool import Spool, SpoolInUse
from portal.client.transport import parse_retry_after


class Scripted:
    """A transport answering from a script: a function of (request number, events)."""

    def __init__(self, answer: Callable[[int, list[dict[str, Any]]], Reply | Exception]) -> None:
        self.answer = answer
        self.batches: list[list[dict[str, Any]]] = []
        self.lock = threading.Lock()

    def post(self, path: str, body: bytes) -> Reply:
        events = json.loads(body)["events"]
        with self.lock:
            number = len(self.batches)
            self.batches.append(events)
        result = self.answer(number, events)
        if isinstance(result, Exception):
            raise result
        return result


def accepted(events: list[dict[str, Any]]) -> Reply:
    return Reply(202, json.dumps({"accepted": len(events), "duplicates": 0, "rejected": []}).encode())


def ok(_: int, events: list[dict[str, Any]]) -> Reply:
    return accepted(events)


def pipeline(transport: Scripted, sleeps: list[float] | None = None, **options: Any) -> Pipeline:
    return Pipeline(
        transport, sleep=(sleeps if sleeps is not None else []).append, rng=random.Random(7), **options
    )


# -- (9) ids -------------------------------------------------------------------------


def test_ids_are_unique_and_time_ordered() -> None:
    ids = [new_event_id() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 26 for i in ids)


def test_ids_order_by_their_millisecond_and_count_up_within_one() -> None:
    ids = IdGenerator()
    same = [ids.new(now_ms=4_000_000_000_000) for _ in range(100)]
    assert same == sorted(same) and len(set(same)) == 100
    later = ids.new(now_ms=4_000_000_000_001)
    assert later > same[-1]
    assert event_id_time_ms(later) == 4_000_000_000_001
    # The clock stepping back never makes a smaller id.
    assert ids.new(now_ms=3_000_000_000_000) > later


# -- events --------------------------------------------------------------------------


def test_build_event_fixes_id_and_timestamp_and_keeps_quantities_exact() -> None:
    event = build_event("acme", "api_calls", Decimal("0.100000000001"), dimensions={"region": "eu"})
    assert event["quantity"] == "0.100000000001"
    assert isinstance(event["timestamp"], int)
    assert event_id_time_ms(event["eventId"]) == event["timestamp"]
    assert build_event("a", "m", Decimal("1E+3"))["quantity"] == "1000"
    assert build_event("a", "m", 10**19)["quantity"] == str(10**19)
    with pytest.raises(ValueError):  # the server stores below 10^20 only: refused before sending
        build_event("a", "m", 10**20)
    assert build_event("a", "m", " 2.50 ")["quantity"] == "2.50"
    aware = datetime(2026, 11, 1, 12, tzinfo=UTC)
    assert build_event("a", "m", 1, timestamp=aware)["timestamp"] == "2026-11-01T12:00:00+00:00"
    given = build_event("a", "m", 1, event_id="mine", product_id="p", metadata={"source": "s"})
    assert (given["eventId"], given["productId"], given["metadata"]) == ("mine", "p", {"source": "s"})
    with pytest.raises(ValueError):
        build_event("a", "m", "lots")
    with pytest.raises(ValueError):
        build_event("a", "m", Decimal("NaN"))
    with pytest.raises(TypeError):
        build_event("a", "m", True)
    with pytest.raises(ValueError):
        build_event("a", "m", 1, timestamp=datetime(2026, 11, 1))


def test_retry_after_parsing_and_backoff_bounds() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert parse_retry_after("soon") is None
    policy = RetryPolicy(base=0.1, cap=1.0, max_attempts=5, max_elapsed=None)
    rng = random.Random(1)
    for retry in range(1, 10):
        assert 0.0 <= policy.delay(retry, None, rng) <= min(1.0, 0.1 * 2 ** (retry - 1))
    assert policy.delay(1, 7.0, rng) == 7.0
    assert policy.delay(1, 600.0, rng) == policy.max_retry_after
    assert not policy.gives_up(4, 0.0, 0.0) and policy.gives_up(5, 0.0, 0.0)
    assert RetryPolicy(max_attempts=None, max_elapsed=10).gives_up(99, 9.0, 2.0)


# -- the spool -----------------------------------------------------------------------


def test_spool_keeps_unacknowledged_events_and_skips_a_torn_line(tmp_path: Path) -> None:
    path = tmp_path / "usage.spool"
    spool = Spool(path, compact_after=3)
    events = [build_event("acme", "api_calls", i) for i in range(6)]
    spool.append(events)
    spool.acknowledge([events[0]["eventId"], events[1]["eventId"]], events[2:])
    spool.close()
    with path.open("ab") as handle:
        handle.write(b'{"e": {"eventId": "torn", "quant')  # a write cut by a crash
    reopened = Spool(path, compact_after=3)
    assert reopened.load() == events[2:]
    # Compaction rewrites the file to the live events only.
    reopened.acknowledge([events[2]["eventId"], events[3]["eventId"], events[4]["eventId"]], events[5:])
    assert len(path.read_text().splitlines()) == 1
    reopened.acknowledge([events[5]["eventId"]], [])
    assert path.read_text() == ""
    reopened.close()


def test_a_spool_has_one_client_at_a_time(tmp_path: Path) -> None:
    first = Spool(tmp_path / "usage.spool")
    with pytest.raises(SpoolInUse):
        Spool(tmp_path / "usage.spool")
    first.close()
    Spool(tmp_path / "usage.spool").close()


# -- the pipeline --------------------------------------------------------------------


def test_network_errors_and_5xx_are_retried_with_the_same_ids() -> None:
    def answer(n: int, events: list[dict[str, Any]]) -> Reply | Exception:
        if n == 0:
            return ConnectionRefusedError("refused")
        if n == 1:
            return Reply(503, b"{}", retry_after=2.0)
        if n == 2:
            return Reply(429, b"{}")
        return accepted(events)

    transport, sleeps = Scripted(answer), list[float]()
    line = pipeline(transport, sleeps, retry=RetryPolicy(base=0.5, cap=4.0))
    for i in range(5):
        line.add(build_event("acme", "api_calls", i), 0)
    line.flush()
    assert len(transport.batches) == 4
    assert all(batch == transport.batches[0] for batch in transport.batches)
    assert sleeps[1] == 2.0  # Retry-After honoured
    assert 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[2] <= 2.0
    stats = line.stats()
    assert (stats.sent, stats.retried, stats.buffered) == (5, 3, 0)


def test_a_spent_retry_budget_keeps_the_batch_for_the_next_flush() -> None:
    down = True
    transport = Scripted(lambda n, events: Reply(502, b"") if down else accepted(events))
    line = pipeline(transport, retry=RetryPolicy(max_attempts=3))
    for i in range(4):
        line.add(build_event("acme", "api_calls", i), 0)
    with pytest.raises(DeliveryError) as raised:
        line.flush()
    assert raised.value.unsent == 4 and len(transport.batches) == 3
    down = False
    line.flush()
    assert line.stats().sent == 4 and len(transport.batches) == 4
    assert transport.batches[3] == transport.batches[0]


def test_rejections_go_to_on_error_once_and_are_never_resent() -> None:
    def answer(n: int, events: list[dict[str, Any]]) -> Reply:
        bad = [
            {"index": i, "eventId": e["eventId"], "error": "metricName: unknown meter"}
            for i, e in enumerate(events)
            if e["metricName"] == "nope"
        ]
        status = 202 if len(bad) < len(events) else 422
        return Reply(
            status,
            json.dumps({"accepted": len(events) - len(bad), "duplicates": 0, "rejected": bad}).encode(),
        )

    errors: list[tuple[dict[str, Any], UsageClientError]] = []
    transport = Scripted(answer)
    line = pipeline(transport, on_error=lambda e, x: errors.append((e, x)))
    line.add(build_event("acme", "api_calls", 1), 0)
    line.add(build_event("acme", "nope", 1), 0)
    line.flush()
    line.add(build_event("acme", "nope", 2), 0)
    line.flush()  # all rejected: 422, not retried
    assert len(transport.batches) == 2
    assert [e["quantity"] for e, _ in errors] == ["1", "2"]
    assert all(isinstance(x, EventRejected) and "unknown meter" in x.error for _, x in errors)
    assert (line.stats().sent, line.stats().rejected, line.stats().retried) == (1, 2, 0)


def test_a_batch_too_large_is_split_and_a_single_event_too_large_rejected() -> None:
    def answer(n: int, events: list[dict[str, Any]]) -> Reply:
        if len(events) > 2 or any(e["customerId"] == "huge" for e in events):
            return Reply(413, b"too large")
        return accepted(events)

    errors: list[UsageClientError] = []
    line = pipeline(Scripted(answer), on_error=lambda e, x: errors.append(x))
    for i in range(7):
        line.add(build_event("huge" if i == 3 else "acme", "api_calls", i), 0)
    line.flush()
    stats = line.stats()
    assert (stats.sent, stats.rejected, stats.buffered, stats.retried) == (6, 1, 0, 0)
    assert len(errors) == 1 and isinstance(errors[0], EventRejected) and errors[0].status == 413


def test_a_refused_key_is_not_retried_and_is_raised_from_then_on() -> None:
    transport = Scripted(lambda n, events: Reply(401, b'{"detail": "unknown key"}'))
    line = pipeline(transport)
    line.add(build_event("acme", "api_calls", 1), 0)
    with pytest.raises(AuthenticationError) as raised:
        line.flush()
    assert raised.value.status == 401
    with pytest.raises(AuthenticationError):
        line.flush()
    with pytest.raises(AuthenticationError):
        line.add(build_event("acme", "api_calls", 2), 0)
    assert len(transport.batches) == 1 and line.stats().buffered == 1


# -- (8) overflow --------------------------------------------------------------------


def test_overflow_blocks_up_to_block_timeout_then_raises_buffer_full() -> None:
    up = threading.Event()
    transport = Scripted(lambda n, events: accepted(events) if up.is_set() else Reply(503, b""))
    client = UsageClient(
        "http://unused",
        "key",
        batch_size=5,
        max_buffered=10,
        flush_interval=3600,
        block_timeout=0.01,
        retry=RetryPolicy(max_attempts=1),
        transport=transport,
    )
    for i in range(10):
        client.record("acme", "api_calls", i)
    with pytest.raises(BufferFull):
        client.record("acme", "api_calls", 10)
    assert (client.stats.dropped, client.stats.buffered) == (1, 10)

    # A blocked record goes through as soon as a flush makes room.
    client.block_timeout = 30
    recorded: list[str] = []
    blocked = threading.Thread(target=lambda: recorded.append(client.record("acme", "api_calls", 11)))
    blocked.start()
    up.set()
    client.flush()
    blocked.join()
    client.close()
    assert len(recorded) == 1
    sent = [e["quantity"] for batch in transport.batches for e in batch]
    assert client.stats.sent == 11 and client.stats.dropped == 1
    assert "11" in sent and "10" not in sent


async def test_async_client_raises_buffer_full_at_once() -> None:
    transport = Scripted(lambda n, events: Reply(503, b""))
    client = AsyncUsageClient(
        "http://unused",
        "key",
        batch_size=2,
        max_buffered=2,
        flush_interval=3600,
        retry=RetryPolicy(max_attempts=1),
        transport=transport,
    )
    client.record("acme", "api_calls", 1)
    client.record("acme", "api_calls", 2)
    with pytest.raises(BufferFull):
        client.record("acme", "api_calls", 3)
    assert client.stats.dropped == 1
    with pytest.raises(DeliveryError):
        await client.close()
