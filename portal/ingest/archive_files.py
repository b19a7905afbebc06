"""The files of the raw event archive (docs/data-lifecycle.md): one folder per monthly
partition under the archive dir, holding gzip CSV shards and a manifest, and an index of
every archived partition at the top.

    <archive dir>/index.json
    <archive dir>/usage_events_p202401/manifest.json
    <archive dir>/usage_events_p202401/part-00.csv.gz … part-15.csv.gz

Each CSV has a header row and every column of `usage_events`: dimensions and metadata as
JSON, quantities as exact decimal text, instants as ISO-8601 in UTC, an empty
`cancelled_at` for an event never cancelled. An event lives in the shard its
(customer_id, event_id) hashes to (`shard_of`), so finding one by id reads one file.

No database here: `archive.py` feeds rows in and compares totals with Postgres.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import hashlib
import io
import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Context, Decimal
from pathlib import Path
from typing import Any

# The columns of `usage_events` the archive knows how to write (migration 0012's table).
# A run refuses a table with other columns rather than lose one.
COLUMNS = (
    "customer_id",
    "event_id",
    "metric_name",
    "product_id",
    "quantity",
    "event_time",
    "hour",
    "group_key",
    "dimensions",
    "metadata",
    "received_at",
    "persisted_at",
    "message_id",
    "cancelled_at",
)
_QUANTITY = COLUMNS.index("quantity")
_CANCELLED = COLUMNS.index("cancelled_at")
_INSTANTS = frozenset({"event_time", "hour", "received_at", "persisted_at", "cancelled_at"})
_JSON = frozenset({"dimensions", "metadata"})
# Sums of numeric(32, 12) quantities need more than the default context's 28 digits.
_EXACT = Context(prec=80)
FORMAT = "usage-portal raw events: gzip CSV, version 1"
SHARD_HASH = "first 8 bytes of sha256(customer_id + NUL + event_id), big-endian, modulo shards"
DEFAULT_SHARDS = 16
MANIFEST = "manifest.json"
INDEX = "index.json"
# Unfinished exports; a run deletes the ones it finds (they are redone from Postgres).
TEMP_PREFIX = ".tmp-"


class ArchiveMismatch(Exception):
    """An export does not match its manifest or Postgres; the message says where."""


def shard_of(customer_id: str, event_id: str, shards: int) -> int:
    """The shard (0 … shards-1) an event's id falls in: stable across runs and machines."""
    digest = hashlib.sha256(
        customer_id.encode("utf-8", "surrogatepass") + b"\0" + event_id.encode("utf-8", "surrogatepass")
    ).digest()
    return int.from_bytes(digest[:8], "big") % shards


def shard_file(shard: int) -> str:
    return f"part-{shard:02d}.csv.gz"


def _instant(value: datetime | None) -> str:
    if value is None:
        return ""
    return (value if value.tzinfo is UTC else value.astimezone(UTC)).isoformat()


def _json_text(value: Any) -> str:
    # asyncpg hands jsonb over as Postgres' own text (valid JSON, keys in jsonb's order):
    # written as it comes, which is most of the export's speed. A decoded value (a codec
    # set on the connection) is written compact.
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=True)


def encode_row(record: Mapping[str, Any]) -> list[str]:
    """A row's CSV fields, in COLUMNS order."""
    fields = []
    for name in COLUMNS:
        value = record[name]
        if name in _INSTANTS:
            fields.append(_instant(value))
        elif name in _JSON:
            fields.append(_json_text(value))
        elif name == "quantity":
            fields.append(format(value, "f"))  # never an exponent: "0.000000000000", not "0E-12"
        else:
            fields.append(value)
    return fields


def decode_row(fields: Sequence[str]) -> dict[str, Any]:
    """A CSV row back to its values (Decimal, aware datetimes in UTC, dicts, None)."""
    row: dict[str, Any] = {}
    for name, text in zip(COLUMNS, fields, strict=True):
        if name in _INSTANTS:
            row[name] = datetime.fromisoformat(text) if text else None
        elif name in _JSON:
            row[name] = json.loads(text)
        elif name == "quantity":
            row[name] = Decimal(text)
        else:
            row[name] = text
    return row


