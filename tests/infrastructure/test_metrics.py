"""GET /metrics: the scrape shows exactly the traffic sent, and sums several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import Any

from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT
from tests.factories import auth, event, make_customer, make_meter


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def scrape(client: AsyncTestClient[Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    # Each parameter once: Prometheus 3 refuses a type with a repeated one
    kind, *parameters = [p.strip() for p in response.headers["content-type"].split(";")]
    assert kind == "text/plain" and sorted(parameters) == ["charset=utf-8", "version=1.0.0"]
    return samples(response.text)


def delta(before: dict[Any, float], after: dict[Any, float], name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def test_ingest_metrics_count_the_traffic_exactly(
    client: AsyncTestClient[Any], admin_key: str, ingest_key: str
) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    before = await scrape(client)
    first = event(quantity=1)
    batch = [first, event(quantity=2), event(quantity="-1"), event(metric="nope")]
    assert (
        await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": batch})
    ).status_code == 202
    assert (await client.post("/v1/events", headers=auth(ingest_key), json=first)).status_code == 202
    after = await scrape(client)

    assert delta(before, after, "portal_ingest_requests_total", status="202") == 2
    assert delta(before, after, "portal_ingest_events_total", outcome="accepted") == 2
    assert delta(before, after, "portal_ingest_events_total", outcome="duplicate") == 1
    assert delta(before, after, "portal_ingest_events_total", outcome="rejected") == 2
    assert delta(before, after, "portal_ingest_rejections_total", field="quantity") == 1
    assert delta(before, after, "portal_ingest_rejections_total", field="metricName") == 1
    assert delta(before, after, "portal_ingest_batch_events_count") == 2
    assert delta(before, after, "portal_ingest_batch_events_sum") == 5


def test_one_scrape_sums_every_process_of_the_machine() -> None:
    folder = tempfile.mkdtemp(prefix="portal-metrics-")
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=folder)
    for count in (3, 4):  # two worker processes, each persisting some events, then exiting
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from portal.infrastructure import metrics; metrics.PERSISTED_EVENTS.inc({count})",
            ],
            cwd=ROOT,
            env=env,
            check=True,
        )
    scraped = subprocess.run(
        [sys.executable, "-c", "from portal.infrastructure import metrics; print(metrics.scrape().decode())"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert samples(scraped)[("portal_persisted_events_total", ())] == 7


async def test_the_scrape_carries_gauges_of_the_stored_data(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    for i in range(2):
        await pg.execute(
            "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, "
            "reason, failed_at) "
            "VALUES ('m', 'acme', $1, '{}', now(), 'x', now() - interval '1 hour')",
            f"e{i}",
        )
    run = await pg.fetchval(
        "INSERT INTO reconcile_runs (started_at, finished_at, window_start, window_end, full_rebuild, "
        "keys_written) VALUES (now(), now(), now(), now(), false, 0) RETURNING id"
    )
    await pg.execute(
        "INSERT INTO live_drift VALUES ($1, 'acme', 'api_calls', 12, 10, 2), "
        "($1, 'globex', 'api_calls', 0, 1, -1)",
        run,
    )
    invoice = await pg.fetchval(
        "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number, "
        "finalized_at) VALUES ('acme', '2026-09-01', '2026-10-01', 'USD', 'finalized', 'INV-1', now()) "
        "RETURNING id"
    )
    await pg.execute(
        "INSERT INTO invoices (customer_id, period_start, period_end, currency) "
        "VALUES ('acme', '2026-10-01', '2026-11-01', 'USD')"
    )
    await pg.execute(
        "INSERT INTO adjustments (customer_id, invoice_id, number, kind, subtotal_delta, discount_delta, "
        "amount, lines, reason) SELECT customer_id, id, 'DN-1', 'debit', 2.70, 0, 2.70, '[]', 'late' "
        "FROM invoices WHERE id = $1",
        invoice,
    )

    found = await scrape(client)
    assert found[("portal_failed_events", ())] == 2
    assert 3590 <= found[("portal_failed_events_oldest_age_seconds", ())] <= 3700
    assert found[("portal_live_drift", (("metric", "api_calls"),))] == 1
    assert found[("portal_invoices", (("state", "finalized"),))] == 1
    assert found[("portal_invoices", (("state", "awaiting_review"),))] == 1
    assert found[("portal_adjustments", (("currency", "USD"), ("kind", "debit")))] == 1
    assert found[("portal_adjustments_amount", (("currency", "USD"), ("kind", "debit")))] == 2.7
    assert found[("portal_partitions_ahead", ())] >= 1
    assert found[("portal_broker_queue_messages", (("queue", "alerts"), ("state", "dead")))] == 0
    # The billing-health measures ride along: 1 finalized invoice today, adjusted.
    assert found[("portal_health_discrepancy_rate", ())] == 1
    assert found[("portal_health_crossings_without_notice", ())] == 0
