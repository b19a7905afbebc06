"""The raw event lifecycle: monthly partitions of `usage_events` older than the retention
are exported to the archive dir (gzip CSV shards and a manifest, archive_files.py),
verified, then dropped. Aggregates (`hourly_usage`, `hourly_unique_values`), invoices and
notes stay; an archived event is still found by id (`find_archived_event`).

Each due partition goes through: export to a temp folder, fsync, rename into place; read
every file back against its manifest; then, in one transaction, DETACH the partition,
compare Postgres' totals of what is being dropped with the files', DROP it and record it
in `archived_partitions`. A run stopped at any step is finished by the next one: a temp
folder is deleted and redone, an export in place is verified again (and redone when it
does not match), a drop either committed with its record or did not happen.

Run by `usage-portal archive` and daily by the `archive_raw_events` actor.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from portal.infrastructure.settings import Settings
from portal.ingest import archive_files as files
from portal.ingest.partitions import forget_month, next_month
from portal.ingest.repository import archive as store

log = logging.getLogger(__name__)

# One run at a time, cluster-wide (a session advisory lock).
_ARCHIVE_LOCK = 74_220_019
# The ledger is pruned this long after the lateness window (workers/maintenance.py): a
# partition is kept at least as long.
LEDGER_MARGIN = timedelta(days=2)

# Called between the export and the drop (tests stop or tamper there).
Checkpoint = Callable[[str, Path], Awaitable[None]]


def month_of(name: str) -> date:
    """The month a partition name (usage_events_pYYYYMM) holds."""
    digits = store.checked_name(name)[-6:]
    return date(int(digits[:4]), int(digits[4:]), 1)


def month_range(month: date) -> tuple[datetime, datetime]:
    """The month's [start, end) in UTC."""
    end = next_month(month)
    return datetime(month.year, month.month, 1, tzinfo=UTC), datetime(end.year, end.month, 1, tzinfo=UTC)


def archive_before(now: datetime, *, retention: timedelta | None, lateness: timedelta) -> datetime | None:
    """Months that ended before this instant are due; None when raw events are kept forever.
    A month is kept for the retention and at least for the lateness window (plus the
    ledger's margin): an event a client may still send or correct is never archived."""
    if retention is None:
        return None
    return now - max(retention, lateness + LEDGER_MARGIN)


