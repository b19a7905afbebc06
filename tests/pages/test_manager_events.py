"""The event explorer, one event's path to the bill, failed events (replay, discard with a
reason) and the drift report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from redis.asyncio import Redis

from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter
from tests.ingest.test_poison_batches import wire
from tests.pages.helpers import Client, make_user, sign_in

ADMIN = "ada@vendor.test"
MANAGER = "max@vendor.test"
ZONE = ZoneInfo("Europe/Berlin")
PLAN = {
    "id": "metered",
    "name": "Metered",
    "currency": "EUR",
    "charges": [{"key": "calls", "model": "per_unit", "meter": "api_calls", "unitPrice": "0.50"}],
}


async def send(client: Client, ingest_key: str, events: list[dict[str, object]]) -> None:
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert sent.status_code == 202, sent.text


def event_links(html: str) -> list[str]:
    return re.findall(r'<a href="/portal/events/([^"]+)"><code>', html)


async def test_search_and_an_events_path_to_the_invoice_line(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key, id="acme", timezone="Europe/Berlin")
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=PLAN)).status_code == 201
    assert (
        await client.post(
            "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "metered"}
        )
    ).status_code == 201
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await send(
        client,
        ingest_key,
        [
            event(event_id="e-1", quantity=2, timestamp=now_ms - 1000, dimensions={"region": "<eu>"}),
            event(event_id="e-2", quantity=3, timestamp=now_ms),
            event(customer="globex", event_id="g-1", quantity=7, timestamp=now_ms),
        ],
    )
    await wait_until_persisted(redis)
    drafted = await client.post("/v1/customers/acme/invoices", headers=auth(admin_key), json={})
    assert drafted.status_code == 200, drafted.text
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)

    everything = await client.get("/portal/events")
    assert set(event_links(everything.text)) == {"acme/e-1", "acme/e-2", "globex/g-1"}
    # Rows of several customers: one zone for the whole column, named in its header.
    assert "Event time (UTC)" in everything.text and "Received (UTC)" in everything.text
    assert "CET" not in everything.text and "CEST" not in everything.text
    newest_first = await client.get("/portal/events", params={"customer": "acme"})
    assert event_links(newest_first.text) == ["acme/e-2", "acme/e-1"]
    assert "<td>region: &lt;eu&gt;</td>" in newest_first.text
    assert "Event time (Europe/Berlin)" in newest_first.text
    assert "CET" in newest_first.text or "CEST" in newest_first.text
    assert '<td class="num">2 calls</td>' in newest_first.text
    by_id = await client.get("/portal/events", params={"event": "g-1"})
    assert event_links(by_id.text) == ["globex/g-1"]
    later = (datetime.now(ZONE) + timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M")
    none = await client.get("/portal/events", params={"customer": "acme", "from": later})
    assert event_links(none.text) == [] and "No stored event matches this search." in none.text
    bad = await client.get("/portal/events", params={"from": "yesterday", "event": "g-1"})
    assert bad.status_code == 422 and "from: “yesterday”" in bad.text
    # the search form again, with what was typed kept, not an error page
    assert 'role="search"' in bad.text and 'name="event" value="g-1"' in bad.text
    assert 'name="from" type="datetime-local" value="yesterday"' in bad.text
    assert event_links(bad.text) == [] and "No stored event matches" not in bad.text
    unknown = await client.get("/portal/events", params={"customer": "nobody"})
    assert unknown.status_code == 422
    assert "customer: there is no customer “nobody” you can see" in unknown.text

    path = await client.get("/portal/events/acme/e-1")
    assert path.status_code == 200
    text = re.sub(r"\s+", " ", path.text)
    assert "value <strong>5 calls</strong> from 2 events" in text  # the hour holds e-1 and e-2
    assert "Meter <strong>api_calls</strong>, quantity <strong>2 calls</strong>" in text
    assert "Dimensions: region: &lt;eu&gt;" in text
    invoice_id = drafted.json()["id"]
    month = datetime.now(ZONE).strftime("%b %Y")
    assert f'<a href="/portal/invoices/{invoice_id}">Draft, {month}</a>' in text
    assert "rated just now from stored usage" in text
    assert "calls: 5 calls → <strong>EUR 2.50</strong>" in text  # 5 calls x 0.50, re-rated
    assert (await client.get("/portal/events/acme/nope")).status_code == 404


REGIONAL = {
    "id": "regional",
    "name": "Regional",
    "currency": "EUR",
    "charges": [
        {
            "key": "calls_eu",
            "model": "per_unit",
            "meter": "api_calls",
            "description": "API calls (EU)",
            "unitPrice": "1.00",
            "dimensions": {"region": "eu"},
        },
        {
            "key": "calls",
            "model": "per_unit",
            "meter": "api_calls",
            "description": "API calls",
            "unitPrice": "0.25",
        },
    ],
}


async def test_an_events_path_shows_only_the_charge_it_feeds_rated_now(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    # Given an apac and an eu event, a plan pricing eu calls apart, and no draft yet
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", unit="call", group_by=["region"])
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=REGIONAL)).status_code == 201
    subscribed = await client.post(
        "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "regional"}
    )
    assert subscribed.status_code == 201, subscribed.text
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    await send(
        client,
        ingest_key,
        [
            event(event_id="apac-1", quantity=6, timestamp=now_ms, dimensions={"region": "apac"}),
            event(event_id="eu-1", quantity=3, timestamp=now_ms, dimensions={"region": "eu"}),
        ],
    )
    await wait_until_persisted(redis)
    await make_user(pg, ADMIN, role="admin")
    await sign_in(client, ADMIN)
    # When its path is opened
    path = await client.get("/portal/events/acme/apac-1")
    # Then only the charge without dimensions is shown, from the current period rated now
    text = re.sub(r"\s+", " ", path.text)
    assert "<strong>Upcoming invoice</strong> (the current period, not billed yet)" in text
    assert "<li>API calls: 6 calls → <strong>EUR 1.50</strong></li>" in text
    assert "API calls (EU)" not in text
    assert "Dimensions: region: apac" in text and '{"region"' not in text
    eu = re.sub(r"\s+", " ", (await client.get("/portal/events/acme/eu-1")).text)
    assert "<li>API calls (EU): 3 calls → <strong>EUR 3.00</strong></li>" in eu
    assert "API calls: 6 calls" not in eu


async def test_a_manager_sees_only_assigned_customers_events(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex")
    now = datetime.now(UTC)
    for customer, event_id in (("acme", "a-1"), ("globex", "g-1")):
        await pg.execute(
            "INSERT INTO event_ledger (customer_id, event_id, fingerprint, event_time, received_at) "
            "VALUES ($1, $2, '\\x00', $3::timestamptz, $3::timestamptz)",
            customer,
            event_id,
            now,
        )
        await pg.execute(
            "INSERT INTO usage_events (customer_id, event_id, metric_name, quantity, event_time, hour, "
            "received_at, message_id) VALUES ($1, $2, 'api_calls', 1, $3::timestamptz, "
            "date_trunc('hour', $3::timestamptz), $3::timestamptz, 'm')",
            customer,
            event_id,
            now,
        )
    await make_user(pg, MANAGER, role="account_manager", assigned=("globex",))
    await sign_in(client, MANAGER)
    assert event_links((await client.get("/portal/events")).text) == ["globex/g-1"]
    assert (await client.get("/portal/events/acme/a-1")).status_code == 404
    assert (await client.get("/portal/events/globex/g-1")).status_code == 200
    refused = await client.get("/portal/events", params={"customer": "acme"})
    assert refused.status_code == 422


async def test_failed_events_are_replayed_from_the_page(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await pg.execute("""
        CREATE FUNCTION refuse_acme() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION 'ledger is read-only for maintenance'; END $$;
        CREATE TRIGGER refuse_acme BEFORE INSERT ON event_ledger
            FOR EACH ROW EXECUTE FUNCTION refuse_acme();
    """)
    try:
        await send(client, ingest_key, [event(event_id="a", quantity=2)])
        await wait_until_persisted(redis)
    finally:
        await pg.execute("DROP TRIGGER refuse_acme ON event_ledger; DROP FUNCTION refuse_acme()")
    failed_id = await pg.fetchval("SELECT id FROM failed_events WHERE event_id = 'a'")
    assert failed_id is not None
    await make_user(pg, ADMIN, role="admin")
    csrf = await sign_in(client, ADMIN)
    listing = await client.get("/portal/failed-events")
    assert "ledger is read-only for maintenance" in listing.text
    assert "api_calls × 2" in listing.text

    done = await client.post(
        f"/portal/failed-events/{failed_id}/replay", data={"csrf_token": csrf}, follow_redirects=False
    )
    assert done.status_code == 303, done.text
    await wait_until_persisted(redis)
    assert await pg.fetchval("SELECT quantity FROM usage_events WHERE event_id = 'a'") == 2
    assert await pg.fetchval("SELECT status FROM failed_events WHERE id = $1", failed_id) == "replayed"
    assert tuple(await pg.fetchrow("SELECT actor, action, object_id FROM audit_log")) == (
        ADMIN,
        "failed_event.replay",
        str(failed_id),
    )
    again = await client.post(f"/portal/failed-events/{failed_id}/replay", data={"csrf_token": csrf})
    assert again.status_code == 409 and "already replayed or discarded" in again.text


async def test_discard_needs_a_reason(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex")
    ids = []
    for customer in ("acme", "globex"):
        ids.append(
            await pg.fetchval(
                "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason) "
                'VALUES (\'m\', $1, \'x-1\', \'{"metricName": "api_calls", "quantity": "4"}\', now(), '
                "'boom <b>') RETURNING id",
                customer,
            )
        )
    await make_user(pg, MANAGER, role="account_manager", assigned=("acme",))
    csrf = await sign_in(client, MANAGER)
    listing = await client.get("/portal/failed-events")
    assert f'id="failed-{ids[0]}"' in listing.text and f'id="failed-{ids[1]}"' not in listing.text
    assert "boom &lt;b&gt;" in listing.text
    missing = await client.post(
        f"/portal/failed-events/{ids[0]}/discard", data={"csrf_token": csrf, "reason": ""}
    )
    assert missing.status_code == 422 and "Reason: say why this event is discarded." in missing.text
    nul = await client.post(
        f"/portal/failed-events/{ids[0]}/discard", data={"csrf_token": csrf, "reason": "bad\x00reason"}
    )
    assert nul.status_code == 422 and "Reason: must not contain a NUL character." in nul.text
    assert await pg.fetchval("SELECT status FROM failed_events WHERE id = $1", ids[0]) == "failed"
    theirs = await client.post(
        f"/portal/failed-events/{ids[1]}/discard", data={"csrf_token": csrf, "reason": "x"}
    )
    assert theirs.status_code == 404
    replay = await client.post(f"/portal/failed-events/{ids[1]}/replay", data={"csrf_token": csrf})
    assert replay.status_code == 404
    # A row the worker did not write (no stored wire row) cannot be replayed; it says so
    # and stays outstanding
    unreplayable = await client.post(f"/portal/failed-events/{ids[0]}/replay", data={"csrf_token": csrf})
    assert unreplayable.status_code == 409
    assert "cannot be sent again: it holds no stored copy to send again. Discard it" in unreplayable.text
    # and the list offers no Replay for it, only the reason
    assert f'action="/portal/failed-events/{ids[0]}/replay"' not in listing.text
    assert "Cannot be sent again: it holds no stored copy to send again." in listing.text
    assert await pg.fetchval("SELECT status FROM failed_events WHERE id = $1", ids[0]) == "failed"

    done = await client.post(
        f"/portal/failed-events/{ids[0]}/discard",
        data={"csrf_token": csrf, "reason": "test traffic"},
        follow_redirects=False,
    )
    assert done.status_code == 303
    assert await pg.fetchval("SELECT status FROM failed_events WHERE id = $1", ids[0]) == "discarded"
    assert tuple(await pg.fetchrow("SELECT actor, action, reason, customer_id FROM audit_log")) == (
        MANAGER,
        "failed_event.discard",
        "test traffic",
        "acme",
    )
    discarded = await client.get("/portal/failed-events", params={"status": "discarded"})
    assert "“test traffic”" in discarded.text
    assert (await client.get("/portal/failed-events", params={"status": "gone"})).status_code == 422


async def test_drift_report_is_scoped(client: Client, admin_key: str, pg: asyncpg.Connection) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await make_customer(client, admin_key, id="globex")
    await make_user(pg, MANAGER, role="account_manager", assigned=("acme",))
    await sign_in(client, MANAGER)
    assert "The reconcile job has not run yet." in (await client.get("/portal/drift")).text
    run = await pg.fetchval(
        "INSERT INTO reconcile_runs (started_at, finished_at, window_start, window_end, full_rebuild, "
        "keys_written) VALUES (now(), now(), now(), now(), false, 3) RETURNING id"
    )
    await pg.execute(
        "INSERT INTO live_drift VALUES ($1, 'acme', 'api_calls', 1012, 10, 1002), "
        "($1, 'globex', 'api_calls', 0, 1, -1)",
        run,
    )
    page = await client.get("/portal/drift")
    assert (
        '<td class="num">1,012 calls</td><td class="num">10 calls</td><td class="num">1,002 calls</td>'
    ) in page.text
    assert "globex" not in page.text


async def test_an_event_postgres_can_never_hold_is_not_offered_for_replay(
    client: Client, admin_key: str, pg: asyncpg.Connection
) -> None:
    # Given an event the worker set aside for a NUL in a dimension (its wire row kept as
    # escaped JSON text, as `kept_wire` keeps it)
    await make_customer(client, admin_key, id="acme")
    row = wire(customer="acme", quantity="3", region="e\x00u")
    stored = {"metricName": "api_calls", "quantity": "3", "wire": {"escaped": json.dumps(row)}}
    failed_id = await pg.fetchval(
        "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason) "
        "VALUES ('m', 'acme', $1, $2::jsonb, now(), 'DataError') RETURNING id",
        row[1],
        json.dumps(stored),
    )
    await make_user(pg, ADMIN, role="admin")
    csrf = await sign_in(client, ADMIN)
    # Then the list gives the reason instead of a Replay button (a replay would only fail
    # again, as a new failed event), and a replay posted all the same is refused
    listing = await client.get("/portal/failed-events")
    reason = (
        "it can never be stored as it is (dimensions.region: contains U+0000, which Postgres cannot store)"
    )
    assert f"Cannot be sent again: {reason}." in listing.text
    assert f'action="/portal/failed-events/{failed_id}/replay"' not in listing.text
    refused = await client.post(f"/portal/failed-events/{failed_id}/replay", data={"csrf_token": csrf})
    assert refused.status_code == 409 and f"This event cannot be sent again: {reason}." in refused.text
    assert await pg.fetchval("SELECT status FROM failed_events WHERE id = $1", failed_id) == "failed"
    assert await pg.fetchval("SELECT count(*) FROM failed_events") == 1
