"""A meter's usage page: chart and table, range and granularity, breakdown, CSV, errors."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import asyncpg
import pytest
from redis.asyncio import Redis

from portal.catalog.schemas import Meter
from portal.pages.usage_selection import RawSelection, Selection, SelectionError, select
from tests.clock import BOUNDARIES, Boundary, recent_boundaries, set_clock
from tests.conftest import WorkerProcess, wait_until_persisted
from tests.factories import auth, event, make_customer, make_meter, roll_up_days
from tests.pages.helpers import HTMX, Client, hidden, make_user, sign_in

PAGE = "/portal/customers/acme/meters/api_calls"


async def usage_world(
    client: Client,
    admin_key: str,
    ingest_key: str,
    redis: Redis,
    tz: str = "Europe/Berlin",
    at: datetime | None = None,
) -> None:
    """acme with api_calls grouped by region: eu 2, us 3.5 and an escaped region 1, now (or
    at `at`, which the app's clock is then set to)."""
    timestamp = None
    if at is not None:
        set_clock(client, at)
        timestamp = int(at.timestamp() * 1000)
    await make_customer(client, admin_key, timezone=tz)
    await make_meter(client, admin_key, group_by=["region", "tier"])
    events = [
        event(quantity=2, timestamp=timestamp, dimensions={"region": "eu", "tier": "a"}),
        event(quantity="3.5", timestamp=timestamp, dimensions={"region": "us", "tier": "a"}),
        event(quantity=1, timestamp=timestamp, dimensions={"region": "<script>x</script>", "tier": "b"}),
    ]
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)


async def customer_user(pg: asyncpg.Connection, client: Client, customer: str = "acme") -> str:
    email = f"user@{customer}.test"
    await make_user(pg, email, customer_id=customer)
    return await sign_in(client, email)


def total_of(html: str) -> str:
    match = re.search(r'<data class="total" id="meter-total" value="([^"]+)">', html)
    assert match, html
    return match.group(1)


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_hourly_view_of_this_period_with_its_table(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis, tz=boundary.tz, at=boundary.at)
    await customer_user(pg, client)
    page = await client.get(PAGE)
    assert page.status_code == 200, page.text
    # Without a plan the meter is named by its metric name in words, the unit pluralized.
    assert "<h1>API calls</h1>" in page.text
    assert total_of(page.text) == "6.5"
    assert '<span class="unit">calls</span>' in page.text
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title></rect>', page.text)
    assert len(bars) == 1 and bars[0].endswith(": 6.5 calls"), bars
    # The value axis is labelled with round numbers and the unit, the chart summed up in words.
    assert re.findall(r'<text class="value"[^>]*>([^<]+)</text>', page.text) == [
        "0 calls",
        "2 calls",
        "4 calls",
        "6 calls",
        "8 calls",
    ]
    assert re.search(r'role="img"\s+aria-label="API calls per hour, [^"]*: highest 6.5 calls, ', page.text)
    assert re.search(r'<td class="num">6.5</td>', page.text)  # the same number in the table
    # Labels for every control, this period selected, a live refresh with a version.
    for control in ("sel-range", "sel-from", "sel-to", "sel-granularity", "sel-group"):
        assert f'<label for="{control}">' in page.text
    assert '<option value="this_period" selected>' in page.text
    assert 'hx-trigger="portal-refresh from:body"' in page.text
    export = 'href="/portal/customers/acme/meters/api_calls.csv?range=this_period&amp;granularity=hour"'
    assert export in page.text


@pytest.mark.parametrize("boundary", recent_boundaries())
async def test_daily_view_of_the_last_7_days(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis, tz=boundary.tz, at=boundary.at)
    await customer_user(pg, client)
    page = await client.get(PAGE, params={"range": "last_7_days", "granularity": "day"})
    assert page.status_code == 200, page.text
    today = boundary.local()
    day = f"{today:%a} {today.day} {today:%b} {today.year}"
    assert re.search(rf"<tr><td>{day}</td><td class=\"num\">6.5</td></tr>", page.text), page.text
    assert len(re.findall(r'<line class="tick"', page.text)) == 7  # seven local days
    # Every day of the week is on the axis, with its weekday where there is room.
    wide = re.search(r'<g class="dates dates-l">(.*?)</g>', page.text, re.S)
    assert wide is not None
    assert len(re.findall(r'<text class="date"', wide.group(1))) == 7


