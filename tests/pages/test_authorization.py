"""Authorization of every portal route, walked from the application's route table.

Nothing here is a hand-picked list of pages: a new route is checked the moment it exists,
and a route whose path parameter has no sample value below fails `test_every_path_parameter
_has_a_sample` until someone says which object of the victim customer it should name.

The world: customer "acme" (the victim) with a plan, a draft invoice, an alert channel and
rule, an event and a failed event; customer "globex" (the intruder's own). People: a
customer user of globex, an account manager assigned to globex only, and an admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from litestar import Litestar

from portal.app import create_app
from portal.infrastructure.settings import Settings
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import HTMX, Client, make_user, sign_in

# Routes a visitor may open without signing in.
PUBLIC = {
    ("GET", "/portal/login"),
    ("POST", "/portal/login"),
    ("GET", "/portal/forgot-password"),
    ("POST", "/portal/forgot-password"),
    ("GET", "/portal/set-password/{token}"),
    ("POST", "/portal/set-password/{token}"),
    ("GET", "/portal"),
}
UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}

PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "USD",
    "charges": [
        {"key": "base", "model": "flat", "amount": "10.00"},
        {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.01"},
    ],
}


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # the format, e.g. /portal/customers/{customer_id}
    params: tuple[str, ...]
    numeric: frozenset[str] = frozenset()  # parameters typed `:int` in the route

    def url(self, samples: dict[str, str]) -> str:
        return self.path.format(**{name: samples[name] for name in self.params})

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def portal_routes(app: Litestar) -> Iterator[Route]:
    for route in app.routes:
        if not route.path.startswith("/portal"):
            continue
        params = tuple(p if isinstance(p, str) else p.name for p in route.path_parameters)
        numeric = frozenset(name for name in params if f"{{{name}:int}}" in route.path)
        for method in sorted(route.methods - {"OPTIONS", "HEAD"}):
            yield Route(method, route.path_format, params, numeric)


def _settings_free_app() -> Litestar:
    return create_app(
        Settings(
            database_url="postgresql://unused/db", redis_url="redis://unused", broker_url="redis://unused"
        )
    )


ROUTES = list(portal_routes(_settings_free_app()))
PRIVATE = [r for r in ROUTES if (r.method, r.path) not in PUBLIC]
WITH_IDS = [r for r in PRIVATE if r.params]
CHANGES = [r for r in PRIVATE if r.method in UNSAFE]


async def _acme_world(
    client: Client, pg: asyncpg.Connection, admin_key: str, ingest_key: str, redis: Any
) -> dict[str, str]:
    """The victim's objects, by the path parameter names that name them."""
    for customer in ("acme", "globex"):
        await make_customer(client, admin_key, id=customer, name=customer.title(), currency="USD")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=PLAN)).status_code == 201
    for customer in ("acme", "globex"):
        response = await client.post(
            f"/v1/customers/{customer}/subscriptions", headers=auth(admin_key), json={"planId": "metered"}
        )
        assert response.status_code == 201, response.text
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(customer="acme", quantity=3, event_id="acme-e1")]},
    )
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    invoice = await client.post("/v1/customers/acme/invoices", headers=auth(admin_key), json={})
    assert invoice.status_code == 200, invoice.text
    channel = await client.post(
        "/v1/customers/acme/alert-channels",
        headers=auth(admin_key),
        json={"name": "ops", "destination": "mailto://ops@acme.test"},
    )
    assert channel.status_code == 201, channel.text
    rule = await client.post(
        "/v1/customers/acme/alert-rules",
        headers=auth(admin_key),
        json={"name": "calls", "metricName": "api_calls", "basis": "absolute", "levels": ["100"]},
    )
    assert rule.status_code == 201, rule.text
    failed_id = await pg.fetchval(
        "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason) "
        "VALUES ('m1', 'acme', 'acme-f1', '{}', now(), 'test') RETURNING id"
    )
    # A test notice already sent through that channel (written here: a real send would change
    # the stored state while the tests compare it).
    delivery_id = await pg.fetchval(
        "INSERT INTO alert_deliveries "
        "(channel_id, customer_id, notice, status, attempts, masked_destination) "
        "VALUES ($1, 'acme', '{}', 'sent', 1, 'mailto://ops@…') RETURNING id",
        channel.json()["id"],
    )
    victim = await make_user(pg, "alice@acme.test", customer_id="acme")
    return {
        "customer_id": "acme",
        "metric_name": "api_calls",
        "invoice_id": str(invoice.json()["id"]),
        "note_id": "1",  # a credit or debit note of that invoice
        "channel_id": str(channel.json()["id"]),
        "rule_id": str(rule.json()["id"]),
        "delivery_id": str(delivery_id),
        "event_id": "acme-e1",
        "failed_id": str(failed_id),
        "user_id": str(victim),
        "plan_id": "metered",
        "key_id": "1",
        "endpoint_id": "1",
        "token": "not-a-token",
    }


