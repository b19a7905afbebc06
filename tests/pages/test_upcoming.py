"""The upcoming invoice's words (portal/pages/upcoming.py): pure, from rated lines."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portal.billing.rating import Segment, rate_invoice
from portal.billing.schemas import Charge, Plan, Tier
from portal.billing.views import LineView, TierView
from portal.pages.upcoming import charge_progress, invoice_line

START = datetime(2026, 11, 1, tzinfo=UTC)
END = datetime(2026, 12, 1, tzinfo=UTC)
D = Decimal


def rated(charge: Charge, quantity: str, fraction: str = "1", end: datetime = END) -> LineView:
    """The charge's line as the preview shows it, rated for `quantity`."""
    plan = Plan("p", "P", "EUR", (charge,), (), None, "")
    line = rate_invoice(
        [Segment(plan, START, end, D(fraction), {charge.key: D(quantity)})], currency="EUR"
    ).lines[0]
    tiers = [
        TierView(
            str(t.lower),
            None if t.upper is None else str(t.upper),
            str(t.quantity),
            str(t.unit_price),
            str(t.flat_fee),
            str(t.amount),
        )
        for t in line.tiers
    ]
    return LineView(
        0,
        line.kind,
        line.charge_key,
        line.meter,
        line.description,
        str(line.quantity),
        str(line.included_quantity),
        str(line.billable_quantity),
        None if line.unit_price is None else str(line.unit_price),
        tiers,
        str(line.proration),
        str(line.amount),
        "p",
        line.segment_start,
        line.segment_end,
    )


GRADUATED = Charge(
    "calls",
    "graduated",
    "api_calls",
    "API calls",
    tiers=(Tier(D(10000), D(0)), Tier(D(50000), D("0.0004")), Tier(None, D("0.0002"))),
)
VOLUME = Charge("users", "volume", "active_users", "Users", tiers=(Tier(D(100), D(1)), Tier(None, D("0.8"))))
PACKAGE = Charge("sms", "package", "sms", "Text messages", package_size=D(1000), package_price=D("0.50"))
PER_UNIT = Charge(
    "gb", "per_unit", "storage_gb", "Peak storage", unit_price=D("0.08"), included_quantity=D(50)
)


@pytest.mark.parametrize(
    ("charge", "quantity", "unit", "details", "amount"),
    [
        (
            GRADUATED,
            "60000",
            "call",
            (
                "first 10,000 calls free: 10,000 calls",
                "next 40,000 calls at EUR 0.0004 each: 40,000 calls = EUR 16.00",
                "above 50,000 calls at EUR 0.0002 each: 10,000 calls = EUR 2.00",
            ),
            "18.00",
        ),
        (
            VOLUME,
            "150",
            "user",
            ("all 150 users at EUR 0.80 each (above 100 users tier) = EUR 120.00",),
            "120.00",
        ),
        (PACKAGE, "2001", "message", ("in packages of 1,000 messages at EUR 0.50 each: 3 packages",), "1.50"),
        (
            PER_UNIT,
            "62.5",
            "GB",
            ("50 GB included in the plan; 12.5 GB beyond", "12.5 GB at EUR 0.08 each"),
            "1.00",
        ),
    ],
)
def test_usage_lines_say_how_the_amount_comes_about(
    charge: Charge, quantity: str, unit: str, details: tuple[str, ...], amount: str
) -> None:
    line = invoice_line(rated(charge, quantity), charge, unit, "EUR")
    assert (line.details, line.amount) == (details, amount)


def test_a_prorated_fee_says_for_how_long() -> None:
    fee = Charge("base", "flat", description="Platform fee", amount=D("30.00"))
    line = invoice_line(
        rated(fee, "0", fraction="0.5", end=datetime(2026, 11, 16, tzinfo=UTC)), fee, "", "EUR"
    )
    assert (line.description, line.amount) == ("Platform fee", "15.00")
    assert line.details == ("EUR 30.00 a period, prorated: 15 days on this plan (50% of the period)",)


@pytest.mark.parametrize(
    ("charge", "quantity", "unit", "label", "allowance"),
    [
        (GRADUATED, "2968", "call", "First 10,000 calls free; 2,968 so far — 29%", "10000"),
        (
            GRADUATED,
            "12968",
            "call",
            "First 10,000 calls free; 12,968 so far — 129%; 2,968 calls charged",
            "10000",
        ),
        (VOLUME, "150", "user", "150 users so far, all charged", None),
        (PER_UNIT, "10", "GB", "First 50 GB included; 10 so far — 20%", "50"),
        (PACKAGE, "0", "message", "0 messages so far", None),
    ],
)
def test_cards_never_call_free_usage_billable(
    charge: Charge, quantity: str, unit: str, label: str, allowance: str | None
) -> None:
    card = charge_progress(rated(charge, quantity), unit, "EUR")
    assert (card.label, card.allowance) == (label, allowance)


def test_a_card_of_a_period_split_by_a_plan_change_names_its_plan_and_days() -> None:
    """After a plan change, a meter has a card per plan: each says which, or two cards read
    "API calls" with different figures."""
    card = charge_progress(rated(PER_UNIT, "10"), "GB", "EUR", segment="Pro, 12-31 Dec 2026")
    assert card.description.endswith(" (Pro, 12-31 Dec 2026)")
    assert not charge_progress(rated(PER_UNIT, "10"), "GB", "EUR").description.endswith(")")
