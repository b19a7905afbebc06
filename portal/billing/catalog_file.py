"""`usage-portal catalog apply FILE`: meters, customers, plans and subscriptions as data.

The file (YAML or JSON) says what should exist. Applying it creates what is missing and
leaves alone what already matches, so applying the same file twice changes nothing.
Meters, customers and plans are immutable: a file that changes one is refused, naming
it. A customer's billing details (legal name, billing address, tax id, billing emails) are
the exception: a file that gives them sets them. A subscription entry whose plan differs
from the customer's latest one is a plan change (next period by default). The whole file
is one transaction: all or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import yaml
from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import plans as plan_service
from portal.billing.schemas import PlanCreate, SubscriptionCreate
from portal.billing.subscriptions import list_subscriptions, subscribe
from portal.catalog import service
from portal.catalog.schemas import BillingDetails, CustomerCreate, MeterCreate
from portal.http.schemas import CamelStruct
from portal.infrastructure.domain_errors import Problem


class CatalogFileError(Exception):
    """The file cannot be applied; the message names the entry and the problem."""


class SubscriptionEntry(SubscriptionCreate):
    customer_id: str = ""


class CatalogFile(CamelStruct):
    meters: list[MeterCreate] = msgspec.field(default_factory=list)
    customers: list[CustomerCreate] = msgspec.field(default_factory=list)
    plans: list[PlanCreate] = msgspec.field(default_factory=list)
    subscriptions: list[SubscriptionEntry] = msgspec.field(default_factory=list)


class _DecimalLoader(yaml.SafeLoader):
    """YAML with exact numbers: `0.1` is Decimal("0.1"), never the float 0.1000000000000000055."""


def _exact_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Decimal:
    text = str(loader.construct_scalar(node))
    try:
        value = Decimal(text)
    except ArithmeticError:  # YAML's .nan, .inf, -.Inf
        value = Decimal("NaN")
    if not value.is_finite():
        raise yaml.constructor.ConstructorError(None, None, f"{text} is not a finite number", node.start_mark)
    return value


_DecimalLoader.add_constructor("tag:yaml.org,2002:float", _exact_float)


def parse_catalog(content: bytes, *, name: str) -> CatalogFile:
    """Parse and validate a catalog file (JSON if it ends in .json, else YAML)."""
    try:
        if name.endswith(".json"):
            return msgspec.json.decode(content, type=CatalogFile)
        try:
            data: Any = yaml.load(content, Loader=_DecimalLoader)
        except (ValueError, OverflowError) as exc:
            # A value YAML reads as a date, not one ("startDate: 2026-13-01"): its message
            # says which ("month must be in 1..12").
            raise CatalogFileError(f"{name}: not valid YAML: {exc}") from None
        return msgspec.convert(data or {}, CatalogFile)
    except yaml.YAMLError as exc:
        raise CatalogFileError(f"{name}: not valid YAML: {exc}") from exc
    except RecursionError:  # thousands of nested [ or - (the parser recurses per level)
        raise CatalogFileError(f"{name}: not valid YAML: nested too deeply") from None
    except msgspec.ValidationError as exc:
        raise CatalogFileError(f"{name}: {exc}") from exc
    except msgspec.DecodeError as exc:
        raise CatalogFileError(f"{name}: not valid JSON: {exc}") from exc


@dataclass(slots=True)
class ApplyReport:
    created: dict[str, int] = field(default_factory=dict)
    unchanged: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)

    def count(self, kind: str, outcome: str) -> None:
        bucket = getattr(self, outcome)
        bucket[kind] = bucket.get(kind, 0) + 1

    def lines(self) -> list[str]:
        kinds = ("meters", "customers", "plans", "subscriptions")
        return [
            f"{kind}: {self.created.get(kind, 0)} created, {self.changed.get(kind, 0)} changed, "
            f"{self.unchanged.get(kind, 0)} unchanged"
            for kind in kinds
        ]


def _billing_details(customer: CustomerCreate) -> BillingDetails | None:
    """The billing details a customer entry gives; None when it gives none (the customer's
    current ones, set through the API or the admin page, are then left alone)."""
    details = BillingDetails(
        customer.legal_name, list(customer.billing_address), customer.tax_id, list(customer.billing_emails)
    )
    return None if details == BillingDetails() else details


def _same(a: msgspec.Struct, b: msgspec.Struct, fields: tuple[str, ...]) -> bool:
    return all(getattr(a, f) == getattr(b, f) for f in fields)


async def apply_catalog(session: AsyncSession, catalog: CatalogFile, *, now: datetime) -> ApplyReport:
    """Make the database hold what the file says (see the module docstring).

    Raises CatalogFileError naming the first entry that cannot be applied."""
    report = ApplyReport()
    for i, meter in enumerate(catalog.meters):
        existing = await service.get_meter(session, meter.metric_name)
        if existing is None:
            await service.create_meter(session, meter)
            report.count("meters", "created")
        elif _same(existing, meter, ("aggregation", "unit", "group_by", "unique_by")):
            report.count("meters", "unchanged")
        else:
            raise CatalogFileError(
                f"meters[{i}] ({meter.metric_name}): exists with another definition; "
                "meters are immutable (create a new metric name)"
            )
    for i, customer in enumerate(catalog.customers):
        found = await service.get_customer(session, customer.id)
        if found is None:
            await service.create_customer(session, customer)
            report.count("customers", "created")
        elif _same(found, customer, ("name", "timezone", "currency")):
            details = _billing_details(customer)
            if details is None or details == found.billing_details():
                report.count("customers", "unchanged")
            else:
                await service.set_billing_details(session, customer.id, details)
                report.count("customers", "changed")
        else:
            raise CatalogFileError(
                f"customers[{i}] ({customer.id}): exists with another name, zone or "
                "currency; customers are immutable"
            )
    for i, plan in enumerate(catalog.plans):
        try:
            _, created = await plan_service.create_plan(session, plan)
        except Problem as exc:
            raise CatalogFileError(f"plans[{i}] ({plan.id}): {exc}") from exc
        report.count("plans", "created" if created else "unchanged")
    for i, entry in enumerate(catalog.subscriptions):
        if not entry.customer_id:
            raise CatalogFileError(f"subscriptions[{i}].customerId: required")
        current = await list_subscriptions(session, entry.customer_id)
        if current and current[-1].plan_id == entry.plan_id:
            report.count("subscriptions", "unchanged")
            continue
        request = msgspec.structs.replace(entry, start_date=None) if current else entry
        try:
            await subscribe(session, entry.customer_id, request, now=now)
        except Problem as exc:
            raise CatalogFileError(f"subscriptions[{i}] ({entry.customer_id}): {exc}") from exc
        report.count("subscriptions", "changed" if current else "created")
    return report


def read_catalog(path: Path) -> CatalogFile:
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise CatalogFileError(f"{path}: cannot be read: {exc.strerror}") from exc
    return parse_catalog(content, name=path.name)
