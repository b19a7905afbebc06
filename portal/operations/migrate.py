"""`usage-portal migrate`: Alembic to head, then the raw-event partitions for now."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import asyncpg
from alembic import command
from alembic.config import Config

from portal.infrastructure.paths import MIGRATIONS_DIR, ROOT
from portal.infrastructure.settings import Settings


def execute_script(script: str) -> None:
    """Run a migration's SQL script through Alembic, one statement per call.

    asyncpg runs one statement per call, so the script is split at statement ends (a `;`
    at the end of a line). Chunks holding only comments are skipped."""
    from alembic import op

    for statement in re.split(r";\s*\n", script):
        if statement.strip() and not all(
            line.strip().startswith("--") or not line.strip() for line in statement.splitlines()
        ):
            op.execute(statement)


def alembic_config(database_url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["database_url"] = database_url
    return config


def migrate(settings: Settings) -> None:
    if not settings.database_url:
        raise RuntimeError("DATABASE_URL is not set")
    command.upgrade(alembic_config(settings.database_url), "head")
    asyncio.run(_partitions(settings.database_url, settings.accepted_lateness))


async def _partitions(database_url: str, lateness: timedelta) -> None:
    from portal.ingest.partitions import maintain_partitions_now

    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            await maintain_partitions_now(conn, lateness)
    finally:
        await conn.close()