# A fingerprint of everything a portal action could change (whole rows): equal before and
# after means the refused requests changed nothing.
WATCHED = (
    "invoices",
    "invoice_lines",
    "adjustments",
    "audit_log",
    "alert_rules",
    "alert_channels",
    "alert_deliveries",
    "alert_firings",
    "failed_events",
    "users",
    "user_customers",
    "password_tokens",
    "api_keys",
    "webhook_endpoints",
    "customers",
    "meters",
    "plans",
    "subscriptions",
    "credit_grants",
    "plan_entitlements",
    "customer_entitlements",
)
FINGERPRINT = "SELECT md5(concat_ws('|', {}))".format(
    ", ".join(
        f"(SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM {table} t)"
        for table in WATCHED
    )
)


async def _request(
    client: Client, route: Route, samples: dict[str, str], *, csrf: str | None, htmx: bool = False
) -> Any:
    headers = dict(HTMX) if htmx else {}
    if csrf is not None:
        headers["X-CSRF-Token"] = csrf
    return await client.request(
        route.method,
        route.url(samples),
        headers=headers,
        data={} if route.method in UNSAFE else None,
        follow_redirects=False,
    )


def test_every_path_parameter_has_a_sample() -> None:
    names = {name for route in ROUTES for name in route.params}
    known = {
        "customer_id",
        "metric_name",
        "invoice_id",
        "note_id",
        "channel_id",
        "rule_id",
        "delivery_id",
        "event_id",
        "failed_id",
        "user_id",
        "plan_id",
        "key_id",
        "endpoint_id",
        "token",
    }
    assert names <= known, f"add samples to _acme_world for: {sorted(names - known)}"


def test_the_route_table_is_not_empty() -> None:
    # A guard against walking nothing: the portal has pages with ids and pages that change things.
    assert len(WITH_IDS) >= 2 and len(CHANGES) >= 1, [str(r) for r in ROUTES]


@pytest.mark.parametrize("route", PRIVATE, ids=str)
async def test_anonymous_visitors_are_sent_to_login(client: Client, route: Route) -> None:
    samples = {name: "1" if name in route.numeric else "acme" for name in route.params}
    page = await _request(client, route, samples, csrf=None)
    # A page opened is come back to after signing in; a form sent is not (its page is).
    back = f"?next={quote(route.url(samples), safe='')}" if route.method == "GET" else ""
    assert (page.status_code, page.headers.get("location")) == (303, f"/portal/login{back}"), route
    partial = await _request(client, route, samples, csrf=None, htmx=True)
    assert (partial.status_code, partial.headers.get("hx-redirect")) == (401, "/portal/login"), route


async def test_people_of_another_customer_cannot_reach_acme(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    ingest_key: str,
    redis: Any,
    worker: WorkerProcess,
    settings: Settings,
) -> None:
    samples = await _acme_world(client, pg, admin_key, ingest_key, redis)
    await make_user(pg, "mallory@globex.test", customer_id="globex")
    await make_user(pg, "max@vendor.test", role="account_manager", assigned=("globex",))
    before = await pg.fetchval(FINGERPRINT)
    for intruder in ("mallory@globex.test", "max@vendor.test"):
        client.cookies.clear()
        csrf = await sign_in(client, intruder)
        for route in WITH_IDS:
            response = await _request(client, route, samples, csrf=csrf)
            assert response.status_code in (403, 404), (intruder, str(route), response.status_code)
            assert "Acme" not in response.text, (intruder, str(route))
            partial = await _request(client, route, samples, csrf=csrf, htmx=True)
            assert partial.status_code in (403, 404), (intruder, str(route), partial.status_code)
        # Acme's objects under the intruder's own customer: ids are checked against the path.
        own_path = dict(samples, customer_id="globex")
        for route in WITH_IDS:
            if (
                "customer_id" in route.params
                and len(route.params) > 1
                and route.params != ("customer_id", "metric_name")
            ):
                response = await _request(client, route, own_path, csrf=csrf)
                assert response.status_code in (403, 404), (intruder, str(route), response.status_code)
    assert await pg.fetchval(FINGERPRINT) == before


async def test_customer_users_cannot_open_staff_or_admin_pages(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
) -> None:
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_user(pg, "mallory@globex.test", customer_id="globex")
    csrf = await sign_in(client, "mallory@globex.test")
    own = {"customer_id": "globex"}
    for route in PRIVATE:
        if route.params or route.method in UNSAFE:
            continue  # ids: above; changes: the CSRF test below
        response = await _request(client, route, own, csrf=csrf)
        assert response.status_code in (200, 303, 403), (str(route), response.status_code)
        if response.status_code == 200:
            assert route.path in CUSTOMER_PAGES, f"{route} is open to customer users: list it"


# Parameterless pages a customer user may open (everything else answers them 403).
CUSTOMER_PAGES = {"/portal"}


async def test_changes_without_the_csrf_token_are_refused(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    ingest_key: str,
    redis: Any,
    worker: WorkerProcess,
) -> None:
    samples = await _acme_world(client, pg, admin_key, ingest_key, redis)
    await make_user(pg, "ada@vendor.test", role="admin")
    await sign_in(client, "ada@vendor.test")
    before = await pg.fetchval(FINGERPRINT)
    for route in CHANGES:
        for token in (None, "forged-token"):
            response = await _request(client, route, samples, csrf=token)
            assert response.status_code == 403, (str(route), token, response.status_code)
    assert await pg.fetchval(FINGERPRINT) == before
