from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from portal.state import PortalState


@pytest.fixture(autouse=True)
def fresh_book(client: AsyncTestClient[Any]) -> None:
    """The app is shared by every test: forget the limits a previous test's customers had."""
    portal: PortalState = client.app.state.portal
    portal.entitlements.invalidate()
