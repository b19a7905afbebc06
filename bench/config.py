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

TARGET_BATCH_EPS = 20_000
TARGET_LAG_P99_S = 2.0
TARGET_LAG_RATE = TARGET_BATCH_EPS // 2

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
