"""Demo data for `usage-portal up --demo`: customers, meters, keys and a trickle of
synthetic events sent through the real HTTP API, so the dashboard moves."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass

from sqlalchemy import text

from portal.catalog.schemas import CustomerCreate, MeterCreate
from portal.catalog.service import create_customer, create_meter
from portal.db import create_engine, session_factory, transaction
from portal.keys.service import create_key
from portal.settings import Settings

DEMO_CUSTOMERS = [
    CustomerCreate(id="acme", name="Acme Inc", timezone="Europe/Berlin", currency="EUR"),
    CustomerCreate(id="globex", name="Globex Corporation", timezone="America/New_York",
                   currency="USD"),
    CustomerCreate(id="initech", name="Initech", timezone="Asia/Kolkata", currency="INR"),
]
DEMO_METERS = [
    MeterCreate(metric_name="api_calls", aggregation="sum", unit="call", group_by=["region"]),
    MeterCreate(metric_name="storage_gb", aggregation="max", unit="GB"),
    MeterCreate(metric_name="active_users", aggregation="unique_count", unit="user",
                unique_by="user"),
]


@dataclass(frozen=True, slots=True)
class DemoData:
    ingest_key: str
    admin_key: str


async def seed_demo(settings: Settings) -> DemoData:
    """Create what is missing of the demo catalog and two fresh keys (idempotent)."""
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            have: set[str] = set((await session.execute(text("SELECT id FROM customers"))).scalars())
            for customer in DEMO_CUSTOMERS:
                if customer.id not in have:
                    await create_customer(session, customer)
            meters: set[str] = set((await session.execute(text("SELECT metric_name FROM meters"))).scalars())
            for meter in DEMO_METERS:
                if meter.metric_name not in meters:
                    await create_meter(session, meter)
            _, ingest = await create_key(session, scope="ingest", name="demo ingest")
            _, admin = await create_key(session, scope="admin", name="demo admin")
        return DemoData(ingest_key=ingest, admin_key=admin)
    finally:
        await engine.dispose()


def print_demo_banner(url: str, demo: DemoData) -> None:
    event = {"eventId": "ID", "timestamp": "NOW", "customerId": "acme",
             "metricName": "api_calls", "quantity": 250, "dimensions": {"region": "eu"}}
    # The shell fills in a fresh event id and the current time each time the line runs.
    body = (json.dumps(event)
            .replace('"ID"', '"curl-\'"$(date +%s%N)"\'"')
            .replace('"NOW"', '"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"'))
    print(f"""
  Usage portal is running.

  Dashboard   {url}/portal/login   (sign in with the admin key below)
              then {url}/portal/customers/acme
  API docs    {url}/schema
  Admin key   {demo.admin_key}
  Ingest key  {demo.ingest_key}

  Send an event:
  curl -sS -X POST {url}/v1/events -H 'Authorization: Bearer {demo.ingest_key}' \\
       -H 'Content-Type: application/json' -d '{body}'

  Ctrl-C stops everything.
""", flush=True)


def synthetic_batch(rng: random.Random, now_ms: int) -> list[dict[str, object]]:
    events: list[dict[str, object]] = []
    for customer in DEMO_CUSTOMERS:
        for _ in range(rng.randint(1, 4)):
            events.append({
                "eventId": uuid.uuid4().hex, "timestamp": now_ms, "customerId": customer.id,
                "metricName": "api_calls", "quantity": rng.randint(1, 40),
                "dimensions": {"region": rng.choice(["eu", "us", "apac"])},
                "metadata": {"source": "demo", "version": "1"},
            })
        events.append({
            "eventId": uuid.uuid4().hex, "timestamp": now_ms, "customerId": customer.id,
            "metricName": "active_users", "quantity": 1,
            "dimensions": {"user": f"user-{rng.randint(1, 60)}"},
        })
        events.append({
            "eventId": uuid.uuid4().hex, "timestamp": now_ms, "customerId": customer.id,
            "metricName": "storage_gb", "quantity": round(rng.uniform(10, 120), 2),
        })
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
            f"{url}/v1/events/batch", data=json.dumps({"events": pending}).encode(),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10):
                pending = []
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(interval_s)
