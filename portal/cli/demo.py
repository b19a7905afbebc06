"""Demo data for `usage-portal up --demo`: customers, meters, keys and a trickle of
synthetic events sent through the real HTTP API, so the dashboard moves."""

from __future__ import annotations

import json
import random
import secrets
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from datetime import date

import msgspec
from sqlalchemy.ext.asyncio import AsyncSession

from portal.accounts import service as users
from portal.accounts.passwords import hash_password
from portal.billing.catalog_file import CatalogFile, apply_catalog, read_catalog
from portal.billing.run import run_current_periods
from portal.infrastructure.clock import system_clock
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.paths import ROOT
from portal.infrastructure.settings import Settings
from portal.keys.service import create_key

DEMO_CATALOG = ROOT / "docs" / "examples" / "catalog.yaml"
DEMO_CUSTOMERS = ("acme", "globex", "initech")


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


def demo_catalog(today: date) -> CatalogFile:
    """The example catalog, with every subscription starting on the first of this month
    (so the demo's first invoice covers a whole period)."""
    catalog = read_catalog(DEMO_CATALOG)
    first = today.replace(day=1)
    catalog.subscriptions = [msgspec.structs.replace(s, start_date=first) for s in catalog.subscriptions]
    return catalog


async def seed_demo(settings: Settings) -> DemoData:
    """Apply the example catalog and create two fresh keys (idempotent)."""
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            await apply_catalog(session, demo_catalog(system_clock().date()), now=system_clock())
            _, ingest = await create_key(session, scope="ingest", name="demo ingest")
            _, admin = await create_key(session, scope="admin", name="demo admin")
            password = secrets.token_urlsafe(12)
            await _demo_users(session, password)
        # The running period's drafts now, not at the scheduler's next quarter hour: the
        # account managers' table shows spend so far from the first look.
        await run_current_periods(session_factory(engine), now=system_clock())
        return DemoData(ingest_key=ingest, admin_key=admin, password=password)
    finally:
        await engine.dispose()


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
  Usage portal is running.

  Portal      {url}/portal/login
              sign in as {", ".join(email for email, *_ in DEMO_USERS)}
              password {demo.password}
  API docs    {url}/schema
  Admin key   {demo.admin_key}
  Ingest key  {demo.ingest_key}

  Send an event:
  curl -sS -X POST {url}/v1/events -H 'Authorization: Bearer {demo.ingest_key}' \\
       -H 'Content-Type: application/json' -d '{body}'

  Ctrl-C stops everything.
""",
        flush=True,
    )


def synthetic_batch(rng: random.Random, now_ms: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for customer in DEMO_CUSTOMERS:
        for _ in range(rng.randint(1, 4)):
            events.append(
                {
                    "eventId": uuid.uuid4().hex,
                    "timestamp": now_ms,
                    "customerId": customer,
                    "metricName": "api_calls",
                    "quantity": rng.randint(1, 40),
                    "dimensions": {"region": rng.choice(["eu", "us", "apac"])},
                    "metadata": {"source": "demo", "version": "1"},
                }
            )
        events.append(
            {
                "eventId": uuid.uuid4().hex,
                "timestamp": now_ms,
                "customerId": customer,
                "metricName": "active_users",
                "quantity": 1,
                "dimensions": {"user": f"user-{rng.randint(1, 60)}"},
            }
        )
        events.append(
            {
                "eventId": uuid.uuid4().hex,
                "timestamp": now_ms,
                "customerId": customer,
                "metricName": "storage_gb",
                "quantity": round(rng.uniform(10, 120), 2),
            }
        )
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
