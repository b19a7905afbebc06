"""A prorated line says what part of the period it covers in words (dates, days or a
percentage), never as the raw share; a minimum true-up writes its amounts as the invoice does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from portal.billing.pdf.render import invoice_pdf
from portal.billing.rating import Segment, rate_invoice
from portal.billing.views import proration_text
from tests.billing.test_invoice_documents import BERLIN, DEC_START, JAN_START, PARTIES, invoice, line, text_of
from tests.billing.test_rating import flat, make_plan, per_unit

TOKYO = "Asia/Tokyo"
NOV_TOKYO = datetime(2026, 10, 31, 15, 0, tzinfo=UTC)  # 1 Nov 2026 00:00 JST
DEC_TOKYO = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 1 Dec 2026 00:00 JST
NEW_YORK = "America/New_York"
NOV_NY = datetime(2026, 11, 1, 4, 0, tzinfo=UTC)  # 1 Nov 2026 00:00 EDT
DEC_NY = datetime(2026, 12, 1, 5, 0, tzinfo=UTC)  # 1 Dec 2026 00:00 EST: 721 hours later


@pytest.mark.parametrize(
    ("proration", "start", "end", "period", "tz", "expected"),
    [
        (
            str(Decimal(17) / Decimal(30)),
            NOV_TOKYO + timedelta(days=13),
            DEC_TOKYO,
            (NOV_TOKYO, DEC_TOKYO),
            TOKYO,
            "for 14–30 Nov 2026 (17 of 30 days)",
        ),
        (
            "0.2258064516129032258064516129",
            DEC_START + timedelta(days=24),
            JAN_START,
            (DEC_START, JAN_START),
            BERLIN,
            "for 25–31 Dec 2026 (7 of 31 days)",
        ),
        (
            # A DST month: the share is of its 721 hours, not of its 30 days.
            "0.532593619972260748959778086",
            NOV_NY + timedelta(hours=337),
            DEC_NY,
            (NOV_NY, DEC_NY),
            NEW_YORK,
            "for 15–30 Nov 2026 (53.26% of the period)",
        ),
        (
            # From a whole hour inside a day (an immediate plan change).
            "0.7",
            NOV_TOKYO,
            NOV_TOKYO + timedelta(days=21, hours=5),
            (NOV_TOKYO, DEC_TOKYO),
            TOKYO,
            "for 1–22 Nov 2026 (70% of the period)",
        ),
        ("1", NOV_TOKYO, DEC_TOKYO, (NOV_TOKYO, DEC_TOKYO), TOKYO, ""),
    ],
    ids=["whole-days", "seven-of-31", "dst-month", "part-of-a-day", "not-prorated"],
)
def test_the_share_reads_as_days_or_a_percentage(
    proration: str,
    start: datetime,
    end: datetime,
    period: tuple[datetime, datetime],
    tz: str,
    expected: str,
) -> None:
    assert proration_text(proration, start, end, *period, tz) == expected


def test_a_prorated_fee_prints_its_days_not_its_share() -> None:
    # Given a December invoice whose platform fee covers 25-31 Dec (the plan began on the 25th)
    share = "0.2258064516129032258064516129"
    prorated = invoice(
        lines=[
            line(
                0,
                "flat",
                "Platform fee",
                "11.06",
                proration=share,
                segment_start=DEC_START + timedelta(days=24),
            )
        ],
        subtotal="11.06",
        discount_total="0.00",
        total="11.06",
        adjusted_total="11.06",
    )
    # When it is printed
    lines = text_of(invoice_pdf(prorated, PARTIES, BERLIN)).splitlines()
    # Then the line says which days, and the raw share is nowhere
    assert "Platform fee for 25–31 Dec 2026 (7 of 31 days) 11.06" in lines
    assert "prorated ×" not in "\n".join(lines)


def test_a_prorated_minimum_says_what_it_was_prorated_from() -> None:
    # Given a JPY plan with a 20,000 minimum, on it for 70% of the period, with 3,000 of charges
    plan = make_plan(charges=[flat("3000"), per_unit("1")], currency="JPY", minimum="20000")
    segment = Segment(plan, NOV_TOKYO, DEC_TOKYO, Decimal("0.7"), {"api": Decimal(0)})
    # When it is rated
    rating = rate_invoice([segment], currency="JPY")
    # Then the true-up names the prorated minimum and the plan's, code first and grouped
    (minimum,) = [item for item in rating.lines if item.kind == "minimum"]
    assert minimum.description == "Minimum commitment true-up (minimum JPY 14,000, prorated from JPY 20,000)"
    assert (minimum.unit_price, minimum.amount) == (Decimal(14000), Decimal(11900))


def test_a_whole_period_minimum_is_written_as_money() -> None:
    plan = make_plan(charges=[per_unit("0.10")], minimum="1250")
    segment = Segment(plan, NOV_TOKYO, DEC_TOKYO, Decimal(1), {"api": Decimal(100)})
    (minimum,) = [item for item in rate_invoice([segment], currency="USD").lines if item.kind == "minimum"]
    assert minimum.description == "Minimum commitment true-up (minimum USD 1,250.00)"
