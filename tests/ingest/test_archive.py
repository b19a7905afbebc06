"""The raw event archive end to end (issue 19): a month past the retention is exported to
gzip CSV, verified against its manifest and Postgres, dropped, and its events still found by
id; a tampered export or a changed partition keeps the partition; a run stopped between the
export and the drop is finished by the next one.

The month is built straight in Postgres (February 2001: the lateness window stops the API
from accepting events that old), and the archive runs "as if" on 15 June 2001.
"""

from __future__ import annotations

import csv
import gc
import gzip
import json
import re
import shutil
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from portal.infrastructure.settings import Settings, SettingsError, from_environment
from portal.ingest import archive_files
from portal.ingest.archive import Report, archive_now, due_partitions, find_archived_event
from portal.ingest.partitions import ensure_partitions, forget_known
from portal.operations.status import gather_status, render
from tests.conftest import auth
from tests.factories import make_customer, make_meter, roll_up_days
from tests.pages.helpers import make_user, sign_in

NOW = datetime(2001, 6, 15, 12, tzinfo=UTC)
FEBRUARY = "usage_events_p200102"
MAY = "usage_events_p200105"
RETENTION = timedelta(days=30)
LATENESS = timedelta(days=35)

_COLUMNS = ", ".join(archive_files.COLUMNS)


def _row(
    *,
    customer_id: str,
    event_id: str,
    metric_name: str = "api_calls",
    quantity: str = "1",
    at: datetime,
    dimensions: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    cancelled_at: datetime | None = None,
) -> tuple[Any, ...]:
    hour = at.replace(minute=0, second=0, microsecond=0)
    return (
        customer_id,
        event_id,
        metric_name,
        "",
        Decimal(quantity),
        at,
        hour,
        "",
        json.dumps(dimensions or {}),
        json.dumps(metadata or {}),
        at + timedelta(seconds=2),
        at + timedelta(seconds=3),
        "msg-1",
        cancelled_at,
    )


FEBRUARY_ROWS = [
    _row(customer_id="acme", event_id="a1", quantity="1.5", at=datetime(2001, 2, 1, 0, 0, tzinfo=UTC)),
    _row(
        customer_id="acme",
        event_id='odd, "quoted"\nid',
        quantity="12345678901234567890.123456789012",
        at=datetime(2001, 2, 14, 9, 30, 0, 123456, tzinfo=UTC),
        dimensions={"region": "eu-west", "tier": "Größe ✓"},
        metadata={"source": "batch", "nested": {"n": 1}},
    ),
    _row(
        customer_id="acme",
        event_id="a3",
        quantity="0.000000000001",
        at=datetime(2001, 2, 28, 23, 59, 59, 999999, tzinfo=UTC),
        cancelled_at=datetime(2001, 3, 2, 8, tzinfo=UTC),
    ),
    _row(
        customer_id="globex",
        event_id="g1",
        metric_name="storage_gb",
        quantity="0",
        at=datetime(2001, 2, 3, tzinfo=UTC),
    ),
    *(
        _row(
            customer_id="globex",
            event_id=f"g-{i}",
            quantity=str(i),
            at=datetime(2001, 2, 5, i % 24, tzinfo=UTC),
        )
        for i in range(40)
    ),
]


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    """Collect after each test: the session app's per-loop Redis connections left by the
    API and page requests are finalized here, not in the middle of a later `ast.parse`
    (CPython 3.11.7 fails that parse with "AST constructor recursion depth mismatch" when a
    finalizer's ResourceWarning traceback is formatted inside it, as pytest's session end does)."""
    yield
    gc.collect()


async def _month_partitions(pg: asyncpg.Connection) -> set[str]:
    rows = await pg.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'usage_events'::regclass AND c.relname LIKE 'usage_events_p2001%'"
    )
    return {r[0] for r in rows}


