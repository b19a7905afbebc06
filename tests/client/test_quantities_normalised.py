"""Every client method sends a quantity as the same plain decimal text, refuses at once what
the portal would refuse, and an error answer's message carries the portal's reasons."""

from __future__ import annotations

import asyncio
import json
import re
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.client import (
    AsyncUsageClient,
    CorrectionRefused,
    EntitlementUnavailable,
    Reply,
    UsageClient,
    build_event,
)
from portal.client.quantities import quantity_text
from portal.client.transport import reply_detail
from tests.client.conftest import ServerProcess
from tests.conftest import WorkerProcess, wait_until_persisted

SENT_AS = [
    (Decimal("1E+3"), "1000"),
    (Decimal("1.0E+6"), "1000000"),
    (1e-05, "0.00001"),
    (1e16, "10000000000000000"),
    (0.1, "0.1"),
    (7, "7"),
    (0, "0"),
    (Decimal("-0"), "0"),
    ("1e3", "1000"),
    (" 2.50 ", "2.50"),
    (Decimal("2.50"), "2.50"),
    (Decimal("1.500000000000000000"), "1.5"),
    ("0E-30", "0"),
    (Decimal("0.000000000001"), "0.000000000001"),
    (Decimal("99999999999999999999.999999999999"), "99999999999999999999.999999999999"),
]

REFUSED = [
    (float("nan"), "finite"),
    (float("inf"), "finite"),
    (Decimal("-Infinity"), "finite"),
    ("NaN", "finite"),
    (-1, "negative"),
    ("-0.5", "negative"),
    (Decimal("-1E-20"), "negative"),
    (10**20, "less than 10^20"),
    ("1e999999999", "less than 10^20"),
    (Decimal("0.0000000000001"), "12 decimal places"),
    (0.1 + 0.2, "12 decimal places"),
    ("1e-999999999", "12 decimal places"),
    ("lots", "not a number"),
    ("", "not a number"),
]


@pytest.mark.parametrize(("given", "sent"), SENT_AS)
def test_a_quantity_is_sent_as_plain_decimal_text(given: Any, sent: str) -> None:
    assert quantity_text(given) == sent


