"""Signing in and out: sessions, CSRF, throttling, password links."""

from __future__ import annotations

import html
import re
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.accounts import throttle
from portal.app import create_app
from portal.infrastructure.settings import Settings
from tests.factories import make_customer
from tests.pages.helpers import (
    HTMX,
    PASSWORD,
    Client,
    hidden,
    login_form,
    make_user,
    sign_in,
    submit_login,
)
from tests.sinks import wait_for

ADMIN = "ada@vendor.test"


def cookie_attributes(response: httpx.Response, name: str) -> set[str]:
    """The attributes of the Set-Cookie header for `name`, lower-cased, without its value."""
    for header in response.headers.get_list("set-cookie"):
        value, *attributes = (part.strip() for part in header.split(";"))
        if value.startswith(f"{name}="):
            return {attribute.lower() for attribute in attributes}
    raise AssertionError(f"no {name} cookie set")


# --- signing in -------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/portal/health", "/portal/customers/acme"])
async def test_anonymous_page_redirects_to_login(client: Client, path: str) -> None:
    response = await client.get(path, follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == f"/portal/login?next={quote(path, safe='')}"


async def test_signing_in_comes_back_to_the_page_asked_for_and_never_elsewhere(
    client: Client, pg: asyncpg.Connection
) -> None:
    await make_user(pg, "ada-next@vendor.test", role="admin")
    asked = "/portal/customers?sort=spend&q=a%20b"
    sent_away = await client.get(asked, follow_redirects=False)
    form_page = await client.get(sent_away.headers["location"])
    assert f'<input type="hidden" name="next" value="{html.escape(asked)}">' in form_page.text
    token = client.cookies.get("portal_csrf")
    fields = {"email": "ada-next@vendor.test", "password": PASSWORD, "csrf_token": token}
    back = await client.post("/portal/login", data={**fields, "next": asked}, follow_redirects=False)
    assert (back.status_code, back.headers["location"]) == (303, asked)
    # Another site, a scheme, a protocol-relative or backslashed path, the sign-in page
    # itself: the person's home instead
    for hostile in (
        "https://evil.example/portal/x",
        "//evil.example/portal/",
        "/\\evil.example",
        "/portal/\\evil.example",
        "javascript:alert(1)",
        "/portal/login?next=/portal/x",
        "/portal/x\r\nSet-Cookie: a=b",
        "/other/page",
    ):
        client.cookies.clear()
        form = await client.get("/portal/login", params={"next": hostile})
        # (a control character in an address is a 400 before any page: request_checks)
        assert form.status_code in (200, 400) and 'name="next"' not in form.text, hostile
        token = await login_form(client)
        home = await client.post(
            "/portal/login", data={**fields, "csrf_token": token, "next": hostile}, follow_redirects=False
        )
        assert (home.status_code, home.headers["location"]) == (303, "/portal/customers"), hostile


async def test_an_ended_session_says_so_on_the_sign_in_page(client: Client) -> None:
    client.cookies.set("portal_session", "x" * 43)
    response = await client.get("/portal/health", follow_redirects=False)
    assert response.headers["location"] == "/portal/login?next=%2Fportal%2Fhealth&expired=1"
    page = await client.get(response.headers["location"])
    assert (
        '<p class="callout info" role="status">Your session has ended. Sign in again to continue.</p>'
        in page.text
    )


async def test_anonymous_partial_gets_401_and_a_way_to_login(client: Client) -> None:
    response = await client.get("/portal/customers/acme/usage", headers=HTMX, follow_redirects=False)
    assert response.status_code == 401
    assert response.headers["hx-redirect"] == "/portal/login"


async def test_an_unknown_session_cookie_is_cleared(client: Client) -> None:
    client.cookies.set("portal_session", "x" * 43)
    response = await client.get("/portal/health", follow_redirects=False)
    assert response.status_code == 303
    assert 'portal_session=""' in response.headers["set-cookie"]


async def test_login_page_sets_a_csrf_cookie_matching_its_field(client: Client) -> None:
    token = await login_form(client)
    assert client.cookies.get("portal_csrf") == token
    # A second visit (another tab) reuses the token, so both forms stay valid.
    assert await login_form(client) == token


@pytest.mark.parametrize(
    ("email", "password"),
    [
        (ADMIN, "wrong password entirely"),
        ("nobody@vendor.test", "correct horse battery staple"),
        (ADMIN.upper(), "Correct horse battery staple"),
    ],
)
async def test_a_wrong_email_or_password_is_refused_alike(
    client: Client,
    pg: asyncpg.Connection,
    email: str,
    password: str,
) -> None:
    await make_user(pg, ADMIN, role="admin")
    response = await submit_login(client, email, password)
    assert response.status_code == 401
    # The same words whether or not the address has an account.
    assert "That email address and password do not match an account." in response.text
    assert client.cookies.get("portal_session") is None
    assert f'value="{email}"' in response.text  # the address is kept, the password is not


async def test_email_is_matched_without_case(client: Client, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin")
    response = await submit_login(client, "  Ada@Vendor.TEST ")
    assert response.status_code == 303


async def test_a_user_without_a_password_yet_cannot_sign_in(client: Client, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin", password_hash=None)
    response = await submit_login(client, ADMIN, "")
    assert response.status_code == 401
    assert "Enter your email address and your password." in response.text
    response = await submit_login(client, ADMIN, "anything at all here")
    assert response.status_code == 401


async def test_a_disabled_user_cannot_sign_in(client: Client, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin")
    await pg.execute("UPDATE users SET disabled_at = now()")
    assert (await submit_login(client, ADMIN)).status_code == 401


async def test_five_failures_lock_the_address_out_even_with_the_right_password(
    client: Client,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    # For this client only (the test client's address is `testclient`): the owner elsewhere
    # is not locked out (tests/accounts/test_signin_throttle.py).
    await make_user(pg, ADMIN, role="admin")
    for _ in range(5):
        assert (await submit_login(client, ADMIN, "guess guess guess")).status_code == 401
    locked = await submit_login(client, ADMIN)
    assert locked.status_code == 429
    assert "Too many failed sign-ins. Try again in 15 minutes." in locked.text
    assert client.cookies.get("portal_session") is None
    assert 890 <= await redis.ttl(throttle.pair_key(ADMIN, "testclient")) <= 900


async def test_a_success_clears_the_failures(client: Client, pg: asyncpg.Connection, redis: Redis) -> None:
    await make_user(pg, ADMIN, role="admin")
    for _ in range(4):
        await submit_login(client, ADMIN, "guess guess guess")
    assert (await submit_login(client, ADMIN)).status_code == 303
    assert await redis.exists(throttle.pair_key(ADMIN, "testclient")) == 0


async def test_login_without_the_csrf_field_is_refused(client: Client, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin")
    await login_form(client)
    response = await client.post(
        "/portal/login", data={"email": ADMIN, "password": PASSWORD}, follow_redirects=False
    )
    assert response.status_code == 403
    assert "This form has expired or was sent from another site." in response.text
    assert client.cookies.get("portal_session") is None


async def test_login_without_the_csrf_cookie_is_refused(client: Client, pg: asyncpg.Connection) -> None:
    # What a cross-site form can do: send a token it saw, but not the visitor's cookie.
    await make_user(pg, ADMIN, role="admin")
    token = await login_form(client)
    client.cookies.delete("portal_csrf")
    response = await client.post(
        "/portal/login",
        data={"email": ADMIN, "password": PASSWORD, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert client.cookies.get("portal_session") is None


async def test_a_non_ascii_csrf_field_is_refused_not_an_error(client: Client) -> None:
    await login_form(client)
    response = await client.post(
        "/portal/login",
        data={"email": ADMIN, "password": PASSWORD, "csrf_token": "tökén"},
        follow_redirects=False,
    )
    assert response.status_code == 403


async def test_a_planted_unsigned_csrf_pair_is_refused(client: Client) -> None:
    client.cookies.set("portal_csrf", "chosen.by-attacker", path="/portal")
    response = await client.post(
        "/portal/login",
        data={"email": ADMIN, "password": PASSWORD, "csrf_token": "chosen.by-attacker"},
        follow_redirects=False,
    )
    assert response.status_code == 403


async def test_login_opens_a_12_hour_server_side_session_with_a_new_id(
    client: Client,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    user_id = await make_user(pg, ADMIN, role="admin")
    client.cookies.set("portal_session", "f" * 43, domain="testserver.local")  # fixed before sign-in
    response = await submit_login(client, ADMIN)
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/customers"
    assert cookie_attributes(response, "portal_session") == {"httponly", "path=/", "samesite=strict"}
    session_id = client.cookies["portal_session"]
    assert session_id != "f" * 43
    stored = await redis.get(f"sess:{session_id}")
    assert stored is not None and f'"user_id": {user_id}' in stored and '"role": "admin"' in stored
    assert PASSWORD not in stored
    assert 43_190 <= await redis.ttl(f"sess:{session_id}") <= 43_200
    page = await client.get("/portal/health")
    assert page.status_code == 200


async def test_a_customer_user_lands_on_their_own_page(
    client: Client, pg: asyncpg.Connection, admin_key: str
) -> None:
    await make_customer(client, admin_key, id="acme", name="Acme Inc")
    await make_user(pg, "alice@acme.test", customer_id="acme")
    response = await submit_login(client, "alice@acme.test")
    assert response.headers["location"] == "/portal/customers/acme"


async def test_cookies_are_secure_outside_development(settings: Settings, pg: asyncpg.Connection) -> None:
    await make_user(pg, ADMIN, role="admin")
    production = replace(settings, environment="production", secret_key="s" * 40)
    async with AsyncTestClient(app=create_app(production), base_url="https://portal.example") as client:
        form = await client.get("/portal/login")
        assert "secure" in cookie_attributes(form, "portal_csrf")
        response = await submit_login(client, ADMIN)
        assert response.status_code == 303
        assert cookie_attributes(response, "portal_session") == {
            "httponly",
            "path=/",
            "samesite=strict",
            "secure",
        }


async def test_logout_ends_the_session(client: Client, pg: asyncpg.Connection, redis: Redis) -> None:
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    session_id = client.cookies["portal_session"]
    page = await client.get("/portal/health")
    response = await client.post(
        "/portal/logout", data={"csrf_token": hidden(page.text, "csrf_token")}, follow_redirects=False
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/portal/login"
    assert await redis.exists(f"sess:{session_id}") == 0
    client.cookies.set("portal_session", session_id)  # even if the browser kept it
    again = await client.get("/portal/health", follow_redirects=False)
    assert again.status_code == 303


async def test_logout_without_the_session_token_is_refused(
    client: Client,
    pg: asyncpg.Connection,
    redis: Redis,
) -> None:
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    response = await client.post("/portal/logout", data={}, follow_redirects=False)
    assert response.status_code == 403
    assert await redis.exists(f"sess:{client.cookies['portal_session']}") == 1


# --- password links -------------------------------------------------------------------------


async def test_an_invited_user_sets_a_password_by_the_emailed_link_once(
    client: Client,
    pg: asyncpg.Connection,
    settings: Settings,
    admin_key: str,
    mail_sink: Any,
) -> None:
    from portal.accounts.invites import invite
    from portal.infrastructure.clock import system_clock
    from portal.infrastructure.db import create_engine, session_factory

    await make_customer(client, admin_key, id="acme", name="Acme Inc")
    engine = create_engine(settings.database_url or "", pool_size=1)
    try:
        invitation = await invite(
            session_factory(engine),
            settings,
            email="bob@acme.test",
            name="Bob",
            role="customer",
            customer_id="acme",
            now=system_clock(),
        )
    finally:
        await engine.dispose()
    assert invitation.email_error is None
    mails = wait_for(
        lambda: [m for m in mail_sink.messages if m.rcpt_tos == ["bob@acme.test"]], what="the password email"
    )
    message = mails[0].message
    assert message["Subject"] == "Set your password for the usage portal"
    body = message.get_content()
    assert isinstance(body, str)
    link = re.search(r"http://portal\.test(/portal/set-password/\S+)", body)
    assert link is not None and invitation.link.endswith(link.group(1))
    path = link.group(1)

    form = await client.get(path)
    assert form.status_code == 200 and "bob@acme.test" in form.text
    token = hidden(form.text, "csrf_token")
    short = await client.post(path, data={"password": "short", "confirm": "short", "csrf_token": token})
    assert short.status_code == 422 and "Password: use at least 12 characters." in short.text
    differ = await client.post(
        path, data={"password": PASSWORD, "confirm": PASSWORD + "!", "csrf_token": token}
    )
    assert differ.status_code == 422 and "The two passwords are not the same." in differ.text
    done = await client.post(
        path, data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": token}, follow_redirects=False
    )
    assert done.status_code == 303 and done.headers["location"] == "/portal/customers/acme"
    stored = await pg.fetchval("SELECT password_hash FROM users WHERE email = 'bob@acme.test'")
    assert stored.startswith("$argon2id$")

    again = await client.get(path)
    assert again.status_code == 404 and "This link has expired or was already used." in again.text
    client.cookies.clear()
    assert (await submit_login(client, "bob@acme.test")).status_code == 303


async def test_a_forgotten_password_is_reset_by_an_emailed_link_and_strangers_learn_nothing(
    client: Client, pg: asyncpg.Connection, admin_key: str, mail_sink: Any
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_user(pg, "cara@acme.test", customer_id="acme", name="Cara")
    await make_user(pg, "gone@acme.test", customer_id="acme")
    await pg.execute("UPDATE users SET disabled_at = now() WHERE email = 'gone@acme.test'")
    login = await client.get("/portal/login")
    assert 'href="/portal/forgot-password"' in login.text
    form = await client.get("/portal/forgot-password")
    token = hidden(form.text, "csrf_token")

    def mails_to(address: str) -> list[Any]:
        return [m for m in mail_sink.messages if m.rcpt_tos == [address]]

    async def ask(email: str, *, with_token: bool = True) -> httpx.Response:
        data = {"email": email, "csrf_token": token if with_token else ""}
        return await client.post("/portal/forgot-password", data=data)

    # Without the form's token nothing happens; a blank address is asked again
    assert (await ask("cara@acme.test", with_token=False)).status_code == 403
    assert (await ask(" ")).status_code == 422
    # An address with no account, or a disabled one, gets the same answer as a real one, and no email
    for email in ("nobody@acme.test", "gone@acme.test", "Cara@Acme.test"):
        answer = await ask(email)
        assert (
            answer.status_code == 200 and "a link to\n    choose a new password is on its way" in answer.text
        )
    mails = wait_for(lambda: mails_to("cara@acme.test"), what="the reset email")
    assert mails_to("nobody@acme.test") == mails_to("gone@acme.test") == []
    message = mails[0].message
    assert message["Subject"] == "Choose a new password for the usage portal"
    body = message.get_content()
    assert "The link works once and for 1 hour." in body
    link = re.search(r"http://portal\.test(/portal/set-password/\S+)", body)
    assert link is not None
    lasts = await pg.fetchval(
        "SELECT t.expires_at - t.created_at FROM password_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE u.email = 'cara@acme.test'"
    )
    assert lasts.total_seconds() == 3600
    # The link sets a new password: the old one stops working, the new one signs in
    page = await client.get(link.group(1))
    new_password = PASSWORD + "-new"
    done = await client.post(
        link.group(1),
        data={
            "password": new_password,
            "confirm": new_password,
            "csrf_token": hidden(page.text, "csrf_token"),
        },
        follow_redirects=False,
    )
    assert done.status_code == 303
    client.cookies.clear()
    assert (await submit_login(client, "cara@acme.test")).status_code == 401
    assert (await submit_login(client, "cara@acme.test", new_password)).status_code == 303
    # An address is sent at most three links an hour, whoever asks: the answer stays the same
    form = await client.get("/portal/forgot-password")
    token = hidden(form.text, "csrf_token")
    for _ in range(3):
        assert (await ask("cara@acme.test")).status_code == 200
    wait_for(lambda: len(mails_to("cara@acme.test")) == 3, what="two more reset emails")
    assert len(mails_to("cara@acme.test")) == 3


async def test_an_unknown_portal_address_gets_the_error_page_and_the_api_keeps_json(client: Client) -> None:
    page = await client.get("/portal/no-such-page")
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text and "There is no such page." in page.text
    api = await client.get("/v1/no-such-route")
    assert (api.status_code, api.json()) == (404, {"status_code": 404, "detail": "Not Found"})
