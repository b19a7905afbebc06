"""The live-view tests on a Redis/Valkey Cluster of three primaries (issue 16).

The cluster (portal/infrastructure/valkey_cluster.py) starts at the first test of this
folder that asks for `settings`, and only then. Here `settings` names it as REDIS_URL
(`redis+cluster://…`); Postgres and the broker (BROKER_URL, the standalone test Valkey's
db 1: Dramatiq's Redis broker is not cluster-safe) stay those of the other tests. `app`
and `worker` are this folder's own, on those settings; the cluster's worker is the only
worker running while these tests run (every worker consumes the same broker queues).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from litestar import Litestar

from portal.app import create_app
from portal.infrastructure.settings import Settings
from portal.infrastructure.valkey_cluster import LocalValkeyCluster
from tests.conftest import RUNNING_WORKERS, WorkerProcess


@pytest.fixture(scope="session")
def valkey_cluster() -> Iterator[LocalValkeyCluster]:
    cluster = LocalValkeyCluster(Path(tempfile.mkdtemp(prefix="portal-cluster-")))
    cluster.start()
    yield cluster
    cluster.stop()
    shutil.rmtree(cluster.base_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(settings: Settings, valkey_cluster: LocalValkeyCluster) -> Settings:
    """The suite's settings with REDIS_URL naming the cluster."""
    return replace(settings, redis_url=valkey_cluster.url)


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture(scope="package")
def cluster_worker(settings: Settings) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings)
    yield process
    process.stop()
    RUNNING_WORKERS.discard(process)


@pytest.fixture
def worker(cluster_worker: WorkerProcess) -> WorkerProcess:
    """A worker on the cluster, and no other worker running meanwhile."""
    for other in list(RUNNING_WORKERS):
        if other is not cluster_worker:
            other.stop()
    if cluster_worker.process is None or cluster_worker.process.poll() is not None:
        cluster_worker.start()
    return cluster_worker
