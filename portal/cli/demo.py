"""Demo data for `usage-portal up --demo`: the example catalog, keys and people, 90 days of
history with its invoices, alerts and a failed event (`demo_history.py` generates the
usage, `demo_load.py` persists it, `demo_billing.py` bills it), then a trickle of
synthetic events sent through the real HTTP API, so the dashboard moves.

The trickle keeps every customer moving except Acme's API calls: that is the number the
banner tells people to watch, and only the banner's curl line moves it."""

from __future__ import annotations

import json
import random
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date, datetime

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from portal.accounts import service as users
from portal.accounts.passwords import hash_password
from portal.billing.catalog_file import CatalogFile, apply_catalog, read_catalog
from portal.billing.run import run_current_periods
from portal.catalog.service import get_customer
from portal.cli.demo_billing import (
    ALERT_CUSTOMER,
    BillingReport,
    bill_history,
    create_alert_rules,
    ended_months,
)
from portal.cli.demo_history import HISTORY_DAYS, PROFILES
from portal.cli.demo_load import LoadReport, load_history
from portal.infrastructure.broker import get_broker, reset_broker, setup_broker
from portal.infrastructure.clock import system_clock
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.paths import ROOT
from portal.infrastructure.settings import Settings
from portal.keys.service import create_key, list_keys, revoke_key

DEMO_CATALOG = ROOT / "docs" / "examples" / "catalog.yaml"
DEMO_CUSTOMERS = tuple(p.customer_id for p in PROFILES)
# The customer and meter the banner's curl line moves, and the trickle leaves still.
WATCHED = ("acme", "api_calls")
# Per customer and second of the trickle: a person active now and then, a storage reading
# now and then (the history has one a day per person and one every six hours).
ACTIVE_USER_CHANCE = 0.05
STORAGE_READING_CHANCE = 0.02
# How many months before the current one the subscriptions start (on the 1st).
MONTHS_BACK = 3


DEMO_KEY_NAMES = ("demo ingest", "demo admin")
# Who can sign in to the demo (all with the password printed at start-up).
DEMO_USERS = (
    ("admin@demo.test", "Ada Admin", "admin", None),
    ("manager@demo.test", "Max Manager", "account_manager", None),
    ("user@acme.test", "Alice at Acme", "customer", "acme"),
)


@dataclass(frozen=True, slots=True)
class DemoData:
    ingest_key: str
    admin_key: str
    password: str
    history: LoadReport | None = None
    billing: BillingReport | None = None


def subscription_start(today: date) -> date:
    """The 1st of the month `MONTHS_BACK` months before `today`'s: the history's periods
    are whole (three ended ones, then the running one)."""
    month = today.year * 12 + today.month - 1 - MONTHS_BACK
    return date(month // 12, month % 12 + 1, 1)


def demo_catalog(today: date) -> CatalogFile:
    """The example catalog, with every subscription starting on `subscription_start`."""
    catalog = read_catalog(DEMO_CATALOG)
    first = subscription_start(today)
    catalog.subscriptions = [msgspec.structs.replace(s, start_date=first) for s in catalog.subscriptions]
    return catalog


async def seed_demo(settings: Settings, *, now: datetime | None = None, days: int = HISTORY_DAYS) -> DemoData:
    """The catalog, two fresh keys, the people with a fresh password, and `days` of history
    up to `now` (UTC; default the wall clock) with its invoices and alerts. Running it
    again changes nothing but the keys (an earlier start's are revoked) and the password
    (see demo_load's docstring)."""
    assert settings.database_url
    now = now or system_clock()
    # The history's approvals and notes queue their emails after commit, like the portal's.
    try:
        get_broker()
        owned = False
    except RuntimeError:
        setup_broker(settings)
        owned = True
    try:
        return await _seed(settings, now, days)
    finally:
        if owned:
            reset_broker()


async def _seed(settings: Settings, now: datetime, days: int) -> DemoData:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=2)
    sessions = session_factory(engine)
    try:
        async with transaction(sessions) as session:
            await apply_catalog(session, demo_catalog(now.date()), now=now)
            # Only the keys this start prints work: an earlier start's are revoked (the web
            # processes started with this `up` have cached none of them).
            for key in await list_keys(session):
                if key.name in DEMO_KEY_NAMES and key.revoked_at is None:
                    await revoke_key(session, key.id)
            _, ingest = await create_key(session, scope="ingest", name="demo ingest")
            _, admin = await create_key(session, scope="admin", name="demo admin")
            password = secrets.token_urlsafe(12)
            await _demo_users(session, password)
            await create_alert_rules(session, settings)
        history = await load_history(settings, sessions, now=now, days=days, alert_customers=[ALERT_CUSTOMER])
        zones = [str(z) for z in await _zones(sessions)]
        first = subscription_start(now.date()).strftime("%Y-%m")
        billing = await bill_history(sessions, settings, now=now, months=ended_months(now, first, zones))
        # The running period's drafts now, not at the scheduler's next quarter hour: the
        # account managers' table shows spend so far from the first look.
        await run_current_periods(sessions, now=now, complete_through=now)
        return DemoData(ingest, admin, password, history, billing)
    finally:
        await engine.dispose()


