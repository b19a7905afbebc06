"""Alembic environment: migrations are hand-written SQL run over asyncpg.

`target_metadata` is every table model (portal/tables.py), so `alembic check` (and
tests/test_table_models.py) proves the models match the migrated schema."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from alembic import context
from alembic.migration import MigrationContext
from alembic.runtime.environment import NameFilterParentNames, NameFilterType
from sqlalchemy import Column
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.types import TypeEngine

from portal.infrastructure.db import sqlalchemy_url
from portal.infrastructure.settings import get_settings
from portal.tables import metadata

# The monthly partitions of usage_events (named by partition_name() in portal/ingest/partitions.py)
# are created at run time, not by migrations; the model is their parent table, whose columns and
# indexes they inherit.
_PARTITION = re.compile(r"usage_events_p\d{6}")


def _url() -> str:
    configured = context.config.attributes.get("database_url") or get_settings().database_url
    if not configured:
        raise RuntimeError("DATABASE_URL is not set and no embedded server was started")
    return sqlalchemy_url(configured)


def include_name(name: str | None, type_: NameFilterType, parent_names: NameFilterParentNames) -> bool:
    """What the comparison with the models reflects from the database."""
    if type_ == "table":
        return name is None or not _PARTITION.fullmatch(name)
    return True


def compare_type(
    migration_context: MigrationContext,
    inspected_column: Column[Any],
    metadata_column: Column[Any],
    inspected_type: TypeEngine[Any],
    metadata_type: TypeEngine[Any],
) -> bool | None:
    """True when a column's type differs in its DDL, else None (Alembic's own comparison then
    runs too). Alembic alone ignores arguments one side leaves out, so `numeric` would pass
    for `numeric(24, 6)`, the very change migration 0006 made."""
    dialect = migration_context.dialect
    return inspected_type.compile(dialect=dialect) != metadata_type.compile(dialect=dialect) or None


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=compare_type,
        include_name=include_name,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _main() -> None:
    engine = create_async_engine(_url())
    async with engine.connect() as connection:
        await connection.run_sync(_run)
        await connection.commit()
    await engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("offline migrations are not supported; run `usage-portal migrate`")
asyncio.run(_main())
