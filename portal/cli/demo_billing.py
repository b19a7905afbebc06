"""The demo's bills and alert rules, made by the product's own services.

- Alert rules (Acme): a usage threshold on API calls and a monthly budget, notifying an
  email channel. The demo configures no SMTP server, so each delivery fails with the
  reason the alerts page shows ("no mail server set up"): true, and what an operator
  who has not set PORTAL_SMTP_URL would see.
- Invoices: every ended period rated by the invoice run (`run_invoices`); all but the most
  recent approved (finalized, numbered INV-…) by the demo's account manager, dated the
  morning after their grace period (`approve(now=…)`); the most
  recent left a draft awaiting review; one goodwill credit note on Acme's latest
  finalized invoice.

Each step is idempotent: rules and channels are found by name, the run leaves finalized
invoices alone, only drafts are approved, and the credit note is written once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.alerting import channels as channel_service
from portal.alerting import rules as rule_service
from portal.alerting.schemas import ChannelCreate, RuleCreate
from portal.billing.invoices import list_invoices
from portal.billing.lifecycle import approve
from portal.billing.manual_adjustments import add_manual_adjustment
from portal.billing.repository import adjustments as adjustment_store
from portal.billing.run import run_invoices
from portal.catalog.service import get_customer
from portal.infrastructure.db import transaction
from portal.infrastructure.periods import period_for, previous_period
from portal.infrastructure.settings import Settings

ALERT_CUSTOMER = "acme"
CHANNEL = ChannelCreate(name="Finance team", destination="mailto://finance@acme.test")
# As the portal records an approval: by the signed-in person's address (demo.py's manager).
APPROVED_BY = "manager@demo.test"
APPROVED_AFTER_GRACE = timedelta(hours=9, minutes=40)
CREDIT_NOTE_AMOUNT = "25.00"


def demo_rules(channel_id: int) -> list[RuleCreate]:
    return [
        RuleCreate(
            name="API calls this month",
            metric_name="api_calls",
            levels=[Decimal(100000), Decimal(250000)],
            channel_ids=[channel_id],
        ),
        RuleCreate(
            name="Monthly budget",
            basis="budget",
            budget=Decimal(300),
            levels=[Decimal(50), Decimal(80), Decimal(100)],
            channel_ids=[channel_id],
        ),
    ]


async def create_alert_rules(session: AsyncSession, settings: Settings) -> None:
    """Acme's email channel and two rules, unless they exist (by name)."""
    channels = {c.name: c for c in await channel_service.list_channels(session, ALERT_CUSTOMER)}
    channel = channels.get(CHANNEL.name)
    if channel is None:
        channel = await channel_service.create_channel(
            session,
            ALERT_CUSTOMER,
            CHANNEL,
            secret_key=settings.secret_key,
            allow_networks=settings.destination_allow_networks,
        )
    existing = {r.name for r in await rule_service.list_rules(session, ALERT_CUSTOMER)}
    for rule in demo_rules(channel.id):
        if rule.name not in existing:
            await rule_service.create_rule(session, ALERT_CUSTOMER, rule)


@dataclass(slots=True)
class BillingReport:
    finalized: int = 0
    credit_note: str | None = None


def ended_months(now: datetime, first: str, zones: list[str]) -> list[str]:
    """ "YYYY-MM" of each monthly period (anchor day 1) from month `first` that has ended by
    `now` in at least one of `zones`, oldest first."""
    months: set[str] = set()
    for zone in zones:
        period = previous_period(period_for(now, zone, 1), zone, 1)
        while _month_of(period.start, zone) >= first:
            months.add(_month_of(period.start, zone))
            period = previous_period(period, zone, 1)
    return sorted(months)


async def bill_history(
    sessions: async_sessionmaker[AsyncSession], settings: Settings, *, now: datetime, months: list[str]
) -> BillingReport:
    """Rate `months` ("YYYY-MM", oldest first) for every customer; approve each customer's
    drafts awaiting review but its most recent ended period's; one credit note on Acme's
    latest finalized invoice."""
    report = BillingReport()
    for month in months:
        await run_invoices(sessions, month=month, now=now, complete_through=now)
    async with transaction(sessions) as session:
        drafts = await list_invoices(
            session, now=now, grace=settings.invoice_grace, state="awaiting_review", limit=1000
        )
        for invoice in sorted(drafts, key=lambda i: (i.period_start, i.id)):
            zone = await _zone(session, invoice.customer_id)
            last_ended = previous_period(period_for(now, zone, 1), zone, 1)
            if invoice.period_start >= last_ended.start:
                continue
            # Approved as a manager would have: the morning after its grace period ended.
            approved_at = min(now, invoice.period_end + settings.invoice_grace + APPROVED_AFTER_GRACE)
            await approve(
                session,
                invoice.id,
                approved_by=APPROVED_BY,
                now=approved_at,
                grace=settings.invoice_grace,
                complete_through=approved_at,
            )
            report.finalized += 1
    async with transaction(sessions) as session:
        report.credit_note = await _credit_note(session, settings, now=now)
    return report


async def _zone(session: AsyncSession, customer_id: str) -> str:
    customer = await get_customer(session, customer_id)
    assert customer is not None
    return customer.timezone


def _month_of(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).strftime("%Y-%m")


async def _credit_note(session: AsyncSession, settings: Settings, *, now: datetime) -> str | None:
    """A goodwill credit on Acme's latest finalized invoice, unless Acme has a note already."""
    if await adjustment_store.adjusted_invoice_ids(session, ALERT_CUSTOMER):
        return None
    finalized = await list_invoices(
        session, now=now, grace=settings.invoice_grace, customer_id=ALERT_CUSTOMER, state="finalized"
    )
    if not finalized:
        return None
    latest = max(finalized, key=lambda i: i.period_start)
    _, number, _ = await add_manual_adjustment(
        session,
        latest.id,
        kind="credit",
        amount=CREDIT_NOTE_AMOUNT,
        reason="Goodwill credit: slow API responses during the afternoon of the traffic spike",
    )
    return number
