"""Which charges one stored event feeds, with amounts a reviewer can trust.

An event counts toward exactly one usage charge per plan segment: the one
`portal.billing.rating.charge_for_group` picks for its meter and its group's dimensions
(a charge whose dimensions match wins over the meter's charge without any). So only that
charge's lines are shown, never every line of the meter.

The amounts come from a fresh rating: a draft covering the event is re-rated from stored
usage as its invoice page does (`portal.billing.invoices.get_invoice`); with no invoice
for the event's period yet, the current period is rated as the customer's page does
(`portal.billing.preview`). A finalized or voided invoice is shown as issued, and said so.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing import invoices
from portal.billing.preview import preview, rating_setup
from portal.billing.rating import charge_for_group
from portal.billing.repository import invoices as invoice_store
from portal.billing.schemas import Plan, PlannedSegment
from portal.billing.views import LineView
from portal.infrastructure.domain_errors import NotFound

Source = Literal["finalized", "void", "draft", "upcoming"]


@dataclass(frozen=True, slots=True)
class FedCharge:
    description: str
    quantity: str  # exact decimal text: the charge's whole quantity in the segment
    amount: str  # exact decimal text in the currency


@dataclass(frozen=True, slots=True)
class EventBilling:
    """One invoice (or the upcoming one) whose period holds the event, and what it feeds there."""

    source: Source
    invoice_id: int | None
    number: str | None
    currency: str
    period_start: datetime
    period_end: datetime
    complete_through: datetime | None
    charges: list[FedCharge]


def group_dimensions(group_key: str | None) -> dict[str, str]:
    """The group-by values of a stored event's hourly group ('' or None: none)."""
    if not group_key:
        return {}
    decoded = json.loads(group_key)
    return {str(k): str(v) for k, v in decoded.items()} if isinstance(decoded, dict) else {}


def fed_charges(
    lines: Iterable[LineView],
    plans: Mapping[tuple[datetime, str], Plan],
    *,
    meter: str,
    dimensions: Mapping[str, str],
    at: datetime,
) -> list[FedCharge]:
    """The usage lines the event at `at` with these group dimensions counts toward: in the
    segment holding `at`, the line of the charge its plan prices this group with. `plans`
    maps (segment start, plan id) to the plan the segment was rated with."""
    out = []
    for line in lines:
        if line.kind != "usage" or line.meter != meter or not line.segment_start <= at < line.segment_end:
            continue
        plan = plans.get((line.segment_start, line.plan_id))
        charge = None if plan is None else charge_for_group(plan.charges, meter, dimensions)
        if charge is not None and charge.key == line.charge_key:
            out.append(FedCharge(line.description, line.quantity, line.amount))
    return out


def _plans(segments: Sequence[PlannedSegment]) -> dict[tuple[datetime, str], Plan]:
    return {(s.start, s.plan.id): s.plan for s in segments}


async def event_billing(
    db: AsyncSession,
    customer_id: str,
    *,
    meter: str,
    dimensions: Mapping[str, str],
    at: datetime,
    now: datetime,
    grace: timedelta,
    complete_through: datetime | None,
) -> list[EventBilling]:
    """Newest invoice first; the upcoming invoice when no draft or finalized one covers `at`
    and `at` is in the current period. Drafts are re-rated (written, as opening them does)."""
    found: list[EventBilling] = []
    for invoice_id, *_ in await invoice_store.invoices_covering(db, customer_id, at):
        view = await invoices.get_invoice(
            db, invoice_id, now=now, grace=grace, complete_through=complete_through
        )
        row = await invoices.load_invoice(db, invoice_id)  # after the re-rating: its segments now
        source: Source = (
            "finalized" if view.state == "finalized" else "void" if view.state == "void" else "draft"
        )
        charges = fed_charges(
            view.lines, _plans(row.planned_segments()), meter=meter, dimensions=dimensions, at=at
        )
        found.append(
            EventBilling(
                source,
                view.id,
                view.number,
                view.currency,
                view.period_start,
                view.period_end,
                view.complete_through,
                charges,
            )
        )
    if any(b.source != "void" for b in found):
        return found
    try:
        setup = await rating_setup(db, customer_id, now=now)
    except NotFound:  # no plan now: nothing is coming
        return found
    if not setup.item.period.start <= at < setup.item.period.end:
        return found
    upcoming = await preview(db, customer_id, now=now, complete_through=complete_through, setup=setup)
    charges = fed_charges(
        upcoming.lines, _plans(setup.item.segments), meter=meter, dimensions=dimensions, at=at
    )
    found.insert(
        0,
        EventBilling(
            "upcoming",
            None,
            None,
            upcoming.currency,
            upcoming.period_start,
            upcoming.period_end,
            upcoming.complete_through,
            charges,
        ),
    )
    return found