@dataclass(slots=True)
class Totals:
    """Per (customer_id, metric_name): [events, exact quantity, cancelled events]."""

    by_meter: dict[tuple[str, str], list[Any]] = field(default_factory=dict)

    def add(self, customer_id: str, metric_name: str, quantity: Decimal, cancelled: bool) -> None:
        entry = self.by_meter.setdefault((customer_id, metric_name), [0, Decimal(0), 0])
        entry[0] += 1
        entry[1] = _EXACT.add(entry[1], quantity)
        entry[2] += cancelled

    def add_row(self, row: Mapping[str, Any]) -> None:
        self.add(row["customer_id"], row["metric_name"], row["quantity"], row["cancelled_at"] is not None)

    @property
    def rows(self) -> int:
        return sum(e[0] for e in self.by_meter.values())

    def as_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "by_customer_meter": [
                {
                    "customer_id": c,
                    "metric_name": m,
                    "events": e[0],
                    "quantity": format(e[1], "f"),
                    "cancelled": e[2],
                }
                for (c, m), e in sorted(self.by_meter.items())
            ],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Totals:
        return cls(
            {
                (t["customer_id"], t["metric_name"]): [t["events"], Decimal(t["quantity"]), t["cancelled"]]
                for t in data["by_customer_meter"]
            }
        )

    def difference(self, other: Mapping[tuple[str, str], Sequence[Any]]) -> str | None:
        """Where `other` (the same shape, e.g. Postgres' totals) differs, or None. Quantities
        compare as numbers (1.5 equals 1.500000000000)."""
        for key in sorted(set(self.by_meter) | set(other)):
            mine, theirs = self.by_meter.get(key), other.get(key)
            if mine is None or theirs is None or [mine[0], mine[1], mine[2]] != list(theirs[:3]):
                customer, meter = key
                return (
                    f"customer {customer}, meter {meter}: the files hold "
                    f"{_describe(mine)}, the other side {_describe(theirs)}"
                )
        return None


def _describe(total: Sequence[Any] | None) -> str:
    if total is None:
        return "no events"
    return f"{total[0]} events, quantity {total[1]}, {total[2]} cancelled"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class PartitionWriter:
    """Writes one partition's shards into `folder` (a fresh temp folder); `finish()` closes
    and fsyncs them and writes the manifest. Use as a context manager: on error the files
    are closed and the folder is left for the next run to delete."""

    def __init__(self, folder: Path, *, shards: int = DEFAULT_SHARDS) -> None:
        self.folder = folder
        self.shards = shards
        self.totals = Totals()
        self.rows = [0] * shards
        self._raw: list[io.BufferedWriter] = []
        self._text: list[io.TextIOWrapper] = []
        self._csv: list[Any] = []
        folder.mkdir(parents=True)
        for shard in range(shards):
            raw = (folder / shard_file(shard)).open("wb")
            # mtime=0: the same rows give the same bytes, whenever they are exported.
            gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6)
            text = io.TextIOWrapper(gz, encoding="utf-8", newline="")
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(COLUMNS)
            self._raw.append(raw)
            self._text.append(text)
            self._csv.append(writer)

    def __enter__(self) -> PartitionWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close()

    def write(self, record: Mapping[str, Any]) -> None:
        shard = shard_of(record["customer_id"], record["event_id"], self.shards)
        self._csv[shard].writerow(encode_row(record))
        self.rows[shard] += 1
        self.totals.add_row(record)

    def _close(self) -> None:
        for text in self._text:
            with contextlib.suppress(ValueError):  # already closed
                text.close()  # closes the gzip stream, which leaves the raw file open
        for raw in self._raw:
            if not raw.closed:
                raw.flush()
                os.fsync(raw.fileno())
                raw.close()

    def finish(
        self, *, partition: str, start: datetime, end: datetime, exported_at: datetime
    ) -> dict[str, Any]:
        """Close the shards and write the manifest (fsynced); returns the manifest."""
        self._close()
        files = []
        for shard in range(self.shards):
            path = self.folder / shard_file(shard)
            files.append(
                {
                    "name": path.name,
                    "rows": self.rows[shard],
                    "bytes": path.stat().st_size,
                    "sha256": _sha256_of(path),
                }
            )
        manifest = {
            "format": FORMAT,
            "table": "usage_events",
            "partition": partition,
            "range": {"start": _instant(start), "end": _instant(end)},
            "columns": list(COLUMNS),
            "shards": self.shards,
            "shard_hash": SHARD_HASH,
            "files": files,
            "totals": self.totals.as_json(),
            "exported_at": _instant(exported_at),
        }
        _write_json(self.folder / MANIFEST, manifest)
        _fsync_dir(self.folder)
        return manifest


