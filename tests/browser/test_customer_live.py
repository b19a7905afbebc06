"""A customer user in a real browser: signs in through the form, watches the usage total
change while events arrive through the HTTP API (no reload), is kept out of another
customer's page, and can sign in with the keyboard alone; anonymous visitors are sent to
the login page."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
import httpx
from playwright.async_api import Page, expect

from tests.browser.helpers import LOGIN, login, screenshot
from tests.factories import auth, event, make_customer, make_meter
from tests.pages.helpers import PASSWORD, make_user

CARA = "cara@acme.test"
OVERVIEW = "/portal/customers/acme"


async def acme_with_user(api: httpx.AsyncClient, admin_key: str, pg: asyncpg.Connection) -> None:
    """Customer `acme` (Berlin), the sum meter `api_calls`, and Cara, one of its users."""
    await make_customer(api, admin_key, name="Acme Inc", timezone="Europe/Berlin")  # type: ignore[arg-type]
    await make_meter(api, admin_key, metric="api_calls", unit="call")  # type: ignore[arg-type]
    await make_user(pg, CARA, customer_id="acme", name="Cara")


async def send(api: httpx.AsyncClient, ingest_key: str, at_ms: int, *quantities: object) -> None:
    events = [event(quantity=q, timestamp=at_ms) for q in quantities]
    response = await api.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert response.status_code == 202, response.text


async def an_instant_well_inside_the_month(tz: str) -> int:
    """Now, in ms, once the customer's month has at least two minutes left: every event of
    a test lands in one hour (the one this returns) of the period the page shows, whenever
    the suite runs (it once ran from 23:59:57 into the next hour, and the chart had two bars)."""
    now = datetime.now(UTC)
    local = now.astimezone(ZoneInfo(tz))
    month = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    # In UTC: a difference of two times in one zone is a wall-clock one, blind to DST.
    left = (next_month.astimezone(UTC) - now).total_seconds()
    if left < 120:
        await asyncio.sleep(left + 1)
        now = datetime.now(UTC)
    return int(now.timestamp() * 1000)


async def test_usage_total_changes_live_without_a_reload(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    pg: asyncpg.Connection,
) -> None:
    at_ms = await an_instant_well_inside_the_month("Europe/Berlin")
    await acme_with_user(api, admin_key, pg)
    await page.goto(LOGIN)
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await screenshot(page, "login")

    await login(page, CARA)
    await expect(page).to_have_url(re.compile(re.escape(OVERVIEW) + "$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme Inc")
    total = page.locator("#meter-api_calls data.total")
    await expect(total).to_have_text("0")
    await expect(page.get_by_text("No usage yet this period.")).to_be_visible()

    # Anything that reloads or navigates the page would lose this marker.
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    await page.evaluate("window.__marker = 1")

    await send(api, ingest_key, at_ms, 2, "3.5")
    await expect(total).to_have_text("5.5")
    await send(api, ingest_key, at_ms, 7)
    await expect(total).to_have_text("12.5")
    await expect(total).to_have_attribute("value", "12.5")

    assert await page.evaluate("window.__marker") == 1
    assert navigations == []
    await expect(page).to_have_url(re.compile(re.escape(OVERVIEW) + "$"))
    # The chart replaced the empty state; its bar names the hour's exact quantity.
    await expect(page.get_by_text("No usage yet this period.")).to_have_count(0)
    await expect(page.locator("#meter-api_calls rect.bar title")).to_have_text(re.compile(r": 12\.5 calls$"))
    await screenshot(page, "customer-overview")


async def test_anonymous_visitor_is_sent_to_the_login_page(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
) -> None:
    await make_customer(api, admin_key)  # type: ignore[arg-type]
    await page.goto(OVERVIEW)
    # The sign-in page, told to come back to the page asked for
    await expect(page).to_have_url(re.compile(re.escape(LOGIN) + r"\?next=%2Fportal%2Fcustomers%2Facme$"))
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    await expect(page.get_by_text("Acme Inc")).to_have_count(0)


async def test_another_customers_page_is_not_found(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await acme_with_user(api, admin_key, pg)
    await make_customer(api, admin_key, id="other", name="Other Corp")  # type: ignore[arg-type]
    await login(page, CARA)

    response = await page.goto("/portal/customers/other")
    assert response is not None and response.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Not found")
    await expect(page.get_by_text("Other Corp")).to_have_count(0)
    await screenshot(page, "other-customer-not-found")


async def test_login_form_works_with_the_keyboard_alone(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await acme_with_user(api, admin_key, pg)
    await page.goto(LOGIN)
    # The email field has the focus on arrival (autofocus): typing starts right away.
    await expect(page.get_by_label("Email address")).to_be_focused()
    await page.keyboard.type(CARA)
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Password", exact=True)).to_be_focused()
    await page.keyboard.type(PASSWORD)
    await page.keyboard.press("Tab")
    button = page.get_by_role("button", name="Sign in")
    await expect(button).to_be_focused()
    # Keyboard focus is visible (portal.css: a 3 px outline on :focus-visible).
    outline = await button.evaluate("el => getComputedStyle(el).outlineStyle")
    assert outline not in ("", "none"), outline
    await page.keyboard.press("Enter")
    await expect(page).to_have_url(re.compile(re.escape(OVERVIEW) + "$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Acme Inc")
