"""Catalog storage and the in-process catalog cache used by ingest.

Customers and meters are immutable once created in this version: a customer's zone
fixes how its hours are bucketed, and a meter's aggregation fixes what its numbers mean.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.catalog.schemas import Customer, CustomerCreate, Meter, MeterCreate
from portal.db import values
from portal.errors import StoreUnavailable

log = logging.getLogger(__name__)


class AlreadyExists(Exception):
    """The thing being created exists already (answered with 409)."""


@dataclass(frozen=True, slots=True)
class MeterSpec:
    """What ingest and the workers need to know about a meter."""

    metric_name: str
    aggregation: str
    group_by: tuple[str, ...]
    unique_by: str | None


_CUSTOMER_COLUMNS = "id, name, timezone, currency, created_at"
_METER_COLUMNS = "metric_name, aggregation, unit, group_by, unique_by, created_at"


async def create_customer(session: AsyncSession, data: CustomerCreate) -> Customer:
    try:
        async with session.begin_nested():
            row = (
                await session.execute(
                    text(
                        f"INSERT INTO customers (id, name, timezone, currency) "
                        f"VALUES (:id, :name, :tz, :cur) RETURNING {_CUSTOMER_COLUMNS}"
                    ),
                    {"id": data.id, "name": data.name, "tz": data.timezone, "cur": data.currency},
                )
            ).one()
    except IntegrityError as exc:
        raise AlreadyExists(f"customer {data.id!r} already exists") from exc
    return Customer(*values(row))


async def list_customers(session: AsyncSession, *, limit: int, after: str | None) -> list[Customer]:
    rows = await session.execute(
        text(
            f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE (CAST(:after AS text) IS NULL OR id > :after) "
            "ORDER BY id LIMIT :limit"
        ),
        {"after": after, "limit": limit},
    )
    return [Customer(*values(row)) for row in rows]


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    row = (
        await session.execute(
            text(f"SELECT {_CUSTOMER_COLUMNS} FROM customers WHERE id = :id"), {"id": customer_id}
        )
    ).first()
    return Customer(*values(row)) if row else None


async def create_meter(session: AsyncSession, data: MeterCreate) -> Meter:
    try:
        async with session.begin_nested():
            row = (
                await session.execute(
                    text(
                        f"INSERT INTO meters (metric_name, aggregation, unit, group_by, unique_by) "
                        f"VALUES (:m, :a, :u, :g, :ub) RETURNING {_METER_COLUMNS}"
                    ),
                    {
                        "m": data.metric_name,
                        "a": data.aggregation,
                        "u": data.unit,
                        "g": list(data.group_by),
                        "ub": data.unique_by,
                    },
                )
            ).one()
    except IntegrityError as exc:
        raise AlreadyExists(f"meter {data.metric_name!r} already exists") from exc
    return _meter(row)


async def list_meters(session: AsyncSession) -> list[Meter]:
    rows = await session.execute(text(f"SELECT {_METER_COLUMNS} FROM meters ORDER BY metric_name"))
    return [_meter(row) for row in rows]


async def get_meter(session: AsyncSession, metric_name: str) -> Meter | None:
    row = (
        await session.execute(
            text(f"SELECT {_METER_COLUMNS} FROM meters WHERE metric_name = :m"), {"m": metric_name}
        )
    ).first()
    return _meter(row) if row else None


def _meter(row: Any) -> Meter:
    metric_name, aggregation, unit, group_by, unique_by, created_at = tuple(row)
    return Meter(metric_name, aggregation, unit, list(group_by), unique_by, created_at)


def meter_spec(meter: Meter) -> MeterSpec:
    return MeterSpec(meter.metric_name, meter.aggregation, tuple(meter.group_by), meter.unique_by)


class CatalogCache:
    """Customers' zones and meters, cached per process for ingest's hot path.

    Entries refresh every `ttl_s`; a name not in the cache is looked up at once, so a
    customer created a moment ago is found by every web process on its first event.
    """

    def __init__(self, sessions: async_sessionmaker[AsyncSession], ttl_s: float) -> None:
        self._sessions = sessions
        self._ttl_s = ttl_s
        self._loaded_at = 0.0
        self._customers: dict[str, str] = {}
        self._meters: dict[str, MeterSpec] = {}

    async def _reload(self) -> None:
        async with self._sessions() as session:
            customers = await session.execute(text("SELECT id, timezone FROM customers"))
            meters = await list_meters(session)
        self._customers = {str(cid): str(tz) for cid, tz in (values(r) for r in customers)}
        self._meters = {m.metric_name: meter_spec(m) for m in meters}
        self._loaded_at = time.monotonic()

    async def _fresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._loaded_at <= self._ttl_s:
            return
        try:
            await self._reload()
        except Exception as exc:
            if not self._loaded_at:
                raise StoreUnavailable("the catalog cannot be read (Postgres unavailable)") from exc
            # Postgres is down: keep serving the catalog we have (ingest must go on, the
            # broker holds what it accepts) and try again in a second.
            log.warning("catalog refresh failed, serving the cached catalog: %s", exc)
            self._loaded_at = time.monotonic() - self._ttl_s + 1.0

    async def lookup(
        self, customer_ids: set[str], metric_names: set[str]
    ) -> tuple[dict[str, str], dict[str, MeterSpec]]:
        """Zones of the known customers and specs of the known meters among those asked."""
        await self._fresh()
        missing = not customer_ids <= self._customers.keys() or not metric_names <= self._meters.keys()
        # Unknown names may have been created since the last refresh (or on another
        # process); misses refresh at most four times a second.
        if missing and time.monotonic() - self._loaded_at > 0.25:
            await self._fresh(force=True)
        zones = {c: self._customers[c] for c in customer_ids if c in self._customers}
        meters = {m: self._meters[m] for m in metric_names if m in self._meters}
        return zones, meters

    def invalidate(self) -> None:
        self._loaded_at = 0.0
