"""A customer user in a real browser, end to end: sets up alerts (channels, a monthly
budget, a meter rule) and receives the test notices for real (a webhook on the session's
HTTP sink, an email through the SMTP sink the worker sends to); opens a finalized invoice,
its lines and its printable view."""

from __future__ import annotations

import re
import time
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Locator, Page, expect
from redis.asyncio import Redis

from alerts.signing import verify
from tests.browser.helpers import (
    ACCESSIBILITY,
    SIMPLE_PLANS,
    add_customer,
    api_post,
    closed_period_draft,
    login,
    page_text,
    screenshot,
    send_events,
)
from tests.conftest import ALERT_HTTP_PORT
from tests.conftest import wait_for as wait_until
from tests.factories import auth, event, make_meter
from tests.pages.helpers import make_user
from tests.sinks import HttpReceiver, SmtpServer, wait_for

CARA = "cara@acme.test"
HOOK_PATH = "/hooks/acme-flows"


async def acme_on_a_plan(
    api: httpx.AsyncClient, admin_key: str, pg: asyncpg.Connection, *, subscribe: bool = True
) -> None:
    await add_customer(api, admin_key, "acme")
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    await api_post(api, admin_key, "/v1/plans", SIMPLE_PLANS["EUR"])
    if subscribe:
        await api_post(api, admin_key, "/v1/customers/acme/subscriptions", {"planId": "simple-eur"})
    await make_user(pg, CARA, customer_id="acme", name="Cara Schmidt")


def customer_tabs(page: Page) -> Locator:
    """The customer's sections (Usage, Invoices, Alerts), named after the customer."""
    return page.get_by_role("navigation", name="Acme Inc")


PHONE = {"width": 390, "height": 844}


async def page_width(page: Page) -> int:
    width: int = await page.evaluate("document.documentElement.scrollWidth")
    return width


