"""The API docs page renders in a real browser with nothing but the portal's own files, and
no Content-Security-Policy violation (the `page` fixture fails the test on any)."""

from __future__ import annotations

from playwright.async_api import Page, expect

from tests.browser.helpers import screenshot_path


async def test_the_api_docs_render_offline_under_the_csp(page: Page, portal_url: str) -> None:
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    await page.goto("/schema")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Usage portal")
    operations = page.locator(".opblock-summary-path")
    await expect(operations.first).to_be_visible()
    await expect(page.locator('.opblock-summary-path[data-path="/v1/events/batch"]')).to_have_count(1)
    await page.screenshot(path=str(screenshot_path("api-docs")), full_page=False)
    outside = [url for url in requested if not url.startswith((portal_url, "data:"))]
    assert requested and outside == []
