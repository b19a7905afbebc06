"""Portal pages over HTTP: sign-in, the customer list and a customer's live usage."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.app import create_app
from portal.paths import STATIC_DIR
from portal.settings import Settings
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter

Client = AsyncTestClient[Any]
HTMX = {"HX-Request": "true"}
HTMX_PATH = "vendor/htmx-2.0.11/htmx.min.js"


def hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert match, f"no hidden {name!r} field in:\n{html}"
    return match.group(1)


async def login_form(client: Client) -> str:
    """Open the login page; returns the form's CSRF token (its cookie is now in the jar)."""
    page = await client.get("/portal/login")
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf_token")


async def submit_login(client: Client, key: str) -> httpx.Response:
    token = await login_form(client)
    return await client.post("/portal/login", data={"api_key": key, "csrf_token": token},
                             follow_redirects=False)


async def sign_in(client: Client, key: str) -> None:
    response = await submit_login(client, key)
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/portal/customers"


def cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    """The attributes of the Set-Cookie header for `name`, lower-cased, without its value."""
    for header in response.headers.get_list("set-cookie"):
        value, *attributes = (part.strip() for part in header.split(";"))
        if value.startswith(f"{name}="):
            return {attribute.lower() for attribute in attributes}
    raise AssertionError(f"no {name} cookie set")


def total(html: str, value: str) -> str:
    return f'<data class="total" value="{value}">{value}</data>'


# --- signing in -------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/portal/customers", "/portal/customers/acme"])
async def test_anonymous_page_redirects_to_login(client: Client, path: str) -> None:
    response = await client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"


