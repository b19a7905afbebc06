"""Changing a customer's alert rule in place (the API only creates and disables rules).

What a rule watches (its kind, meter or spend, and basis) is fixed: its firings, shown in
the history, say what they measured, and a rule that watched calls last week and storage
now would mix the two. To watch something else, create a new rule. Everything else changes
in place, in the caller's transaction, with the row locked so two edits do not interleave:
name, levels, budget, channels and the recovery/forecast flags.

What it means for notices already sent: a firing is unique per (rule, period, level,
kind), keyed by the level *as configured* (80 for 80 %). So, within the current period:
- a new level (raised or lowered, e.g. 90 → 95 or 90 → 70) has never fired and fires at the
  next evaluation (the sweep runs every minute) once usage is at or above it; lowering a
  level below current usage therefore notifies within a minute, raising one notifies when
  usage reaches it;
- a level kept as it was and already crossed does not notify again, even when a new budget
  changes what it means (no second "80 %" notice in a period);
- when a new budget puts usage back below a crossed level, the rule owes a recovery notice
  if it asks for recoveries: that is what happened for the customer;
- removed levels keep their past firings in the history; nothing is deleted.
Channels apply to notices fired from now on; deliveries already queued keep their channel.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from portal.alerting import repository
from portal.alerting.rules import check_channels
from portal.alerting.schemas import Rule, RuleCreate
from portal.infrastructure.domain_errors import Invalid, NotFound


async def get_rule(session: AsyncSession, customer_id: str, rule_id: int, *, lock: bool = False) -> Rule:
    """The customer's active rule; NotFound for another customer's, a disabled or unknown one."""
    rule = await repository.active_rule(session, customer_id, rule_id, lock=lock)
    if rule is None:
        raise NotFound(f"no alert rule {rule_id} for customer {customer_id}")
    return rule


async def update_rule(session: AsyncSession, customer_id: str, rule_id: int, data: RuleCreate) -> Rule:
    """Set the rule's name, levels, budget, channels and flags to `data` (validated by its
    schema). Raises NotFound (rule), Invalid (a change of what is watched, an unknown
    channel)."""
    current = await get_rule(session, customer_id, rule_id, lock=True)
    for field, was, given in (
        ("kind", current.kind, data.kind),
        ("metricName", current.metric_name, data.metric_name),
        ("basis", current.basis, data.basis),
    ):
        if was != given:
            raise Invalid(f"{field}: what a rule watches cannot change; create a new rule instead")
    await check_channels(session, customer_id, data.channel_ids)
    return await repository.update_rule(session, customer_id, rule_id, data)
