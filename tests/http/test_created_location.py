"""A 201 says where the created resource is read from (`Location`), and reading it there
answers the same resource."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.factories import auth

PLAN = {
    "id": "flat",
    "name": "Flat",
    "currency": "EUR",
    "charges": [{"key": "base", "model": "flat", "amount": "10.00"}],
}


async def test_created_resources_say_where_they_are(client: AsyncTestClient[Any], admin_key: str) -> None:
    created = [
        ("/v1/customers", {"id": "acme:eu+1", "name": "Acme", "timezone": "UTC", "currency": "EUR"}),
        ("/v1/plans", PLAN),
        (
            "/v1/webhook-endpoints",
            {"url": "https://hooks.example.com/erp", "eventTypes": ["invoice.finalized"]},
        ),
    ]
    locations = []
    for path, body in created:
        response = await client.post(path, headers=auth(admin_key), json=body)
        assert response.status_code == 201, response.text
        location = response.headers["location"]
        read = await client.get(location, headers=auth(admin_key))
        assert read.status_code == 200, (location, read.text)
        assert read.json()["id"] == response.json()["id"]
        locations.append(location)
    assert locations[:2] == ["/v1/customers/acme%3Aeu%2B1", "/v1/plans/flat"]
    assert locations[2].startswith("/v1/webhook-endpoints/")
    # The same plan again changes nothing: a 200, and nothing new to point at
    again = await client.post("/v1/plans", headers=auth(admin_key), json=PLAN)
    assert again.status_code == 200 and "location" not in again.headers
