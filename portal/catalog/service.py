"""Catalog rules and the in-process catalog cache used by ingest; the SQL is in
`portal.catalog.repository`.

Customers and meters are immutable once created in this version: a customer's zone
fixes how its hours are bucketed, and a meter's aggregation fixes what its numbers mean.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.catalog import repository
from portal.catalog.schemas import BillingDetails, Customer, CustomerCreate, Meter, MeterCreate
from portal.infrastructure.domain_errors import NotFound
from portal.infrastructure.http_errors import StoreUnavailable

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


async def create_customer(session: AsyncSession, data: CustomerCreate) -> Customer:
    customer = await repository.create_customer(session, data)
    if customer is None:
        raise AlreadyExists(f"customer {data.id!r} already exists")
    return customer


async def set_billing_details(session: AsyncSession, customer_id: str, details: BillingDetails) -> Customer:
    """Replace the customer's billing details (name on invoices, address, tax id, billing
    contacts). Raises NotFound for an unknown customer. Invoices already issued keep the
    details they were issued with (`invoices.parties`, docs/decisions.md, "pdf")."""
    customer = await repository.set_billing_details(session, customer_id, details)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r}")
    return customer


async def list_customers(session: AsyncSession, *, limit: int, after: str | None) -> list[Customer]:
    return await repository.customers_page(session, limit=limit, after=after)


async def get_customer(session: AsyncSession, customer_id: str) -> Customer | None:
    return await repository.customer_by_id(session, customer_id)


async def create_meter(session: AsyncSession, data: MeterCreate) -> Meter:
    meter = await repository.create_meter(session, data)
    if meter is None:
        raise AlreadyExists(f"meter {data.metric_name!r} already exists")
    return meter


async def list_meters(session: AsyncSession) -> list[Meter]:
    return await repository.meters_listing(session)


async def get_meter(session: AsyncSession, metric_name: str) -> Meter | None:
    return await repository.meter_by_name(session, metric_name)


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
            customers = await repository.zones_by_customer(session)
            meters = await repository.meters_listing(session)
        self._customers = customers
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


class CustomerCache:
    """Customers as read at most `ttl_s` ago, per process and per viewer, for the usage
    panel's poll (every 2 s per viewer; reading the row was a quarter of its handler's CPU).

    What the panel takes from a customer (its id, zone, currency and creation) never
    changes once created; the billing details may be up to `ttl_s` old here, so the pages
    that show or edit them read the row. Kept per viewer (`seen_by`, a signed-in session):
    each poll finds what the same session read before, and a customer id that names a new
    customer (a test's fresh database) is never taken for the one another session saw. An
    unknown id is not remembered: a customer created a moment ago is found at its first
    poll. At most `size` entries are kept, the longest-kept going first.
    """

    def __init__(self, ttl_s: float, size: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._size = size
        self._customers: dict[tuple[str, str], tuple[float, Customer]] = {}

    async def get(self, session: AsyncSession, customer_id: str, *, seen_by: str) -> Customer | None:
        key = (seen_by, customer_id)
        clock = time.monotonic()
        hit = self._customers.get(key)
        if hit is not None and clock - hit[0] < self._ttl_s:
            return hit[1]
        customer = await repository.customer_by_id(session, customer_id)
        self._customers.pop(key, None)
        if customer is not None:
            if len(self._customers) >= self._size:
                del self._customers[next(iter(self._customers))]
            self._customers[key] = (clock, customer)
        return customer