@pytest.fixture
async def archive_dir(settings: Settings, pg: asyncpg.Connection) -> AsyncIterator[Path]:
    """February 2001 (due) and May 2001 (within the lateness window) as fresh partitions,
    February holding FEBRUARY_ROWS, and an empty archive dir (the app's own)."""
    for name in (FEBRUARY, MAY):
        await pg.execute(f"DROP TABLE IF EXISTS {name}")
    forget_known()
    async with pg.transaction():
        await ensure_partitions(pg, [date(2001, 2, 1), date(2001, 5, 1)])
    forget_known()
    await pg.copy_records_to_table(FEBRUARY, columns=list(archive_files.COLUMNS), records=FEBRUARY_ROWS)
    await pg.execute(
        "INSERT INTO hourly_usage (customer_id, metric_name, hour, value, event_count) "
        "VALUES ('acme', 'api_calls', '2001-02-01T00:00:00Z', 1.5, 1)"
    )
    await roll_up_days(pg)
    folder = settings.archive_path
    shutil.rmtree(folder, ignore_errors=True)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


async def _run(pg: asyncpg.Connection, folder: Path, **kwargs: Any) -> Report:
    return await archive_now(
        pg, archive_dir=folder, retention=RETENTION, lateness=LATENESS, now=NOW, shards=4, **kwargs
    )


def test_a_month_is_due_once_it_ended_longer_ago_than_the_retention_and_the_lateness() -> None:
    names = ["usage_events_p200103", "usage_events_p200104", "usage_events_p200105"]
    # Retention 30 days, lateness 35 (+2 for the ledger): the cutoff is 9 May 2001, 12:00.
    assert due_partitions(names, NOW - timedelta(days=37)) == ["usage_events_p200103", "usage_events_p200104"]
    # Retention 60 days: the cutoff is 16 April, so April is kept.
    assert due_partitions(names, NOW - timedelta(days=60)) == ["usage_events_p200103"]
    # Kept forever.
    assert due_partitions(names, None) == []


async def test_a_due_month_round_trips_every_row_then_is_dropped(
    pg: asyncpg.Connection, archive_dir: Path, settings: Settings
) -> None:
    # Given February 2001 in Postgres, exactly as stored
    stored = await pg.fetch(f"SELECT {_COLUMNS} FROM {FEBRUARY} ORDER BY customer_id, event_id")
    # When the archive runs
    report = await _run(pg, archive_dir)
    # Then February is archived and May (inside the lateness window) is kept
    [line] = report.lines()
    assert re.fullmatch(
        r"archived usage_events_p200102 \(February 2001\): 44 events, [0-9.]+ KiB of gzip CSV", line
    )
    assert await _month_partitions(pg) == {MAY}
    # Every row reads back from the files exactly, column for column
    read_back = []
    for shard in range(4):
        with gzip.open(archive_dir / FEBRUARY / archive_files.shard_file(shard), "rt", newline="") as f:
            read_back += [archive_files.decode_row(r) for r in list(csv.reader(f))[1:]]
    expected = [dict(zip(archive_files.COLUMNS, tuple(r), strict=True)) for r in stored]
    for row in expected:
        row["dimensions"] = json.loads(row["dimensions"])
        row["metadata"] = json.loads(row["metadata"])
    assert sorted(read_back, key=lambda r: (r["customer_id"], r["event_id"])) == expected
    # The manifest holds the exact totals per customer and meter
    manifest = archive_files.read_manifest(archive_dir / FEBRUARY)
    assert manifest["totals"] == {
        "rows": 44,
        "by_customer_meter": [
            {
                "customer_id": "acme",
                "metric_name": "api_calls",
                "events": 3,
                "quantity": "12345678901234567891.623456789013",
                "cancelled": 1,
            },
            {
                "customer_id": "globex",
                "metric_name": "api_calls",
                "events": 40,
                "quantity": "780.000000000000",
                "cancelled": 0,
            },
            {
                "customer_id": "globex",
                "metric_name": "storage_gb",
                "events": 1,
                "quantity": "0.000000000000",
                "cancelled": 0,
            },
        ],
    }
    assert sum(f["rows"] for f in manifest["files"]) == 44
    # It is recorded, and the aggregates stay
    recorded = await pg.fetchrow("SELECT name, range_start, range_end, rows, path FROM archived_partitions")
    assert tuple(recorded) == (
        FEBRUARY,
        datetime(2001, 2, 1, tzinfo=UTC),
        datetime(2001, 3, 1, tzinfo=UTC),
        44,
        FEBRUARY,
    )
    assert await pg.fetchval("SELECT value FROM hourly_usage WHERE customer_id = 'acme'") == Decimal("1.5")
    # The operator's status counts it
    size = sum(f["bytes"] for f in manifest["files"])
    status = await gather_status(settings)
    assert status.archived == (1, 44, size)
    assert f"raw archive     1 month(s), 44 events, {size:,} bytes of gzip CSV" in render(status).splitlines()
    # And a rerun has nothing to do but rewrite the index (lost here, as a crash right
    # after the drop would lose it)
    (archive_dir / archive_files.INDEX).unlink()
    rerun = await _run(pg, archive_dir)
    assert [e["partition"] for e in archive_files.read_index(archive_dir)] == [FEBRUARY]
    assert rerun.outcomes == []
    assert rerun.lines() == ["nothing to archive: every month that ended before 9 May 2001 is archived"]


