"""Admin pages: customers, meters, plans and catalog upload, users, API keys.

Every create path is checked against the rows it leaves; every refused form answers 422
with the field named and nothing created; every /portal/admin route refuses non-admins.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.accounts.service import find_by_email
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.settings import Settings
from portal.pages import sessions
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import Client, make_user, sign_in
from tests.sinks import SmtpServer, wait_for

ADMIN = "ada@vendor.test"
XSS = "<script>alert(1)</script>"
XSS_SHOWN = "&lt;script&gt;alert(1)&lt;/script&gt;"

CATALOG = """
meters:
  - metricName: tokens
    aggregation: sum
    unit: token
    groupBy: [model]
customers:
  - id: initech
    name: Initech
    timezone: Europe/Berlin
    currency: EUR
plans:
  - id: tokens-eur
    name: Tokens EUR
    currency: EUR
    minimumCommitment: 50
    discounts:
      - kind: percentage
        percent: 10
        description: launch
    charges:
      - key: base
        model: flat
        amount: 20
      - key: tokens
        model: graduated
        meter: tokens
        includedQuantity: 1000
        tiers:
          - upTo: 100000
            unitPrice: 0.002
          - unitPrice: 0.001
subscriptions:
  - customerId: initech
    planId: tokens-eur
"""


async def admin(pg: asyncpg.Connection, client: Client) -> str:
    """An admin, signed in; returns the session's CSRF token."""
    await make_user(pg, ADMIN, role="admin", name="Ada")
    return await sign_in(client, ADMIN)


async def count(pg: asyncpg.Connection, table: str) -> int:
    value: int = await pg.fetchval(f"SELECT count(*) FROM {table}")
    return value


def field_value(page: str, name: str) -> str:
    match = re.search(rf'<input id="f-{name}" name="{name}" type="[a-z]+" value="([^"]*)"', page)
    assert match, f"no {name} input"
    return html.unescape(match.group(1))


def assert_refused(response: Any, field: str, label: str) -> None:
    """422, the field marked, and the summary naming it."""
    assert response.status_code == 422, response.text
    assert f'id="{field}-error"' in response.text
    assert f'<a href="#f-{field}">{label}: ' in response.text
    assert 'aria-invalid="true"' in response.text
    assert "Nothing was saved." in response.text


# --- index ---------------------------------------------------------------------------------


