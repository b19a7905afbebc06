"""An account manager on a phone cancels an event from its page: the confirmation says what
will happen, a blank reason is refused in words, the cancel lands with its reason in the
event's corrections and the explorer marks the event cancelled; every page fits 390 px."""

from __future__ import annotations

import asyncpg
import httpx
from playwright.async_api import Page, expect
from redis.asyncio import Redis

from tests.browser.helpers import ACCESSIBILITY, add_customer, login, page_text, screenshot, send_events
from tests.browser.test_tour import SMALL_TARGETS
from tests.conftest import wait_until_persisted
from tests.factories import event, make_meter
from tests.pages.helpers import make_user

MARIA = "maria@vendor.test"
PHONE = {"width": 390, "height": 844}


async def fits(page: Page) -> None:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"]


async def test_a_manager_cancels_an_event_on_a_phone(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given two stored events of acme
    await add_customer(api, admin_key, "acme")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    await send_events(
        api,
        ingest_key,
        [
            event(event_id="evt-test-key", quantity=2, dimensions={"region": "eu"}),
            event(event_id="evt-real", quantity=40, dimensions={"region": "eu"}),
        ],
    )
    await wait_until_persisted(redis)
    await make_user(pg, MARIA, role="account_manager", assigned=("acme",), name="Maria")

    # When the manager opens the event from the explorer and asks to cancel it
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await login(page, MARIA)
    await page.goto("/portal/events?customer=acme")
    await page.get_by_role("link", name="evt-test-key").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Event evt-test-key")
    await fits(page)
    await page.get_by_role("link", name="Cancel event").click()

    # Then the confirmation says what will happen
    await expect(page.get_by_role("heading", level=1)).to_have_text("Cancel this event?")
    effects = await page_text(page, "#correction-effects")
    assert effects.startswith("API calls this period drop by 2 calls. Its period is not invoiced yet")
    assert await page.evaluate(SMALL_TARGETS) == []
    await fits(page)
    await screenshot(page, "flow-cancel-event-phone")
    assert ACCESSIBILITY["flow-cancel-event-phone"] == []

    # A blank reason is refused in words, nothing cancelled
    await page.get_by_role("button", name="Cancel event").click()
    await expect(page.locator("#reason-error")).to_have_text(
        "Reason: say why the event is corrected (it is kept in the audit log)."
    )
    assert await pg.fetchval("SELECT count(*) FROM event_corrections") == 0

    # With a reason it is cancelled, and the page says so
    await page.get_by_label("Reason", exact=False).fill("sent with a test key")
    await page.get_by_role("button", name="Cancel event").click()
    await expect(page.get_by_role("status")).to_have_text(
        "Event cancelled: it no longer counts toward usage or the bill."
    )
    await expect(page.locator("#event-state")).to_contain_text(f"by {MARIA}: sent with a test key")
    await expect(page.locator("#corrections li")).to_contain_text("“sent with a test key”")
    await expect(page.get_by_role("link", name="Cancel event")).to_have_count(0)
    await fits(page)
    await screenshot(page, "flow-cancelled-event-phone")
    assert ACCESSIBILITY["flow-cancelled-event-phone"] == []

    # And the explorer marks it
    await page.goto("/portal/events?customer=acme")
    row = page.locator("tr", has=page.get_by_role("link", name="evt-test-key"))
    await expect(row.locator(".pill")).to_have_text("Cancelled")
