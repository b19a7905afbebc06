"""Who an invoice is from and to, and its payment terms: taken from the settings and the
customer's record when the invoice is finalized, and kept on it (`invoices.parties`) so a
document issued once always reads the same."""

from __future__ import annotations

from typing import Any

import msgspec

from portal.catalog.schemas import Customer
from portal.infrastructure.settings import Issuer


class Seller(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    address: list[str] = msgspec.field(default_factory=list)
    tax_id: str = ""
    email: str = ""


class BillTo(msgspec.Struct, frozen=True, rename="camel"):
    name: str
    address: list[str] = msgspec.field(default_factory=list)
    tax_id: str = ""
    account: str = ""


class Parties(msgspec.Struct, frozen=True, rename="camel"):
    issuer: Seller
    bill_to: BillTo
    payment_terms_days: int = 30
    payment_instructions: str = ""

    @property
    def payment_terms(self) -> str:
        return Issuer(payment_terms_days=self.payment_terms_days).payment_terms

    def to_json(self) -> dict[str, Any]:
        value: dict[str, Any] = msgspec.to_builtins(self)
        return value


def parties_now(issuer: Issuer, customer: Customer) -> Parties:
    """The parties as the settings and the customer's record say now."""
    return Parties(
        issuer=Seller(issuer.name, list(issuer.address), issuer.tax_id, issuer.email),
        bill_to=BillTo(
            customer.billed_name, list(customer.billing_address), customer.tax_id or "", customer.id
        ),
        payment_terms_days=issuer.payment_terms_days,
        payment_instructions=issuer.payment_instructions,
    )


def parties_of(stored: dict[str, Any] | None, issuer: Issuer, customer: Customer) -> Parties:
    """The parties kept on an invoice; for one finalized before they were kept (None),
    the current ones."""
    if stored is None:
        return parties_now(issuer, customer)
    return msgspec.convert(stored, Parties)