async def test_an_archived_event_is_found_by_id(
    pg: asyncpg.Connection, archive_dir: Path, client: AsyncTestClient[Any], admin_key: str
) -> None:
    # Given February archived
    await _run(pg, archive_dir)
    # When the event is looked up by id
    found = find_archived_event(archive_dir, "acme", 'odd, "quoted"\nid')
    # Then it comes back whole, with its month
    assert found is not None and found.partition == FEBRUARY and found.month == date(2001, 2, 1)
    assert found.row["quantity"] == Decimal("12345678901234567890.123456789012")
    assert found.row["dimensions"] == {"region": "eu-west", "tier": "Größe ✓"}
    # And through the admin API
    response = await client.get(
        "/v1/archive/events/a3", params={"customerId": "acme"}, headers=auth(admin_key)
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "customerId": "acme",
        "eventId": "a3",
        "metricName": "api_calls",
        "productId": "",
        "quantity": "0.000000000001",
        "eventTime": "2001-02-28T23:59:59.999999Z",
        "dimensions": {},
        "metadata": {},
        "receivedAt": "2001-03-01T00:00:01.999999Z",
        "persistedAt": "2001-03-01T00:00:02.999999Z",
        "cancelledAt": "2001-03-02T08:00:00Z",
        "archivedMonth": "2001-02",
        "archivePartition": FEBRUARY,
    }
    # An id the archive does not hold, or another customer's, is a 404
    for params in ({"customerId": "acme"}, {"customerId": "globex"}):
        missing = await client.get("/v1/archive/events/a1x", params=params, headers=auth(admin_key))
        assert missing.status_code == 404
    assert find_archived_event(archive_dir, "globex", "a1") is None


async def test_a_tampered_export_keeps_the_partition(pg: asyncpg.Connection, archive_dir: Path) -> None:
    # Given a run whose export is altered before it is verified
    async def tamper(name: str, folder: Path) -> None:
        target = folder / archive_files.shard_file(0)
        target.write_bytes(target.read_bytes()[:-8] + b"\0" * 8)

    # When it runs
    report = await _run(pg, archive_dir, checkpoint=tamper)
    # Then February is kept, whole, and its export removed to be made again
    assert report.lines() == [
        "kept usage_events_p200102 (February 2001): the export does not verify (part-00.csv.gz: the "
        "checksum differs from the manifest); it is made again next run"
    ]
    assert await _month_partitions(pg) == {FEBRUARY, MAY}
    assert await pg.fetchval(f"SELECT count(*) FROM {FEBRUARY}") == 44
    assert not (archive_dir / FEBRUARY).exists()
    assert await pg.fetchval("SELECT count(*) FROM archived_partitions") == 0