async def test_customer_sets_up_alerts_and_receives_the_test_notices(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    pg: asyncpg.Connection,
    mail_sink: SmtpServer,
    hook_sink: HttpReceiver,
) -> None:
    await acme_on_a_plan(api, admin_key, pg)
    await page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    await login(page, CARA)
    await customer_tabs(page).get_by_role("link", name="Alerts").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Alerts")
    await expect(page.get_by_text("No rules yet.")).to_be_visible()
    await expect(page.get_by_text("No channels yet.")).to_be_visible()

    # A webhook: the answer redirects to the channel's page, which shows the address as
    # typed (not Apprise's json://) and the signing secret once, with a copy button.
    hook_url = f"http://127.0.0.1:{ALERT_HTTP_PORT}{HOOK_PATH}"
    await page.get_by_role("link", name="Add a channel").click()
    await page.get_by_label("Channel name").fill("Ops webhook")
    await page.get_by_label("Webhook URL", exact=True).check()
    await page.get_by_label("Address", exact=True).fill(hook_url)
    await page.get_by_role("button", name="Add channel").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channel “Ops webhook” added")
    await expect(page.get_by_role("status")).to_have_text(f"Notices go to Webhook to 127.0.0.1: {hook_url}.")
    secret = await page.get_by_role("textbox", name="Signing secret").input_value()
    assert secret.startswith("whsec_"), secret
    await expect(page.get_by_text("It is shown only once")).to_be_visible()
    await page.get_by_role("button", name="Copy").click()
    await expect(page.locator("button[data-copy]")).to_have_text("Copied")
    assert await page.evaluate("navigator.clipboard.readText()") == secret
    await screenshot(page, "flow-alerts-channel-created")
    # Reloading neither adds the channel again nor shows the secret again.
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channel “Ops webhook” added")
    await expect(page.get_by_role("textbox", name="Signing secret")).to_have_count(0)
    assert await pg.fetchval("SELECT count(*) FROM alert_channels WHERE name = 'Ops webhook'") == 1

    # The test notice: its line under Test notices turns to Sent by itself, no reload.
    await page.get_by_role("button", name="Send a test notice").click()
    await expect(page.locator(".alerts-notice")).to_have_text(
        "A test notice is on its way. Its status under Test notices updates by itself."
    )
    await page.evaluate("window.portalSamePage = true")
    received = wait_for(
        lambda: [r for r in hook_sink.requests if r.path.startswith(HOOK_PATH)],
        timeout=15,
        what="the test notice at the webhook",
    )
    assert len(received) == 1
    hook = received[0]
    assert verify(
        secret,
        hook.header("X-Usage-Portal-Timestamp") or "",
        hook.body,
        hook.header("X-Usage-Portal-Signature") or "",
        now=time.time(),
    )
    assert hook.json()["customer"]["name"] == "Acme Inc", hook.json()
    tests = page.locator(".alerts-tests li")
    await expect(tests.filter(has_text="Ops webhook: Sent")).to_contain_text("(1 attempt)")
    assert await page.evaluate("window.portalSamePage === true"), "the page was reloaded"

    # An email address: no secret; the test notice goes through the portal's SMTP server.
    await page.get_by_role("link", name="Add a channel").click()
    await page.get_by_label("Channel name").fill("Finance team")
    await page.get_by_label("Email address", exact=True).check()
    await page.get_by_label("Address", exact=True).fill("finance@acme.test")
    await page.get_by_role("button", name="Add channel").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Channel “Finance team” added")
    await expect(page.get_by_role("status")).to_have_text("Notices go to Email to finance@acme.test.")
    await expect(page.get_by_role("textbox", name="Signing secret")).to_have_count(0)
    await page.get_by_role("link", name="Back to alerts").click()
    channels = page.locator("table.alerts-channels tbody tr")
    await expect(channels).to_have_count(2)
    await expect(channels.filter(has_text="Finance team")).to_contain_text("Email to finance@acme.test")
    await expect(channels.filter(has_text="Ops webhook").locator("td").first).to_have_text(
        f"Webhook to 127.0.0.1{hook_url}"
    )
    await page.get_by_role("button", name="Send a test notice to Finance team").click()
    mails = wait_for(
        lambda: [m for m in mail_sink.messages if "finance@acme.test" in m.rcpt_tos],
        timeout=15,
        what="the test notice by email",
    )
    assert len(mails) == 1
    assert "Acme Inc" in str(mails[0].message["Subject"]), mails[0].message["Subject"]
    await expect(tests.filter(has_text="Finance team: Sent")).to_be_visible()
    await expect(tests).to_have_count(2)

    # A monthly budget: one "Notify at" field, 50/80/100 % filled in, and a summary that
    # follows what is typed.
    await page.get_by_role("link", name="Set a monthly budget").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Set a monthly budget")
    await expect(page.get_by_label("Rule name")).to_have_value("Monthly budget")
    await expect(page.get_by_label("Notify at")).to_have_value("50%, 80%, 100%")
    await page.get_by_label("Monthly budget (EUR)").fill("500")
    await expect(page.locator("#rule-summary")).to_have_text(
        "Notify every channel when spend reaches 50%, 80% and 100% of EUR 500.00 in a billing period."
    )
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator(".alerts-notice")).to_have_text(
        "Your monthly budget was saved. You will be notified as spend reaches each level."
    )

    # A meter rule, first with a mistake: refused with the field named and the values kept.
    await page.get_by_role("link", name="New rule").click()
    await page.get_by_label("Rule name").fill("API calls over 20k")
    await page.get_by_label("What to watch").select_option("api_calls")
    await page.get_by_label("Notify at").fill("20k")
    await page.get_by_label("Ops webhook").check()
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-levels-error")).to_have_text("Notify at: “20k” is not a number.")
    await expect(page.get_by_label("Rule name")).to_have_value("API calls over 20k")
    await expect(page.get_by_label("Ops webhook")).to_be_checked()
    await screenshot(page, "flow-alerts-rule-error")
    await page.get_by_label("Notify at").fill("20,000 and 50,000")
    await expect(page.locator("#rule-summary")).to_have_text(
        "Notify “Ops webhook” when API calls usage reaches 20,000 calls and 50,000 calls in a billing period."
    )
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator(".alerts-notice")).to_have_text(
        "The rule was saved. It is checked within a minute and after new usage arrives."
    )

    rules = page.locator("table.alerts-rules tbody tr")
    await expect(rules).to_have_count(2)
    budget = rules.filter(has_text="Monthly budget")
    assert " ".join((await budget.inner_text()).split()).startswith(
        "Monthly budget Spend % of monthly budget: 50% 80% 100% EUR 500.00 All channels — Active"
    )
    calls = rules.filter(has_text="API calls over 20k")
    assert " ".join((await calls.inner_text()).split()).startswith(
        "API calls over 20k API calls Amounts: 20,000 calls 50,000 calls — Ops webhook — Active"
    )
    assert "No notices yet." in await page_text(page, "#history")
    await screenshot(page, "flow-alerts-home")

    # On a phone, the alerts page and its forms fit the screen: nothing scrolls sideways.
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    assert await page_width(page) <= PHONE["width"]
    await screenshot(page, "flow-alerts-phone")
    await rules.filter(has_text="API calls over 20k").get_by_role("link", name="Edit").click()
    await expect(page.get_by_label("Notify at")).to_have_value("20,000, 50,000")
    assert await page_width(page) <= PHONE["width"]
    await page.goto(page.url.rsplit("/alerts/", 1)[0] + "/alerts/channels/new")
    assert await page_width(page) <= PHONE["width"]
    # The alerts pages meet WCAG 2.1 A and AA as far as axe-core can tell (at each screenshot).
    problems = {
        name: found for name, found in ACCESSIBILITY.items() if found and name.startswith("flow-alerts-")
    }
    assert problems == {}, problems