async def test_breakdown_by_a_dimension_with_escaped_values(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis)
    await customer_user(pg, client)
    page = await client.get(PAGE, params={"group": "region"})
    assert page.status_code == 200, page.text
    rows = re.findall(r'<tr><th scope="row">([^<]*)</th><td class="num"><data value="([^"]+)">', page.text)
    assert rows == [("us", "3.5"), ("eu", "2"), ("&lt;script&gt;x&lt;/script&gt;", "1")]
    assert "<script>x</script>" not in page.text
    # The small charts share one value axis, said on the page, each with its series' total.
    assert (
        '<p class="scale-note" id="group-scale">The 3 charts below share one scale, 0 to 4 calls per hour,'
        in page.text
    )
    series = page.text.split('<article class="group-series">')[1:]
    assert [re.search(r"<h3>(.*?)</h3>", part).group(1) for part in series] == [  # type: ignore[union-attr]
        'region: us — <data value="3.5">3.5</data> calls',
        'region: eu — <data value="2">2</data> calls',
        'region: &lt;script&gt;x&lt;/script&gt; — <data value="1">1</data> call',
    ]
    for part in series:
        assert re.findall(r'<text class="value"[^>]*>([^<]+)</text>', part) == [
            "0 calls",
            "2 calls",
            "4 calls",
        ]
    assert '<option value="region" selected>' in page.text
    assert '<option value="tier">' in page.text


@pytest.mark.parametrize("boundary", recent_boundaries("Asia/Kolkata"))
async def test_csv_has_the_same_selection_with_offsets_and_exact_values(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis, tz="Asia/Kolkata", at=boundary.at)
    await customer_user(pg, client)
    plain = await client.get(f"{PAGE}.csv", params={"range": "last_7_days", "granularity": "day"})
    assert plain.status_code == 200, plain.text
    assert plain.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(plain.text)))
    assert rows[0] == ["start", "end", "meter", "value", "unit"]
    assert len(rows) == 8
    today = boundary.local().date()
    assert rows[-1] == [
        f"{today}T00:00:00+05:30",
        f"{today + timedelta(days=1)}T00:00:00+05:30",
        "api_calls",
        "6.5",
        "call",
    ]
    assert [r[3] for r in rows[1:-1]] == ["0"] * 6

    grouped = await client.get(
        f"{PAGE}.csv", params={"range": "last_7_days", "granularity": "day", "group": "region"}
    )
    rows = list(csv.reader(io.StringIO(grouped.text)))
    assert rows[0] == ["start", "end", "meter", "region", "value", "unit"]
    last = {r[3]: r[4] for r in rows[1:] if r[0].startswith(str(today))}
    assert last == {"us": "3.5", "eu": "2", "<script>x</script>": "1"}


