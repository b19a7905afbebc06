"""Constants, the run's options and the log line shared by the ingest benchmark's modules."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BATCH_PATH = "/v1/events/batch"
SINGLE_PATH = "/v1/events"
INFLIGHT_KEY = "live:inflight"  # portal.live.keys.INFLIGHT_KEY

# Issue 15's targets (a benchmark prints each with PASS/MISS; tests never assert time).
TARGET_BATCH_EPS = 50_000  # accepted and persisted, sustained
TARGET_COPY_RATIO = 0.3  # persisted/s over the raw COPY floor measured in the same run
TARGET_SINGLE_RPS = 3_000  # single-event requests/s, closed loop
TARGET_SINGLE_P99_S = 0.020  # single-event latency p99 at a fixed rate of...
SINGLE_OPEN_RATE = 1_000.0  # ...this many requests/s (open loop)
TARGET_LAG_P99_S = 1.0  # accepted -> persisted, at half the measured batch rate
TARGET_FLAT_RATIO = 0.8  # batch rate with history / empty-store rate
TARGET_TIMELINE_RATIO = 0.9  # last minute / first minute of the batch phase
TARGET_VALKEY_BYTES = 2 * 10**9  # at 1,000 events/s for 35 days
VALKEY_PROJECTION_EPS = 1_000
VALKEY_PROJECTION_DAYS = 35
TARGET_STARTUP_S = 30.0  # `usage-portal up` to /readyz 200
# Without a batch phase to halve, the lag phase runs at half the target rate.
DEFAULT_LAG_RATE = TARGET_BATCH_EPS // 2

ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Australia/Adelaide",
    "America/St_Johns",
    "Pacific/Chatham",
    "America/Los_Angeles",
    "Asia/Tokyo",
]
REGIONS = ["eu-west", "us-east", "us-west", "ap-south"]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Options:
    phases: tuple[str, ...]
    duration: float
    single_duration: float
    lag_duration: float
    concurrency: int
    single_concurrency: int
    batch_size: int
    lag_rate: float | None
    web_workers: int
    web_mode: str
    worker_processes: int
    worker_threads: int
    drain_timeout: float
    keep_data: bool
    data_parent: str | None
    json_out: str | None
    quick: bool
    pg_stats: bool
    wait_idle: float
    event_ids: str
    pg_settings: tuple[str, ...]
    valkey_settings: tuple[str, ...]
    # Defaults, so the other benchmarks that build Options for bench.stack need not know.
    copy_seconds: float = 10.0
    copy_connections: int = 2
    single_rate: float = SINGLE_OPEN_RATE
    preload_millions: float = 0.0
    empty_rate: float | None = None
    compare_empty: bool = False
    startup: bool = False


def tier_options(
    *,
    batch_size: int,
    web_workers: int,
    worker_processes: int,
    worker_threads: int,
    keep_data: bool,
    data_parent: str | None,
    wait_idle: float,
) -> Options:
    """Options as bench.stack reads them for a benchmark of its own (dashboard, alerts,
    entitlements, hostile input): only the tiers and the data dir matter, the ingest
    benchmark's phases are left out."""
    return Options(
        phases=(),
        duration=0,
        single_duration=0,
        lag_duration=0,
        concurrency=1,
        single_concurrency=1,
        batch_size=batch_size,
        lag_rate=None,
        web_workers=web_workers,
        web_mode="workers",
        worker_processes=worker_processes,
        worker_threads=worker_threads,
        drain_timeout=0,
        keep_data=keep_data,
        data_parent=data_parent,
        json_out=None,
        quick=False,
        pg_stats=False,
        wait_idle=wait_idle,
        event_ids="random",
        pg_settings=(),
        valkey_settings=(),
    )