async def test_customer_opens_a_finalized_invoice_and_its_printable_view(
    page: Page,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await acme_on_a_plan(api, admin_key, pg, subscribe=False)
    # 12,500 calls: 1,000 included, 11,500 x EUR 0.002 = EUR 23.00, plus the EUR 49.00 fee.
    draft = await closed_period_draft(
        api, admin_key, ingest_key, redis, "acme", [("eu", 4000), ("us", 6500), ("ap", 2000)]
    )
    await api_post(api, admin_key, f"/v1/invoices/{draft['id']}/approve", {}, expected=200)

    await login(page, CARA)
    await customer_tabs(page).get_by_role("link", name="Invoices").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoices")
    rows = page.locator("#invoices tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator("td").nth(1)).to_have_text("Issued")
    await expect(rows.first.locator("td.num")).to_have_text(["EUR 72.00", "EUR 72.00"])

    await rows.first.get_by_role("link", name="INV-000001").click()
    await expect(page).to_have_url(re.compile(rf"/portal/invoices/{draft['id']}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-000001")
    await expect(page.locator("#invoice-number")).to_have_text("INV-000001")
    fee = page.locator("#invoice-lines tr.line-flat")
    await expect(fee.get_by_role("rowheader")).to_have_text("Platform fee")
    await expect(fee.locator("td.num").last).to_have_text("EUR 49.00")
    usage = page.locator("#invoice-lines tr.line-usage")
    await expect(usage.get_by_role("rowheader")).to_contain_text("API calls")
    await expect(usage.locator("td.num")).to_have_text(["12,500", "0.002", "EUR 23.00"])
    await expect(usage.get_by_role("rowheader")).to_contain_text("1,000 included, 11,500 billable")
    await expect(page.locator("#invoice-total")).to_have_text("EUR 72.00")
    totals = page.locator("#invoice-totals")
    await expect(totals.get_by_role("row", name="Subtotal EUR 72.00")).to_be_visible()

    await page.get_by_role("link", name="Printable view").click()
    await expect(page).to_have_url(re.compile(rf"/portal/invoices/{draft['id']}/print$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Invoice INV-000001")
    await expect(page.get_by_role("navigation")).to_have_count(0)
    await expect(page.locator("#invoice-total")).to_have_text("EUR 72.00")
    await expect(page.locator("#invoice-lines tr.line-usage td.num").last).to_have_text("EUR 23.00")


async def test_choosing_dates_on_a_meter_page_shows_those_dates(
    page: Page, api: httpx.AsyncClient, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given a customer on a meter's page, its range left at "this period"
    await acme_on_a_plan(api, admin_key, pg)
    await login(page, CARA)
    await page.goto("/portal/customers/acme/meters/api_calls")
    # When they choose two dates and press Show
    await page.get_by_label("From", exact=True).fill("2026-11-01")
    await page.get_by_label("To", exact=True).fill("2026-11-30")
    await page.get_by_role("button", name="Show").click()
    # Then those dates are what is shown (they were ignored unless the range was changed too)
    await expect(page).to_have_url(re.compile(r"range=custom&.*from=2026-11-01&to=2026-11-30"))
    await expect(page.locator("#sel-range")).to_have_value("custom")


async def test_a_long_rule_name_wraps_instead_of_squeezing_its_notices(
    page: Page, api: httpx.AsyncClient, admin_key: str, ingest_key: str, pg: asyncpg.Connection
) -> None:
    # Given a rule whose name is 100 letters without a space, which has fired
    await acme_on_a_plan(api, admin_key, pg)
    name = "Q" * 100
    await api_post(
        api,
        admin_key,
        "/v1/customers/acme/alert-rules",
        {"name": name, "metricName": "api_calls", "basis": "absolute", "levels": ["1"]},
    )
    await send_events(api, ingest_key, [event(quantity=5, dimensions={"region": "eu"})])

    async def fired() -> list[Any]:
        response = await api.get("/v1/customers/acme/alert-firings", headers=auth(admin_key))
        return list(response.json())

    await wait_until(fired, timeout=30, what="the rule's firing")
    await login(page, CARA)
    await page.goto("/portal/customers/acme/alerts")
    history = page.locator("table.alerts-history")
    await expect(history.locator("td[data-label='Rule']").first).to_have_text(name)
    # Then the name wraps and the deliveries beside it keep a readable width
    widths = await history.evaluate(
        """t => ({rule: t.querySelector("td[data-label='Rule']").getBoundingClientRect().width,
                 deliveries: t.querySelector("td[data-label='Deliveries']").getBoundingClientRect().width})"""
    )
    assert widths["deliveries"] >= 150, widths
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
