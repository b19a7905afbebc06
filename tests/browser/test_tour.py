"""A tour of every main page with realistic demo data, one screenshot each
(tests/screenshots/tour-*.png, mobile-*.png), for people to look at the product as a whole.

One test on purpose: the demo data (three customers in three zones and currencies, a
finalized invoice and a draft awaiting review, an alert that fired, a failed event, three
kinds of users) is built once through the API, then every page is visited and checked for
one or two exact texts, so the tour also proves each page works. The main customer and
manager pages are then opened again on a 390 px phone (mobile-*.png): none may be wider than
the screen, and axe-core checks every screenshot at both widths."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from tests.browser.helpers import (
    ACCESSIBILITY,
    SIMPLE_PLANS,
    TIMEOUT_MS,
    add_customer,
    api_post,
    closed_period_draft,
    login,
    ms,
    page_text,
    screenshot,
    send_events,
)
from tests.conftest import ALERT_HTTP_PORT, ROOT, wait_for, wait_until_persisted
from tests.factories import auth, event, make_meter
from tests.pages.helpers import make_user
from tests.sinks import HttpReceiver

CARA = "cara@acme.test"
MAX = "max@vendor.test"
ADA = "ada@vendor.test"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
REGIONS = ("eu-central", "us-east", "ap-south")
# Controls a thumb must hit (links inside sentences and tick boxes inside their labels are
# exempt), as "tag: text" for each one under 44 px high.
SMALL_TARGETS = """[...document.querySelectorAll(
    'button, a.button, nav a, summary, select, input:not([type=checkbox], [type=radio], [type=hidden])'
)].filter(e => e.offsetParent !== null && e.getBoundingClientRect().height < 44)
 .map(e => `${e.tagName.toLowerCase()}: ${e.textContent.trim().slice(0, 40) || e.name}`)"""
# Initech (INR) is on its own plan: a platform fee plus graduated API calls.
GROWTH_INR = {
    "id": "growth-inr",
    "name": "Growth (INR)",
    "currency": "INR",
    "charges": [
        {"key": "platform", "model": "flat", "amount": "3999.00", "description": "Platform fee"},
        {
            "key": "calls",
            "model": "graduated",
            "meter": "api_calls",
            "description": "API calls",
            "tiers": [{"upTo": "10000", "unitPrice": "0"}, {"unitPrice": "0.25"}],
        },
    ],
}


def current_usage(customer: str, hours: int, base: int) -> list[dict[str, Any]]:
    """One event an hour over the last `hours` hours (all inside the current period, which
    started at least three days ago), regions taking turns, quantities rising and falling."""
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    return [
        event(
            customer=customer,
            event_id=f"tour-{customer}-{h}",
            quantity=base + (h % 7) * 10,
            timestamp=ms(now - timedelta(hours=h) + timedelta(minutes=5)),
            dimensions={"region": REGIONS[h % 3]},
        )
        for h in range(1, hours + 1)
    ]


async def a_failed_event(
    pg: asyncpg.Connection, api: httpx.AsyncClient, ingest_key: str, redis: Redis
) -> None:
    """The store refuses one event (as during a failed migration): the worker retries, then
    records it as failed (the same way as test_flows_manager.py)."""
    await pg.execute("""
        CREATE FUNCTION refuse_ledger() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_ledger BEFORE INSERT ON event_ledger
            FOR EACH ROW EXECUTE FUNCTION refuse_ledger();
    """)
    try:
        await send_events(
            api,
            ingest_key,
            [event(customer="globex", event_id="lost-7", quantity=7, dimensions={"region": "us-east"})],
        )
        await wait_until_persisted(redis)
    finally:
        await pg.execute("DROP TRIGGER refuse_ledger ON event_ledger; DROP FUNCTION refuse_ledger()")


async def invitation(pg: asyncpg.Connection, user_id: int) -> str:
    """A set-password link, as portal/accounts/service.issue_password_link stores it."""
    token = secrets.token_urlsafe(32)
    await pg.execute(
        "INSERT INTO password_tokens (token_hash, user_id, created_at, expires_at) "
        "VALUES ($1, $2, now(), now() + interval '7 days')",
        hashlib.sha256(token.encode()).digest(),
        user_id,
    )
    return token


async def signed_in(browser: Browser, portal_url: str, email: str, viewport: dict[str, int] = LAPTOP) -> Page:
    context: BrowserContext = await browser.new_context(
        base_url=portal_url, viewport=viewport, locale="en-GB", timezone_id="UTC"
    )  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    tab = await context.new_page()
    await login(tab, email)
    return tab


async def h1(page: Page, text: str) -> None:
    await expect(page.get_by_role("heading", level=1)).to_have_text(text)


async def test_tour_of_every_main_page(
    page: Page,
    browser: Browser,
    portal_url: str,
    api: httpx.AsyncClient,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    pg: asyncpg.Connection,
    hook_sink: HttpReceiver,
) -> None:
    # --- the demo data -------------------------------------------------------------------
    for customer in ("acme", "globex", "initech"):
        await add_customer(api, admin_key, customer)
    await make_meter(api, admin_key, metric="api_calls", unit="call", group_by=["region"])  # type: ignore[arg-type]
    await make_meter(api, admin_key, metric="storage_gb", aggregation="max", unit="GB")  # type: ignore[arg-type]
    for plan in (*SIMPLE_PLANS.values(), GROWTH_INR):
        await api_post(api, admin_key, "/v1/plans", plan)
    # The accounting system hears of issued invoices (nothing listens there: retried, failed).
    await api_post(
        api,
        admin_key,
        "/v1/webhook-endpoints",
        {"url": "http://127.0.0.1:9/erp", "eventTypes": ["invoice.finalized"]},
    )
    # acme: 12,500 calls last period → EUR 49.00 + 11,500 x 0.002 = EUR 72.00, approved.
    acme_draft = await closed_period_draft(
        api,
        admin_key,
        ingest_key,
        redis,
        "acme",
        [("eu-central", 4000), ("us-east", 6500), ("ap-south", 2000)],
    )
    finalized = await api_post(api, admin_key, f"/v1/invoices/{acme_draft['id']}/approve", {}, expected=200)
    # globex: 4,500 calls → USD 49.00 + 3,500 x 0.002 = USD 56.00, awaiting review.
    await closed_period_draft(
        api, admin_key, ingest_key, redis, "globex", [("us-east", 3000), ("eu-central", 1500)]
    )
    await api_post(api, admin_key, "/v1/customers/initech/subscriptions", {"planId": "growth-inr"})

    # acme's alerts: a webhook and a rule on API calls, crossed by this period's usage.
    hook = await api_post(
        api,
        admin_key,
        "/v1/customers/acme/alert-channels",
        {"name": "Ops webhook", "destination": f"json://127.0.0.1:{ALERT_HTTP_PORT}/hooks/tour"},
    )
    await api_post(
        api,
        admin_key,
        "/v1/customers/acme/alert-rules",
        {
            "name": "API calls over 5k",
            "metricName": "api_calls",
            "basis": "absolute",
            "levels": ["5000", "50000"],
            "channelIds": [hook["id"]],
        },
    )
    await api_post(
        api,
        admin_key,
        "/v1/customers/acme/alert-rules",
        {"name": "Monthly budget", "basis": "budget", "budget": "500", "levels": ["50", "80", "100"]},
    )

    acme_now = current_usage("acme", 60, 100)  # 60 hours, 6,000 + the ramp
    globex_now = current_usage("globex", 40, 40)
    initech_now = current_usage("initech", 50, 280)
    await send_events(api, ingest_key, acme_now + globex_now + initech_now)
    await send_events(
        api,
        ingest_key,
        [
            event(customer=c, metric="storage_gb", quantity=q)
            for c, q in (("acme", 42), ("globex", 7), ("initech", 120))
        ],
    )
    await wait_until_persisted(redis)
    acme_calls = sum(e["quantity"] for e in acme_now)

    async def fired() -> list[Any] | None:
        response = await api.get("/v1/customers/acme/alert-firings", headers=auth(admin_key))
        found = response.json()
        done = found and all(d["status"] != "pending" for f in found for d in f.get("deliveries", []))
        return found if done else None

    await wait_for(fired, timeout=20, what="the API-calls rule firing and its delivery")
    await a_failed_event(pg, api, ingest_key, redis)

    await make_user(pg, CARA, customer_id="acme", name="Cara Schmidt")
    await make_user(pg, MAX, role="account_manager", all_customers=True, name="Max Mustermann")
    await make_user(pg, ADA, role="admin", name="Ada Lovelace")
    invited = await make_user(
        pg, "priya@initech.test", customer_id="initech", name="Priya Raman", password_hash=None
    )
    token = await invitation(pg, invited)

    # --- signed out ----------------------------------------------------------------------
    await page.set_viewport_size(LAPTOP)  # type: ignore[arg-type]
    await page.goto("/portal/login")
    await h1(page, "Sign in")
    await screenshot(page, "tour-login")
    await page.goto(f"/portal/set-password/{token}")
    await h1(page, "Choose a password")
    await expect(page.locator("main")).to_contain_text("For priya@initech.test.")
    await screenshot(page, "tour-set-password")

    # --- the customer user ---------------------------------------------------------------
    await login(page, CARA)
    await h1(page, "Acme Inc")
    await expect(page.locator("main")).to_contain_text(f"{acme_calls:,}")
    await screenshot(page, "tour-customer-overview")
    await page.goto("/portal/customers/acme/meters/api_calls")
    await h1(page, "API calls")  # the plan's charge description
    await expect(page.locator("#meter-total")).to_have_text(f"{acme_calls:,}")
    await screenshot(page, "tour-meter-hours")
    await page.goto("/portal/customers/acme/meters/api_calls?range=this_period&granularity=day&group=region")
    await h1(page, "API calls")
    await expect(page.locator("main")).to_contain_text("eu-central")
    await screenshot(page, "tour-meter-days-by-region")
    await page.goto("/portal/customers/acme/invoices")
    await h1(page, "Invoices")
    await expect(page.locator("#invoices tbody tr").first.locator("td.num")).to_have_text(
        ["EUR 72.00", "EUR 72.00"]
    )
    await screenshot(page, "tour-invoices")
    await page.goto(f"/portal/invoices/{finalized['id']}")
    await h1(page, "Invoice INV-000001")
    await expect(page.locator("#invoice-total")).to_have_text("EUR 72.00")
    await screenshot(page, "tour-invoice")
    await page.goto(f"/portal/invoices/{finalized['id']}/print")
    await expect(page.locator("#invoice-total")).to_have_text("EUR 72.00")
    await screenshot(page, "tour-invoice-print")
    await page.goto("/portal/customers/acme/alerts")
    await h1(page, "Alerts")
    rules = page.locator("table.alerts-rules tbody tr")
    await expect(rules.filter(has_text="Monthly budget")).to_contain_text("EUR 500.00")
    assert "Reached" in await page_text(page, "#history")
    await screenshot(page, "tour-alerts")
    await page.goto("/portal/customers/acme/alerts/rules/new")
    await page.get_by_label("Rule name").fill("API calls over 20k")
    await page.get_by_label("What to watch").select_option("api_calls")
    await page.get_by_label("Notify at").fill("20k")
    await page.get_by_role("button", name="Create rule").click()
    await expect(page.locator("#rule-levels-error")).to_contain_text("Notify at: “20k” is not a number.")
    await screenshot(page, "tour-rule-form-error")
    await page.goto("/portal/customers/acme/alerts/channels/new")
    await page.get_by_label("Channel name").fill("Billing webhook")
    await page.get_by_label("Webhook URL", exact=True).check()
    await page.get_by_label("Address", exact=True).fill(f"http://127.0.0.1:{ALERT_HTTP_PORT}/hooks/billing")
    await page.get_by_role("button", name="Add channel").click()
    await h1(page, "Channel “Billing webhook” added")
    await expect(page.get_by_text("It is shown only once")).to_be_visible()
    await screenshot(page, "tour-channel-created")
    await page.goto("/portal/invoices/999999")
    await h1(page, "Not found")
    await screenshot(page, "tour-404")
    response = await page.goto("/portal/review")
    assert response is not None and response.status == 403
    await screenshot(page, "tour-403")

    # --- the account manager -------------------------------------------------------------
    staff = await signed_in(browser, portal_url, MAX)
    await staff.goto("/portal/customers")
    await h1(staff, "Customers")
    for name in ("Acme Inc", "Globex Corporation", "Initech"):
        await expect(staff.locator("main table")).to_contain_text(name)
    # Every column fits a laptop screen: the table does not need scrolling there.
    wrap = staff.locator("main .table-wrap")
    assert await wrap.evaluate("e => e.scrollWidth <= e.clientWidth"), "customers table wider than 1280 px"
    await screenshot(staff, "tour-manager-customers")
    await staff.goto("/portal/review")
    await h1(staff, "Bill review")
    await expect(staff.locator("table.review tbody tr")).to_have_count(1)
    await expect(staff.locator("table.review tbody tr td.num").first).to_have_text("USD 56.00")
    await screenshot(staff, "tour-review")
    # Approved in the browser, so the audit log has an entry by a person.
    await staff.locator("table.review tbody tr").get_by_role("button", name="Approve").click()
    await staff.get_by_role("button", name="Approve and issue").click()  # the confirmation page
    await expect(staff.get_by_role("status")).to_have_text("Invoice INV-000002 was approved and numbered.")
    await staff.goto("/portal/events?customer=acme")
    await h1(staff, "Events")
    await screenshot(staff, "tour-events")
    await staff.goto("/portal/events/acme/tour-acme-1")
    await h1(staff, "Event tour-acme-1")
    await screenshot(staff, "tour-event-path")
    await staff.goto("/portal/failed-events")
    await h1(staff, "Failed events")
    await expect(staff.locator("main table tbody tr")).to_have_count(1)
    await expect(staff.locator("main table tbody tr td.reason")).to_contain_text("ledger is read-only")
    await screenshot(staff, "tour-failed-events")
    await staff.goto("/portal/drift")
    await h1(staff, "Live drift")
    await screenshot(staff, "tour-drift")
    await staff.goto("/portal/health")
    await h1(staff, "Billing health")
    await screenshot(staff, "tour-health")
    await staff.goto("/portal/audit")
    await h1(staff, "Audit log")
    await expect(staff.locator("main table tbody tr")).to_have_count(1)
    await expect(staff.locator("main table tbody tr td").nth(2)).to_have_text("invoice.approve")
    await screenshot(staff, "tour-audit")

    # --- the admin -----------------------------------------------------------------------
    admin = await signed_in(browser, portal_url, ADA)
    await admin.goto("/portal/admin")
    await h1(admin, "Admin")
    await screenshot(admin, "tour-admin")
    await admin.goto("/portal/admin/users")
    await h1(admin, "Users")
    await expect(admin.locator("main")).to_contain_text("Priya Raman")
    await screenshot(admin, "tour-admin-users")
    cara_id = await pg.fetchval("SELECT id FROM users WHERE email = $1", CARA)
    await admin.goto(f"/portal/admin/users/{cara_id}")
    await h1(admin, "Cara Schmidt")
    await screenshot(admin, "tour-admin-user")
    await admin.goto("/portal/admin/keys")
    await admin.get_by_label("Name").fill("billing-service production")
    await admin.get_by_role("button", name="Create key").click()
    await h1(admin, "Key “billing-service production” created")
    await screenshot(admin, "tour-admin-key-created")
    await admin.goto("/portal/admin/plans")
    await h1(admin, "Plans")
    await expect(admin.locator("main")).to_contain_text("Growth (INR)")
    await screenshot(admin, "tour-admin-plans")
    await admin.goto("/portal/admin/plans/growth-inr")
    await h1(admin, "Growth (INR)")
    await screenshot(admin, "tour-admin-plan")
    await admin.goto("/portal/admin/catalog")
    await h1(admin, "Catalog upload")
    await screenshot(admin, "tour-admin-catalog")

    # --- phone-sized ---------------------------------------------------------------------
    # The main pages again at 390 px: none may be wider than the phone (the body never
    # scrolls sideways; wide tables scroll inside their .table-wrap).
    overflow: dict[str, int] = {}
    small_targets: dict[str, list[str]] = {}

    async def on_phone(tab: Page, path: str, name: str, heading: str, shows: str) -> None:
        await tab.goto(path)
        await h1(tab, heading)
        await expect(tab.locator("main")).to_contain_text(shows)
        width = await tab.evaluate("document.documentElement.scrollWidth")
        if width > PHONE["width"]:
            overflow[name] = width
        if small := await tab.evaluate(SMALL_TARGETS):
            small_targets[name] = small
        await screenshot(tab, name)

    phone = await signed_in(browser, portal_url, CARA, viewport=PHONE)
    acme = "/portal/customers/acme"
    by_region = f"{acme}/meters/api_calls?range=last_30_days&granularity=day&group=region"
    for path, name, heading, shows in (
        (acme, "mobile-overview", "Acme Inc", f"{acme_calls:,}"),
        (by_region, "mobile-meter-days-by-region", "API calls", "share one scale"),
        (f"{acme}/invoices", "mobile-invoices", "Invoices", "EUR 72.00"),
        (f"{acme}/alerts", "mobile-alerts", "Alerts", "EUR 500.00"),
        (f"{acme}/alerts/rules/new", "mobile-rule-form", "New alert rule", "Notify at"),
        (f"/portal/invoices/{finalized['id']}", "mobile-invoice", "Invoice INV-000001", "EUR 72.00"),
    ):
        await on_phone(phone, path, name, heading, shows)
    # The invoice's total (the last page above) is on the screen, not off to the right.
    total = await phone.locator("#invoice-total").bounding_box()
    assert total is not None and total["x"] + total["width"] <= PHONE["width"], total
    await staff.set_viewport_size(PHONE)  # type: ignore[arg-type]
    for path, name, heading, shows in (
        ("/portal/customers", "mobile-customers", "Customers", "Globex Corporation"),
        ("/portal/review", "mobile-review", "Bill review", "INV-000002"),
        ("/portal/events?customer=acme", "mobile-events", "Events", "tour-acme-2"),
        ("/portal/events/acme/tour-acme-1", "mobile-event-path", "Event tour-acme-1", "us-east"),
        ("/portal/failed-events", "mobile-failed-events", "Failed events", "ledger is read-only"),
        ("/portal/drift", "mobile-drift", "Live drift", "drift"),
        ("/portal/health", "mobile-health", "Billing health", "Last 24 hours"),
        ("/portal/audit", "mobile-audit", "Audit log", "invoice.approve"),
        ("/portal/webhooks", "mobile-webhooks", "Webhooks", "Invoice issued"),
    ):
        await on_phone(staff, path, name, heading, shows)
    # The header's strip of sections shows the current one, the last here, on the screen.
    audit_link = staff.get_by_role("navigation", name="Portal").get_by_role("link", name="Audit log")
    shown = await audit_link.bounding_box()
    assert shown is not None and shown["x"] >= 0 and shown["x"] + shown["width"] <= PHONE["width"], shown
    await phone.context.clear_cookies()
    await on_phone(phone, "/portal/login", "mobile-login", "Sign in", "Email address")
    for tab in (staff, admin, phone):
        await tab.context.close()
    assert re.fullmatch(r"whsec_.*", hook["signingSecret"])
    # Every page of the tour meets WCAG 2.1 A and AA as far as axe-core can tell.
    problems = {
        name: found
        for name, found in ACCESSIBILITY.items()
        if found and name.startswith(("tour-", "mobile-"))
    }
    assert problems == {}, "\n".join(f"{name}: {p}" for name, found in problems.items() for p in found)
    assert overflow == {}, f"wider than the {PHONE['width']} px phone: {overflow}"
    assert small_targets == {}, f"controls under 44 px high on the phone: {small_targets}"


def test_vendored_axe_matches_its_recorded_checksum() -> None:
    vendored = Path(__file__).parent / "vendor" / "axe-core-4.14.1" / "axe.min.js"
    digest = hashlib.sha256(vendored.read_bytes()).hexdigest()
    assert f"`{digest}`" in (ROOT / "static" / "VENDORED.md").read_text()
