"""Hostile requests (issue 12): values that do not fit in a path or query are a 4xx, never a
5xx; an unexpected error is a logged, counted 500 in the route's shape."""

from __future__ import annotations

import gzip
import json
import logging
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from portal.live import redis_keys as live_keys
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import login_form, make_user, sign_in
from tests.pages.test_manager_review import SEPT, draft
from tests.pages.test_manager_review import world as review_world

Client = AsyncTestClient[Any]
BEYOND_BIGINT = "9223372036854775808"  # 2**63: asyncpg cannot bind it as a Postgres bigint
BELOW_BIGINT = "-9223372036854775809"


# --- ids beyond 64 bits in paths: 404 ---------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", f"/v1/invoices/{BEYOND_BIGINT}"),
        ("GET", f"/v1/invoices/{BELOW_BIGINT}"),
        ("GET", f"/v1/invoices/{BEYOND_BIGINT}/adjustments"),
        ("GET", f"/v1/invoices/{BEYOND_BIGINT}/pdf"),
        ("GET", f"/v1/invoices/1/adjustments/{BEYOND_BIGINT}/pdf"),
        ("POST", f"/v1/invoices/{BEYOND_BIGINT}/approve"),
        ("POST", f"/v1/invoices/{BEYOND_BIGINT}/void"),
        ("GET", f"/v1/alert-deliveries/{BEYOND_BIGINT}"),
        ("DELETE", f"/v1/customers/acme/alert-channels/{BEYOND_BIGINT}"),
        ("POST", f"/v1/customers/acme/alert-channels/{BEYOND_BIGINT}/test"),
        ("DELETE", f"/v1/customers/acme/alert-rules/{BEYOND_BIGINT}"),
    ],
)
async def test_an_id_beyond_64_bits_in_an_api_path_is_404(
    client: Client,
    admin_key: str,
    method: str,
    path: str,
) -> None:
    await make_customer(client, admin_key)
    body = {"reason": "typo"} if path.endswith("/void") else {}
    response = await client.request(
        method, path, headers=auth(admin_key), json=body if method == "POST" else None
    )
    assert response.status_code == 404, response.text
    assert response.json()["status_code"] == 404


async def test_the_largest_bigint_id_is_an_ordinary_404(client: Client, admin_key: str) -> None:
    response = await client.get("/v1/invoices/9223372036854775807", headers=auth(admin_key))
    assert response.status_code == 404, response.text


async def test_a_page_number_beyond_64_bits_in_a_query_is_422(client: Client, admin_key: str) -> None:
    response = await client.get(f"/v1/invoices?before={BEYOND_BIGINT}", headers=auth(admin_key))
    assert response.status_code == 422, response.text
    assert response.json()["extra"][0]["key"] == "before"


# --- control characters in paths and queries: 400 ---------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/customers/a%00b",
        "/v1/customers/a%01b/credits",
        "/v1/plans/a%00b",
        "/v1/plans/a%1fb/alert-rules",
        "/v1/customers/a%7fb/usage?metric=api_calls",
        "/v1/alert-deliveries?status=%00",
        "/v1/alert-deliveries?customerId=acme%00",
        "/v1/customers/acme/usage?metric=api%00calls",
        "/v1/invoices?customerId=%00",
        "/v1/invoices?state=%0a",
        "/v1/adjustments?customerId=a%00",
        "/v1/customers?after=%00",
        "/v1/invoices/export.csv?customerId=%00",
        "/v1/invoices/lines.csv?status=draft%00",
        "/v1/failed-events?status=%00",
        "/v1/customers?%00=1",
    ],
)
async def test_a_control_character_in_an_api_path_or_query_is_400(
    client: Client,
    admin_key: str,
    path: str,
) -> None:
    await make_customer(client, admin_key)
    response = await client.get(path, headers=auth(admin_key))
    assert response.status_code == 400, response.text
    assert response.json() == {"status_code": 400, "detail": response.json()["detail"]}
    assert "control character" in response.json()["detail"]


async def test_ordinary_characters_still_reach_the_route(client: Client, admin_key: str) -> None:
    await make_customer(client, admin_key, name="Ünï\tCödé")
    response = await client.get("/v1/customers/%C3%BCn%C3%AF-c%C3%B6d%C3%A9", headers=auth(admin_key))
    assert response.status_code == 404, response.text
    assert response.json()["detail"] == "no customer 'ünï-cödé'"
    spaced = await client.get("/v1/customers?after=a+b%20c", headers=auth(admin_key))
    assert spaced.status_code == 200, spaced.text


