"""Telling unstorable events apart and keeping them safely (portal/ingest/failed_events.py),
and keeping whole batches out of the worker's log lines: pure, no servers."""

from __future__ import annotations

import io
import json
import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
import dramatiq
import pytest

from portal.ingest.failed_events import (
    decode_row,
    failed_event_record,
    failed_key,
    kept_wire,
    key_safe,
    text_safe,
    unstorable,
)
from workers import log_filters
from workers.persist import error_summary

GOOD = [
    "acme",
    "evt-1",
    "api_calls",
    "",
    "12.5",
    1_764_000_000_000_000,
    {"region": "eu"},
    {"source": "api", "version": "1"},
    "0a1b",
    "sum",
    1_764_000_000,
    '{"region":"eu"}',
    None,
]


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [*value, *(t for v in value.values() for t in _strings(v))]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


def _with(index: int, value: Any) -> list[Any]:
    row = list(GOOD)
    row[index] = value
    return row


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (GOOD, None),
        (_with(1, "evt\x00"), "eventId: contains U+0000, which Postgres cannot store"),
        (_with(0, "ac\ud800me"), "customerId: contains U+D800, which Postgres cannot store"),
        (_with(3, "p\x00"), "productId: contains U+0000, which Postgres cannot store"),
        (_with(6, {"region": "e\x00u"}), "dimensions.region: contains U+0000, which Postgres cannot store"),
        (_with(6, {"re\x00gion": "eu"}), "dimensions: a key is not storable text"),
        (_with(7, {"source": "a\udfff"}), "metadata.source: contains U+DFFF, which Postgres cannot store"),
        (_with(6, ["eu"]), "dimensions: not an object"),
        (_with(12, "u\x00"), "uniqueValue: contains U+0000, which Postgres cannot store"),
        (_with(4, "1" + "0" * 20), "quantity: beyond numeric(32, 12)"),
        (_with(4, "99999999999999999999.5"), None),
        (_with(4, "1e1000000000"), "quantity: beyond numeric(32, 12)"),  # judged without expanding
        (_with(4, "NaN"), "quantity: not a finite number"),
        (_with(4, "Infinity"), "quantity: not a finite number"),
        (_with(4, "twelve"), "quantity: not a number"),
        (_with(4, "9" * 100), "quantity: beyond numeric(32, 12)"),
        (_with(5, -1), "timestamp: out of range"),
        (_with(5, 10**20), "timestamp: out of range"),
        (_with(5, "soon"), "timestamp: out of range"),
        (_with(8, "not hex"), "fingerprint: not hex"),
        (_with(9, "median"), "aggregation: not a known aggregation"),
        (GOOD[:12], "event: not an accepted event's wire row"),
        ({"escaped": "[]"}, "event: not an accepted event's wire row"),
    ],
)
def test_unstorable_names_the_field_and_the_rule(row: Any, reason: str | None) -> None:
    assert unstorable(row) == reason


def test_text_safe_escapes_only_what_postgres_refuses() -> None:
    assert text_safe("plain ünïcode \t") == "plain ünïcode \t"
    assert text_safe("a\x00b\ud800c") == "a\\u0000b\\ud800c"


def test_ids_that_differ_only_in_what_was_escaped_stay_apart() -> None:
    assert key_safe("evt-1") == "evt-1"
    nul, literal = key_safe("evt\x00"), key_safe("evt\\u0000")
    assert nul.startswith("evt\\u0000 [") and literal == "evt\\u0000"
    assert key_safe("a\x00") != key_safe("a\ud800")
    assert (key_safe(None), key_safe(17), key_safe(["x"])) == ("", "17", "<list>")


@pytest.mark.parametrize(
    "row",
    [
        GOOD,
        _with(1, "evt\x00nul"),
        _with(6, {"region": "\ud800"}),
        _with(4, float("nan")),
        ["short", 1],
        "not even a list",
    ],
)
def test_a_failed_event_record_is_storable_and_keeps_the_exact_row(row: Any) -> None:
    at = datetime(2026, 12, 1, tzinfo=UTC)
    message_id, customer_id, event_id, event, received_at, reason = failed_event_record(
        "m-\x00", at, row, "why\x00"
    )
    for text in (message_id, customer_id, event_id, event, reason):
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate: Postgres text takes it
    stored = json.loads(event)
    assert all("\x00" not in t for t in _strings(stored))  # jsonb refuses \u0000 anywhere
    assert (stored["customerId"], stored["eventId"]) == (customer_id, event_id) == failed_key(row)
    assert received_at == at and reason == "why\\u0000"
    restored = decode_row(stored["wire"])
    assert json.dumps(restored, sort_keys=True) == json.dumps(row, sort_keys=True)  # nan != nan


def test_rows_jsonb_takes_are_kept_as_they_are() -> None:
    assert kept_wire(GOOD) is GOOD
    assert decode_row(GOOD) is GOOD
    assert decode_row(kept_wire(_with(1, "\x00"))) == _with(1, "\x00")


def test_an_error_summary_is_short_and_carries_no_rows() -> None:
    error = asyncpg.exceptions.DataError(
        "invalid input for query argument $2: ['evt-1', 'evt-2\\ud800', 'e... "
        "('utf-8' codec can't encode character '\\ud800' in position 5: surrogates not allowed)"
    )
    assert error_summary(error) == (
        "DataError: invalid input for query argument $2 ('utf-8' codec can't encode character "
        "'\\ud800' in position 5: surrogates not allowed)"
    )
    multi = ValueError("first line\nDETAIL: Failing row contains (acme, evt-1, ...)")
    assert error_summary(multi) == "ValueError: first line"
    assert len(error_summary(ValueError("x" * 5000))) == 300


def test_dramatiq_names_a_failing_message_by_id_not_by_its_batch() -> None:
    log_filters.install()  # as workers/ingest.py does in the worker
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("dramatiq.worker.WorkerThread")
    logger.addHandler(handler)
    try:
        message: dramatiq.Message[Any] = dramatiq.Message(
            queue_name="ingest",
            actor_name="persist_events",
            args=({"id": "m", "events": [GOOD] * 100},),
            kwargs={},
            options={},
        )
        logger.error("Failed to process message %s with unhandled exception.", message)
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue() == (
        f"Failed to process message persist_events(message {message.message_id}) with unhandled exception.\n"
    )
