"""What credit a period may draw once the drafts of earlier periods have drawn theirs:
pure, table-driven (`credits.left_after_claims`)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from portal.billing.credits import left_after_claims

NOV_END = datetime(2026, 12, 1, tzinfo=UTC)
DEC_END = datetime(2027, 1, 1, tzinfo=UTC)
MID_DEC = datetime(2026, 12, 15, tzinfo=UTC)
D = Decimal


@pytest.mark.parametrize(
    ("grants", "claims", "left"),
    [
        # no earlier draft: everything not expired at December's end
        ([(None, D("100"))], [], D("100")),
        # November's draft will draw 91.89 of it
        ([(None, D("100"))], [(NOV_END, D("91.89"))], D("8.11")),
        # it draws the grant expiring soonest first: a grant expiring mid-December (usable
        # by November, not by December) takes the claim, the lasting grant is left whole
        ([(MID_DEC, D("50")), (None, D("100"))], [(NOV_END, D("30"))], D("100")),
        ([(MID_DEC, D("50")), (None, D("100"))], [(NOV_END, D("80"))], D("70")),
        # a grant expired before November's end is not drawn by it
        ([(datetime(2026, 11, 15, tzinfo=UTC), D("40")), (None, D("10"))], [(NOV_END, D("5"))], D("5")),
        # a claim larger than the credit (a stale draft) leaves nothing, never less
        ([(None, D("10"))], [(NOV_END, D("25"))], D("0")),
        # used-up grants count for nothing
        ([(None, D("0")), (None, D("3"))], [], D("3")),
    ],
)
def test_credit_left_for_december(
    grants: list[tuple[datetime | None, Decimal]], claims: list[tuple[datetime, Decimal]], left: Decimal
) -> None:
    assert left_after_claims(grants, claims, DEC_END) == left