def _write_json(path: Path, data: Any) -> None:
    """Write `path` whole or not at all: aside, fsynced, renamed over."""
    aside = path.with_name(f"{TEMP_PREFIX}{path.name}")
    with aside.open("w", encoding="utf-8") as f:
        json.dump(data, f, indent=2, ensure_ascii=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    aside.replace(path)


def manifest_sha256(folder: Path) -> str:
    return _sha256_of(folder / MANIFEST)


def read_manifest(folder: Path) -> dict[str, Any]:
    with (folder / MANIFEST).open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def _rows_of(path: Path) -> Iterator[list[str]]:
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None or tuple(header) != COLUMNS:
            raise ArchiveMismatch(f"{path.name}: the header is not the columns of usage_events")
        yield from reader


def verify_export(folder: Path) -> tuple[dict[str, Any], Totals]:
    """Re-read every file of an export: its checksum and row count match the manifest, each
    row sits in its own shard and decodes, and the rows add up to the manifest's totals.
    Returns the manifest and the totals read; raises ArchiveMismatch saying what differs."""
    try:
        manifest = read_manifest(folder)
    except (OSError, ValueError) as exc:
        raise ArchiveMismatch(f"the manifest cannot be read: {exc}") from None
    if manifest.get("format") != FORMAT or tuple(manifest.get("columns", ())) != COLUMNS:
        raise ArchiveMismatch("the manifest is of another format")
    shards = manifest["shards"]
    if [f["name"] for f in manifest["files"]] != [shard_file(s) for s in range(shards)]:
        raise ArchiveMismatch("the manifest does not list one file per shard")
    totals = Totals()
    for shard, entry in enumerate(manifest["files"]):
        path = folder / entry["name"]
        try:
            if _sha256_of(path) != entry["sha256"]:
                raise ArchiveMismatch(f"{entry['name']}: the checksum differs from the manifest")
            count = 0
            for fields in _rows_of(path):
                # What the totals need, read from the text (a full decode_row, JSON and
                # instants included, would double the time for nothing the totals compare).
                if len(fields) != len(COLUMNS):
                    raise ArchiveMismatch(f"{entry['name']}: a row has {len(fields)} fields")
                customer_id, event_id, metric_name = fields[0], fields[1], fields[2]
                if shard_of(customer_id, event_id, shards) != shard:
                    raise ArchiveMismatch(f"{entry['name']}: holds an event of another shard")
                totals.add(customer_id, metric_name, Decimal(fields[_QUANTITY]), fields[_CANCELLED] != "")
                count += 1
        except (OSError, EOFError, ValueError, csv.Error, ArithmeticError) as exc:
            raise ArchiveMismatch(f"{entry['name']}: cannot be read back: {exc}") from None
        if count != entry["rows"]:
            raise ArchiveMismatch(f"{entry['name']}: holds {count} rows, the manifest says {entry['rows']}")
    expected = Totals.from_json(manifest["totals"])
    if manifest["totals"]["rows"] != totals.rows:
        said = manifest["totals"]["rows"]
        raise ArchiveMismatch(f"the files hold {totals.rows} rows, the manifest says {said}")
    if (difference := totals.difference(expected.by_meter)) is not None:
        raise ArchiveMismatch(f"against the manifest's totals: {difference}")
    return manifest, totals


def prepare(archive_dir: Path) -> None:
    """Make the archive dir, and delete the temp folders of runs that stopped midway."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    for stale in archive_dir.glob(f"{TEMP_PREFIX}*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


def remove_export(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def publish(temp: Path, folder: Path) -> None:
    """Move a finished export into place (one rename; the archive dir fsynced after)."""
    temp.rename(folder)
    _fsync_dir(folder.parent)


def write_index(archive_dir: Path) -> list[dict[str, Any]]:
    """Rewrite `index.json` from the exports in the archive dir (each one's manifest), so
    it never misses one whatever step a run stopped at. Returns its entries, oldest first."""
    entries = []
    for folder in sorted(archive_dir.glob("usage_events_p*")):
        if not (folder / MANIFEST).is_file():
            continue
        manifest = read_manifest(folder)
        entries.append(
            {
                "partition": manifest["partition"],
                "start": manifest["range"]["start"],
                "end": manifest["range"]["end"],
                "rows": manifest["totals"]["rows"],
                "bytes": sum(f["bytes"] for f in manifest["files"]),
                "shards": manifest["shards"],
                "path": folder.name,
                "manifest_sha256": manifest_sha256(folder),
            }
        )
    _write_json(archive_dir / INDEX, {"format": FORMAT, "partitions": entries})
    return entries


def read_index(archive_dir: Path) -> list[dict[str, Any]]:
    """The index's entries; none when there is no archive yet."""
    try:
        with (archive_dir / INDEX).open(encoding="utf-8") as f:
            entries: list[dict[str, Any]] = json.load(f)["partitions"]
    except FileNotFoundError:
        return []
    return entries


def find_in_export(folder: Path, shards: int, customer_id: str, event_id: str) -> dict[str, Any] | None:
    """The event's row from the one shard it can be in, or None."""
    path = folder / shard_file(shard_of(customer_id, event_id, shards))
    for fields in _rows_of(path):
        if fields[0] == customer_id and fields[1] == event_id:
            return decode_row(fields)
    return None
