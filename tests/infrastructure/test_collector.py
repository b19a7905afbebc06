"""Served processes keep what they start with out of the cyclic collector's full passes
(portal/infrastructure/collector.py): the web at its lifespan's start, a worker once booted
(workers/middleware.py `SettledCollector`, installed by workers/main.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from portal.infrastructure.settings import Settings
from tests.conftest import ROOT

# Run in a process of its own: freezing is process-wide and would stay for every later test.
_WORKER_BOOT = """
import gc
import dramatiq
from dramatiq.brokers.stub import StubBroker
from workers.middleware import SettledCollector

broker = StubBroker()
broker.add_middleware(SettledCollector())
before = gc.get_freeze_count()
worker = dramatiq.Worker(broker, worker_threads=1)
worker.start()
try:
    print(before, gc.get_freeze_count(), gc.get_threshold()[0])
finally:
    worker.stop()
"""


def test_a_booted_worker_has_frozen_what_it_holds_and_collects_the_young_less_often() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WORKER_BOOT], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    before, after, young = map(int, result.stdout.split())
    assert before == 0 and after > 10_000  # the modules, actors and pools loaded so far
    assert young == 20_000


_ENTRY_POINT = """
import dramatiq
import workers.main
from workers.middleware import SettledCollector

print(sum(isinstance(m, SettledCollector) for m in dramatiq.get_broker().middleware))
"""


def test_the_worker_entry_point_installs_it(settings: Settings) -> None:
    environment = {**os.environ, "DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    result = subprocess.run(
        [sys.executable, "-c", _ENTRY_POINT],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-1] == "1"
