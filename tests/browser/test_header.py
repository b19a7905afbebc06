"""The site header at the widths staff work at: every section is on screen and clickable
where it is drawn, never under the account area (a click on "Admin" once landed on "Sign
out" at 1440 px, and at 1024 px the last sections were off the page)."""

from __future__ import annotations

import asyncpg
import pytest
from playwright.async_api import Page

from tests.browser.helpers import login, screenshot
from tests.pages.helpers import make_user

# For each section link: whether the element at its centre is the link itself, and whether
# its box is inside the viewport and clear of the account area (name and Sign out).
SECTIONS = """() => {
  const account = document.querySelector('header.site .account').getBoundingClientRect();
  return [...document.querySelectorAll('nav.site-nav a')].map(a => {
    const r = a.getBoundingClientRect();
    const hit = document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    const apart = r.right <= account.left || r.left >= account.right
      || r.bottom <= account.top || r.top >= account.bottom;
    return [a.textContent.trim(), hit !== null && a.contains(hit), apart && r.right <= innerWidth];
  });
}"""


@pytest.mark.parametrize("width", [1024, 1280, 1440, 1920])
async def test_every_staff_section_is_on_screen_and_clear_of_the_account_area(
    page: Page, pg: asyncpg.Connection, width: int
) -> None:
    await make_user(pg, "ada@vendor.test", role="admin", name="Ada Lovelace-Byron")
    await page.set_viewport_size({"width": width, "height": 800})
    await login(page, "ada@vendor.test")
    await screenshot(page, f"header-{width}")
    sections = await page.evaluate(SECTIONS)
    assert [name for name, _, _ in sections][-1] == "Admin"
    assert [(name, hit, clear) for name, hit, clear in sections if not (hit and clear)] == []
    # And the page itself never scrolls sideways
    assert await page.evaluate("document.documentElement.scrollWidth <= innerWidth")
