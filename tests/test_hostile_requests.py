"""Hostile requests (issue 12): values that do not fit in a path or query are a 4xx, never a
5xx; an unexpected error is a logged, counted 500 in the route's shape."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from prometheus_client import REGISTRY

from tests.factories import auth, make_customer, make_meter
from tests.pages.helpers import make_user, sign_in

Client = AsyncTestClient[Any]
BEYOND_BIGINT = "9223372036854775808"  # 2**63: asyncpg cannot bind it as a Postgres bigint
BELOW_BIGINT = "-9223372036854775809"


# --- ids beyond 64 bits in paths: 404 ---------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", f"/v1/invoices/{BEYOND_BIGINT}"),
    ("GET", f"/v1/invoices/{BELOW_BIGINT}"),
    ("GET", f"/v1/invoices/{BEYOND_BIGINT}/adjustments"),
    ("POST", f"/v1/invoices/{BEYOND_BIGINT}/approve"),
    ("POST", f"/v1/invoices/{BEYOND_BIGINT}/void"),
    ("GET", f"/v1/alert-deliveries/{BEYOND_BIGINT}"),
    ("DELETE", f"/v1/customers/acme/alert-channels/{BEYOND_BIGINT}"),
    ("POST", f"/v1/customers/acme/alert-channels/{BEYOND_BIGINT}/test"),
    ("DELETE", f"/v1/customers/acme/alert-rules/{BEYOND_BIGINT}"),
])
async def test_an_id_beyond_64_bits_in_an_api_path_is_404(
    client: Client, admin_key: str, method: str, path: str,
) -> None:
    await make_customer(client, admin_key)
    body = {"reason": "typo"} if path.endswith("/void") else {}
    response = await client.request(method, path, headers=auth(admin_key),
                                    json=body if method == "POST" else None)
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

@pytest.mark.parametrize("path", [
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
])
async def test_a_control_character_in_an_api_path_or_query_is_400(
    client: Client, admin_key: str, path: str,
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


# --- the same on portal pages: the HTML error page --------------------------------------------

async def _customer_user(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    await make_user(pg, "user@acme.test", customer_id="acme")
    await sign_in(client, "user@acme.test")


@pytest.mark.parametrize("path", [
    f"/portal/invoices/{BEYOND_BIGINT}",
    f"/portal/invoices/{BEYOND_BIGINT}/print",
    f"/portal/customers/acme/alerts/rules/{BEYOND_BIGINT}/edit",
    f"/portal/customers/acme/alerts/rules/{BEYOND_BIGINT}/delete",
    f"/portal/customers/acme/alerts/channels/{BELOW_BIGINT}/delete",
])
async def test_an_id_beyond_64_bits_in_a_page_address_is_the_404_page(
    client: Client, admin_key: str, pg: asyncpg.Connection, path: str,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(path)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.text


@pytest.mark.parametrize("path", [
    "/portal/customers/acme/meters/api%00",
    "/portal/customers/ac%00me",
    "/portal/customers/acme/meters/api_calls?group=%00",
    "/portal/customers/acme/usage?seen=%01",
])
async def test_a_control_character_in_a_page_address_is_the_400_page(
    client: Client, admin_key: str, pg: asyncpg.Connection, path: str,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(path)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>Bad address</h1>" in response.text


async def test_a_page_number_beyond_64_bits_on_a_page_is_the_400_page(
    client: Client, admin_key: str, pg: asyncpg.Connection,
) -> None:
    await _customer_user(client, admin_key, pg)
    response = await client.get(f"/portal/customers/acme/invoices?before={BEYOND_BIGINT}")
    assert response.status_code == 400, response.text
    assert "<h1>Bad address</h1>" in response.text


async def test_a_control_character_in_a_partial_is_a_short_message(
    client: Client, admin_key: str, pg: asyncpg.Connection,
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
    client: Client, admin_key: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise Boom("the meters table went away")

    monkeypatch.setattr("portal.catalog.routes.service.list_meters", broken)
    before = _unhandled("Boom")
    with caplog.at_level(logging.ERROR):
        response = await client.get("/v1/meters", headers={**auth(admin_key), "X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.json() == {"status_code": 500, "detail": "Internal server error",
                               "request_id": "trace-500"}
    assert "went away" not in response.text
    assert response.headers["x-request-id"] == "trace-500"
    logged = [r for r in caplog.records if r.exc_info]
    assert len(logged) == 1
    assert logged[0].name == "portal.unhandled"
    assert "trace-500" in logged[0].getMessage() and "GET /v1/meters" in logged[0].getMessage()
    assert logged[0].exc_info is not None and logged[0].exc_info[0] is Boom
    assert _unhandled("Boom") == before + 1


async def test_an_unexpected_error_on_a_page_is_the_500_page(
    client: Client, admin_key: str, pg: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch,
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