@pytest.mark.parametrize(("given", "reason"), REFUSED)
def test_a_quantity_the_portal_refuses_raises_value_error_naming_why(given: Any, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        quantity_text(given)


@pytest.mark.parametrize("given", [True, None, [1], b"1"])
def test_a_quantity_that_is_no_number_raises_type_error(given: Any) -> None:
    with pytest.raises(TypeError):
        quantity_text(given)


class Capture:
    """A transport that keeps each request and answers as the portal would."""

    def __init__(self) -> None:
        self.bodies: list[tuple[str, dict[str, Any]]] = []

    def post(self, path: str, body: bytes) -> Reply:
        sent = json.loads(body)
        self.bodies.append((path, sent))
        if path.endswith("/check"):
            results = [_allowed(c) for c in sent["checks"]]
            return Reply(200, json.dumps({"results": results}).encode())
        return Reply(200, json.dumps(_correction(sent)).encode())


def _allowed(check: dict[str, Any]) -> dict[str, Any]:
    return {
        "customerId": check["customerId"],
        "meter": check["meter"],
        "allowed": True,
        "used": "0",
        "limit": None,
        "remaining": None,
        "enforcement": None,
        "exceeded": False,
        "periodStart": None,
        "periodEnd": None,
        "asOf": "2026-12-01T00:00:00+00:00",
        "lagMs": 0,
    }


def _correction(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": 1,
        "customerId": body["customerId"],
        "eventId": "e",
        "kind": "amend",
        "quantityBefore": "1",
        "quantityAfter": body["quantity"],
        "reason": body["reason"],
        "createdAt": "2026-12-01T00:00:00+00:00",
        "invoiceId": None,
    }


def test_every_method_of_both_clients_sends_the_same_text() -> None:
    transport = Capture()
    usage = UsageClient("http://unused", "key", transport=transport, flush_interval=60, check_cache_seconds=0)
    try:
        usage.check("acme", "api_calls", Decimal("1E+3"))
        usage.check_many([("acme", "api_calls", 1e-05), ("acme", "api_calls", None)])
        usage.amend("acme", "e", Decimal("1E+3"), "typo")
    finally:
        usage.close()

    async def the_async_client() -> None:
        aio = AsyncUsageClient("http://unused", "key", transport=transport, check_cache_seconds=0)
        async with aio:
            await aio.check("acme", "api_calls", Decimal("1E+3"))
            await aio.check_many([("acme", "api_calls", 1e-05)])
            await aio.amend("acme", "e", 1e-05, "typo")

    asyncio.run(the_async_client())
    sent = [
        [c.get("quantity") for c in body["checks"]] if path.endswith("/check") else [body["quantity"]]
        for path, body in transport.bodies
    ]
    assert sent == [["1000"], ["0.00001", None], ["1000"], ["1000"], ["0.00001"], ["0.00001"]]
    assert build_event("acme", "api_calls", Decimal("1E+3"))["quantity"] == "1000"


def test_a_refused_quantity_raises_before_any_request_in_every_method() -> None:
    transport = Capture()
    usage = UsageClient("http://unused", "key", transport=transport, flush_interval=60)
    try:
        for call in (
            lambda: usage.record("acme", "api_calls", -1),
            lambda: usage.check("acme", "api_calls", -1),
            lambda: usage.check_many([("acme", "api_calls", 1), ("acme", "api_calls", -1)]),
            lambda: usage.amend("acme", "e", -1, "typo"),
        ):
            with pytest.raises(ValueError, match="negative"):
                call()
    finally:
        usage.close()

    async def the_async_client() -> None:
        async with AsyncUsageClient("http://unused", "key", transport=transport) as aio:
            with pytest.raises(ValueError, match="12 decimal places"):
                await aio.check("acme", "api_calls", 0.1 + 0.2)
            with pytest.raises(ValueError, match="12 decimal places"):
                await aio.amend("acme", "e", 0.1 + 0.2, "typo")
            with pytest.raises(ValueError, match="12 decimal places"):
                aio.record("acme", "api_calls", 0.1 + 0.2)

    asyncio.run(the_async_client())
    assert transport.bodies == []
    assert usage.stats.buffered == 0


VALIDATION = {
    "status_code": 422,
    "detail": "Validation failed for POST /v1/entitlements/check",
    "extra": [{"key": "checks[0].quantity", "message": "Expected `str` matching regex '^[0-9]{1,20}$'"}],
}


@pytest.mark.parametrize(
    ("status", "body", "says"),
    [
        (
            422,
            json.dumps(VALIDATION),
            "Validation failed for POST /v1/entitlements/check: "
            "checks[0].quantity: Expected `str` matching regex '^[0-9]{1,20}$'",
        ),
        (422, '{"detail": "x", "extra": [{"key": "n", "message": "too big"}]}', "x: n: too big"),
        (422, '{"detail": "x", "extra": {"field": "quantity"}}', 'x: {"field": "quantity"}'),
        (
            422,
            '{"detail": "n: is 10 already", "extra": [{"key": "n", "message": "is 10 already"}]}',
            "n: is 10 already",
        ),
        (409, '{"status_code": 409, "detail": "cancelled already"}', "cancelled already"),
        (502, "<html>bad gateway</html>", "<html>bad gateway</html>"),
    ],
)
def test_an_error_answer_says_the_portal_reasons(status: int, body: str, says: str) -> None:
    assert reply_detail(Reply(status, body.encode())) == says


async def test_the_real_portal_takes_what_the_client_sends_and_its_422_says_why(
    server: ServerProcess,
    admin_key: str,
    ingest_key: str,
    catalog: None,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    client = UsageClient(server.url, ingest_key, flush_interval=60, check_cache_seconds=0)
    try:
        typo = client.record("acme", "api_calls", Decimal("3"))
        client.flush()
        await wait_until_persisted(redis)
        # Quantities that str() would have sent as "1E+3" and "1e-05" (answered 422 before).
        assert client.check("acme", "api_calls", Decimal("1E+3")).allowed is True
        assert client.check("acme", "api_calls", 1e-05).allowed is True
        amended = client.amend("acme", typo, Decimal("1E+1"), "exponent typo")
        assert (amended.quantity_before, amended.quantity_after) == (Decimal(3), Decimal(10))
        # What the portal still refuses, it says why, in the exception's message.
        with pytest.raises(EntitlementUnavailable) as unavailable:
            client.check("x" * 300, "api_calls")
        assert str(unavailable.value) == (
            "entitlement check answered 422: Validation failed for POST /v1/entitlements/check: "
            "checks[0].customerId: Expected `str` of length <= 128"
        )
        with pytest.raises(CorrectionRefused) as refused:
            client.amend("acme", typo, "10.000", "again")
        assert refused.value.status == 422
        assert refused.value.detail == "quantity: the event's quantity is 10 already"
    finally:
        client.close()
    assert await pg.fetchval("SELECT sum(value) FROM hourly_usage") == Decimal(10)
