"""Newest-first lists page with `before=<id of the last item>`: walking every page reaches
every item once, in order, however many there are; a cursor that is not an id, or not the
id of an item of that list, is a 422, never a 500 and never ignored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.factories import auth, make_customer, make_meter

Client = AsyncTestClient[Any]
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
# Minutes after T0 of each item, in insertion (id) order: out of id order, with ties, so a
# page boundary falls inside a tie and an id cursor alone would skip or repeat items.
OFFSETS = (5, 1, 5, 9, 0, 5, 3, 9, 2, 5, 7)
BEYOND_BIGINT = "9223372036854775808"


async def walk(client: Client, key: str, path: str, *, limit: int, **query: str) -> list[Any]:
    """Every item's id, page after page (`before` = the last id of the page), until an empty
    page; each page but the last is full."""
    seen: list[Any] = []
    before: Any = None
    for _ in range(100):
        params = {**query, "limit": str(limit)} | ({} if before is None else {"before": str(before)})
        response = await client.get(path, headers=auth(key), params=params)
        assert response.status_code == 200, response.text
        page = [item["id"] for item in response.json()]
        assert len(page) <= limit
        if not page:
            return seen
        seen += page
        before = page[-1]
    raise AssertionError(f"{path}: more than 100 pages")


def newest_first(rows: list[tuple[datetime, Any]]) -> list[Any]:
    """Ids by (time, id), both descending: the order these lists promise."""
    return [id_ for _, id_ in sorted(rows, reverse=True)]


# --- fixtures built with SQL: more items than a page, quickly --------------------------------


async def webhook_events(pg: Any) -> list[tuple[datetime, str]]:
    rows = []
    for n, minutes in enumerate(OFFSETS):
        event_id, at = f"evt_{(n * 7919) % 1000:024x}", T0 + timedelta(minutes=minutes)
        await pg.execute(
            "INSERT INTO webhook_events (id, type, api_version, body, created_at) "
            "VALUES ($1, 'credit.low', '2026-11-01', '{}', $2)",
            event_id,
            at,
        )
        rows.append((at, event_id))
    return rows


async def webhook_deliveries(pg: Any, events: list[tuple[datetime, str]]) -> list[int]:
    endpoint = await pg.fetchval(
        "INSERT INTO webhook_endpoints (url, event_types, signing_secret_encrypted) "
        "VALUES ('https://hooks.example.com/x', '{credit.low}', '\\x00') RETURNING id"
    )
    return [
        await pg.fetchval(
            "INSERT INTO webhook_deliveries (event_id, endpoint_id, status) VALUES ($1, $2, $3) RETURNING id",
            event_id,
            endpoint,
            "failed" if n % 3 else "delivered",
        )
        for n, (_, event_id) in enumerate(events)
    ]


async def alert_channel(pg: Any, customer: str) -> int:
    return int(
        await pg.fetchval(
            "INSERT INTO alert_channels (customer_id, name, kind, destination_encrypted, destination_masked) "
            "VALUES ($1, 'ops', 'webhook', '\\x00', 'json://x') RETURNING id",
            customer,
        )
    )


async def alert_firings(pg: Any, customer: str) -> list[tuple[datetime, int]]:
    rule = await pg.fetchval(
        "INSERT INTO alert_rules (customer_id, name, metric_name, basis, levels) "
        "VALUES ($1, 'r', 'api_calls', 'absolute', '{10}') RETURNING id",
        customer,
    )
    rows = []
    for level, minutes in enumerate(OFFSETS, start=1):
        at = T0 + timedelta(minutes=minutes)
        firing = await pg.fetchval(
            "INSERT INTO alert_firings (rule_id, customer_id, period_start, period_end, level, kind, "
            "threshold, value, notice, fired_at) VALUES ($1, $2, $3, $4, $5, 'crossing', $5, $5, '{}', $6) "
            "RETURNING id",
            rule,
            customer,
            T0 - timedelta(days=19),
            T0 + timedelta(days=11),
            level,
            at,
        )
        rows.append((at, int(firing)))
    return rows


async def failed_events(pg: Any) -> list[tuple[datetime, int, str]]:
    rows = []
    for n, minutes in enumerate(OFFSETS):
        at, status = T0 + timedelta(minutes=minutes), "replayed" if n % 4 == 3 else "failed"
        failed = await pg.fetchval(
            "INSERT INTO failed_events (message_id, customer_id, event_id, event, received_at, reason, "
            "failed_at, status) VALUES ('m', 'acme', $1, '{}', $2, 'boom', $2, $3) RETURNING id",
            f"e{n}",
            at,
            status,
        )
        rows.append((at, int(failed), status))
    return rows


# --- walking every page ------------------------------------------------------------------------


async def test_webhook_events_page_by_creation_time_then_id(client: Client, admin_key: str, pg: Any) -> None:
    # Given more events than a page, created out of id order and with ties
    rows = await webhook_events(pg)
    # When every page of 3 is read
    seen = await walk(client, admin_key, "/v1/webhook-events", limit=3)
    # Then each event is listed once, newest first
    assert seen == newest_first(rows)
    assert len(seen) == len(OFFSETS)


async def test_webhook_deliveries_page_by_id(client: Client, admin_key: str, pg: Any) -> None:
    ids = await webhook_deliveries(pg, await webhook_events(pg))
    assert await walk(client, admin_key, "/v1/webhook-deliveries", limit=4) == sorted(ids, reverse=True)
    failed = [i for n, i in enumerate(ids) if n % 3]
    seen = await walk(client, admin_key, "/v1/webhook-deliveries", limit=2, status="failed")
    assert seen == sorted(failed, reverse=True)


async def test_alert_deliveries_page_by_id(client: Client, admin_key: str, pg: Any) -> None:
    await make_customer(client, admin_key)
    channel = await alert_channel(pg, "acme")
    ids = [
        await pg.fetchval(
            "INSERT INTO alert_deliveries (channel_id, customer_id, notice, masked_destination) "
            "VALUES ($1, 'acme', '{}', 'json://x') RETURNING id",
            channel,
        )
        for _ in OFFSETS
    ]
    seen = await walk(client, admin_key, "/v1/alert-deliveries", limit=3, customerId="acme")
    assert seen == sorted(ids, reverse=True)


async def test_alert_firings_page_by_firing_time_then_id(client: Client, admin_key: str, pg: Any) -> None:
    await make_customer(client, admin_key)
    await make_meter(client, admin_key)
    rows = await alert_firings(pg, "acme")
    seen = await walk(client, admin_key, "/v1/customers/acme/alert-firings", limit=3)
    assert seen == newest_first(rows)
    assert len(seen) == len(OFFSETS)


async def test_failed_events_page_by_failure_time_then_id(client: Client, admin_key: str, pg: Any) -> None:
    rows = await failed_events(pg)
    for status in ("failed", "replayed"):
        seen = await walk(client, admin_key, "/v1/failed-events", limit=2, status=status)
        assert seen == newest_first([(at, id_) for at, id_, s in rows if s == status])


async def test_a_cursor_keeps_its_place_when_its_item_leaves_the_filter(
    client: Client, admin_key: str, pg: Any
) -> None:
    # Given the first page of failed events
    rows = await failed_events(pg)
    expected = newest_first([(at, id_) for at, id_, s in rows if s == "failed"])
    first = (await client.get("/v1/failed-events?limit=3", headers=auth(admin_key))).json()
    assert [f["id"] for f in first] == expected[:3]
    # When its last event is replayed before the next page is read
    await pg.execute("UPDATE failed_events SET status = 'replayed' WHERE id = $1", first[-1]["id"])
    # Then the next page starts where the first ended
    after = await client.get(f"/v1/failed-events?limit=3&before={first[-1]['id']}", headers=auth(admin_key))
    assert after.status_code == 200, after.text
    assert [f["id"] for f in after.json()] == expected[3:6]


# --- hostile cursors and filters -----------------------------------------------------------------

ID_LISTS = (
    "/v1/webhook-deliveries",
    "/v1/alert-deliveries",
    "/v1/customers/acme/alert-firings",
    "/v1/failed-events",
)


@pytest.mark.parametrize("path", ID_LISTS)
@pytest.mark.parametrize("cursor", ["abc", "-1", "0", "1.5", "", "99999999999999999999999", BEYOND_BIGINT])
async def test_a_cursor_that_is_not_an_id_is_422(
    client: Client, admin_key: str, path: str, cursor: str
) -> None:
    await make_customer(client, admin_key)
    response = await client.get(path, headers=auth(admin_key), params={"before": cursor})
    assert response.status_code == 422, response.text
    assert response.json()["extra"][0]["key"] == "before"


@pytest.mark.parametrize("path", ["/v1/webhook-deliveries", "/v1/alert-deliveries"])
async def test_an_id_cursor_below_every_id_is_an_empty_page(
    client: Client, admin_key: str, path: str
) -> None:
    for cursor in ("1", "9223372036854775807"):
        response = await client.get(path, headers=auth(admin_key), params={"before": cursor})
        assert response.status_code == 200, response.text
        assert response.json() == []


@pytest.mark.parametrize(
    ("path", "cursor", "says"),
    [
        (
            "/v1/webhook-events",
            "evt_ffffffffffffffffffffffff",
            "no webhook event 'evt_ffffffffffffffffffffffff'",
        ),
        ("/v1/webhook-events", "abc", "no webhook event 'abc'"),
        ("/v1/webhook-events", "x" * 201, "before"),
        ("/v1/customers/acme/alert-firings", "9223372036854775807", "'acme' has no alert firing"),
        ("/v1/failed-events", "9223372036854775807", "no failed event 9223372036854775807"),
    ],
)
async def test_a_cursor_naming_no_item_of_a_time_ordered_list_is_422(
    client: Client, admin_key: str, pg: Any, path: str, cursor: str, says: str
) -> None:
    await make_customer(client, admin_key)
    await webhook_events(pg)
    response = await client.get(path, headers=auth(admin_key), params={"before": cursor})
    assert response.status_code == 422, response.text
    assert says in response.json()["detail"] or says in response.text


async def test_another_customers_firing_is_not_a_cursor(client: Client, admin_key: str, pg: Any) -> None:
    await make_customer(client, admin_key, id="acme")
    await make_customer(client, admin_key, id="globex")
    await make_meter(client, admin_key)
    [(_, theirs), *_] = await alert_firings(pg, "globex")
    response = await client.get(f"/v1/customers/acme/alert-firings?before={theirs}", headers=auth(admin_key))
    assert response.status_code == 422, response.text


async def test_an_unknown_failed_event_status_is_422_naming_the_allowed_ones(
    client: Client, admin_key: str
) -> None:
    response = await client.get("/v1/failed-events?status=bogus", headers=auth(admin_key))
    assert response.status_code == 422, response.text
    assert response.json()["extra"] == [
        {"key": "status", "message": "must be one of failed, replayed, discarded; got 'bogus'"}
    ]
