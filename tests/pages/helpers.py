"""Signing people in to the portal in tests: users made straight in Postgres (the password
hash computed once: argon2id takes ~0.1 s by design), sessions opened through the real
login form."""

from __future__ import annotations

import re
from typing import Any

import asyncpg
import httpx
from litestar.testing import AsyncTestClient

from portal.accounts.passwords import hash_password

Client = AsyncTestClient[Any]
HTMX = {"HX-Request": "true"}
PASSWORD = "correct horse battery staple"
PASSWORD_HASH = hash_password(PASSWORD)


def hidden(html: str, name: str) -> str:
    match = re.search(rf'<input type="hidden" name="{name}" value="([^"]*)">', html)
    assert match, f"no hidden {name!r} field in:\n{html}"
    return match.group(1)


def csrf_of(html: str) -> str:
    """The session's CSRF token, as a signed-in page carries it for htmx."""
    match = re.search(r'hx-headers=\'\{"X-CSRF-Token": "([^"]+)"\}\'', html)
    assert match, "no CSRF token on the page"
    return match.group(1)


async def make_user(
    pg: asyncpg.Connection,
    email: str,
    *,
    role: str = "customer",
    customer_id: str | None = None,
    all_customers: bool = False,
    assigned: tuple[str, ...] = (),
    password_hash: str | None = PASSWORD_HASH,
    name: str | None = None,
) -> int:
    if role == "customer" and customer_id is None:
        customer_id = "acme"
    user_id: int = await pg.fetchval(
        "INSERT INTO users (email, name, role, customer_id, all_customers, password_hash) "
        "VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        email,
        name or email.split("@")[0].title(),
        role,
        customer_id,
        all_customers,
        password_hash,
    )
    for customer in assigned:
        await pg.execute(
            "INSERT INTO user_customers (user_id, customer_id) VALUES ($1, $2)", user_id, customer
        )
    return user_id


async def login_form(client: Client) -> str:
    """Open the login page; returns the form's CSRF token (its cookie is now in the jar)."""
    page = await client.get("/portal/login")
    assert page.status_code == 200, page.text
    return hidden(page.text, "csrf_token")


async def submit_login(client: Client, email: str, password: str = PASSWORD) -> httpx.Response:
    token = await login_form(client)
    form = {"email": email, "password": password, "csrf_token": token}
    return await client.post("/portal/login", data=form, follow_redirects=False)


async def sign_in(client: Client, email: str, password: str = PASSWORD) -> str:
    """Sign in; returns the session's CSRF token (for forms and htmx requests)."""
    response = await submit_login(client, email, password)
    assert response.status_code == 303, response.text
    home = await client.get(response.headers["location"])
    assert home.status_code == 200, home.text
    return csrf_of(home.text)