async def test_index_links_every_section_with_counts(
    client: Client, pg: asyncpg.Connection, admin_key: str
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex")
    await make_meter(client, admin_key)
    await make_user(pg, "pending@vendor.test", role="account_manager", password_hash=None)
    await admin(pg, client)
    page = await client.get("/portal/admin")
    assert page.status_code == 200
    assert '<data class="count" id="count-customers" value="2">2</data>' in page.text
    assert '<data class="count" id="count-meters" value="1">1</data>' in page.text
    assert '<data class="count" id="count-plans" value="0">0</data>' in page.text
    assert '<data class="count" id="count-users" value="1">1</data>' in page.text
    assert "active · 1 invited · 0 disabled" in page.text
    assert '<data class="count" id="count-keys" value="1">1</data>' in page.text  # the admin_key
    for href in ("customers", "meters", "plans", "catalog", "users", "keys"):
        assert f'href="/portal/admin/{href}"' in page.text


# --- customers -----------------------------------------------------------------------------


async def test_create_customer(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    form = await client.get("/portal/admin/customers")
    assert "No customers yet." in form.text
    assert "<option>Asia/Kolkata</option>" in form.text
    assert "<option selected>UTC</option>" in form.text
    assert "<option>localtime</option>" not in form.text and "<option>Factory</option>" not in form.text
    response = await client.post(
        "/portal/admin/customers",
        data={
            "csrf_token": csrf,
            "id": "initech",
            "name": "Initech GmbH",
            "timezone": "Europe/Berlin",
            "currency": "eur",  # upper-cased, as whoever typed it meant
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/admin/customers?created=initech"
    rows = await pg.fetch("SELECT id, name, timezone, currency FROM customers")
    assert [tuple(r) for r in rows] == [("initech", "Initech GmbH", "Europe/Berlin", "EUR")]
    page = await client.get(response.headers["location"])
    assert "Customer <code>initech</code> created." in page.text
    assert "<td>Initech GmbH</td>" in page.text
    # Written in the same transaction, as the audit page lists it.
    audit = await pg.fetchrow(
        "SELECT actor, action, object_type, object_id, customer_id, detail FROM audit_log"
    )
    assert tuple(audit)[:5] == ("ada@vendor.test", "customer.created", "customer", "initech", "initech")
    assert json.loads(audit["detail"]) == {
        "name": "Initech GmbH",
        "timezone": "Europe/Berlin",
        "currency": "EUR",
    }
    log = await client.get("/portal/audit")
    assert (
        '<td>ada@vendor.test</td><td>customer.created</td>\n    <td><a href="/portal/customers/initech">'
        "Customer Initech GmbH</a></td>\n    <td>Initech GmbH <code>initech</code></td>"
    ) in log.text
    assert "When (UTC)" in log.text


@pytest.mark.parametrize(
    ("changes", "field", "label", "says"),
    [
        ({"id": "has space"}, "id", "Customer id", "letters, digits or . _ : @ + -"),
        ({"id": ""}, "id", "Customer id", "required"),
        ({"name": ""}, "name", "Name", "required"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Time zone", "unknown IANA time zone"),
        ({"currency": "e u r"}, "currency", "Currency", "three capital letters"),
        ({"timezone": "localtime"}, "timezone", "Time zone", "unknown IANA time zone"),
        ({"currency": "XYZ"}, "currency", "Currency", "XYZ is not an ISO 4217 currency code"),
        ({"id": "acme"}, "id", "Customer id", "a customer “acme” already exists"),
    ],
)
async def test_customer_form_mistakes(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    changes: dict[str, str],
    field: str,
    label: str,
    says: str,
) -> None:
    await make_customer(client, admin_key, id="acme")
    csrf = await admin(pg, client)
    data = {
        "csrf_token": csrf,
        "id": "initech",
        "name": "Initech <b>",
        "timezone": "Asia/Tokyo",
        "currency": "JPY",
        **changes,
    }
    response = await client.post("/portal/admin/customers", data=data)
    assert_refused(response, field, label)
    assert says in html.unescape(response.text)
    assert await count(pg, "customers") == 1
    # What was typed is kept (the select keeps its zone when it is one).
    assert field_value(response.text, "name") == data["name"]
    assert field_value(response.text, "currency") == data["currency"]
    if field != "timezone":
        assert "<option selected>Asia/Tokyo</option>" in response.text


async def test_customer_form_names_every_empty_field(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/customers",
        data={"csrf_token": csrf, "id": "", "name": "", "timezone": "UTC", "currency": ""},
    )
    for field, label in (("id", "Customer id"), ("name", "Name"), ("currency", "Currency")):
        assert_refused(response, field, label)
    assert await count(pg, "customers") == 0


# --- meters --------------------------------------------------------------------------------


async def test_create_meter(client: Client, pg: asyncpg.Connection, admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme")
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/meters",
        data={
            "csrf_token": csrf,
            "metricName": "seats",
            "aggregation": "unique_count",
            "unit": "seat",
            "groupBy": "region, plan",
            "uniqueBy": "user",
        },
        follow_redirects=False,
    )
    assert response.status_code == 303
    rows = await pg.fetch("SELECT metric_name, aggregation, unit, group_by, unique_by FROM meters")
    assert [tuple(r) for r in rows] == [("seats", "unique_count", "seat", ["region", "plan"], "user")]
    page = await client.get(response.headers["location"])
    assert "Meter <code>seats</code> created" in page.text
    assert "<td>region, plan</td>" in page.text
    audit = await pg.fetchrow("SELECT action, object_type, object_id, customer_id, detail FROM audit_log")
    assert tuple(audit)[:4] == ("meter.created", "meter", "seats", None)
    assert json.loads(audit["detail"]) == {
        "aggregation": "unique_count",
        "unit": "seat",
        "group_by": ["region", "plan"],
        "unique_by": "user",
    }
    log = await client.get("/portal/audit")
    assert '<td>meter.created</td>\n    <td><a href="/portal/admin/meters">Meter seats</a></td>' in log.text
    # The catalog cache was invalidated: ingest accepts the new meter's events at once.
    accepted = await client.post(
        "/v1/events",
        headers=auth(admin_key),
        json=event(metric="seats", dimensions={"region": "eu", "plan": "pro", "user": "u1"}),
    )
    assert accepted.status_code == 202, accepted.text


@pytest.mark.parametrize(
    ("changes", "field", "label", "says"),
    [
        ({"metricName": "bad name"}, "metricName", "Metric name", "letters, digits"),
        (
            {"aggregation": "median"},
            "aggregation",
            "Aggregation",
            "one of sum, count, max, unique_count, latest",
        ),
        ({"unit": ""}, "unit", "Unit", "required"),
        (
            {"aggregation": "unique_count"},
            "uniqueBy",
            "Unique by",
            "required when aggregation is unique_count",
        ),
        ({"uniqueBy": "user"}, "uniqueBy", "Unique by", "only allowed when aggregation is unique_count"),
        ({"groupBy": "region, region"}, "groupBy", "Group-by dimensions", "dimensions must not repeat"),
        ({"groupBy": "a,b,c,d,e,f"}, "groupBy", "Group-by dimensions", "at most 5 dimensions"),
        ({"metricName": "api_calls"}, "metricName", "Metric name", "a meter “api_calls” already exists"),
    ],
)
async def test_meter_form_mistakes(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    changes: dict[str, str],
    field: str,
    label: str,
    says: str,
) -> None:
    await make_meter(client, admin_key, metric="api_calls")
    csrf = await admin(pg, client)
    data = {
        "csrf_token": csrf,
        "metricName": "tokens",
        "aggregation": "sum",
        "unit": "token",
        "groupBy": "model",
        "uniqueBy": "",
        **changes,
    }
    response = await client.post("/portal/admin/meters", data=data)
    assert_refused(response, field, label)
    assert says in html.unescape(response.text)
    assert await count(pg, "meters") == 1
    assert field_value(response.text, "groupBy") == data["groupBy"]
    assert field_value(response.text, "unit") == data["unit"]


# --- plans and catalog upload --------------------------------------------------------------


async def upload(
    client: Client, csrf: str, content: str, *, name: str = "catalog.yaml", check: bool = False
) -> Any:
    data = {"csrf_token": csrf, **({"check": "1"} if check else {})}
    return await client.post(
        "/portal/admin/catalog", data=data, files={"file": (name, content.encode(), "application/yaml")}
    )


def outcome_row(page: str, kind: str, created: int, changed: int, unchanged: int) -> str:
    return (
        f'<tr><th scope="row">{kind}</th><td class="num">{created}</td><td class="num">{changed}</td>\n'
        f'        <td class="num">{unchanged}</td></tr>'
    )


async def test_catalog_upload_applies_the_file(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    response = await upload(client, csrf, CATALOG)
    assert response.status_code == 200, response.text
    assert "Applied catalog.yaml" in response.text
    for kind in ("meters", "customers", "plans", "subscriptions"):
        assert outcome_row(response.text, kind, 1, 0, 0) in response.text
    assert await pg.fetchval("SELECT timezone FROM customers WHERE id = 'initech'") == "Europe/Berlin"
    assert (
        await pg.fetchval("SELECT plan_id FROM subscriptions WHERE customer_id = 'initech'") == "tokens-eur"
    )
    audit = await pg.fetchrow("SELECT actor, action, object_id, detail FROM audit_log")
    assert (audit["actor"], audit["action"], audit["object_id"]) == (ADMIN, "catalog.applied", "catalog.yaml")
    assert json.loads(audit["detail"])["created"] == {
        "meters": 1,
        "customers": 1,
        "plans": 1,
        "subscriptions": 1,
    }

    # The same file again changes nothing.
    again = await upload(client, csrf, CATALOG)
    for kind in ("meters", "customers", "plans", "subscriptions"):
        assert outcome_row(again.text, kind, 0, 0, 1) in again.text

    plans = await client.get("/portal/admin/plans")
    assert (
        "<td>Tokens EUR</td><td>EUR</td><td>base: flat fee; tokens: graduated tiers on tokens</td>\n"
        '      <td class="num">1</td>'
    ) in plans.text
    detail = await client.get("/portal/admin/plans/tokens-eur")
    assert detail.status_code == 200
    assert "<h1>Tokens EUR</h1>" in detail.text
    assert "<dd>EUR 20.00 per period" in detail.text
    assert "<dd>1,000 tokens free</dd>" in detail.text
    assert (
        '<tr><th scope="row">1</th><td class="num">100,000</td>\n'
        '          <td class="num">EUR 0.002</td><td class="num">EUR 0.00</td></tr>'
    ) in detail.text
    assert '<td class="num">above 100,000</td>' in detail.text
    assert "<li>10 % off: launch</li>" in detail.text
    assert "<strong>EUR 50.00</strong> per period" in detail.text
    assert "<code>initech</code></a></li>" in detail.text
    assert (await client.get("/portal/admin/plans/nope")).status_code == 404


async def test_catalog_check_only_applies_nothing(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    response = await upload(client, csrf, CATALOG, check=True)
    assert response.status_code == 200, response.text
    assert "Checked catalog.yaml: nothing was applied" in response.text
    assert outcome_row(response.text, "plans", 1, 0, 0) in response.text
    for table in ("meters", "customers", "plans", "subscriptions", "audit_log"):
        assert await count(pg, table) == 0, table


@pytest.mark.parametrize(
    ("content", "name", "says"),
    [
        # A valid meter first, then a customer that exists with another name: nothing applied.
        (
            "meters:\n  - {metricName: tokens, aggregation: sum, unit: token}\n"
            "customers:\n  - {id: acme, name: Not Acme, timezone: UTC, currency: EUR}\n",
            "catalog.yaml",
            "customers[0] (acme): exists with another name, zone or currency",
        ),
        ("meters: [unclosed", "catalog.yaml", "catalog.yaml: not valid YAML"),
        ('{"meters": [{"metricName": "x"}]}', "catalog.json", "Object missing required field `aggregation`"),
        (
            "plans:\n  - {id: p, name: P, currency: EUR, charges: [{key: c, model: per_unit, meter: nope, "
            "unitPrice: 1}]}\n",
            "plans.yml",
            "plans[0] (p): charge c.meter: no meter 'nope'",
        ),
    ],
)
async def test_catalog_upload_refused_applies_nothing(
    client: Client, pg: asyncpg.Connection, admin_key: str, content: str, name: str, says: str
) -> None:
    await make_customer(client, admin_key, id="acme", name="Acme Inc")
    csrf = await admin(pg, client)
    response = await upload(client, csrf, content, name=name)
    assert_refused(response, "file", "Catalog file")
    assert says in html.unescape(response.text)
    assert "(nothing was applied)" in response.text
    assert await count(pg, "meters") == 0
    assert await count(pg, "plans") == 0
    assert await count(pg, "audit_log") == 0


async def test_catalog_upload_without_a_file(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/catalog",
        data={"csrf_token": csrf},
        files={"file": ("", b"", "application/octet-stream")},
    )
    assert_refused(response, "file", "Catalog file")
    assert "choose a YAML or JSON catalog file" in response.text


# --- users ---------------------------------------------------------------------------------


@pytest.fixture
def carol_refused(mail_sink: SmtpServer) -> Iterator[None]:
    """The real SMTP server answers 550 for Carol, so pages hand her link over instead."""
    mail_sink.refuse.add("carol@acme.test")
    yield
    mail_sink.refuse.discard("carol@acme.test")


def link_token(page: str) -> str:
    match = re.search(
        r'readonly rows="3" spellcheck="false" autocomplete="off">http://[^<]+/portal/set-password/([A-Za-z0-9_-]+)</textarea>',
        page,
    )
    assert match, "no set-password link on the page"
    return match.group(1)


async def test_invite_emails_the_link_through_the_portal_smtp_server(
    client: Client, pg: asyncpg.Connection, admin_key: str, mail_sink: SmtpServer
) -> None:
    await make_customer(client, admin_key, id="acme")
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/users",
        data={
            "csrf_token": csrf,
            "email": "carol@acme.test",
            "name": "Carol",
            "role": "customer",
            "customerId": "acme",
            "scope": "assigned",
        },
    )
    assert response.status_code == 200, response.text
    assert "Carol is invited" in response.text and "Link emailed to carol@acme.test." in response.text
    mails = wait_for(
        lambda: [m for m in mail_sink.messages if m.rcpt_tos == ["carol@acme.test"]], what="the invitation"
    )
    body = mails[0].message.get_content()
    token = re.search(r"/portal/set-password/([A-Za-z0-9_-]+)", body)
    assert token is not None
    assert (await client.get(f"/portal/set-password/{token.group(1)}")).status_code == 200


async def test_invite_customer_user_email_failed_shows_the_link(
    client: Client, pg: asyncpg.Connection, admin_key: str, mail_sink: SmtpServer
) -> None:
    await make_customer(client, admin_key, id="acme")
    csrf = await admin(pg, client)
    mail_sink.refuse.add("carol@acme.test")  # the real server answers 550 for her
    try:
        response = await client.post(
            "/portal/admin/users",
            data={
                "csrf_token": csrf,
                "email": "carol@acme.test",
                "name": "Carol",
                "role": "customer",
                "customerId": "acme",
                "scope": "assigned",
            },
        )
    finally:
        mail_sink.refuse.discard("carol@acme.test")
    assert response.status_code == 200, response.text
    assert re.search(
        r"The email could not be sent: SMTP server 127\.0\.0\.1:\d+ refused every recipient: "
        r"carol@acme\.test",
        html.unescape(response.text),
    ), response.text
    assert '<button type="button" class="copy-button" data-copy="link">Copy link</button>' in response.text
    token = link_token(response.text)
    user = await pg.fetchrow(
        "SELECT id, email, name, role, customer_id, all_customers, password_hash, "
        "disabled_at FROM users WHERE email = 'carol@acme.test'"
    )
    assert tuple(user)[1:] == ("carol@acme.test", "Carol", "customer", "acme", False, None, None)
    stored = await pg.fetchrow(
        "SELECT user_id, used_at FROM password_tokens WHERE token_hash = $1",
        hashlib.sha256(token.encode()).digest(),
    )
    assert tuple(stored) == (user["id"], None)
    audit = await pg.fetchrow(
        "SELECT actor, action, object_type, object_id, customer_id, detail FROM audit_log"
    )
    assert tuple(audit)[:5] == (ADMIN, "user.created", "user", str(user["id"]), "acme")
    assert json.loads(audit["detail"]) == {"email": "carol@acme.test", "role": "customer", "emailed": False}
    users = await client.get("/portal/admin/users")
    assert '<span class="status status-invited">invited</span>' in users.text


async def test_invite_account_manager_emailed(
    client: Client, pg: asyncpg.Connection, admin_key: str, mail_sink: SmtpServer
) -> None:
    for customer in ("acme", "globex", "initech"):
        await make_customer(client, admin_key, id=customer)
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/users",
        data={
            "csrf_token": csrf,
            "email": "max@vendor.test",
            "name": "Max",
            "role": "account_manager",
            "customerId": "acme",
            "scope": "assigned",
            "assigned": ["globex", "initech"],
        },
    )
    assert response.status_code == 200, response.text
    assert "Link emailed to max@vendor.test." in response.text
    assert "set-password/" not in response.text  # emailed: the link is not handed over
    wait_for(
        lambda: [m for m in mail_sink.messages if m.rcpt_tos == ["max@vendor.test"]], what="the invitation"
    )
    user = await pg.fetchrow(
        "SELECT id, role, customer_id, all_customers FROM users WHERE email = $1", "max@vendor.test"
    )
    assert tuple(user)[1:] == ("account_manager", None, False)
    assigned = await pg.fetch(
        "SELECT customer_id FROM user_customers WHERE user_id = $1 ORDER BY 1", user["id"]
    )
    assert [r[0] for r in assigned] == ["globex", "initech"]
    # ...and another admin (admins may create admins).
    response = await client.post(
        "/portal/admin/users",
        data={"csrf_token": csrf, "email": "bo@vendor.test", "name": "Bo", "role": "admin", "scope": "all"},
    )
    assert response.status_code == 200, response.text
    assert await pg.fetchval("SELECT role FROM users WHERE email = 'bo@vendor.test'") == "admin"
    assert await pg.fetchval("SELECT all_customers FROM users WHERE email = 'bo@vendor.test'") is False


@pytest.mark.parametrize(
    ("changes", "field", "label", "says"),
    [
        ({"email": "not-an-address"}, "email", "Email", "not an email address"),
        ({"email": "a\x00b@acme.test"}, "email", "Email", "not an email address"),
        (
            {"name": "Eve\r\nBcc: evil@x.test"},
            "name",
            "Name",
            "must be on one line, without control characters",
        ),
        ({"name": "Nul\x00name"}, "name", "Name", "must be on one line, without control characters"),
        ({"email": "ADA@vendor.test"}, "email", "Email", "already exists"),
        ({"name": ""}, "name", "Name", "required"),
        ({"role": "owner"}, "role", "Role", "choose one of"),
        ({"customerId": ""}, "customerId", "Customer", "a customer user belongs to one customer"),
        ({"customerId": "nobody"}, "customerId", "Customer", "there is no customer 'nobody'"),
        (
            {"role": "account_manager", "assigned": "nobody"},
            "assigned",
            "Assigned customers",
            "there is no customer 'nobody'",
        ),
        ({"role": "account_manager", "scope": "some"}, "scope", "Customers seen", "choose all customers"),
    ],
)
async def test_user_form_mistakes(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    changes: dict[str, str],
    field: str,
    label: str,
    says: str,
) -> None:
    await make_customer(client, admin_key, id="acme")
    csrf = await admin(pg, client)
    data = {
        "csrf_token": csrf,
        "email": "carol@acme.test",
        "name": "Carol",
        "role": "customer",
        "customerId": "acme",
        "scope": "assigned",
        **changes,
    }
    response = await client.post("/portal/admin/users", data=data)
    assert_refused(response, field, label)
    assert says in html.unescape(response.text)
    assert await count(pg, "users") == 1  # the admin only
    assert await count(pg, "password_tokens") == 0
    assert field_value(response.text, "email") == data["email"]
    assert field_value(response.text, "name") == data["name"]


async def test_resend_link_and_disable(
    client: Client,
    pg: asyncpg.Connection,
    admin_key: str,
    redis: Redis,
    settings: Settings,
    carol_refused: None,
) -> None:
    await make_customer(client, admin_key, id="acme")
    carol = await make_user(pg, "carol@acme.test", customer_id="acme", name="Carol")
    csrf = await admin(pg, client)

    response = await client.post(f"/portal/admin/users/{carol}/resend", data={"csrf_token": csrf})
    assert response.status_code == 200, response.text
    assert "New link for Carol" in response.text
    token = link_token(response.text)
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM password_tokens WHERE user_id = $1 AND used_at IS NULL", carol
        )
        == 1
    )
    assert (
        await pg.fetchval("SELECT action FROM audit_log WHERE object_id = $1", str(carol))
        == "user.link_resent"
    )

    # Carol is signed in somewhere; disabling her ends that session.
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    async with session_factory(engine)() as db:
        user = await find_by_email(db, "carol@acme.test")
    await engine.dispose()
    assert user is not None
    session = await sessions.open_session(redis, user)
    confirm = await client.get(f"/portal/admin/users/{carol}/disable")
    assert confirm.status_code == 200
    assert "Disable Carol?" in confirm.text
    response = await client.post(
        f"/portal/admin/users/{carol}/disable", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    assert await pg.fetchval("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1", carol) is True
    assert await redis.get(sessions.session_key(session.id)) is None
    assert (
        await pg.fetchval(
            "SELECT count(*) FROM audit_log WHERE action = 'user.disabled' AND object_id = $1", str(carol)
        )
        == 1
    )
    page = await client.get(response.headers["location"])
    assert '<span class="status status-disabled" id="user-status">disabled</span>' in page.text
    # The link sent before no longer works, and no new one is sent to a disabled person.
    assert (await client.get(f"/portal/set-password/{token}")).status_code == 404
    again = await client.post(f"/portal/admin/users/{carol}/resend", data={"csrf_token": csrf})
    assert again.status_code == 409


async def test_a_disabled_user_is_enabled_again_and_signs_in(
    client: Client, pg: asyncpg.Connection, admin_key: str
) -> None:
    await make_customer(client, admin_key, id="acme")
    carol = await make_user(pg, "carol@acme.test", customer_id="acme", name="Carol")
    await pg.execute("UPDATE users SET disabled_at = now() WHERE id = $1", carol)
    csrf = await admin(pg, client)
    page = await client.get(f"/portal/admin/users/{carol}")
    assert "Enable carol@acme.test" in page.text
    response = await client.post(
        f"/portal/admin/users/{carol}/enable", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    assert await pg.fetchval("SELECT disabled_at FROM users WHERE id = $1", carol) is None
    audit = await pg.fetchval("SELECT action FROM audit_log WHERE object_id = $1", str(carol))
    assert audit == "user.enabled"
    client.cookies.clear()
    await sign_in(client, "carol@acme.test")


async def test_admin_cannot_disable_themselves(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    me = await pg.fetchval("SELECT id FROM users WHERE email = $1", ADMIN)
    page = await client.get(f"/portal/admin/users/{me}")
    assert "This is you" in page.text
    assert f"/portal/admin/users/{me}/disable" not in page.text
    response = await client.post(f"/portal/admin/users/{me}/disable", data={"csrf_token": csrf})
    assert response.status_code == 422
    assert "You cannot disable yourself" in response.text
    assert await pg.fetchval("SELECT disabled_at FROM users WHERE id = $1", me) is None
    assert (await client.get("/portal/admin")).status_code == 200  # still signed in


@pytest.mark.parametrize(
    "path",
    [
        "/portal/admin/users/99",
        "/portal/admin/users/abc",
        "/portal/admin/users/%C2%B2/disable",
        "/portal/admin/keys/99/revoke",
        "/portal/admin/keys/x/revoke",
    ],
)
async def test_unknown_ids_are_404(client: Client, pg: asyncpg.Connection, path: str) -> None:
    await admin(pg, client)
    assert (await client.get(path)).status_code == 404


async def test_change_assigned_customers(
    client: Client, pg: asyncpg.Connection, admin_key: str, redis: Redis, settings: Settings
) -> None:
    for customer in ("acme", "globex", "initech"):
        await make_customer(client, admin_key, id=customer)
    max_id = await make_user(pg, "max@vendor.test", role="account_manager", assigned=("acme",))
    csrf = await admin(pg, client)
    url = f"/portal/admin/users/{max_id}/customers"
    response = await client.post(
        url,
        data={"csrf_token": csrf, "scope": "assigned", "assigned": ["globex", "initech"]},
        follow_redirects=False,
    )
    assert response.status_code == 303
    rows = await pg.fetch("SELECT customer_id FROM user_customers WHERE user_id = $1 ORDER BY 1", max_id)
    assert [r[0] for r in rows] == ["globex", "initech"]
    page = await client.get(response.headers["location"])
    assert "Assigned customers saved." in page.text
    assert 'value="globex" checked' in page.text and 'value="acme" checked' not in page.text

    refused = await client.post(url, data={"csrf_token": csrf, "scope": "assigned", "assigned": ["nobody"]})
    assert_refused(refused, "assigned", "Assigned customers")
    rows = await pg.fetch("SELECT customer_id FROM user_customers WHERE user_id = $1 ORDER BY 1", max_id)
    assert [r[0] for r in rows] == ["globex", "initech"]

    # Switching to "all customers" ends Max's sessions (they cache the flag).
    engine = create_engine(settings.database_url or "", pool_size=1)
    async with session_factory(engine)() as db:
        user = await find_by_email(db, "max@vendor.test")
    await engine.dispose()
    assert user is not None
    session = await sessions.open_session(redis, user)
    response = await client.post(url, data={"csrf_token": csrf, "scope": "all"}, follow_redirects=False)
    assert response.status_code == 303
    assert await pg.fetchval("SELECT all_customers FROM users WHERE id = $1", max_id) is True
    assert await count(pg, "user_customers") == 0
    assert await redis.get(sessions.session_key(session.id)) is None
    actions = await pg.fetch("SELECT action FROM audit_log WHERE object_id = $1", str(max_id))
    assert [r[0] for r in actions] == ["user.customers_changed", "user.customers_changed"]


# --- API keys ------------------------------------------------------------------------------


async def test_key_shown_once_works_and_revoke(client: Client, pg: asyncpg.Connection) -> None:
    csrf = await admin(pg, client)
    response = await client.post(
        "/portal/admin/keys", data={"csrf_token": csrf, "name": "billing", "scope": "admin"}
    )
    assert response.status_code == 200, response.text
    match = re.search(
        r'<textarea id="token" class="copy" readonly rows="2" spellcheck="false" autocomplete="off">'
        r"(up_admin_[A-Za-z0-9_-]+)</textarea>",
        response.text,
    )
    assert match
    token = match.group(1)
    assert "shown only this once" in response.text
    assert '<button type="button" class="copy-button" data-copy="token">Copy key</button>' in response.text
    row = await pg.fetchrow("SELECT id, name, scope, prefix, key_hash, revoked_at FROM api_keys")
    assert tuple(row)[1:] == ("billing", "admin", token[:13], hashlib.sha256(token.encode()).digest(), None)
    assert (await client.get("/v1/customers", headers=auth(token))).status_code == 200
    listing = await client.get("/portal/admin/keys")
    assert token not in listing.text
    assert f"<code>{token[:13]}…</code>" in listing.text
    audit = await pg.fetchrow("SELECT action, object_id, detail FROM audit_log")
    assert (audit["action"], audit["object_id"]) == ("api_key.created", str(row["id"]))
    assert json.loads(audit["detail"]) == {"name": "billing", "scope": "admin"}

    # A second key, revoked before any process checked it: refused at once.
    response = await client.post(
        "/portal/admin/keys", data={"csrf_token": csrf, "name": "old", "scope": "ingest"}
    )
    match = re.search(r">(up_ingest_[A-Za-z0-9_-]+)</textarea>", response.text)
    assert match
    old_token = match.group(1)
    old_id = await pg.fetchval("SELECT id FROM api_keys WHERE name = 'old'")
    confirm = await client.get(f"/portal/admin/keys/{old_id}/revoke")
    assert confirm.status_code == 200
    assert "will stop\n  working at once, in every web process." in confirm.text
    response = await client.post(
        f"/portal/admin/keys/{old_id}/revoke", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert response.status_code == 303
    assert await pg.fetchval("SELECT revoked_at IS NOT NULL FROM api_keys WHERE id = $1", old_id) is True
    page = await client.get(response.headers["location"])
    assert "is revoked.\n  Every web process refuses it from now on." in page.text
    events = await client.post("/v1/events", headers=auth(old_token), json=event())
    assert events.status_code == 401
    assert await pg.fetchval("SELECT count(*) FROM audit_log WHERE action = 'api_key.revoked'") == 1
    assert (await client.get("/portal/admin/keys/999/revoke")).status_code == 404


@pytest.mark.parametrize(
    ("data", "field", "label"),
    [
        ({"name": "", "scope": "ingest"}, "name", "Name"),
        ({"name": "x" * 201, "scope": "ingest"}, "name", "Name"),
        ({"name": "ok", "scope": "root"}, "scope", "Scope"),
    ],
)
async def test_key_form_mistakes(
    client: Client, pg: asyncpg.Connection, data: dict[str, str], field: str, label: str
) -> None:
    csrf = await admin(pg, client)
    response = await client.post("/portal/admin/keys", data={"csrf_token": csrf, **data})
    assert_refused(response, field, label)
    assert await count(pg, "api_keys") == 0
    assert field_value(response.text, "name") == data["name"]


# --- escaping ------------------------------------------------------------------------------


async def test_names_people_type_are_escaped(client: Client, pg: asyncpg.Connection, admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", name=XSS)
    await make_user(pg, "x@acme.test", customer_id="acme", name=XSS)
    csrf = await admin(pg, client)
    await client.post("/portal/admin/keys", data={"csrf_token": csrf, "name": XSS, "scope": "ingest"})
    for path in ("/portal/admin/customers", "/portal/admin/users", "/portal/admin/keys"):
        page = await client.get(path)
        assert XSS_SHOWN in page.text, path
        assert XSS not in page.text, path
    refused = await client.post(
        "/portal/admin/customers",
        data={"csrf_token": csrf, "id": "acme", "name": XSS, "timezone": "UTC", "currency": "EUR"},
    )
    assert refused.status_code == 422
    assert XSS not in refused.text


# --- who may open the admin pages ----------------------------------------------------------


def admin_routes(client: Client) -> list[tuple[str, str]]:
    out = []
    for route in client.app.routes:
        if route.path.startswith("/portal/admin"):
            path = re.sub(r"\{[a-z_]+(:[a-z]+)?\}", "1", route.path)
            out.extend((method, path) for method in sorted(route.methods - {"OPTIONS", "HEAD"}))
    return out


@pytest.mark.parametrize("role", ["account_manager", "customer"])
async def test_non_admins_are_refused_everywhere(
    client: Client, pg: asyncpg.Connection, admin_key: str, role: str
) -> None:
    await make_customer(client, admin_key, id="acme")
    user_id = await make_user(pg, "who@vendor.test", role=role, all_customers=role == "account_manager")
    csrf = await sign_in(client, "who@vendor.test")
    routes = admin_routes(client)
    assert len(routes) >= 17
    for method, path in routes:
        path = path.replace("/1", f"/{user_id}")
        response = await client.request(
            method,
            path,
            data={
                "csrf_token": csrf,
                "name": "x",
                "scope": "admin",
                "email": "y@vendor.test",
                "role": "admin",
            },
        )
        assert response.status_code == 403, (method, path, response.status_code)
    assert await count(pg, "api_keys") == 1  # the admin_key fixture's
    assert await count(pg, "users") == 1
    assert await pg.fetchval("SELECT disabled_at FROM users WHERE id = $1", user_id) is None


async def test_anonymous_is_sent_to_login(client: Client) -> None:
    response = await client.get("/portal/admin/users", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login?next=%2Fportal%2Fadmin%2Fusers"


async def test_admin_form_without_csrf_is_refused(client: Client, pg: asyncpg.Connection) -> None:
    await admin(pg, client)
    response = await client.post("/portal/admin/keys", data={"name": "x", "scope": "admin"})
    assert response.status_code == 403
    assert await count(pg, "api_keys") == 0
