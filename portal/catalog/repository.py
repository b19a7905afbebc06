"""Every query on the catalog's tables, `customers` and `meters`; other modules call these
functions, never the tables.

Reads select columns rather than whole models, so nothing lands in the session's identity
map, and answer the catalog's read shapes (`portal.catalog.schemas`). None of them commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from portal.catalog.models import Customer as CustomerRow
from portal.catalog.models import Meter as MeterRow
from portal.catalog.schemas import BillingDetails, Customer, CustomerCreate, Meter, MeterCreate

_CUSTOMER = (
    col(CustomerRow.id),
    col(CustomerRow.name),
    col(CustomerRow.timezone),
    col(CustomerRow.currency),
    col(CustomerRow.created_at),
    col(CustomerRow.legal_name),
    col(CustomerRow.billing_address),
    col(CustomerRow.tax_id),
    col(CustomerRow.billing_emails),
)
_METER = (
    col(MeterRow.metric_name),
    col(MeterRow.aggregation),
    col(MeterRow.unit),
    col(MeterRow.group_by),
    col(MeterRow.unique_by),
    col(MeterRow.created_at),
)


def _customer(row: Any) -> Customer:
    cid, name, tz, currency, created_at, legal_name, address, tax_id, emails = tuple(row)
    return Customer(cid, name, tz, currency, created_at, legal_name, list(address), tax_id, list(emails))


def _meter(row: Any) -> Meter:
    metric_name, aggregation, unit, group_by, unique_by, created_at = tuple(row)
    return Meter(metric_name, aggregation, unit, list(group_by), unique_by, created_at)


# --- customers


async def create_customer(session: AsyncSession, data: CustomerCreate) -> Customer | None:
    """Insert the customer; None when its id exists already (the caller's transaction goes on:
    the insert runs in a savepoint)."""
    statement = (
        insert(CustomerRow)
        .values(
            id=data.id,
            name=data.name,
            timezone=data.timezone,
            currency=data.currency,
            legal_name=data.legal_name,
            billing_address=list(data.billing_address),
            tax_id=data.tax_id,
            billing_emails=list(data.billing_emails),
        )
        .returning(*_CUSTOMER)
    )
    try:
        async with session.begin_nested():
            row = (await session.execute(statement)).one()
    except IntegrityError:
        return None
    return _customer(row)


async def set_billing_details(
    session: AsyncSession, customer_id: str, details: BillingDetails
) -> Customer | None:
    """Replace who the customer's invoices are addressed to; None when there is no such customer."""
    statement = (
        update(CustomerRow)
        .where(col(CustomerRow.id) == customer_id)
        .values(
            legal_name=details.legal_name,
            billing_address=list(details.billing_address),
            tax_id=details.tax_id,
            billing_emails=list(details.billing_emails),
        )
        .returning(*_CUSTOMER)
    )
    row = (await session.execute(statement)).first()
    return _customer(row) if row else None


async def customer_by_id(session: AsyncSession, customer_id: str) -> Customer | None:
    row = (await session.execute(select(*_CUSTOMER).where(col(CustomerRow.id) == customer_id))).first()
    return _customer(row) if row else None


async def customers_page(session: AsyncSession, *, limit: int, after: str | None) -> list[Customer]:
    """Customers ordered by id, the first `limit` after the id `after` (None: from the start)."""
    statement = select(*_CUSTOMER).order_by(col(CustomerRow.id)).limit(limit)
    if after is not None:
        statement = statement.where(col(CustomerRow.id) > after)
    return [_customer(row) for row in await session.execute(statement)]


async def customer_ids(session: AsyncSession) -> list[str]:
    return list((await session.scalars(select(col(CustomerRow.id)))).all())


async def known_customer_ids(session: AsyncSession, ids: Iterable[str]) -> set[str]:
    """Which of `ids` are customers."""
    wanted = list(ids)
    statement = select(col(CustomerRow.id)).where(col(CustomerRow.id).in_(wanted))
    return set((await session.scalars(statement)).all())


async def zones_by_customer(session: AsyncSession) -> dict[str, str]:
    """Every customer's time zone (the ingest cache holds them all)."""
    rows = await session.execute(select(col(CustomerRow.id), col(CustomerRow.timezone)))
    return {str(cid): str(tz) for cid, tz in rows}


async def names_and_zones(session: AsyncSession, ids: Iterable[str]) -> dict[str, tuple[str, str]]:
    """Customer id → (name, time zone) for those of `ids` that exist."""
    statement = select(col(CustomerRow.id), col(CustomerRow.name), col(CustomerRow.timezone)).where(
        col(CustomerRow.id).in_(sorted(ids))
    )
    return {str(cid): (str(name), str(tz)) for cid, name, tz in await session.execute(statement)}


async def customer_choices(session: AsyncSession) -> list[tuple[str, str]]:
    """(id, name) of every customer, by name (case aside), for a form's choice list."""
    statement = select(col(CustomerRow.id), col(CustomerRow.name)).order_by(
        func.lower(col(CustomerRow.name)), col(CustomerRow.id)
    )
    return [(str(i), str(n)) for i, n in await session.execute(statement)]


def customer_ids_sql(condition: str) -> str:
    """`(SELECT customer_id …)`: the ids of the customers meeting `condition`, a raw SQL
    condition on a bare `customer_id` column, for `x.customer_id IN {sql}`.

    Raw SQL because the pages' reports that embed it are raw SQL over other domains' tables
    (the condition comes from portal.pages.access.customer_scope); it is applied inside its
    own subquery so that the bare name cannot meet a column of the outer query."""
    return f"(SELECT customer_id FROM (SELECT id AS customer_id FROM customers) AS scope WHERE {condition})"


# --- meters


async def create_meter(session: AsyncSession, data: MeterCreate) -> Meter | None:
    """Insert the meter; None when its metric name exists already (in a savepoint, as above)."""
    statement = (
        insert(MeterRow)
        .values(
            metric_name=data.metric_name,
            aggregation=data.aggregation,
            unit=data.unit,
            group_by=list(data.group_by),
            unique_by=data.unique_by,
        )
        .returning(*_METER)
    )
    try:
        async with session.begin_nested():
            row = (await session.execute(statement)).one()
    except IntegrityError:
        return None
    return _meter(row)


async def meter_by_name(session: AsyncSession, metric_name: str) -> Meter | None:
    row = (await session.execute(select(*_METER).where(col(MeterRow.metric_name) == metric_name))).first()
    return _meter(row) if row else None


async def meters_listing(session: AsyncSession) -> list[Meter]:
    """Every meter, by metric name."""
    rows = await session.execute(select(*_METER).order_by(col(MeterRow.metric_name)))
    return [_meter(row) for row in rows]


async def meter_aggregations(session: AsyncSession) -> dict[str, str]:
    """Metric name → aggregation, for every meter."""
    rows = await session.execute(select(col(MeterRow.metric_name), col(MeterRow.aggregation)))
    return {str(m): str(a) for m, a in rows}


async def meter_group_bys(session: AsyncSession) -> dict[str, list[str]]:
    """Metric name → the dimensions it groups by, for every meter."""
    rows = await session.execute(select(col(MeterRow.metric_name), col(MeterRow.group_by)))
    return {str(m): list(g) for m, g in rows}


async def catalog_counts(session: AsyncSession) -> tuple[int, int]:
    """(customers, meters): how many of each exist."""
    statement = select(
        select(func.count()).select_from(CustomerRow).scalar_subquery(),
        select(func.count()).select_from(MeterRow).scalar_subquery(),
    )
    row: Any = (await session.execute(statement)).one()
    return int(row[0]), int(row[1])
