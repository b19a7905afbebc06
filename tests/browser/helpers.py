"""Helpers for browser flows: sign in through the real form, save screenshots. The fixtures
(live server, worker, browser, page, api) are in tests/browser/conftest.py."""

from __future__ import annotations

import re
from pathlib import Path

from playwright.async_api import Page, expect

from tests.conftest import ROOT
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
    """A full-page PNG at tests/screenshots/<name>.png (git-ignored), for people to look at."""
    path = screenshot_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    return path