async def test_a_partition_that_changed_since_its_export_is_kept(
    pg: asyncpg.Connection, archive_dir: Path
) -> None:
    # Given a row added to February after its export was written
    async def late_row(name: str, folder: Path) -> None:
        extra = _row(customer_id="acme", event_id="late", quantity="2", at=datetime(2001, 2, 20, tzinfo=UTC))
        await pg.copy_records_to_table(FEBRUARY, columns=list(archive_files.COLUMNS), records=[extra])

    # When the archive runs
    report = await _run(pg, archive_dir, checkpoint=late_row)
    # Then Postgres' totals differ from the files', and nothing is dropped
    assert report.lines() == [
        "kept usage_events_p200102 (February 2001): Postgres differs from the export (customer acme, "
        "meter api_calls: the files hold 3 events, quantity 12345678901234567891.623456789013, 1 "
        "cancelled, the other side 4 events, quantity 12345678901234567893.623456789013, 1 cancelled)"
    ]
    assert await _month_partitions(pg) == {FEBRUARY, MAY}
    assert await pg.fetchval(f"SELECT count(*) FROM {FEBRUARY}") == 45


async def test_a_run_stopped_between_export_and_drop_is_finished_by_the_next(
    pg: asyncpg.Connection, archive_dir: Path
) -> None:
    # Given a run that stops after writing the export (a crash, a deploy)
    async def crash(name: str, folder: Path) -> None:
        raise RuntimeError("stopped")

    with pytest.raises(RuntimeError, match="stopped"):
        await _run(pg, archive_dir, checkpoint=crash)
    assert await _month_partitions(pg) == {FEBRUARY, MAY}
    exported = archive_files.manifest_sha256(archive_dir / FEBRUARY)
    # and a stray temp folder of another stopped run
    (archive_dir / f"{archive_files.TEMP_PREFIX}{FEBRUARY}-1").mkdir()
    # When the next run comes
    report = await _run(pg, archive_dir)
    # Then it verifies the export in place and drops February, once
    assert report.outcomes[0].action == "archived" and report.outcomes[0].rows == 44
    assert await _month_partitions(pg) == {MAY}
    assert archive_files.manifest_sha256(archive_dir / FEBRUARY) == exported
    assert _names(archive_dir) == ["index.json", FEBRUARY]
    assert [e["partition"] for e in archive_files.read_index(archive_dir)] == [FEBRUARY]


async def test_a_dry_run_changes_nothing(pg: asyncpg.Connection, archive_dir: Path) -> None:
    report = await _run(pg, archive_dir, dry_run=True)
    assert [(o.partition, o.action, o.rows) for o in report.outcomes] == [(FEBRUARY, "would archive", 44)]
    assert await _month_partitions(pg) == {FEBRUARY, MAY}
    assert _names(archive_dir.parent).count(archive_dir.name) == 0


async def test_the_event_explorer_finds_an_archived_event_by_id(
    pg: asyncpg.Connection, archive_dir: Path, client: AsyncTestClient[Any], admin_key: str
) -> None:
    # Given February archived, and a staff member signed in
    await make_customer(client, admin_key, id="acme", name="Acme Inc", timezone="UTC")
    await make_meter(client, admin_key, metric="api_calls", unit="call")
    await _run(pg, archive_dir)
    await make_user(pg, "ada@vendor.test", role="admin")
    await sign_in(client, "ada@vendor.test")
    # When they search the customer's events by an archived id
    searched = await client.get("/portal/events", params={"customer": "acme", "event": "a1"})
    # Then the archive answers, in plain words
    assert searched.status_code == 200
    section = searched.text[searched.text.index('<section class="archived"') :]
    assert (
        "Events of February 2001 were moved out of the live store into the archive of raw events." in section
    )
    assert '<td class="num">1.5 calls</td>' in section
    assert '<a href="/portal/events/acme/a1"><code>a1</code></a>' in section
    # Without a customer, it says how to look there
    anyone = await client.get("/portal/events", params={"event": "a1"})
    assert "Events of February 2001 and before are kept in the archive of raw events" in anyone.text
    # An id it does not hold either
    unknown = await client.get("/portal/events", params={"customer": "acme", "event": "nope"})
    assert "(events of February 2001 and before) does not hold it either." in unknown.text
    # And the archived event keeps its page
    path = await client.get("/portal/events/acme/a3")
    assert path.status_code == 200
    assert "Archived: events of February 2001 were moved out of the live store" in path.text
    assert "quantity <strong>0.000000000001 calls</strong>" in path.text
    assert "Cancelled " in path.text