async def _zones(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        found = [await get_customer(session, c) for c in DEMO_CUSTOMERS]
    return [c.timezone for c in found if c is not None]


async def _demo_users(session: AsyncSession, password: str) -> None:
    """The demo's people, each run with a fresh password (the previous run's stops working)."""
    for email, name, role, customer in DEMO_USERS:
        user = await users.find_by_email(session, email)
        if user is None:
            await users.create_user(
                session,
                email=email,
                name=name,
                role=role,
                customer_id=customer,
                all_customers=role == "account_manager",
                password=password,
            )
        else:
            await users.set_password(session, user.id, hash_password(password))


def print_demo_banner(url: str, demo: DemoData) -> None:
    event = {
        "eventId": "ID",
        "timestamp": "NOW",
        "customerId": "acme",
        "metricName": "api_calls",
        "quantity": 250,
        "dimensions": {"region": "eu"},
    }
    # The shell fills in a fresh event id and the current time each time the line runs.
    body = (
        json.dumps(event)
        .replace('"ID"', '"curl-\'"$(date +%s%N)"\'"')
        .replace('"NOW"', '"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"')
    )
    print(
        f"""
  Usage portal is running{_history_line(demo)}.

  Portal      {url}/portal/login
              sign in as {", ".join(email for email, *_ in DEMO_USERS)}
              password {demo.password}
  API docs    {url}/schema
  Admin key   {demo.admin_key}
  Ingest key  {demo.ingest_key}

  Watch one number: sign in as user@acme.test and look at "API calls" on the Usage tab.
  The demo keeps every other number moving by itself; Acme's API calls move only when
  you run this line, which adds 250 to them (in the EU region):
  curl -sS -X POST {url}/v1/events -H 'Authorization: Bearer {demo.ingest_key}' \\
       -H 'Content-Type: application/json' -d '{body}'

  Ctrl-C stops everything.
""",
        flush=True,
    )


def _history_line(demo: DemoData) -> str:
    loaded = demo.history
    if loaded is None or not loaded.chunks_loaded:
        return ""
    return f", with {loaded.days} days of history ({loaded.events:,} events loaded in {loaded.seconds:.1f} s)"


def synthetic_batch(rng: random.Random, now_ms: int) -> list[dict[str, object]]:
    """Events of every demo customer at `now_ms`, but none of the watched number's
    (Acme's API calls: only the banner's curl line moves it). Active users and storage
    readings continue the loaded history (portal/cli/demo_history.py): a person now and
    then from the customer's own people ("user-007"), a reading near its storage of late, so
    that monthly active users and peak storage do not run away while someone watches."""
    events: list[dict[str, object]] = []

    def event(customer: str, metric: str, quantity: object, **extra: object) -> None:
        events.append(
            {
                "eventId": uuid.uuid4().hex,
                "timestamp": now_ms,
                "customerId": customer,
                "metricName": metric,
                "quantity": quantity,
                **extra,
            }
        )

    for profile in PROFILES:
        customer = profile.customer_id
        calls = 0 if (customer, "api_calls") == WATCHED else rng.randint(1, 4)
        for _ in range(calls):
            event(
                customer,
                "api_calls",
                rng.randint(1, 40),
                dimensions={"region": rng.choice(["eu", "us", "apac"])},
                metadata={"source": "demo", "version": "1"},
            )
        if rng.random() < ACTIVE_USER_CHANCE:
            person = rng.randint(1, profile.users[1])
            event(customer, "active_users", 1, dimensions={"user": f"user-{person:03d}"})
        if rng.random() < STORAGE_READING_CHANCE:
            event(customer, "storage_gb", round(profile.storage_gb[1] * rng.uniform(0.95, 1.0), 2))
    return events


def trickle(url: str, key: str, interval_s: float = 1.0) -> None:
    """Send a small batch every `interval_s` until killed; a failed send is retried with
    the same event ids next round, so the demo itself never double counts."""
    rng = random.Random()
    pending: list[dict[str, object]] = []
    while True:
        if not pending:
            pending = synthetic_batch(rng, int(time.time() * 1000))
        request = urllib.request.Request(
            f"{url}/v1/events/batch",
            data=json.dumps({"events": pending}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=10):
                pending = []
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval_s)
