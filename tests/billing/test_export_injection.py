"""The invoice exports (API, CLI, portal) write text a spreadsheet would run as text, and
negative amounts as numbers."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from portal.billing.commands import export_csv
from portal.infrastructure.settings import Settings
from tests.billing.conftest import closed_period, create_plan, draft, month_of, subscribe
from tests.factories import auth, make_customer
from tests.pages.helpers import make_user, sign_in

TZ = "Asia/Kolkata"
# A customer id may start with @, + or - (its pattern allows them): a spreadsheet reads
# "@acme" as a formula too.
CUSTOMER = "@acme"
# Descriptions a plan may carry, by charge key, and how the exports write them.
FORMULAS = {
    "a": ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
    "b": ("@SUM(1)", "'@SUM(1)"),
    "c": ("+1", "'+1"),
    "d": ("\t=1", "'\t=1"),
    "e": ("\r=1", "'\r=1"),
}
PLAN = {
    "id": "formulas",
    "name": "Formulas",
    "currency": "USD",
    "charges": [
        {"key": "a", "model": "flat", "amount": "10.00", "description": FORMULAS["a"][0]},
        *(
            {"key": key, "model": "flat", "amount": "1.00", "description": text}
            for key, (text, _) in FORMULAS.items()
            if key != "a"
        ),
    ],
    # A credit of 12.50: its line's amount is -12.50, a number, while its text is neutralised.
    "discounts": [{"kind": "fixed", "amount": "12.50", "description": "-1+2"}],
}


@dataclass(frozen=True, slots=True)
class Issued:
    invoice_id: int
    number: str


@pytest.fixture
async def issued(client: AsyncTestClient[Any], admin_key: str) -> Issued:
    """@acme's closed period on the plan above, approved: 10.00 + 4 x 1.00 - 12.50 = 1.50."""
    closed = closed_period(TZ)
    await make_customer(client, admin_key, id=CUSTOMER, timezone=TZ, currency="USD")
    await create_plan(client, admin_key, PLAN)
    await subscribe(
        client,
        admin_key,
        CUSTOMER,
        planId="formulas",
        startDate=closed.start_date.isoformat(),
        anchorDay=closed.anchor_day,
    )
    invoice = await draft(client, admin_key, CUSTOMER, month_of(closed.period, TZ))
    approved = await client.post(f"/v1/invoices/{invoice['id']}/approve", headers=auth(admin_key), json={})
    assert approved.status_code == 200, approved.text
    assert approved.json()["total"] == "1.50"
    return Issued(int(invoice["id"]), approved.json()["number"])


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _expected_lines() -> list[tuple[str, str, str, str]]:
    """(charge_key, kind, description, amount) of the invoice's lines, as the file has them."""
    return [
        ("a", "flat", FORMULAS["a"][1], "10.00"),
        *((key, "flat", written, "1.00") for key, (_, written) in FORMULAS.items() if key != "a"),
        ("discount-0", "discount", "'-1+2", "-12.50"),
    ]


async def test_api_lines_csv_neutralises_descriptions_and_keeps_the_credit_a_number(
    client: AsyncTestClient[Any],
    admin_key: str,
    issued: Issued,
) -> None:
    response = await client.get("/v1/invoices/lines.csv", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    rows = _rows(response.text)
    assert [(r["charge_key"], r["kind"], r["description"], r["amount"]) for r in rows] == _expected_lines()
    assert {r["customer_id"] for r in rows} == {"'@acme"}


async def test_api_invoices_csv_neutralises_the_customer_id(
    client: AsyncTestClient[Any],
    admin_key: str,
    issued: Issued,
) -> None:
    response = await client.get("/v1/invoices/export.csv", headers=auth(admin_key))
    assert response.status_code == 200, response.text
    assert [
        (r["document"], r["customer_id"], r["subtotal"], r["discount_total"], r["total"])
        for r in _rows(response.text)
    ] == [(issued.number, "'@acme", "14.00", "12.50", "1.50")]


async def test_cli_export_writes_the_same_neutralised_lines(
    client: AsyncTestClient[Any],
    admin_key: str,
    settings: Settings,
    issued: Issued,
) -> None:
    text = await export_csv(settings, lines=True, customer_id=CUSTOMER)
    rows = _rows(text)
    assert [(r["charge_key"], r["kind"], r["description"], r["amount"]) for r in rows] == _expected_lines()
    api = await client.get("/v1/invoices/lines.csv", headers=auth(admin_key))
    assert text == api.text


async def test_portal_invoices_csv_neutralises_the_customer_id(
    client: AsyncTestClient[Any],
    admin_key: str,
    pg: asyncpg.Connection,
    issued: Issued,
) -> None:
    await make_user(pg, "user@acme.test", customer_id=CUSTOMER)
    await sign_in(client, "user@acme.test")
    response = await client.get("/portal/customers/@acme/invoices.csv")
    assert response.status_code == 200, response.text
    assert [(r["document"], r["customer_id"], r["status"], r["total"]) for r in _rows(response.text)] == [
        (issued.number, "'@acme", "finalized", "1.50")
    ]
