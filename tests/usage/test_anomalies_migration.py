"""Migration 0005 (anomaly alerts) goes down to 0004 and back up: threshold rules survive,
anomaly rules (which 0004 cannot hold) go."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.script import ScriptDirectory

from portal.infrastructure.settings import Settings
from portal.operations.migrate import alembic_config, migrate
from tests.factories import auth, make_customer, make_meter


async def test_0005_goes_down_and_up_keeping_threshold_rules(
    client: Any, admin_key: str, settings: Settings, pg: Any
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls")
    for body in ({"name": "Unusual", "kind": "anomaly"}, {"name": "Calls", "levels": ["5"]}):
        created = await client.post("/v1/customers/acme/alert-rules", headers=auth(admin_key), json=body)
        assert created.status_code == 201, created.text
    # Alembic runs its own event loop: off this one.
    await asyncio.to_thread(command.downgrade, alembic_config(settings.database_url or ""), "0004")
    assert await pg.fetch("SELECT name FROM alert_rules") == [("Calls",)]
    await asyncio.to_thread(migrate, settings)
    head = ScriptDirectory.from_config(alembic_config(settings.database_url or "")).get_current_head()
    assert await pg.fetchval("SELECT version_num FROM alembic_version") == head
    rules = await pg.fetch("SELECT name, kind FROM alert_rules")
    assert [tuple(r) for r in rules] == [("Calls", "threshold")]