async def test_a_control_character_is_refused_before_the_key_is_checked(client: Client) -> None:
    response = await client.get("/v1/customers/a%00b")
    assert response.status_code == 400, response.text


@pytest.mark.parametrize("path", ["/v1/events", "/v1/events/batch", "/v1/entitlements/check"])
@pytest.mark.parametrize("encoding", ["gzip", "br", "GZIP, deflate"])
async def test_a_compressed_body_is_a_415_that_says_so(
    client: Client, ingest_key: str, redis: Redis, path: str, encoding: str
) -> None:
    """A gzip body had read "the body is not valid UTF-8 (byte 1)", a br one "malformed
    JSON": no route decompresses, and the answer says that, on the short way in too."""
    body = gzip.compress(json.dumps({"events": [event()]}).encode())
    response = await client.post(
        path,
        content=body,
        headers={**auth(ingest_key), "Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status_code == 415, response.text
    assert "is not supported: send the body uncompressed" in response.json()["detail"]
    assert await redis.zcard(live_keys.INFLIGHT_KEY) == 0  # nothing held for the broker


@pytest.mark.parametrize("path", ["/v1/entitlements/check", "/v1/customers", "/v1/plans"])
async def test_an_empty_body_where_json_is_needed_says_so(client: Client, admin_key: str, path: str) -> None:
    response = await client.post(
        path, content=b"", headers={**auth(admin_key), "Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["extra"] == [
        {"message": "the request needs a JSON body (it was empty)", "key": "data", "source": "body"}
    ]


# --- the same on portal pages: the HTML error page --------------------------------------------


async def _customer_user(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    await make_user(pg, "user@acme.test", customer_id="acme")
    await sign_in(client, "user@acme.test")


@pytest.mark.parametrize(
    "path",
    [
        f"/portal/invoices/{BEYOND_BIGINT}",
        f"/portal/invoices/{BEYOND_BIGINT}/print",
        f"/portal/customers/acme/alerts/rules/{BEYOND_BIGINT}/edit",
        f"/portal/customers/acme/alerts/rules/{BEYOND_BIGINT}/delete",
        f"/portal/customers/acme/alerts/channels/{BELOW_BIGINT}/delete",
        f"/portal/customers/acme/alerts/channels/{BEYOND_BIGINT}",
        f"/portal/customers/acme/alerts/tests/{BEYOND_BIGINT}",
    ],
)
async def test_an_id_beyond_64_bits_in_a_page_address_is_the_404_page(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    path: str,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text


@pytest.mark.parametrize(
    "path",
    [
        "/portal/customers/acme/meters/api%00",
        "/portal/customers/ac%00me",
        "/portal/customers/acme/meters/api_calls?group=%00",
        "/portal/customers/acme/usage?seen=%01",
    ],
)
async def test_a_control_character_in_a_page_address_is_the_400_page(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    path: str,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(path)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Bad address</h1>" in response.text


async def test_a_page_number_beyond_64_bits_on_a_page_is_the_400_page(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(f"/portal/customers/acme/invoices?before={BEYOND_BIGINT}")
    assert response.status_code == 400, response.text
    assert "<h1>Bad address</h1>" in response.text


async def test_a_control_character_in_a_partial_is_a_short_message(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get("/portal/customers/acme/usage?seen=%00", headers={"HX-Request": "true"})
    assert response.status_code == 400, response.text
    assert response.text.startswith('<p class="error" role="alert">')


# --- unexpected errors: logged once, counted, a generic 500 -----------------------------------


def _unhandled(exception: str) -> float:
    value = REGISTRY.get_sample_value("portal_unhandled_errors_total", {"exception": exception})
    return value or 0.0


class Boom(RuntimeError):
    """Raised by a service in these tests, as a bug would."""


async def test_an_unexpected_error_in_the_api_is_a_logged_counted_500(
    client: Client,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise Boom("the meters table went away")

    monkeypatch.setattr("portal.catalog.routes.service.list_meters", broken)
    before = _unhandled("Boom")
    with caplog.at_level(logging.ERROR):
        response = await client.get("/v1/meters", headers={**auth(admin_key), "X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.json() == {
        "status_code": 500,
        "detail": "Internal server error",
        "request_id": "trace-500",
    }
    assert "went away" not in response.text
    assert response.headers["x-request-id"] == "trace-500"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert logged[0].name == "portal.unhandled"
    assert "trace-500" in logged[0].getMessage() and "GET /v1/meters" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is Boom
    assert _unhandled("Boom") == before + 1


async def test_an_unexpected_error_on_a_page_is_the_500_page(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await _customer_user(client, admin_key, pg)

    async def broken(*_: Any, **__: Any) -> Any:
        raise Boom("the live view went away")

    monkeypatch.setattr("portal.pages.routes.usage_panel", broken)
    before = _unhandled("Boom")
    with caplog.at_level(logging.ERROR):
        response = await client.get("/portal/customers/acme", headers={"X-Request-ID": "page-500"})
        partial = await client.get("/portal/customers/acme/usage", headers={"HX-Request": "true"})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Something went wrong</h1>" in response.text and "page-500" in response.text
    assert "went away" not in response.text
    assert partial.status_code == 500 and partial.text.startswith('<p class="error" role="alert">')
    assert len([r for r in caplog.records if r.exc_info]) == 2
    assert _unhandled("Boom") == before + 2


# --- bodies: values Postgres cannot store are 422s naming the field ---------------------------

PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00"},
        {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"},
    ],
}


async def _billed_customer(client: Client, key: str) -> None:
    await make_customer(client, key, currency="USD", timezone="Asia/Kolkata")
    await make_meter(client, key)
    for path, body in (("/v1/plans", PLAN), ("/v1/customers/acme/subscriptions", {"planId": "metered"})):
        response = await client.post(path, headers=auth(key), json=body)
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/customers", {"id": "x", "name": "a\u0000b"}, "name"),
        ("/v1/customers", {"id": "x", "name": "x", "timezone": "UTC\u0000"}, "timezone"),
        ("/v1/meters", {"metricName": "m", "aggregation": "sum", "unit": "\u0000"}, "unit"),
        (
            "/v1/meters",
            {"metricName": "m", "aggregation": "sum", "unit": "u", "groupBy": ["a\u0000"]},
            "groupBy",
        ),
        ("/v1/plans", {**PLAN, "id": "p", "name": "N\u0000"}, "name"),
        ("/v1/plans", {**PLAN, "id": "p", "description": "\u0000"}, "description"),
        (
            "/v1/plans",
            {**PLAN, "id": "p", "charges": [{**PLAN["charges"][1], "meter": "api\u0000"}]},
            "meter",
        ),
        (
            "/v1/plans",
            {**PLAN, "id": "p", "charges": [{**PLAN["charges"][1], "dimensions": {"r": "\u0000"}}]},
            "dimensions",
        ),
        ("/v1/customers/acme/credits", {"amount": "1", "description": "\u0000"}, "description"),
        ("/v1/customers/acme/credits", {"amount": "1", "expiresOn": "9999-12-31"}, "expiresOn"),
        (
            "/v1/customers/acme/subscriptions",
            {"planId": "metered", "effectiveAt": "0001-01-01T00:00:00+14:00"},
            "effectiveAt",
        ),
        (
            "/v1/customers/acme/subscriptions",
            {"planId": "metered", "effectiveAt": "9999-12-31T23:00:00-12:00"},
            "effectiveAt",
        ),
        ("/v1/customers/acme/subscriptions", {"planId": "metered", "startDate": "0001-01-01"}, "startDate"),
        ("/v1/customers/acme/invoices", {"period": "9999-12"}, "period"),
        ("/v1/customers/acme/invoices", {"period": "0001-01"}, "period"),
        ("/v1/customers/acme/alert-rules", {"name": "r\u0000", "levels": ["1"]}, "name"),
        (
            "/v1/customers/acme/alert-rules",
            {"name": "r", "metricName": "\u0000", "levels": ["1"]},
            "metricName",
        ),
        (
            "/v1/customers/acme/alert-rules",
            {"name": "r", "levels": ["1"], "channelIds": [2**63]},
            "channelIds",
        ),
        ("/v1/customers/acme/alert-rules", {"name": "r", "levels": ["1e999999999"]}, "levels[0]"),
        ("/v1/customers/acme/alert-rules", {"name": "r", "levels": ["1e-999999999"]}, "levels[0]"),
        (
            "/v1/customers/acme/alert-rules",
            {"name": "r", "levels": ["50"], "basis": "budget", "budget": "1e999999"},
            "budget",
        ),
        (
            "/v1/customers/acme/alert-channels",
            {"name": "c\u0000", "destination": "json://127.0.0.1:9/x"},
            "name",
        ),
        (
            "/v1/plans/metered/alert-rules",
            {"name": "r", "levels": ["1"], "metricName": "a\u0000"},
            "metricName",
        ),
    ],
)
async def test_a_body_value_postgres_cannot_store_is_422_naming_the_field(
    client: Client,
    admin_key: str,
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    await _billed_customer(client, admin_key)
    response = await client.post(path, headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    named = " ".join(f"{e['key']} {e['message']}" for e in response.json()["extra"])
    assert field in named, response.text


@pytest.mark.parametrize(
    "query",
    [
        "from=0001-01-01T00:00:00%2B14:00",
        "to=9999-12-31T23:59:59-14:00",
        "from=9999-01-01T00:00:00Z",
    ],
)
async def test_an_instant_out_of_range_in_an_export_query_is_422(
    client: Client,
    admin_key: str,
    query: str,
) -> None:
    response = await client.get(f"/v1/invoices/export.csv?{query}", headers=auth(admin_key))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["extra"][0]["key"] == query.split("=")[0]


@pytest.mark.parametrize(
    "query",
    [
        "start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z",
        "start=9998-12-31T00:00:00Z&end=9999-12-31T23:59:59-14:00",
    ],
)
async def test_an_instant_out_of_range_in_a_usage_query_is_422(
    client: Client,
    admin_key: str,
    query: str,
) -> None:
    await _billed_customer(client, admin_key)
    response = await client.get(f"/v1/customers/acme/usage?metric=api_calls&{query}", headers=auth(admin_key))
    assert response.status_code == 422, response.text
    assert "must lie from 1970-01-01 to 9998-12-31" in response.json()["detail"]


async def test_an_error_of_a_csv_route_is_json(client: Client, ingest_key: str) -> None:
    response = await client.get("/v1/invoices/export.csv", headers=auth(ingest_key))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["status_code"] == 403


# --- page forms: a NUL is refused with the form again, never a 500 ----------------------------


async def test_a_nul_in_the_sign_in_form_is_a_wrong_sign_in(client: Client, pg: asyncpg.Connection) -> None:
    await make_user(pg, "user@acme.test", customer_id=None, role="admin")
    token = await login_form(client)
    response = await client.post(
        "/portal/login",
        data={"email": "user@acme.test\u0000", "password": "x", "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 401, response.text
    assert "That email address and password do not match an account." in response.text


async def test_a_nul_in_an_api_key_name_is_refused_on_the_form(
    client: Client,
    pg: asyncpg.Connection,
) -> None:
    await make_user(pg, "ada@vendor.test", role="admin")
    csrf = await sign_in(client, "ada@vendor.test")
    response = await client.post(
        "/portal/admin/keys", data={"name": "ci\u0000", "scope": "ingest", "csrf_token": csrf}
    )
    assert response.status_code == 422, response.text
    assert await pg.fetchval("SELECT count(*) FROM api_keys") == 0


@pytest.mark.parametrize(
    ("action", "form"),
    [
        ("void", {"reason": "wrong plan\u0000"}),
        ("adjustments", {"kind": "credit", "amount": "1.00", "reason": "goodwill\u0000"}),
    ],
)
async def test_a_nul_in_a_review_reason_is_refused_on_the_form(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    action: str,
    form: dict[str, str],
) -> None:
    csrf = await review_world(client, admin_key, pg)
    invoice_id = await draft(pg, start=SEPT[0], end=SEPT[1], status="finalized", number="INV-000007")
    response = await client.post(f"/portal/invoices/{invoice_id}/{action}", data={**form, "csrf_token": csrf})
    assert response.status_code == 422, response.text
    assert "must not contain NUL characters" in response.text
    assert await pg.fetchval("SELECT status FROM invoices WHERE id = $1", invoice_id) == "finalized"


# --- JSON nested past any decoder's comfort: 4xx on every operation that reads JSON ------------


def _json_operations(document: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    """(method, path with the world's ids, top-level property names) of every operation
    whose request body is JSON."""
    operations = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            content = operation.get("requestBody", {}).get("content", {})
            if "application/json" not in content:
                continue
            schema = content["application/json"].get("schema", {})
            if "$ref" in schema:
                schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
            filled = path.replace("{customer_id}", "acme").replace("{plan_id}", "metered")
            for name in ("{metric_name}", "{invoice_id}", "{channel_id}", "{rule_id}", "{key_id}"):
                filled = filled.replace(name, "1")
            operations.append((method.upper(), filled, sorted(schema.get("properties", {}))))
    return operations


async def test_json_nested_ten_thousand_deep_is_4xx_everywhere(client: Client, admin_key: str) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    document = (await client.get("/schema/openapi.json")).json()
    operations = _json_operations(document)
    assert len(operations) > 10
    deep = "[" * 10_000 + "]" * 10_000
    for method, path, properties in operations:
        bodies = [deep] + [f'{{"{name}": {deep}}}' for name in properties]
        for body in bodies:
            response = await client.request(
                method,
                path,
                headers={**auth(admin_key), "Content-Type": "application/json"},
                content=body.encode(),
            )
            assert 400 <= response.status_code < 500, (method, path, body[:40], response.text)
