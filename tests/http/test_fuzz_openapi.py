"""Every operation of the served OpenAPI schema, fuzzed by schemathesis through the real app
(real Postgres and Redis): no answer is a 5xx, and every answer is one the schema documents
(status code, content type, body schema).

Each operation runs with an admin key and with an ingest key. With the admin key a small
world exists (customer `acme`, meter `api_calls`, plan `metered`, an invoice, a channel and
a rule), and generated ids are often swapped for its ids, so that requests reach past the
"no such customer" answers into the routes' own work."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from litestar import Litestar
from litestar.testing import TestClient

# schemathesis imports `dictionaries` lazily, deep inside Hypothesis, where CPython 3.11.7's
# parser fails ("AST constructor recursion depth mismatch"): imported here, at a shallow stack.
from schemathesis.generation import dictionaries  # noqa: F401
from schemathesis.python import asgi as schemathesis_asgi
from schemathesis.specs.openapi import checks as openapi_checks

from portal.app import create_app
from portal.infrastructure.settings import Settings
from tests.factories import auth

CHECKS = [
    schemathesis.checks.not_a_server_error,
    openapi_checks.status_code_conformance,
    openapi_checks.content_type_conformance,
    openapi_checks.response_schema_conformance,
    openapi_checks.negative_data_rejection,
]

WORLD = {"customer_id": "acme", "plan_id": "metered", "metric_name": "api_calls"}
PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00"},
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "includedQuantity": "100",
            "tiers": [{"upTo": "1000", "unitPrice": "0.01"}, {"upTo": None, "unitPrice": "0.005"}],
        },
    ],
}


def served_schema() -> dict[str, Any]:
    """The document the app serves at /schema/openapi.json (it needs no store to serve it)."""
    response = TestClient(create_app(Settings())).get("/schema/openapi.json")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


schema = schemathesis.openapi.from_dict(served_schema())
# The suite's run is the same every time (derandomized, 15 examples an operation); a longer,
# random one, for hunting: PORTAL_FUZZ_EXAMPLES=200 make fuzz.
LONG_RUN = os.environ.get("PORTAL_FUZZ_EXAMPLES")
FUZZ = hypothesis_settings(
    max_examples=int(LONG_RUN or 15),
    deadline=None,
    derandomize=LONG_RUN is None,
    suppress_health_check=list(HealthCheck),
)


@schema.hook
def flatmap_path_parameters(context: Any, path_parameters: dict[str, Any]) -> Any:
    """Half the time, the world's ids (and id 1) in place of generated ones."""
    if not path_parameters:
        return st.just(path_parameters)
    known = {name: WORLD.get(name, 1) for name in path_parameters}
    return st.sampled_from([path_parameters, {**path_parameters, **known}])


@schema.hook
def flatmap_query(context: Any, query: dict[str, Any] | None) -> Any:
    if not query:
        return st.just(query)
    known = {
        name: value for name, value in (("customerId", "acme"), ("metric", "api_calls")) if name in query
    }
    return st.sampled_from([query, {**query, **known}])


@pytest.fixture(scope="module")
def app(settings: Settings) -> Iterator[Litestar]:
    """One app for the module, started (lifespan) by schemathesis' ASGI client on first use."""
    yield create_app(settings)
    schemathesis_asgi.shutdown_lifespans()


@pytest.fixture
def world(app: Litestar, admin_key: str) -> None:
    with schemathesis_asgi.get_client(app) as client:
        client.headers.update(auth(admin_key))

        def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            response = client.post(path, json=body)
            assert response.status_code in (200, 201), response.text
            answer: dict[str, Any] = response.json()
            return answer

        post("/v1/customers", {"id": "acme", "name": "Acme", "timezone": "Asia/Kolkata", "currency": "USD"})
        post("/v1/meters", {"metricName": "api_calls", "aggregation": "sum", "unit": "call"})
        post("/v1/plans", PLAN)
        post("/v1/customers/acme/subscriptions", {"planId": "metered"})
        post("/v1/customers/acme/invoices", {})
        channel = post(
            "/v1/customers/acme/alert-channels", {"name": "ops", "destination": "json://127.0.0.1:9/hook"}
        )
        post(
            "/v1/customers/acme/alert-rules",
            {"name": "calls", "metricName": "api_calls", "levels": ["100"], "channelIds": [channel["id"]]},
        )
        post("/v1/plans/metered/alert-rules", {"name": "spend", "levels": ["50"]})
        post(
            "/v1/webhook-endpoints",
            {"url": "https://hooks.example.com/erp", "eventTypes": ["invoice.drafted"]},
        )


def call(case: Any, app: Litestar, key: str) -> None:
    case.call_and_validate(app=app, headers=auth(key), checks=CHECKS)


@schema.parametrize()
@FUZZ
def test_with_the_admin_key(case: Any, app: Litestar, admin_key: str, world: None) -> None:
    call(case, app, admin_key)


@schema.parametrize()
@FUZZ
def test_with_the_ingest_key(case: Any, app: Litestar, ingest_key: str) -> None:
    call(case, app, ingest_key)