def due_partitions(names: list[str], cutoff: datetime | None) -> list[str]:
    """The partitions among `names` whose whole month ended before `cutoff`, oldest first."""
    if cutoff is None:
        return []
    return sorted(n for n in names if month_range(month_of(n))[1] <= cutoff)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a run did with one due partition."""

    partition: str
    month: date
    action: str  # "archived", "would archive", "kept"
    rows: int
    bytes: int  # compressed files when archived, Postgres' size on a dry run
    reason: str = ""

    def line(self) -> str:
        month = f"{self.month:%B %Y}"
        if self.action == "kept":
            return f"kept {self.partition} ({month}): {self.reason}"
        if self.action == "would archive":
            size = _size(self.bytes)
            return f"would archive {self.partition} ({month}): {self.rows:,} events, {size} in Postgres"
        return f"archived {self.partition} ({month}): {self.rows:,} events, {_size(self.bytes)} of gzip CSV"


def _size(n: int) -> str:
    size = float(n)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{n:,} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n:,} bytes"


@dataclass(frozen=True, slots=True)
class Report:
    cutoff: datetime | None
    outcomes: list[Outcome]
    busy: bool = False  # another run holds the lock

    def summary(self) -> str:
        archived = [o for o in self.outcomes if o.action == "archived"]
        due = [o for o in self.outcomes if o.action == "would archive"]
        kept = [o for o in self.outcomes if o.action == "kept"]
        if due:
            return f"{len(due)} month(s) due, {sum(o.rows for o in due):,} events (dry run: nothing changed)"
        return (
            f"{len(archived)} month(s) archived, {sum(o.rows for o in archived):,} events, "
            f"{_size(sum(o.bytes for o in archived))} written; {len(kept)} kept"
        )

    def lines(self) -> list[str]:
        if self.busy:
            return ["another archive run is under way; nothing done"]
        if self.cutoff is None:
            return ["raw events are kept forever (PORTAL_RAW_EVENT_RETENTION_DAYS=0); nothing to archive"]
        if not self.outcomes:
            return [f"nothing to archive: every month that ended before {self.cutoff:%-d %B %Y} is archived"]
        return [o.line() for o in self.outcomes]


async def archive_now(
    conn: Any,
    *,
    archive_dir: Path,
    retention: timedelta | None,
    lateness: timedelta,
    now: datetime,
    dry_run: bool = False,
    shards: int = files.DEFAULT_SHARDS,
    checkpoint: Checkpoint | None = None,
) -> Report:
    """Archive every due partition (`conn`: an asyncpg connection outside any transaction;
    `now`: UTC). A partition whose export does not verify is kept, and its export removed
    so the next run makes it again; the others go on."""
    cutoff = archive_before(now, retention=retention, lateness=lateness)
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _ARCHIVE_LOCK):
        return Report(cutoff, [], busy=True)
    try:
        due = due_partitions(await store.event_partitions(conn), cutoff)
        if dry_run:
            outcomes = []
            for name in due:
                totals = await store.partition_totals(conn, name)
                rows = sum(t.events for t in totals.values())
                size = await store.partition_size(conn, name)
                outcomes.append(Outcome(name, month_of(name), "would archive", rows, size))
            return Report(cutoff, outcomes)
        if due:
            await _check_columns(conn)
        await asyncio.to_thread(files.prepare, archive_dir)
        archived = {r.name: r for r in await store.archived_partitions(conn)}
        outcomes = [
            _again(name, archived[name])
            if name in archived
            else await _archive_one(conn, name, archive_dir, now=now, shards=shards, checkpoint=checkpoint)
            for name in due
        ]
        await asyncio.to_thread(files.write_index, archive_dir)
        return Report(cutoff, outcomes)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _ARCHIVE_LOCK)


def _again(name: str, before: store.ArchivedRecord) -> Outcome:
    """A month archived before whose partition holds events again (made anew, by a replay
    of old failed events say): its archive is never touched, the new rows wait for an operator."""
    when = f"{before.archived_at:%-d %B %Y}" if before.archived_at else "before"
    reason = (
        f"it was archived {when} ({before.rows:,} events), yet Postgres holds events of that "
        "month again; the archive is left as it is and the new partition for an operator"
    )
    log.error("archive: %s kept: %s", name, reason)
    return Outcome(name, month_of(name), "kept", 0, 0, reason)


async def _check_columns(conn: Any) -> None:
    columns = tuple(await store.usage_event_columns(conn))
    if sorted(columns) != sorted(files.COLUMNS):
        raise RuntimeError(
            f"usage_events has the columns {columns}, the archive writes {files.COLUMNS}: "
            "update portal/ingest/archive_files.py before archiving"
        )


async def _archive_one(
    conn: Any, name: str, archive_dir: Path, *, now: datetime, shards: int, checkpoint: Checkpoint | None
) -> Outcome:
    month = month_of(name)
    folder = archive_dir / name
    if folder.exists():
        # A run stopped after its export: use it if it still reads back whole.
        try:
            await asyncio.to_thread(files.verify_export, folder)
        except files.ArchiveMismatch as exc:
            log.warning("archive: the export of %s left by an earlier run is redone: %s", name, exc)
            await asyncio.to_thread(files.remove_export, folder)
    if not folder.exists():
        await _export(conn, name, archive_dir, now=now, shards=shards)
    if checkpoint is not None:
        await checkpoint(name, folder)
    try:
        manifest, written = await asyncio.to_thread(files.verify_export, folder)
    except files.ArchiveMismatch as exc:
        await asyncio.to_thread(files.remove_export, folder)
        log.error("archive: %s kept, its export does not verify: %s", name, exc)
        reason = f"the export does not verify ({exc}); it is made again next run"
        return Outcome(name, month, "kept", 0, 0, reason)
    start, end = month_range(month)
    size = sum(f["bytes"] for f in manifest["files"])
    digest = await asyncio.to_thread(files.manifest_sha256, folder)
    try:
        async with conn.transaction():
            await store.detach_partition(conn, name)
            # Detached, nothing writes to it any more: what is dropped is what is compared.
            difference = written.difference(await store.partition_totals(conn, name))
            if difference is not None:
                raise _Differs(difference)  # rolls the detach back
            await store.drop_table(conn, name)
            await store.record_archived(
                conn, store.ArchivedRecord(name, start, end, written.rows, size, folder.name, digest)
            )
    except _Differs as exc:
        await asyncio.to_thread(files.remove_export, folder)
        log.error("archive: %s kept, Postgres differs from its export: %s", name, exc)
        return Outcome(name, month, "kept", 0, 0, f"Postgres differs from the export ({exc})")
    forget_month(month)
    log.info("archive: %s archived, %d events, %d bytes", name, written.rows, size)
    return Outcome(name, month, "archived", written.rows, size)


class _Differs(Exception):
    """Postgres' totals of a detached partition differ from its export's."""


async def _export(conn: Any, name: str, archive_dir: Path, *, now: datetime, shards: int) -> None:
    """Write the partition's files into a temp folder, then rename it into place."""
    temp = archive_dir / f"{files.TEMP_PREFIX}{name}-{os.getpid()}"
    start, end = month_range(month_of(name))
    with files.PartitionWriter(temp, shards=shards) as writer:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            async for record in store.partition_rows(conn, name, files.COLUMNS):
                writer.write(record)
        await asyncio.to_thread(writer.finish, partition=name, start=start, end=end, exported_at=now)
    await asyncio.to_thread(files.publish, temp, archive_dir / name)


