"""Catalog API: camelCase JSON, 409 on duplicates, 422 naming the bad field, all routes
in the OpenAPI schema."""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.factories import auth, make_customer, make_meter


async def test_customer_round_trip(client: AsyncTestClient[Any], admin_key: str) -> None:
    created = await make_customer(
        client, admin_key, id="acme", name="Acme Inc", timezone="Europe/Berlin", currency="EUR"
    )
    assert {k: v for k, v in created.items() if k != "createdAt"} == {
        "id": "acme",
        "name": "Acme Inc",
        "timezone": "Europe/Berlin",
        "currency": "EUR",
        "legalName": None,
        "billingAddress": [],
        "taxId": None,
        "billingEmails": [],
    }
    got = await client.get("/v1/customers/acme", headers=auth(admin_key))
    assert got.json() == created
    await make_customer(client, admin_key, id="beta")
    listed = await client.get("/v1/customers", headers=auth(admin_key), params={"limit": 1})
    assert [c["id"] for c in listed.json()] == ["acme"]
    page2 = await client.get("/v1/customers", headers=auth(admin_key), params={"after": "acme"})
    assert [c["id"] for c in page2.json()] == ["beta"]


async def test_existing_customer_is_409(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    again = await client.post("/v1/customers", headers=auth(admin_key), json={"id": "acme", "name": "Other"})
    assert again.status_code == 409
    assert again.json()["detail"] == "customer 'acme' already exists"


async def test_unknown_customer_is_404(client: AsyncTestClient[Any], admin_key: str) -> None:
    response = await client.get("/v1/customers/nobody", headers=auth(admin_key))
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"id": "acme", "name": "A", "timezone": "Mars/Olympus"}, "timezone"),
        # Zones ZoneInfo opens that are no customer's: Postgres does not know "localtime"
        # (SQL in the customer's zone would fail); the others are copies or placeholders.
        ({"id": "acme", "name": "A", "timezone": "localtime"}, "timezone"),
        ({"id": "acme", "name": "A", "timezone": "posix/Europe/Berlin"}, "timezone"),
        ({"id": "acme", "name": "A", "timezone": "right/UTC"}, "timezone"),
        ({"id": "acme", "name": "A", "timezone": "Factory"}, "timezone"),
        ({"id": "acme", "name": "A", "currency": "euro"}, "currency"),
        ({"id": "a c", "name": "A"}, "id"),
        ({"id": "a{b}", "name": "A"}, "id"),
        # Dot segments: a browser resolves /portal/customers/.. to /portal.
        ({"id": ".", "name": "A"}, "id"),
        ({"id": "..", "name": "A"}, "id"),
        ({"id": "acme"}, "name"),
        ({"id": "acme", "name": "A", "tz": "UTC"}, "tz"),
        ({"id": "acme", "name": ""}, "name"),
    ],
)
async def test_bad_customer_fields_are_named(
    client: AsyncTestClient[Any],
    admin_key: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/v1/customers", headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    listed = await client.get("/v1/customers", headers=auth(admin_key))
    assert listed.json() == []


async def test_a_bad_id_is_refused_in_words_not_as_a_regex(
    client: AsyncTestClient[Any], admin_key: str
) -> None:
    response = await client.post("/v1/customers", headers=auth(admin_key), json={"id": "..", "name": "A"})
    assert response.status_code == 422, response.text
    [problem] = response.json()["extra"]
    assert problem["key"] == "id"
    assert problem["message"] == "Expected an id of letters, digits and . _ : @ + - only (not “.” or “..”)"
    assert "regex" not in response.text


async def test_meter_round_trip_and_409(client: AsyncTestClient[Any], admin_key: str) -> None:
    meter = await make_meter(
        client,
        admin_key,
        metric="active_users",
        aggregation="unique_count",
        unit="user",
        unique_by="user",
        group_by=["region"],
    )
    assert {k: v for k, v in meter.items() if k != "createdAt"} == {
        "metricName": "active_users",
        "aggregation": "unique_count",
        "unit": "user",
        "groupBy": ["region"],
        "uniqueBy": "user",
    }
    again = await client.post(
        "/v1/meters",
        headers=auth(admin_key),
        json={"metricName": "active_users", "aggregation": "sum", "unit": "x"},
    )
    assert again.status_code == 409
    listed = await client.get("/v1/meters", headers=auth(admin_key))
    assert [m["metricName"] for m in listed.json()] == ["active_users"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metricName": "m", "aggregation": "avg", "unit": "x"}, "aggregation"),
        ({"metricName": "m", "aggregation": "unique_count", "unit": "x"}, "uniqueBy"),
        ({"metricName": "m", "aggregation": "sum", "unit": "x", "uniqueBy": "u"}, "uniqueBy"),
        ({"metricName": "m", "aggregation": "sum", "unit": "x", "groupBy": ["a", "a"]}, "groupBy"),
        ({"metricName": "m m", "aggregation": "sum", "unit": "x"}, "metricName"),
        ({"metricName": "m", "aggregation": "sum"}, "unit"),
    ],
)
async def test_bad_meter_fields_are_named(
    client: AsyncTestClient[Any],
    admin_key: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = await client.post("/v1/meters", headers=auth(admin_key), json=body)
    assert response.status_code == 422, response.text
    assert field in response.text
    assert (await client.get("/v1/meters", headers=auth(admin_key))).json() == []


async def test_every_api_route_is_in_the_openapi_schema(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    documented = {(path, method.upper()) for path, item in schema["paths"].items() for method in item}
    app = client.app
    served = {
        (re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path), method)
        for route in app.routes
        for method in getattr(route, "methods", set())
        if route.path.startswith("/v1") or route.path == "/healthz"
        if method not in ("HEAD", "OPTIONS")
    }
    assert served and served <= documented, served - documented


async def test_json_field_names_are_camel_case(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    # ErrorBody is Litestar's error shape ({"status_code", "detail", "extra"}), kept as it is.
    names = {
        prop
        for name, component in schema["components"]["schemas"].items()
        if name != "ErrorBody"
        for prop in component.get("properties", {})
    }
    assert names and all("_" not in name for name in names), sorted(n for n in names if "_" in n)


async def test_ingest_bodies_are_documented(client: AsyncTestClient[Any]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    single = schema["paths"]["/v1/events"]["post"]["requestBody"]["content"]["application/json"]
    batch = schema["paths"]["/v1/events/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert single["schema"] == {"$ref": "#/components/schemas/UsageEvent"}
    assert batch["schema"] == {"$ref": "#/components/schemas/EventBatchBody"}
    event = schema["components"]["schemas"]["UsageEvent"]
    assert set(event["required"]) == {"eventId", "timestamp", "customerId", "metricName", "quantity"}
    assert set(event["properties"]) >= {"dimensions", "metadata", "productId"}
