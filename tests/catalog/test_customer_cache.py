"""The usage panel's customer cache (portal/catalog/service.py `CustomerCache`): a customer
a viewer read once is served from memory for the catalog's time, a customer created a moment
ago is found at once, each viewer has its own copy, and only so many are kept."""

from __future__ import annotations

from typing import Any

import asyncpg
from litestar.testing import AsyncTestClient

from portal.catalog.service import CustomerCache
from portal.infrastructure.settings import Settings
from portal.state import PortalState
from tests.factories import make_customer


async def test_customers_are_kept_for_the_catalog_time_and_new_ones_found_at_once(
    client: AsyncTestClient[Any], admin_key: str, pg: asyncpg.Connection, settings: Settings
) -> None:
    state = PortalState.open(settings)
    kept = CustomerCache(ttl_s=3600, size=2)
    fresh = CustomerCache(ttl_s=0)
    try:
        async with state.sessions() as db:
            assert await kept.get(db, "acme", seen_by="session-1") is None
            await make_customer(client, admin_key, id="acme", name="Acme Inc", timezone="Asia/Tokyo")
            acme = await kept.get(db, "acme", seen_by="session-1")  # not remembered as unknown
            assert acme is not None and (acme.name, acme.timezone, acme.currency) == (
                "Acme Inc",
                "Asia/Tokyo",
                "EUR",
            )

            await pg.execute("UPDATE customers SET legal_name = 'Acme KK' WHERE id = 'acme'")
            again = await kept.get(db, "acme", seen_by="session-1")
            assert again is not None and again.legal_name is None  # kept, as read
            now_read = await fresh.get(db, "acme", seen_by="session-1")
            assert now_read is not None and now_read.legal_name == "Acme KK"

            # Two kept at most: the longest-kept goes first, and is read again when asked.
            for other in ("globex", "initech"):
                await make_customer(client, admin_key, id=other)
                assert await kept.get(db, other, seen_by="session-1") is not None
            reread = await kept.get(db, "acme", seen_by="session-1")
            assert reread is not None and reread.legal_name == "Acme KK"

            # Another viewer reads its own copy.
            await pg.execute("UPDATE customers SET legal_name = 'Acme Japan' WHERE id = 'acme'")
            other_viewer = await kept.get(db, "acme", seen_by="session-2")
            assert other_viewer is not None and other_viewer.legal_name == "Acme Japan"
    finally:
        await state.close()
