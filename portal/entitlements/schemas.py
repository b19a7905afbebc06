"""Entitlement request and response bodies."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

import msgspec

from portal.catalog.schemas import Identifier, MetricName
from portal.http.schemas import CamelStruct

Enforcement = Literal["hard", "soft"]
# The ingest's bound on a quantity: below 10^20, at most 12 decimal places.
_MAX_QUANTITY = Decimal(10) ** 20
_MAX_DECIMALS = 12
# Checks one batch may ask: enough for a page of customers times their meters, small enough
# that one request never holds a web process for long.
MAX_CHECKS = 10_000


def check_quantity(name: str, value: Decimal | None, *, positive: bool = False) -> None:
    """ValueError naming `name` unless `value` is None or a finite quantity the ingest could
    have counted: 0 (or more than 0 if `positive`) up to 10^20, at most 12 decimal places."""
    if value is None:
        return
    if not value.is_finite():
        raise ValueError(f"{name}: must be a finite number")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name}: must be {'more than' if positive else 'at least'} 0")
    if value >= _MAX_QUANTITY:
        raise ValueError(f"{name}: must be below 10^20")
    exponent = value.normalize().as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_MAX_DECIMALS:
        raise ValueError(f"{name}: at most {_MAX_DECIMALS} decimal places")


# A quantity as exact decimal text ("1000", "0.25"): a JSON number would reach us through a
# float-shaped schema, and the API's numbers are strings everywhere else.
QuantityText = Annotated[str, msgspec.Meta(pattern=r"^[0-9]{1,20}(\.[0-9]{1,12})?$")]


def _quantity(name: str, text: str) -> Decimal:
    value = Decimal(text)
    try:
        check_quantity(name, value)
    except ValueError as exc:
        raise msgspec.ValidationError(str(exc)) from None
    return value


class LimitIn(CamelStruct, kw_only=True):
    """A limit on one meter per billing period."""

    meter: MetricName
    limit: QuantityText
    enforcement: Enforcement = "hard"

    def __post_init__(self) -> None:
        _quantity("limit", self.limit)

    @property
    def quantity(self) -> Decimal:
        return Decimal(self.limit)


class PlanLimitIn(LimitIn, kw_only=True):
    # Whether the plan's customers may set a lower limit for themselves in the portal.
    customer_may_lower: bool = False


class PlanLimits(CamelStruct):
    """Every limit of a plan (replaces the previous set)."""

    limits: Annotated[list[PlanLimitIn], msgspec.Meta(max_length=200)]


class CustomerLimits(CamelStruct):
    """A customer's own limits (replaces the previous set); each within its plan's limit."""

    limits: Annotated[list[LimitIn], msgspec.Meta(max_length=200)]


class LimitOut(CamelStruct, kw_only=True):
    meter: str
    limit: str
    enforcement: Enforcement
    customer_may_lower: bool = False


class CheckIn(CamelStruct, kw_only=True):
    """One question: may `customerId` use `quantity` more of `meter` (omitted: any more)?"""

    customer_id: Identifier
    meter: MetricName
    quantity: QuantityText | None = None

    def __post_init__(self) -> None:
        if self.quantity is not None:
            _quantity("quantity", self.quantity)

    @property
    def amount(self) -> Decimal | None:
        """`quantity` as a Decimal (None: any more)."""
        return None if self.quantity is None else Decimal(self.quantity)


class ChecksIn(CamelStruct):
    checks: Annotated[list[CheckIn], msgspec.Meta(min_length=1, max_length=MAX_CHECKS)]


class EntitlementOut(CamelStruct, kw_only=True, omit_defaults=False):
    """The answer for one customer and meter.

    `used` is the meter's value in the billing period [`periodStart`, `periodEnd`) so far,
    aggregated as the meter is (sum, count, max, distinct count, latest); `limit` and
    `remaining` are null when no limit is set. `allowed` is false only under a hard limit.
    `asOf`: every event acknowledged before it is in `used`. `lagMs`: how far `used` trails
    the moment the answer was sent (0 from the live counters; while the live view is being
    rebuilt the answer comes from Postgres and trails by its persist lag)."""

    customer_id: str
    meter: str
    allowed: bool
    used: str
    limit: str | None
    remaining: str | None
    enforcement: Enforcement | None
    exceeded: bool
    period_start: datetime | None
    period_end: datetime | None
    as_of: datetime
    lag_ms: int
    # Set instead of an answer in a batch: the customer or meter is unknown.
    error: str | None = None


class ChecksOut(CamelStruct):
    results: list[EntitlementOut]
