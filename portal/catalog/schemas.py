"""Catalog request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from portal.http.schemas import ID_PATTERN, NO_NUL, CamelStruct
from portal.infrastructure.periods import customer_zone

Aggregation = Literal["sum", "count", "max", "unique_count", "latest"]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
MetricName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=ID_PATTERN)]
DimensionName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
# What an invoice is addressed to. Printable text only (no control characters: each value
# is one line on the PDF); an address is at most 6 lines, a customer at most 10 contacts.
_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
LegalName = Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=_PRINTABLE)]
AddressLine = Annotated[str, msgspec.Meta(min_length=1, max_length=120, pattern=_PRINTABLE)]
TaxId = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=_PRINTABLE)]
# One address, the shape a mail server takes (local@domain.tld, no spaces, no display name).
BillingEmail = Annotated[
    str,
    msgspec.Meta(
        min_length=3,
        max_length=254,
        pattern=r"^[^@\s<>,;\x00-\x1f\x7f]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$",
    ),
]
Address = Annotated[list[AddressLine], msgspec.Meta(max_length=6)]
BillingEmails = Annotated[list[BillingEmail], msgspec.Meta(max_length=10)]


def _check_billing(details: CustomerCreate | BillingDetails) -> None:
    if details.legal_name is not None and not details.legal_name.strip():
        raise ValueError("legalName: must not be blank")
    if any(not line.strip() for line in details.billing_address):
        raise ValueError("billingAddress: a line must not be blank")
    if details.tax_id is not None and not details.tax_id.strip():
        raise ValueError("taxId: must not be blank")
    lowered = [e.lower() for e in details.billing_emails]
    if len(set(lowered)) != len(lowered):
        raise ValueError("billingEmails: addresses must not repeat")


class CustomerCreate(CamelStruct):
    id: Identifier
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
    timezone: Annotated[str, msgspec.Meta(pattern=NO_NUL)] = "UTC"
    currency: CurrencyCode = "USD"
    legal_name: LegalName | None = None
    billing_address: Address = msgspec.field(default_factory=list)
    tax_id: TaxId | None = None
    billing_emails: BillingEmails = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        try:
            customer_zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone: {exc}") from exc
        _check_billing(self)


class BillingDetails(CamelStruct):
    """Who a customer's invoices are addressed to (`PUT /v1/customers/{id}/billing-details`):
    the whole set, replacing the previous one. `legalName` None: the customer's name."""

    legal_name: LegalName | None = None
    billing_address: Address = msgspec.field(default_factory=list)
    tax_id: TaxId | None = None
    billing_emails: BillingEmails = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        _check_billing(self)


class Customer(CamelStruct):
    id: str
    name: str
    timezone: str
    currency: str
    created_at: datetime
    legal_name: str | None = None
    billing_address: list[str] = msgspec.field(default_factory=list)
    tax_id: str | None = None
    billing_emails: list[str] = msgspec.field(default_factory=list)

    @property
    def billed_name(self) -> str:
        """The name invoices are addressed to: the legal name, else the display name."""
        return self.legal_name or self.name

    def billing_details(self) -> BillingDetails:
        return BillingDetails(
            self.legal_name, list(self.billing_address), self.tax_id, list(self.billing_emails)
        )


class MeterCreate(CamelStruct):
    metric_name: MetricName
    aggregation: Aggregation
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=NO_NUL)]
    group_by: list[DimensionName] = msgspec.field(default_factory=list)
    unique_by: DimensionName | None = None

    def __post_init__(self) -> None:
        if self.aggregation == "unique_count" and self.unique_by is None:
            raise ValueError("uniqueBy: required when aggregation is unique_count")
        if self.aggregation != "unique_count" and self.unique_by is not None:
            raise ValueError("uniqueBy: only allowed when aggregation is unique_count")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("groupBy: dimensions must not repeat")
        if len(self.group_by) > 5:
            raise ValueError("groupBy: at most 5 dimensions")


class Meter(CamelStruct):
    metric_name: str
    aggregation: Aggregation
    unit: str
    group_by: list[str]
    unique_by: str | None
    created_at: datetime