async def test_anonymous_partial_gets_401_and_a_way_to_login(client: Client) -> None:
    response = await client.get("/portal/customers/acme/usage", headers=HTMX,
                                follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/portal/login"


async def test_an_unknown_session_cookie_is_cleared(client: Client) -> None:
    client.cookies.set("portal_session", "x" * 43)
    response = await client.get("/portal/customers", follow_redirects=False)
    assert response.status_code == 303
    assert 'portal_session=""' in response.headers["set-cookie"]


async def test_login_page_sets_a_csrf_cookie_matching_its_field(client: Client) -> None:
    token = await login_form(client)
    assert client.cookies.get("portal_csrf") == token
    # A second visit (another tab) reuses the token, so both forms stay valid.
    assert await login_form(client) == token


async def test_wrong_key_is_refused_without_a_session(client: Client, admin_key: str) -> None:
    response = await submit_login(client, admin_key + "x")
    assert response.status_code == 401
    assert "That is not a valid API key." in response.text
    assert "portal_session" not in response.headers.get("set-cookie", "")
    assert client.cookies.get("portal_session") is None


async def test_ingest_key_is_refused(client: Client, ingest_key: str) -> None:
    response = await submit_login(client, ingest_key)
    assert response.status_code == 403
    assert "That key has scope “ingest”; the portal needs an admin key." in response.text
    assert client.cookies.get("portal_session") is None


async def test_login_without_the_csrf_field_is_refused(client: Client, admin_key: str) -> None:
    await login_form(client)
    response = await client.post("/portal/login", data={"api_key": admin_key},
                                 follow_redirects=False)
    assert response.status_code == 403
    assert "This form has expired or was sent from another site." in response.text
    assert client.cookies.get("portal_session") is None


async def test_login_without_the_csrf_cookie_is_refused(client: Client, admin_key: str) -> None:
    # What a cross-site form can do: send a token it saw, but not the visitor's cookie.
    token = await login_form(client)
    client.cookies.delete("portal_csrf")
    response = await client.post("/portal/login", data={"api_key": admin_key, "csrf_token": token},
                                 follow_redirects=False)
    assert response.status_code == 403
    assert client.cookies.get("portal_session") is None


async def test_a_non_ascii_csrf_field_is_refused_not_an_error(client: Client, admin_key: str) -> None:
    await login_form(client)
    response = await client.post("/portal/login", data={"api_key": admin_key, "csrf_token": "tökén"},
                                 follow_redirects=False)
    assert response.status_code == 403


async def test_a_planted_unsigned_csrf_pair_is_refused(client: Client, admin_key: str) -> None:
    client.cookies.set("portal_csrf", "chosen.by-attacker", path="/portal")
    response = await client.post(
        "/portal/login", data={"api_key": admin_key, "csrf_token": "chosen.by-attacker"},
        follow_redirects=False)
    assert response.status_code == 403


async def test_login_opens_a_12_hour_server_side_session(
    client: Client, admin_key: str, redis: Redis,
) -> None:
    response = await submit_login(client, admin_key)
    assert response.status_code == 303
    assert cookie_attributes(response, "portal_session") == {"httponly", "path=/", "samesite=strict"}
    session_id = client.cookies["portal_session"]
    stored = await redis.get(f"sess:{session_id}")
    assert stored is not None and '"key_id": 1' in stored and '"scope": "admin"' in stored
    assert 43_190 <= await redis.ttl(f"sess:{session_id}") <= 43_200
    page = await client.get("/portal/customers")
    assert page.status_code == 200
    assert "No customers yet." in page.text


async def test_cookies_are_secure_outside_development(settings: Settings, admin_key: str) -> None:
    production = replace(settings, environment="production", secret_key="s" * 40)
    async with AsyncTestClient(app=create_app(production), base_url="https://portal.example") as client:
        form = await client.get("/portal/login")
        assert "secure" in cookie_attributes(form, "portal_csrf")
        response = await submit_login(client, admin_key)
        assert response.status_code == 303
        assert cookie_attributes(response, "portal_session") == {
            "httponly", "path=/", "samesite=strict", "secure"}


async def test_logout_ends_the_session(client: Client, admin_key: str, redis: Redis) -> None:
    await sign_in(client, admin_key)
    session_id = client.cookies["portal_session"]
    page = await client.get("/portal/customers")
    response = await client.post("/portal/logout", data={"csrf_token": hidden(page.text, "csrf_token")},
                                 follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"
    assert await redis.exists(f"sess:{session_id}") == 0
    client.cookies.set("portal_session", session_id)  # even if the browser kept it
    again = await client.get("/portal/customers", follow_redirects=False)
    assert again.status_code == 303


async def test_logout_without_the_session_token_is_refused(
    client: Client, admin_key: str, redis: Redis,
) -> None:
    await sign_in(client, admin_key)
    response = await client.post("/portal/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert await redis.exists(f"sess:{client.cookies['portal_session']}") == 1


async def test_revoking_the_key_ends_its_sessions(
    client: Client, admin_key: str, pg: asyncpg.Connection,
) -> None:
    await sign_in(client, admin_key)
    await pg.execute("UPDATE api_keys SET revoked_at = now() WHERE scope = 'admin'")
    response = await client.get("/portal/customers", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"


# --- customers ----------------------------------------------------------------------------

async def test_customers_are_listed_with_links(client: Client, admin_key: str) -> None:
    await make_customer(client, admin_key, id="acme", name="Acme Inc", timezone="Europe/Berlin")
    await make_customer(client, admin_key, id="globex", name="Globex", timezone="Asia/Kolkata")
    await sign_in(client, admin_key)
    page = await client.get("/portal/customers")
    assert page.status_code == 200
    rows = re.findall(r'<a href="(/portal/customers/[^"]+)"><code>([^<]+)</code></a></td>\s*'
                      r"<td>([^<]+)</td>\s*<td>([^<]+)</td>", page.text)
    assert rows == [("/portal/customers/acme", "acme", "Acme Inc", "Europe/Berlin"),
                    ("/portal/customers/globex", "globex", "Globex", "Asia/Kolkata")]


async def test_customers_come_a_hundred_per_page(
    client: Client, admin_key: str, pg: asyncpg.Connection,
) -> None:
    await pg.execute("INSERT INTO customers (id, name, timezone, currency) "
                     "SELECT 'c' || lpad(n::text, 3, '0'), 'Customer ' || n, 'UTC', 'EUR' "
                     "FROM generate_series(1, 101) AS n")
    await sign_in(client, admin_key)
    first = await client.get("/portal/customers")
    assert first.text.count("<td><a href=") == 100
    assert '<a href="/portal/customers?after=c100">Next customers →</a>' in first.text
    second = await client.get("/portal/customers", params={"after": "c100"})
    assert re.findall(r"<code>([^<]+)</code></a>", second.text) == ["c101"]
    assert "Next customers" not in second.text


async def test_customer_page_shows_the_customer_and_its_period(
    client: Client, admin_key: str,
) -> None:
    await make_customer(client, admin_key, name="Acme Inc", timezone="Asia/Kolkata")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await sign_in(client, admin_key)
    page = await client.get("/portal/customers/acme")
    assert page.status_code == 200
    assert "<h1>Acme Inc</h1>" in page.text
    # The period starts at local midnight on the 1st, shown in the customer's zone.
    today = datetime.now(ZoneInfo("Asia/Kolkata"))
    assert f"<strong>1 {today:%b} {today.year} 00:00 IST</strong> to" in page.text
    assert "(Asia/Kolkata)" in page.text
    assert total(page.text, "0") in page.text
    assert "No usage yet this period." in page.text
    assert 'hx-get="/portal/customers/acme/usage"' in page.text
    assert f'src="/static/{HTMX_PATH}?v=' in page.text


async def test_customer_name_is_escaped(client: Client, admin_key: str) -> None:
    await make_customer(client, admin_key, name="<script>alert(1)</script>")
    await sign_in(client, admin_key)
    for path in ("/portal/customers/acme", "/portal/customers"):
        page = await client.get(path)
        assert page.status_code == 200
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert(1)</script>" not in page.text


async def test_unknown_customer_is_404(client: Client, admin_key: str) -> None:
    await sign_in(client, admin_key)
    page = await client.get("/portal/customers/nobody")
    assert page.status_code == 404
    assert "There is no customer “nobody”." in page.text
    partial = await client.get("/portal/customers/nobody/usage", headers=HTMX)
    assert partial.status_code == 404


async def test_pages_are_not_cached_and_run_only_own_scripts(client: Client, admin_key: str) -> None:
    await make_customer(client, admin_key)
    await sign_in(client, admin_key)
    page = await client.get("/portal/customers/acme")
    assert page.headers["cache-control"] == "no-store"
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "unsafe" not in page.headers["content-security-policy"]


# --- live usage ---------------------------------------------------------------------------

async def test_partial_shows_the_exact_new_total(
    client: Client, admin_key: str, ingest_key: str, worker: WorkerProcess, redis: Redis,
) -> None:
    await make_customer(client, admin_key, timezone="Europe/Berlin")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await sign_in(client, admin_key)
    before = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert before.status_code == 200
    assert total(before.text, "0") in before.text

    sent = await client.post("/v1/events/batch", headers=auth(ingest_key),
                             json={"events": [event(quantity=2), event(quantity="3.5")]})
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)

    after = await client.get("/portal/customers/acme/usage", headers=HTMX)
    assert after.status_code == 200
    assert total(after.text, "5.5") in after.text
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title></rect>', after.text)
    assert len(bars) == 1 and bars[0].endswith(": 5.5 call"), bars
    assert re.search(r'<td class="num">5.5</td>', after.text)
    assert "<html" not in after.text  # a fragment, not a page


async def test_partial_shows_the_cost_so_far_from_the_customers_plan(
    client: Client, admin_key: str, ingest_key: str, worker: WorkerProcess, redis: Redis,
) -> None:
    await make_customer(client, admin_key, timezone="Europe/Berlin", currency="EUR")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    plan = {"id": "pay-as-you-go", "name": "PAYG", "currency": "EUR", "charges": [
        {"key": "base", "model": "flat", "amount": "5.00"},
        {"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.25"}]}
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    # Anchored on today's date, so the period began at local midnight today.
    assert (await client.post("/v1/customers/acme/subscriptions", headers=auth(admin_key),
                              json={"planId": "pay-as-you-go"})).status_code == 201
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key),
                             json={"events": [event(quantity=2), event(quantity="3.5")]})
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    await sign_in(client, admin_key)

    panel = await client.get("/portal/customers/acme/usage", headers=HTMX)
    so_far = re.search(r'<data class="total" id="cost-so-far" value="([^"]+)">', panel.text)
    assert so_far is not None and so_far.group(1) == "6.38"  # 5.00 + 5.5 x 0.25 = 6.375, half up
    assert 'id="cost-projected"' in panel.text and "EUR" in panel.text


async def test_partial_answers_204_while_nothing_changed(
    client: Client, admin_key: str, ingest_key: str,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    await sign_in(client, admin_key)
    seen = hidden((await client.get("/portal/customers/acme/usage", headers=HTMX)).text, "seen")
    unchanged = await client.get("/portal/customers/acme/usage", headers=HTMX,
                                 params={"seen": seen})
    if unchanged.status_code == 200:  # the "complete through" minute turned in between
        seen = hidden(unchanged.text, "seen")
        unchanged = await client.get("/portal/customers/acme/usage", headers=HTMX,
                                     params={"seen": seen})
    assert unchanged.status_code == 204
    assert unchanged.content == b""

    sent = await client.post("/v1/events/batch", headers=auth(ingest_key),
                             json={"events": [event(quantity=7)]})
    assert sent.status_code == 202, sent.text
    changed = await client.get("/portal/customers/acme/usage", headers=HTMX,
                               params={"seen": seen})
    assert changed.status_code == 200
    assert total(changed.text, "7") in changed.text


async def test_vendored_htmx_matches_its_recorded_checksum(client: Client) -> None:
    served = await client.get(f"/static/{HTMX_PATH}")
    assert served.status_code == 200
    digest = hashlib.sha256(served.content).hexdigest()
    assert f"`{digest}`" in (STATIC_DIR / "VENDORED.md").read_text()
    assert b'version:"2.0.11"' in served.content
