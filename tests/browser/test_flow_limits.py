"""A customer user on a phone lowers its limit on API calls and reads the new number: the
limits page fits a 390 px screen and meets WCAG 2.1 A and AA as far as axe-core can tell."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Page, expect

from tests.browser.helpers import (
    ACCESSIBILITY,
    SIMPLE_PLANS,
    add_customer,
    api_post,
    login,
    screenshot,
    send_events,
)
from tests.browser.test_tour import SMALL_TARGETS
from tests.factories import auth, event, make_meter
from tests.pages.helpers import make_user

CARA = "cara@acme.test"
PHONE = {"width": 390, "height": 844}


async def test_a_customer_lowers_a_limit_on_a_phone(
    page: Page, api: httpx.AsyncClient, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    await add_customer(api, admin_key, "acme")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    plan = SIMPLE_PLANS["EUR"]
    await api_post(api, admin_key, "/v1/plans", plan)
    await api_post(api, admin_key, "/v1/customers/acme/subscriptions", {"planId": plan["id"]})
    limits = [{"meter": "api_calls", "limit": "10000", "enforcement": "hard", "customerMayLower": True}]
    response = await api.put(
        f"/v1/plans/{plan['id']}/limits", headers=auth(admin_key), json={"limits": limits}
    )
    assert response.status_code == 200, response.text
    await send_events(api, ingest_key, [event(quantity=7250, dimensions={"region": "eu"})])
    await make_user(pg, CARA, customer_id="acme", name="Cara Schmidt")

    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await login(page, CARA)
    await page.get_by_role("navigation", name="Acme").get_by_role("link", name="Limits").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Limits")
    card = page.locator("#limit-1")
    await expect(card.locator(".limit-used")).to_have_text("7,250 of 10,000 calls — 72%")

    await card.get_by_label("New limit on API calls per period").fill("5,000")
    await card.get_by_role("button", name="Set limit").click()
    await expect(page.get_by_role("status")).to_contain_text("Your new limit is saved.")
    await expect(card.locator(".limit-used")).to_have_text("7,250 of 5,000 calls — 145%")
    await expect(card.get_by_text("Limit reached")).to_be_visible()
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]
    assert await page.evaluate(SMALL_TARGETS) == []  # every control at least 44 px high
    await screenshot(page, "flow-limits-phone")
    assert ACCESSIBILITY["flow-limits-phone"] == []
