"""Real-browser tests: the real app (uvicorn in a subprocess, as tests/client/ runs it) and a
real Dramatiq worker against the session's Postgres and Valkey, driven by Debian's Chromium
through Playwright's async API.

What a flow needs:

    async def test_something(page: Page, portal_url: str, api: httpx.AsyncClient,
                             admin_key: str, pg: asyncpg.Connection) -> None:
        await make_customer(api, admin_key)              # tests/factories.py, through HTTP
        await make_user(pg, "cara@acme.test", customer_id="acme")
        await login(page, "cara@acme.test")              # the real form (tests/browser/helpers.py)
        await expect(page.locator("h1")).to_have_text("Acme Inc")
        await screenshot(page, "customer-overview")      # tests/screenshots/<name>.png

`page` is a fresh tab in a fresh browser context (no cookies) per test whose relative URLs
go to the live server; `api` is an httpx client for the same server (JSON API calls with
`auth(key)` headers). Playwright never downloads a browser here: it launches Chromium from
PORTAL_TEST_CHROMIUM, `chromium` on PATH or /usr/bin/chromium (scripts/ensure-chromium
installs Debian's package). Without one, these tests are skipped, except in CI (CI=true),
where that is a failure.

The `page` fixture fails a test on a script error or a Content-Security-Policy violation.
A second user in the same test: `await browser.new_context(base_url=portal_url)` (the
`browser` fixture), then `login()` in a page of it. The live server caches the catalog
(customers' zones, meters) for 5 s like production: reuse ids with the same settings
across tests, or new ids, rather than changing a customer's zone under the same id.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from portal.infrastructure.settings import Settings
from tests.browser.helpers import TIMEOUT_MS
from tests.client.conftest import ServerProcess
from tests.conftest import WorkerProcess


def chromium_path() -> str | None:
    named = os.environ.get("PORTAL_TEST_CHROMIUM")
    if named:
        return named
    found = shutil.which("chromium")
    if found:
        return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[ServerProcess]:
    """`uvicorn --factory portal.app:create_app` on a free port, for the whole session."""
    process = ServerProcess(settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def portal_url(live_server: ServerProcess, worker: WorkerProcess) -> str:
    """The live server's base URL, with the worker running (events get persisted)."""
    if not live_server.running():
        live_server.start()
    return live_server.url


@pytest.fixture
async def api(portal_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """HTTP client for the live server's JSON API (same call shape as the `client` fixture,
    so tests/factories.py works with it)."""
    async with httpx.AsyncClient(base_url=portal_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="session")
async def playwright() -> AsyncIterator[Playwright]:
    async with async_playwright() as driver:
        yield driver


@pytest.fixture(scope="session")
async def browser(playwright: Playwright) -> AsyncIterator[Browser]:
    """One headless Chromium for the session (launching costs ~1 s)."""
    executable = chromium_path()
    if executable is None:
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is missing: scripts/ensure-chromium installs it")
        pytest.skip("Chromium is missing: run scripts/ensure-chromium")
    # --no-sandbox: tests run as root in containers, where Chromium's sandbox cannot start.
    # /dev/shm is small in containers; Chromium then crashes tabs without this flag.
    launched = await playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
    )
    yield launched
    await launched.close()


@pytest.fixture
async def context(browser: Browser, portal_url: str) -> AsyncIterator[BrowserContext]:
    """A fresh profile per test (no cookies, no storage), relative URLs to the live server.
    A desktop-sized viewport; tests that check the narrow layout set their own."""
    fresh = await browser.new_context(
        base_url=portal_url, viewport={"width": 1280, "height": 900}, locale="en-GB", timezone_id="UTC"
    )
    fresh.set_default_timeout(TIMEOUT_MS)
    yield fresh
    await fresh.close()


@pytest.fixture
async def page(context: BrowserContext) -> AsyncIterator[Page]:
    """A tab that fails the test, at teardown, on a script error or a Content-Security-Policy
    violation (a blocked inline script or style= attribute is a bug on any page)."""
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    tab.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}")
            if message.type == "error" and "Content Security Policy" in message.text
            else None
        ),
    )
    yield tab
    await tab.close()
    assert not problems, "the page reported problems:\n" + "\n".join(problems)
