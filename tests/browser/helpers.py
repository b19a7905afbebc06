"""Helpers for browser flows: sign in through the real form, save screenshots. The fixtures
(live server, worker, browser, page, api) are in tests/browser/conftest.py."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from tests.billing.conftest import closed_period, month_of
from tests.conftest import ROOT, wait_until_persisted
from tests.factories import auth, event
from tests.pages.helpers import PASSWORD

SCREENSHOTS = ROOT / "tests" / "screenshots"
LOGIN = "/portal/login"
# Long enough for a refresh cycle (portal.js polls every 2 s) plus persisting on a busy
# 2-core machine; Playwright's default (5 s) is too tight when the whole suite runs.
TIMEOUT_MS = 15_000

# Assertions (`expect(...)`) wait up to this long for the page to get there.
expect.set_options(timeout=TIMEOUT_MS)


async def login(page: Page, email: str, password: str = PASSWORD) -> None:
    """Sign in through the real login form (users from tests.pages.helpers.make_user) and
    wait for the start page the server sends the user to; fails with the form's message if
    the sign-in is refused."""
    await page.goto(LOGIN)
    await page.get_by_label("Email address").fill(email)
    await page.get_by_label("Password", exact=True).fill(password)
    async with page.expect_navigation():
        await page.get_by_role("button", name="Sign in").click()
    if page.url.endswith(LOGIN):
        refused = await page.get_by_role("alert").all_inner_texts()
        raise AssertionError(f"sign-in as {email} refused: {refused}")


def screenshot_path(name: str) -> Path:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"screenshot name {name!r}: letters, digits, '.', '_' and '-' only")
    return SCREENSHOTS / f"{name}.png"


async def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG at tests/screenshots/<name>.png (git-ignored), for people to look at;
    the page is also checked with axe-core (see `accessibility_problems`)."""
    path = screenshot_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    ACCESSIBILITY[name] = await accessibility_problems(page)
    return path


# axe-core from the npm registry (tests/browser/vendor/, recorded in static/VENDORED.md),
# run through the DevTools protocol (page.evaluate), so the page's CSP stays as it is.
AXE = (Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js").read_text()
# Per screenshot name: the WCAG 2.1 A/AA problems axe found there ("rule: target").
ACCESSIBILITY: dict[str, list[str]] = {}


async def accessibility_problems(page: Page) -> list[str]:
    """What axe-core finds against WCAG 2.0/2.1 A and AA on the page as it is now."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.evaluate(AXE)
    result = await page.evaluate(
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})"
    )
    return [
        f"{v['id']} ({v['impact']}): {', '.join(str(n['target']) for n in v['nodes'][:3])}"
        for v in result["violations"]
    ]


# --- test data for the flows (tests/browser/test_flows*.py), through the live server's API ---

# The same id always has the same name, zone and currency: the live server caches the
# catalog for a few seconds across tests (see conftest.py).
CUSTOMERS: dict[str, tuple[str, str, str]] = {
    "acme": ("Acme Inc", "Europe/Berlin", "EUR"),
    "globex": ("Globex Corporation", "America/New_York", "USD"),
    "initech": ("Initech", "Asia/Kolkata", "INR"),
    "umbrella": ("Umbrella Health", "Europe/London", "EUR"),
    "hooli": ("Hooli", "America/Los_Angeles", "USD"),
}
# Per call beyond 1,000 included, plus a platform fee: easy to check by hand on an invoice.
SIMPLE_PLANS = {
    currency: {
        "id": f"simple-{currency.lower()}",
        "name": f"Simple ({currency})",
        "currency": currency,
        "charges": [
            {"key": "platform", "model": "flat", "amount": "49.00", "description": "Platform fee"},
            {
                "key": "calls",
                "model": "per_unit",
                "meter": "api_calls",
                "unitPrice": "0.002",
                "includedQuantity": "1000",
                "description": "API calls",
            },
        ],
    }
    for currency in ("EUR", "USD")
}


async def api_post(
    api: httpx.AsyncClient, key: str, path: str, body: dict[str, Any], expected: int = 201
) -> dict[str, Any]:
    response = await api.post(path, headers=auth(key), json=body)
    assert response.status_code == expected, f"{path}: {response.status_code} {response.text}"
    return dict(response.json())


async def add_customer(api: httpx.AsyncClient, key: str, customer_id: str) -> None:
    name, tz, currency = CUSTOMERS[customer_id]
    await api_post(
        api, key, "/v1/customers", {"id": customer_id, "name": name, "timezone": tz, "currency": currency}
    )


async def send_events(api: httpx.AsyncClient, ingest_key: str, events: list[dict[str, Any]]) -> None:
    """Through the ingest API, 1,000 a batch (its limit); every event must be accepted."""
    for start in range(0, len(events), 1000):
        chunk = events[start : start + 1000]
        response = await api.post("/v1/events/batch", headers=auth(ingest_key), json={"events": chunk})
        assert response.status_code == 202 and response.json()["accepted"] == len(chunk), response.text


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


async def closed_period_draft(
    api: httpx.AsyncClient,
    key: str,
    ingest_key: str,
    redis: Redis,
    customer_id: str,
    calls: list[tuple[str, int]],
) -> dict[str, Any]:
    """The customer on SIMPLE_PLANS since the start of its last closed period (ended three
    days ago: past the 24 h grace, so the draft awaits review), `calls` ((region, quantity))
    sent in that period, and its draft. Usage lands a day into the period, or 30 days ago
    if that is later (the ingest accepts events up to 35 days late)."""
    _, tz, currency = CUSTOMERS[customer_id]
    closed = closed_period(tz)
    await api_post(
        api,
        key,
        f"/v1/customers/{customer_id}/subscriptions",
        {
            "planId": SIMPLE_PLANS[currency]["id"],
            "startDate": closed.start_date.isoformat(),
            "anchorDay": closed.anchor_day,
        },
    )
    at = max(closed.period.start + timedelta(days=1), datetime.now(UTC) - timedelta(days=30))
    assert at < closed.period.end
    await send_events(
        api,
        ingest_key,
        [
            event(
                customer=customer_id,
                quantity=q,
                timestamp=ms(at + timedelta(minutes=i)),
                dimensions={"region": region},
            )
            for i, (region, q) in enumerate(calls)
        ],
    )
    await wait_until_persisted(redis)
    return await api_post(
        api,
        key,
        f"/v1/customers/{customer_id}/invoices",
        {"period": month_of(closed.period, tz)},
        expected=200,
    )


async def page_text(page: Page, selector: str = "main") -> str:
    """The visible text of `selector`, whitespace collapsed (for exact sentences)."""
    return " ".join((await page.locator(selector).inner_text()).split())
