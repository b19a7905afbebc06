"""The billing-health measures on constructed data: each number known in advance."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from portal.pages.formatting import percent
from tests.factories import auth, make_customer, make_meter
from tests.pages.helpers import make_user, sign_in


async def test_billing_health_measures_constructed_data(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    await make_meter(client, admin_key, metric="api_calls")
    now = datetime.now(UTC)
    # Latency: received 1, 2, 3, 4 s before the commit; event times 10 s earlier still.
    for i, lag in enumerate((1, 2, 3, 4)):
        committed = now - timedelta(minutes=5)
        await pg.execute(
            "INSERT INTO usage_events (customer_id, event_id, metric_name, quantity, event_time, hour, "
            "received_at, persisted_at, message_id) "
            "VALUES ('acme', $1, 'api_calls', 1, $2, $3, $4, $5, 'm')",
            f"e{i}",
            committed - timedelta(seconds=lag + 10),
            committed.replace(minute=0, second=0, microsecond=0),
            committed - timedelta(seconds=lag),
            committed,
        )
        await pg.execute(
            "INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, received_at, "
            "persisted_at) VALUES ('acme', $1, '\\x00', $2, $3, $4)",
            f"e{i}",
            committed - timedelta(seconds=lag + 10),
            committed - timedelta(seconds=lag),
            committed,
        )
    # Discrepancy: 4 invoices finalized in the window, 1 of them adjusted by -8.73.
    ids = []
    for n in range(4):
        start = now - timedelta(days=40 + 31 * n)
        ids.append(
            await pg.fetchval(
                "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number, "
                "finalized_at) VALUES ('acme', $1, $2, 'USD', 'finalized', $3, $4) RETURNING id",
                start,
                start + timedelta(days=31),
                f"INV-{n}",
                now - timedelta(hours=2),
            )
        )
    await pg.execute(
        "INSERT INTO adjustments (customer_id, invoice_id, number, kind, subtotal_delta, discount_delta, "
        "amount, lines, reason) "
        "SELECT customer_id, id, 'CN-1', 'credit', -9.70, -0.97, -8.73, '[]', 'late' "
        "FROM invoices WHERE id = $1",
        ids[0],
    )
    # Alerts: two forecasts of ended periods, one followed by its crossing; one crossing
    # with a sent delivery, one with none.
    rule = await pg.fetchval(
        "INSERT INTO alert_rules (customer_id, name, metric_name, basis, levels) "
        "VALUES ('acme', 'r', 'api_calls', 'absolute', '{10,20}') RETURNING id"
    )
    channel = await pg.fetchval(
        "INSERT INTO alert_channels (customer_id, name, kind, destination_encrypted, destination_masked) "
        "VALUES ('acme', 'c', 'webhook', '\\x00', 'json://x') RETURNING id"
    )
    period_start, period_end = now - timedelta(days=35), now - timedelta(days=4)
    firings = {}
    for level, kind in ((10, "forecast"), (10, "crossing"), (20, "forecast"), (20, "crossing")):
        if (level, kind) == (20, "crossing"):
            period = (now - timedelta(days=3), now + timedelta(days=27))  # another period
        else:
            period = (period_start, period_end)
        firings[level, kind] = await pg.fetchval(
            "INSERT INTO alert_firings (rule_id, customer_id, period_start, period_end, level, kind, "
            "threshold, value, notice, fired_at) VALUES ($1, 'acme', $2, $3, $4, $5, $4, $4, '{}', $6) "
            "RETURNING id",
            rule,
            *period,
            level,
            kind,
            now - timedelta(hours=1),
        )
    await pg.execute(
        "INSERT INTO alert_deliveries (firing_id, channel_id, customer_id, notice, status, "
        "masked_destination) VALUES ($1, $2, 'acme', $3, 'sent', 'json://x')",
        firings[10, "crossing"],
        channel,
        json.dumps({}),
    )

    health = (await client.get("/v1/billing-health?hours=24", headers=auth(admin_key))).json()
    assert health["latency"] == {
        "events": 4,
        "receivedP50S": 2.5,
        "receivedP99S": 3.97,
        "eventTimeP50S": 12.5,
        "eventTimeP99S": 13.97,
    }
    assert health["discrepancy"] == {
        "finalized": 4,
        "adjusted": 1,
        "rate": "0.25",
        "adjustmentAmounts": {"USD": "-8.73"},
    }
    assert health["alerts"] == {
        "forecastsJudged": 2,
        "forecastsFollowed": 1,
        "forecastAccuracy": "0.5",
        "crossings": 2,
        "crossingsWithoutNotice": 1,
    }


async def test_data_quality_counts_each_sources_accepted_and_rejected_events(
    client: AsyncTestClient[Any],
    admin_key: str,
    ingest_key: str,
) -> None:
    from tests.factories import event

    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls")
    first = event(quantity=1)
    batch = [first, event(quantity=2), event(quantity="-1"), event(metric="nope"), event(quantity="x")]
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": batch})
    assert sent.status_code == 202
    resent = await client.post("/v1/events", headers=auth(ingest_key), json=first)
    assert resent.status_code == 202  # a resend: a duplicate, not a data problem
    stripe = await client.post(
        "/v1/billing/meter_events",
        headers=auth(ingest_key),
        data={"event_name": "api_calls", "payload[stripe_customer_id]": "nobody", "payload[value]": "1"},
    )
    assert stripe.status_code == 400

    health = (await client.get("/v1/billing-health", headers=auth(admin_key))).json()
    assert health["dataQuality"] == [
        {
            "source": "native",
            "accepted": 3,
            "rejected": 3,
            "score": "0.5",
            "rejectionsByReason": {"metricName": 1, "quantity": 2},
        },
        {
            "source": "stripe",
            "accepted": 0,
            "rejected": 1,
            "score": "0",
            "rejectionsByReason": {"customerId": 1},
        },
    ]


async def test_the_billing_health_page_shows_the_measures(
    client: AsyncTestClient[Any], admin_key: str, pg: Any
) -> None:
    await make_customer(client, admin_key, id="acme", currency="USD")
    for n, adjusted in enumerate((True, False)):
        invoice = await pg.fetchval(
            "INSERT INTO invoices (customer_id, period_start, period_end, currency, status, number, "
            "finalized_at) VALUES ('acme', $1, $2, 'USD', 'finalized', $3, now()) RETURNING id",
            datetime(2026, 8 + n, 1, tzinfo=UTC),
            datetime(2026, 9 + n, 1, tzinfo=UTC),
            f"INV-{n}",
        )
        if adjusted:
            await pg.execute(
                "INSERT INTO adjustments (customer_id, invoice_id, number, kind, subtotal_delta, "
                "discount_delta, amount, lines, reason) "
                "SELECT customer_id, id, 'DN-1', 'debit', 1, 0, 1, '[]', 'late' FROM invoices WHERE id = $1",
                invoice,
            )
    # An account manager of some customers only sees no platform-wide figures
    await make_user(pg, "amy@vendor.test", role="account_manager", assigned=("acme",))
    await sign_in(client, "amy@vendor.test")
    scoped = await client.get("/portal/health")
    assert scoped.status_code == 403 and "discrepancy-rate" not in scoped.text
    assert 'href="/portal/health"' not in (await client.get("/portal/customers")).text
    await make_user(pg, "max@vendor.test", role="account_manager", all_customers=True)
    await sign_in(client, "max@vendor.test")
    page = await client.get("/portal/health")
    assert page.status_code == 200 and 'href="/portal/health"' in page.text
    rate = '<td class="num" data-label="Value" id="discrepancy-rate">50%</td>'
    assert page.text.count(rate) == 2  # both windows
    assert "1 of 2 invoices" in page.text and "1.00 USD" not in page.text


@pytest.mark.parametrize(
    ("share", "shown"),
    [("0.5", "50%"), ("1", "100%"), ("0.9953", "99.53%"), ("0", "0%"), ("0.0001", "0.01%"), (None, "–")],
)
def test_a_share_reads_as_an_exact_percentage(share: str | None, shown: str) -> None:
    assert percent(share) == shown