async def test_csv_writes_dimension_values_a_spreadsheet_would_run_as_text(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    # Given: usage stored under dimension values that are spreadsheet formulas (straight in
    # Postgres: the export is what is tested, whatever the edge lets through)
    await make_customer(client, admin_key)
    await make_meter(client, admin_key, group_by=["region"])
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    written = {
        "=cmd|' /C calc'!A0": "'=cmd|' /C calc'!A0",
        "@SUM(1)": "'@SUM(1)",
        "+1": "'+1",
        "-1+2": "'-1+2",
        "\t=1": "'\t=1",
        "\r=1": "'\r=1",
    }
    values = [*((region, Decimal(i + 1)) for i, region in enumerate(written)), ("eu", Decimal("0.5"))]
    for region, value in values:
        await pg.execute(
            "INSERT INTO hourly_usage (customer_id, metric_name, hour, group_key, value, "
            "event_count) VALUES ('acme', 'api_calls', $1, $2, $3, 1)",
            hour,
            json.dumps({"region": region}),
            value,
        )
        await roll_up_days(pg)
    await customer_user(pg, client)
    # When: the customer downloads the day's breakdown
    export = await client.get(
        f"{PAGE}.csv",
        params={
            "range": "custom",
            "from": "2026-11-02",
            "to": "2026-11-02",
            "granularity": "day",
            "group": "region",
        },
    )
    # Then: every formula is text, and the values are numbers
    assert export.status_code == 200, export.text
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["start", "end", "meter", "region", "value", "unit"]
    assert sorted((r[3], r[4]) for r in rows[1:]) == sorted(
        [(text, str(i + 1)) for i, text in enumerate(written.values())] + [("eu", "0.5")]
    )


async def test_a_dimension_with_many_values_lists_the_largest_and_exports_only_usage(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    # Given: 150 regions in one hour of 2 Nov (an end-user id as a dimension makes thousands)
    await make_customer(client, admin_key)
    await make_meter(client, admin_key, group_by=["region"])
    hour = datetime(2026, 11, 2, 10, tzinfo=UTC)
    await pg.executemany(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, group_key, value, "
        "event_count) VALUES ('acme', 'api_calls', $1, $2, $3, 1)",
        [(hour, json.dumps({"region": f"r{i:03}"}), Decimal(i + 1)) for i in range(150)],
    )
    await roll_up_days(pg)
    await customer_user(pg, client)
    # When: the customer opens the breakdown of November, hour by hour, and its CSV
    november = {"range": "custom", "from": "2026-11-01", "to": "2026-11-30", "group": "region"}
    page = await client.get(PAGE, params=november)
    export = await client.get(f"{PAGE}.csv", params=november)
    # Then: the table lists the 100 largest, the charts the 12 largest, and says so
    assert page.status_code == 200, page.text
    table = page.text.split('id="group-totals"')[1].split("</table>")[0]
    listed = re.findall(r'<tr><th scope="row">(r\d+)</th>', table)
    assert listed == [f"r{i:03}" for i in range(149, 49, -1)]
    assert page.text.count('<article class="group-series">') == 12
    assert (
        "The table lists the 100 largest of 150 values and the charts the 12 largest; "
        "the CSV export has every value's usage." in page.text
    )
    # and the CSV has each region's one hour with usage, not 720 hours each
    rows = list(csv.reader(io.StringIO(export.text)))
    assert rows[0] == ["start", "end", "meter", "region", "value", "unit"]
    assert len(rows) == 151
    assert rows[1] == [
        "2026-11-02T10:00:00+00:00",
        "2026-11-02T11:00:00+00:00",
        "api_calls",
        "r149",
        "150",
        "call",
    ]
    assert sum(Decimal(r[4]) for r in rows[1:]) == Decimal(150 * 151 // 2)


async def test_bad_selections_answer_422_naming_the_field_and_keeping_values(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis)
    await customer_user(pg, client)
    cases = [
        ({"granularity": "minute"}, "Granularity: “minute” is not one of hour, day"),
        (
            {"range": "custom", "from": "2026-03-10", "to": "2026-03-01"},
            "To: must not be before “from” (2026-03-10)",
        ),
        (
            {"range": "custom", "from": "2024-01-01", "to": "2025-01-01", "granularity": "day"},
            "To: a range covers at most 366 days",
        ),
        ({"range": "custom", "from": "2026-13-01", "to": "2026-03-01"}, "From: “2026-13-01” is not a date"),
        (
            {"group": "planet"},
            "Group: “planet” is not a dimension of api_calls (its dimensions: region, tier)",
        ),
        ({"range": "forever"}, "Range: “forever” is not one of"),
        # The day after the last one a date can name (it was a 500)
        (
            {"range": "custom", "from": "9999-12-31", "to": "9999-12-31", "granularity": "day"},
            "From: choose dates between the years 1 and 9999",
        ),
    ]
    for params, message in cases:
        page = await client.get(PAGE, params=params)
        assert page.status_code == 422, (params, page.text)
        assert message in page.text, (params, page.text)
        assert 'aria-invalid="true"' in page.text
        assert "Download CSV" not in page.text
    kept = await client.get(PAGE, params={"range": "custom", "from": "2026-03-10", "to": "2026-03-01"})
    assert 'name="from" value="2026-03-10"' in kept.text and 'name="to" value="2026-03-01"' in kept.text
    assert '<option value="custom" selected>' in kept.text
    export = await client.get(f"{PAGE}.csv", params={"granularity": "minute"})
    assert export.status_code == 422 and "granularity" in export.text
    last_day = {"range": "custom", "from": "9999-12-31", "to": "9999-12-31", "group": "region"}
    assert (await client.get(f"{PAGE}.csv", params=last_day)).status_code == 422
    # A whole year by day is fine.
    year = await client.get(
        PAGE, params={"range": "custom", "from": "2025-01-01", "to": "2025-12-31", "granularity": "day"}
    )
    assert year.status_code == 200, year.text
    assert total_of(year.text) == "0"


async def test_live_partial_answers_204_while_unchanged(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await usage_world(client, admin_key, ingest_key, redis)
    await customer_user(pg, client)
    seen = hidden((await client.get(PAGE, headers=HTMX)).text, "seen")
    unchanged = await client.get(PAGE, headers=HTMX, params={"seen": seen})
    if unchanged.status_code == 200:  # the "complete through" minute turned in between
        seen = hidden(unchanged.text, "seen")
        unchanged = await client.get(PAGE, headers=HTMX, params={"seen": seen})
    assert unchanged.status_code == 204
    sent = await client.post(
        "/v1/events/batch",
        headers=auth(ingest_key),
        json={"events": [event(quantity=10, dimensions={"region": "eu", "tier": "a"})]},
    )
    assert sent.status_code == 202
    changed = await client.get(PAGE, headers=HTMX, params={"seen": seen})
    assert changed.status_code == 200
    assert total_of(changed.text) == "16.5"
    assert "<html" not in changed.text


@pytest.mark.parametrize("boundary", BOUNDARIES)
async def test_last_period_is_not_live(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
    boundary: Boundary,
) -> None:
    await make_customer(client, admin_key, timezone=boundary.tz)
    await make_meter(client, admin_key)
    await customer_user(pg, client)
    set_clock(client, boundary.at)
    page = await client.get(PAGE, params={"range": "last_period"})
    assert page.status_code == 200
    assert "portal-refresh" not in page.text
    assert "No usage in this range." in page.text
    local = boundary.local()
    first = local.replace(day=1) - timedelta(days=1)  # a day of the month before
    assert f"<strong>1 {first:%b} {first.year} 00:00 {local.tzname()}</strong>" in page.text


async def test_the_meter_is_titled_with_the_charge_of_the_customer_plan(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key, currency="USD")
    await make_meter(client, admin_key, metric="storage_gb", aggregation="max", unit="GB")
    plan = {
        "id": "stored",
        "name": "Stored",
        "currency": "USD",
        "charges": [
            {
                "key": "gb",
                "model": "per_unit",
                "meter": "storage_gb",
                "unitPrice": "0.10",
                "description": "Storage used",
            }
        ],
    }
    assert (await client.post("/v1/plans", headers=auth(admin_key), json=plan)).status_code == 201
    subscribed = await client.post(
        "/v1/customers/acme/subscriptions", headers=auth(admin_key), json={"planId": "stored"}
    )
    assert subscribed.status_code == 201, subscribed.text
    await customer_user(pg, client)
    page = await client.get("/portal/customers/acme/meters/storage_gb")
    assert page.status_code == 200, page.text
    assert "<h1>Storage used</h1>" in page.text
    assert "<title>Storage used · " in page.text
    assert "Counted in GB, aggregated by max." in page.text
    assert "storage_gb</" not in page.text


async def test_unknown_meter_and_other_customers_are_404(
    client: Client,
    admin_key: str,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key)
    await make_customer(client, admin_key, id="globex", name="Globex")
    await make_meter(client, admin_key)
    await customer_user(pg, client, "globex")
    for path in (
        PAGE,
        f"{PAGE}.csv",
        "/portal/customers/globex/meters/nothing",
        "/portal/customers/globex/meters/nothing.csv",
    ):
        response = await client.get(path)
        assert response.status_code == 404, path
    assert (await client.get("/portal/customers/globex/meters/api_calls")).status_code == 200


# --- the selection, pure ------------------------------------------------------------------

METER = Meter("api_calls", "sum", "call", ["region"], None, datetime(2026, 1, 1, tzinfo=UTC))
NOW = datetime(2026, 11, 24, 10, 30, tzinfo=UTC)


def choose(tz: str = "Europe/Berlin", anchor: int = 1, now: datetime = NOW, **raw: str) -> Selection:
    return select(
        RawSelection(**raw),
        meter=METER,
        tz_name=tz,
        anchor_day=anchor,
        now=now,
        future_tolerance=timedelta(minutes=5),
    )


def test_this_period_follows_the_anchor_day_and_stops_at_now() -> None:
    chosen = choose(anchor=15)
    assert chosen.start == datetime(2026, 11, 14, 23, tzinfo=UTC)  # 15 Nov 00:00 CET
    assert chosen.range_end == datetime(2026, 12, 14, 23, tzinfo=UTC)
    assert chosen.end == NOW + timedelta(minutes=5) and chosen.open
    assert (chosen.first_day, chosen.last_day) == (date(2026, 11, 15), date(2026, 12, 14))


def test_a_period_runs_until_its_last_second() -> None:
    # A second before the period ends, its end (now + 5 minutes' tolerance) is already the
    # period's end, yet the period runs: the page stays live.
    last_second = datetime(2026, 11, 30, 18, 29, 59, tzinfo=UTC)  # 23:59:59 in Kolkata
    chosen = choose(tz="Asia/Kolkata", now=last_second)
    assert chosen.end == chosen.range_end == datetime(2026, 11, 30, 18, 30, tzinfo=UTC)
    assert chosen.open
    november = {"range": "custom", "from_": "2026-11-01", "to": "2026-11-30", "granularity": "day"}
    assert choose(tz="Asia/Kolkata", now=last_second, **november).open
    assert not choose(tz="Asia/Kolkata", now=last_second + timedelta(seconds=1), **november).open


def test_last_period_and_a_custom_range_across_a_dst_change_are_closed() -> None:
    last = choose(range="last_period")
    assert last.start == datetime(2026, 9, 30, 22, tzinfo=UTC)
    assert last.end == datetime(2026, 10, 31, 23, tzinfo=UTC)
    assert not last.open
    custom = choose(range="custom", from_="2026-10-25", to="2026-10-25", granularity="hour")
    assert custom.end - custom.start == timedelta(hours=25)  # the day the clocks go back
    assert custom.query() == "range=custom&granularity=hour&from=2026-10-25&to=2026-10-25"


def test_last_7_days_are_whole_local_days() -> None:
    chosen = choose(tz="Asia/Kolkata", range="last_7_days", granularity="day")
    assert chosen.start == datetime(2026, 11, 17, 18, 30, tzinfo=UTC)
    assert chosen.range_end == datetime(2026, 11, 24, 18, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"granularity": "week"}, "granularity"),
        ({"range": "custom", "from_": "2026-01-01", "to": "2026-06-30"}, "granularity"),  # hourly, 181 days
        ({"range": "custom", "from_": "", "to": "2026-06-30"}, "from"),
        ({"group": "tier"}, "group"),
    ],
)
def test_bad_selections_name_their_field(raw: dict[str, str], field: str) -> None:
    with pytest.raises(SelectionError) as error:
        choose(**raw)
    assert error.value.field == field


async def test_breakdown_of_a_unique_count_counts_distinct_values_per_dimension_value(
    client: Client,
    admin_key: str,
    ingest_key: str,
    worker: WorkerProcess,
    redis: Redis,
    pg: asyncpg.Connection,
) -> None:
    await make_customer(client, admin_key)
    await make_meter(
        client,
        admin_key,
        metric="users",
        aggregation="unique_count",
        unit="user",
        group_by=["region"],
        unique_by="user",
    )
    events = [
        event(metric="users", dimensions={"region": r, "user": u})
        for r, u in (("eu", "a"), ("eu", "b"), ("eu", "a"), ("us", "a"))
    ]
    sent = await client.post("/v1/events/batch", headers=auth(ingest_key), json={"events": events})
    assert sent.status_code == 202, sent.text
    await wait_until_persisted(redis)
    await customer_user(pg, client)
    page = await client.get(
        "/portal/customers/acme/meters/users", params={"group": "region", "granularity": "day"}
    )
    assert page.status_code == 200, page.text
    assert total_of(page.text) == "2"  # a and b: distinct over all regions
    rows = re.findall(r'<tr><th scope="row">([^<]*)</th><td class="num"><data value="([^"]+)">', page.text)
    assert rows == [("eu", "2"), ("us", "1")]