async def archive_with_settings(settings: Settings, *, now: datetime, dry_run: bool = False) -> Report:
    """`archive_now` with the settings' retention, lateness and archive dir, on a
    connection of its own (the CLI command and the daily actor)."""
    assert settings.database_url
    conn = await asyncpg.connect(settings.database_url)
    try:
        return await archive_now(
            conn,
            archive_dir=settings.archive_path,
            retention=settings.raw_event_retention,
            lateness=settings.accepted_lateness,
            now=now,
            dry_run=dry_run,
        )
    finally:
        await conn.close()


@dataclass(frozen=True, slots=True)
class ArchivedEvent:
    """An event read back from the archive, with the partition it was archived in."""

    partition: str
    month: date
    row: dict[str, Any]


def find_archived_event(archive_dir: Path, customer_id: str, event_id: str) -> ArchivedEvent | None:
    """The event from the archive (index, then each archived month's one shard it can be
    in, newest month first), or None. Blocking file reads: run it in a thread from async code."""
    for entry in reversed(files.read_index(archive_dir)):
        folder = archive_dir / entry["path"]
        try:
            row = files.find_in_export(folder, entry["shards"], customer_id, event_id)
        except FileNotFoundError:
            continue  # removed by a run meanwhile (an export that did not verify)
        except (OSError, EOFError, ValueError, csv.Error, files.ArchiveMismatch) as exc:
            # A damaged file must not hide the other months: say which, and go on.
            log.error("archive: %s cannot be read for a lookup: %s", entry["path"], exc)
            continue
        if row is not None:
            return ArchivedEvent(entry["partition"], month_of(entry["partition"]), row)
    return None


async def archived_summary(conn: Any) -> tuple[int, int, int]:
    """(partitions, events, bytes of files) archived so far."""
    records = await store.archived_partitions(conn)
    return len(records), sum(r.rows for r in records), sum(r.bytes for r in records)
