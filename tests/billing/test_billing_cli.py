"""The account manager's terminal: catalog file → invoice run → approve → late event → adjustment."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from portal.infrastructure.settings import Settings
from tests.billing.conftest import ClosedPeriod, closed_period, month_of
from tests.conftest import ROOT, WorkerProcess, wait_for, wait_until_persisted
from tests.factories import auth, event

CATALOG = """
meters:
  - metricName: api_calls
    aggregation: sum
    unit: call
customers:
  - id: hooli
    name: Hooli
    timezone: {tz}
    currency: USD
plans:
  - id: metered
    name: Metered
    currency: USD
    charges:
      - key: calls
        model: package
        meter: api_calls
        packageSize: 1000
        packagePrice: 2.50
      - key: support
        model: flat
        amount: 99.99
    minimumCommitment: 150
subscriptions:
  - customerId: hooli
    planId: metered
    startDate: {start}
    anchorDay: {anchor}
"""


def cli(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ,
        DATABASE_URL=settings.database_url or "",
        REDIS_URL=settings.redis_url or "",
        BROKER_URL=settings.broker_url or "",
    )
    return subprocess.run(
        [sys.executable, "-m", "portal.cli.main", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def rewrite(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text().replace(old, new))


def write(path: Path, content: str) -> Path:
    path.write_text(content)
    return path


async def run(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, settings, *args)


@pytest.fixture
def closed() -> ClosedPeriod:
    return closed_period("Europe/Berlin")


@pytest.fixture
def catalog_file(tmp_path: Path, closed: ClosedPeriod) -> Path:
    path = tmp_path / "catalog.yaml"
    path.write_text(
        CATALOG.format(tz=closed.tz, start=closed.start_date.isoformat(), anchor=closed.anchor_day)
    )
    return path


async def test_catalog_apply_is_idempotent(settings: Settings, catalog_file: Path) -> None:
    first = await run(settings, "catalog", "apply", str(catalog_file))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "meters: 1 created, 0 changed, 0 unchanged",
        "customers: 1 created, 0 changed, 0 unchanged",
        "plans: 1 created, 0 changed, 0 unchanged",
        "subscriptions: 1 created, 0 changed, 0 unchanged",
    ]
    again = await run(settings, "catalog", "apply", str(catalog_file))
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "meters: 0 created, 0 changed, 1 unchanged",
        "customers: 0 created, 0 changed, 1 unchanged",
        "plans: 0 created, 0 changed, 1 unchanged",
        "subscriptions: 0 created, 0 changed, 1 unchanged",
    ]


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            ("packagePrice: 2.50", "packagePrice: 2.75"),
            "plans[0] (metered): plan 'metered' exists with another definition",
        ),
        (("timezone: Europe/Berlin", "timezone: Asia/Tokyo"), "customers[0] (hooli): exists with another"),
        (("unit: call", "unit: request"), "meters[0] (api_calls): exists with another definition"),
    ],
)
async def test_changing_an_immutable_entry_is_refused_and_changes_nothing(
    settings: Settings,
    catalog_file: Path,
    pg: Any,
    edit: tuple[str, str],
    message: str,
) -> None:
    assert (await run(settings, "catalog", "apply", str(catalog_file))).returncode == 0
    rewrite(catalog_file, *edit)
    refused = await run(settings, "catalog", "apply", str(catalog_file))
    assert refused.returncode == 1
    assert message in refused.stderr, refused.stderr
    assert await pg.fetchval("SELECT count(*) FROM plans") == 1
    assert await pg.fetchval("SELECT definition->'charges'->0->>'packagePrice' FROM plans") == "2.50"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "plans:\n  - id: x\n    name: X\n    currency: USD\n    charges: []\n",
            "a plan needs at least one charge",
        ),
        ("meters:\n  - metricName: m\n    aggregation: median\n    unit: u\n", "$.meters[0].aggregation"),
        ("plans: [\n", "not valid YAML"),
        ("customers:\n  - id: a\n    name: A\n    timezone: Mars/Olympus\n", "unknown IANA time zone"),
        # YAML reads an unquoted date itself, and refuses a month 13 with a ValueError
        (
            "subscriptions:\n  - customer: a\n    plan: p\n    startDate: 2026-13-01\n",
            "not valid YAML: month must be in 1..12",
        ),
    ],
)
async def test_a_bad_catalog_file_names_the_problem_and_applies_nothing(
    settings: Settings,
    tmp_path: Path,
    pg: Any,
    content: str,
    message: str,
) -> None:
    path = write(
        tmp_path / "bad.yaml",
        content
        if content.startswith("meters")
        else "meters:\n  - metricName: fine\n    aggregation: sum\n    unit: u\n" + content,
    )
    refused = await run(settings, "catalog", "apply", str(path))
    assert refused.returncode == 1
    assert message in refused.stderr, refused.stderr
    assert await pg.fetchval("SELECT count(*) FROM meters") == 0


async def test_usage_to_approved_invoice_to_adjustment_from_the_terminal(
    settings: Settings,
    client: AsyncTestClient[Any],
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    catalog_file: Path,
    closed: ClosedPeriod,
) -> None:
    assert (await run(settings, "catalog", "apply", str(catalog_file))).returncode == 0
    start = closed.period.start
    usage = [
        event(customer="hooli", quantity=q, timestamp=closed.ms(start + timedelta(hours=h)))
        for q, h in ((1500, 1), (20_000, 30), (499, 200))
    ]  # 21,999 calls: 22 packages
    assert (
        await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": usage})
    ).status_code == 202
    await wait_until_persisted(redis)

    month = month_of(closed.period, closed.tz)
    ran = await run(settings, "invoices", "run", "--period", month)
    assert ran.returncode == 0, ran.stderr
    assert f"invoice run {month}: 1 customers" in ran.stdout
    assert "drafts created    1" in ran.stdout
    # 22 packages x 2.50 = 55.00, support 99.99: 154.99 is above the 150.00 minimum.
    assert "draft totals      154.99 USD" in ran.stdout
    assert "[" + "#" * 30 + "] 1/1 customers" in ran.stderr

    listed = await run(settings, "invoices", "list", "--state", "awaiting_review")
    [row] = [line.split() for line in listed.stdout.splitlines()[1:]]
    invoice_id = row[0]
    assert row[1:3] == ["-", "hooli"] and row[-2:] == ["154.99", "USD"]

    approved = await run(settings, "invoices", "approve", invoice_id, "--by", "ops@vendor")
    assert approved.stdout.strip() == "INV-000001: finalized, total 154.99 USD", approved.stderr
    again = await run(settings, "invoices", "approve", invoice_id)
    assert again.returncode == 1 and "is finalized; only drafts are approved" in again.stderr

    # One more call arrives late: 22,000 calls is still 22 packages; one more makes 23.
    for quantity in (1, 1):
        late = event(customer="hooli", quantity=quantity, timestamp=closed.ms(start + timedelta(days=2)))
        assert (await client.post("/v1/events", headers=auth(ingest_key), json=late)).status_code == 202
    await wait_until_persisted(redis)

    async def adjusted() -> str | None:
        shown = await run(settings, "invoices", "show", invoice_id)
        return shown.stdout if '"DN-000001"' in shown.stdout else None

    shown = await wait_for(adjusted, what="the debit note")
    invoice = json.loads(shown)
    assert [(a["number"], a["amount"]) for a in invoice["adjustments"]] == [("DN-000001", "2.50")]
    assert (invoice["total"], invoice["adjustedTotal"]) == ("154.99", "157.49")

    exported = await run(settings, "invoices", "export")
    assert exported.returncode == 0
    rows = [line.split(",")[:2] + line.split(",")[-3:-2] for line in exported.stdout.splitlines()[1:]]
    assert rows == [["INV-000001", "invoice", "154.99"], ["DN-000001", "debit_note", "2.50"]]


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("invoices", "show", "99999999999999999999"), 2, "must be from 1 to 9223372036854775807"),
        (("invoices", "approve", "0"), 2, "must be from 1 to 9223372036854775807"),
        (("failed", "replay", "--id", "99999999999999999999"), 2, "must be from 1 to"),
        (("invoices", "run", "--period", "9999-12"), 1, "period: expected a month from 1971-01 to 9998-12"),
        (
            ("rebuild-days", "--customer", "nosuch"),
            1,
            "no hourly usage for customer(s) nosuch: nothing rebuilt",
        ),
        (("dead-letters", "replay", "--id", "nosuch"), 1, "1 of the ids named no dead letter of ingest"),
        (("keys", "create", "--scope", "ingest", "--name", "x" * 101), 2, "at most 100 characters"),
        (("web", "--port", "70000"), 2, "must be from 1 to 65535"),
        (("worker", "--processes", "0"), 2, "must be from 1 to 256"),
    ],
)
async def test_a_command_given_what_cannot_be_says_so_in_a_line(
    settings: Settings, args: tuple[str, ...], code: int, says: str
) -> None:
    refused = await run(settings, *args)
    assert refused.returncode == code, refused.stderr
    assert says in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
