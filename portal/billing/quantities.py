"""Metered quantities per charge, read from the authoritative hourly aggregates.

A charge's quantity over a window is its meter's aggregation over the hours in the window
and over the groups the charge prices (see `rating.charge_for_group`): sums and counts
add, max takes the largest, latest takes the last event's value, unique_count counts
distinct values across hours and groups (never a sum of hourly counts).

Windows are read in bulk: one query per distinct [start, end) for all customers that
share it, so an invoice run costs a handful of scans, not one query per customer. The
queries are `portal.usage.repository`'s (`window_sums`, `window_latest`,
`window_unique_values`); sums, counts and maxima read whole local days from the daily
rollups and only the hours of a day a window's end cuts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession

from portal.billing.rating import charge_for_group
from portal.billing.schemas import Plan
from portal.catalog import repository as catalog
from portal.usage import repository as usage_repository


@dataclass(frozen=True, slots=True)
class UsageWindow:
    """Usage of one customer in [start, end) to be priced on `plan`; `key` names it."""

    key: Hashable
    customer_id: str
    start: datetime
    end: datetime
    plan: Plan


async def meter_aggregations(session: AsyncSession) -> dict[str, str]:
    """Metric name → aggregation of every meter (the catalog's)."""
    return await catalog.meter_aggregations(session)


_group_dims: dict[str, dict[str, str]] = {}


def _dimensions(group_key: str) -> dict[str, str]:
    dims = _group_dims.get(group_key)
    if dims is None:
        dims = _group_dims[group_key] = json.loads(group_key) if group_key else {}
    return dims


class _Accumulator:
    """One window's quantities per charge, combined by the meter's aggregation."""

    def __init__(self) -> None:
        self.totals: dict[str, Decimal] = {}
        self.latest: dict[str, tuple[datetime, str, Decimal]] = {}
        self.uniques: dict[str, set[str]] = defaultdict(set)

    def add(self, aggregation: str, charge: str, total: Decimal, peak: Decimal) -> None:
        if aggregation == "max":
            current = self.totals.get(charge)
            self.totals[charge] = peak if current is None else max(current, peak)
        else:
            self.totals[charge] = self.totals.get(charge, Decimal(0)) + total

    def quantities(self) -> dict[str, Decimal]:
        out = dict(self.totals)
        for charge, (_, _, value) in self.latest.items():
            out[charge] = value
        for charge, seen in self.uniques.items():
            out[charge] = Decimal(len(seen))
        return out


def _place(
    found: dict[Hashable, _Accumulator],
    members: dict[str, UsageWindow],
    customer_id: str,
    metric: str,
    group_key: str,
) -> tuple[_Accumulator, str] | None:
    """The accumulator and charge that one (customer, meter, group) row counts toward."""
    window = members[customer_id]
    charge = charge_for_group(window.plan.charges, metric, _dimensions(group_key))
    if charge is None:
        return None
    return found.setdefault(window.key, _Accumulator()), charge.key


async def charge_quantities(
    session: AsyncSession,
    windows: Iterable[UsageWindow],
    aggregations: dict[str, str],
) -> dict[Hashable, dict[str, Decimal]]:
    """Quantity per usage-charge key for every window (charges with no usage are absent)."""
    by_range: dict[tuple[datetime, datetime], dict[str, UsageWindow]] = defaultdict(dict)
    for window in windows:
        by_range[(window.start, window.end)][window.customer_id] = window
    found: dict[Hashable, _Accumulator] = {}
    for (start, end), members in by_range.items():
        metered = {c.meter for w in members.values() for c in w.plan.charges if c.meter}
        plain = sorted(m for m in metered if aggregations.get(m) in ("sum", "count", "max"))
        latest = sorted(m for m in metered if aggregations.get(m) == "latest")
        unique = sorted(m for m in metered if aggregations.get(m) == "unique_count")
        ids = list(members)

        if plain:
            sums = await usage_repository.window_sums(
                session, customer_ids=ids, metric_names=plain, start=start, end=end
            )
            for customer_id, metric, group_key, total, peak in sums:
                target = _place(found, members, customer_id, metric, group_key)
                if target is not None:
                    target[0].add(aggregations[metric], target[1], total, peak)
        if latest:
            newest = await usage_repository.window_latest(
                session, customer_ids=ids, metric_names=latest, start=start, end=end
            )
            for customer_id, metric, group_key, at, event_id, value in newest:
                target = _place(found, members, customer_id, metric, group_key)
                if target is not None:
                    accumulator, charge_key = target
                    current = accumulator.latest.get(charge_key)
                    if current is None or (at, event_id) > current[:2]:
                        accumulator.latest[charge_key] = (at, event_id, value)
        if unique:
            seen = await usage_repository.window_unique_values(
                session, customer_ids=ids, metric_names=unique, start=start, end=end
            )
            for customer_id, metric, group_key, member in seen:
                target = _place(found, members, customer_id, metric, group_key)
                if target is not None:
                    target[0].uniques[target[1]].add(member)
    return {key: accumulator.quantities() for key, accumulator in found.items()}