@pytest.mark.parametrize(
    ("environment", "retention", "archive"),
    [
        ({}, timedelta(days=400), "data/archive"),
        ({"PORTAL_RAW_EVENT_RETENTION_DAYS": "0"}, None, "data/archive"),
        ({"PORTAL_RAW_EVENT_RETENTION_DAYS": ""}, timedelta(days=400), "data/archive"),
        (
            {"PORTAL_RAW_EVENT_RETENTION_DAYS": "90", "PORTAL_ARCHIVE_DIR": "/mnt/cold"},
            timedelta(days=90),
            "/mnt/cold",
        ),
    ],
)
def test_the_retention_and_archive_dir_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, environment: dict[str, str], retention: Any, archive: str
) -> None:
    monkeypatch.delenv("PORTAL_RAW_EVENT_RETENTION_DAYS", raising=False)
    monkeypatch.delenv("PORTAL_ARCHIVE_DIR", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = from_environment(data_dir=tmp_path / "data")
    assert settings.raw_event_retention == retention
    assert settings.archive_path == (Path(archive) if archive.startswith("/") else tmp_path / archive)


def test_a_negative_retention_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PORTAL_RAW_EVENT_RETENTION_DAYS", "-1")
    with pytest.raises(SettingsError, match="PORTAL_RAW_EVENT_RETENTION_DAYS must be a number of days"):
        from_environment(data_dir=tmp_path)


async def test_a_damaged_archive_file_does_not_break_a_lookup(
    pg: asyncpg.Connection, archive_dir: Path
) -> None:
    # Given February archived, then the shard holding a1 damaged on disk
    await _run(pg, archive_dir)
    shard = archive_dir / FEBRUARY / archive_files.shard_file(archive_files.shard_of("acme", "a1", 4))
    shard.write_bytes(b"not gzip")
    # When a1 is looked up, it is not found (and the damage is logged), rather than an error
    assert find_archived_event(archive_dir, "acme", "a1") is None


async def test_a_month_that_comes_back_after_its_archive_is_left_for_an_operator(
    pg: asyncpg.Connection, archive_dir: Path
) -> None:
    # Given February archived, then its partition made anew with one event (a replay of an
    # old failed event, say)
    await _run(pg, archive_dir)
    exported = archive_files.manifest_sha256(archive_dir / FEBRUARY)
    forget_known()
    async with pg.transaction():
        await ensure_partitions(pg, [date(2001, 2, 1)])
    forget_known()
    extra = _row(customer_id="acme", event_id="again", at=datetime(2001, 2, 9, tzinfo=UTC))
    await pg.copy_records_to_table(FEBRUARY, columns=list(archive_files.COLUMNS), records=[extra])
    # When the archive runs again
    report = await _run(pg, archive_dir)
    # Then the archive of February is untouched and the new partition kept
    assert [(o.partition, o.action) for o in report.outcomes] == [(FEBRUARY, "kept")]
    assert "yet Postgres holds events of that month again" in report.lines()[0]
    assert archive_files.manifest_sha256(archive_dir / FEBRUARY) == exported
    assert find_archived_event(archive_dir, "acme", "a1") is not None
    assert await pg.fetchval(f"SELECT count(*) FROM {FEBRUARY}") == 1
