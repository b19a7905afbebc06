"""The API docs page works on a closed network: every asset it loads is served by the
portal (vendored, with the checksum static/VENDORED.md records), under the portal's CSP;
and `/` leads to the portal."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from portal.api_docs import ASSETS
from portal.infrastructure.paths import STATIC_DIR
from portal.pages.web import SECURITY_HEADERS

Client = AsyncTestClient[Any]
PORTAL_CSP = next(h.value for h in SECURITY_HEADERS if h.name == "Content-Security-Policy")


@pytest.mark.parametrize("path", ["/schema", "/schema/swagger"])
async def test_the_docs_page_loads_only_local_assets_under_the_portals_csp(client: Client, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == PORTAL_CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    references = re.findall(r'(?:src|href)="([^"]*)"', response.text)
    assert references == ["data:,", ASSETS[0], ASSETS[1], ASSETS[2]]
    for inline in ("<script>", "<style", " style="):
        assert inline not in response.text
    assert 'data-schema-url="/schema/openapi.json"' in response.text


async def test_every_asset_is_served(client: Client) -> None:
    for asset in ASSETS:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert response.content == (STATIC_DIR / asset.removeprefix("/static/")).read_bytes()


def test_vendored_files_match_the_recorded_checksums() -> None:
    recorded = (STATIC_DIR / "VENDORED.md").read_text()
    folder = STATIC_DIR / "vendor" / "swagger-ui-5.36.0"
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "LICENSE", "NOTICE"):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert f"`{digest}`" in recorded, f"{name}: {digest} not in static/VENDORED.md"


async def test_the_document_is_served_beside_the_page(client: Client) -> None:
    document = await client.get("/schema/openapi.json")
    assert document.status_code == 200
    assert document.json()["info"]["title"] == "Usage portal"
    assert (await client.get("/schema/openapi.yaml")).status_code == 200


@pytest.mark.parametrize("path", ["/schema/redoc", "/schema/elements", "/schema/rapidoc"])
async def test_no_page_that_would_load_from_a_cdn_is_left(client: Client, path: str) -> None:
    assert (await client.get(path)).status_code == 404


async def test_the_root_leads_to_the_portal(client: Client) -> None:
    response = await client.get("/", follow_redirects=False)
    assert (response.status_code, response.headers["location"]) == (303, "/portal/login")
