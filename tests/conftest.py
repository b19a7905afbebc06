"""Test fixtures: real Postgres and Redis-compatible servers (the embedded ones, or the
ones TEST_DATABASE_URL / TEST_REDIS_URL name), the real migrations, and on request a real
Dramatiq worker process."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg

# Imported here, at a shallow stack: otherwise hypothesis' pytest plugin imports it at the
# end of a run that had no property test, deep inside pluggy, where CPython 3.11.7's
# parser fails ("AST constructor recursion depth mismatch") rewriting its modules.
import hypothesis  # noqa: F401
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis

from alerts.destinations import parse_networks
from portal.app import create_app
from portal.infrastructure.broker import QUEUES, redis_queue_keys, setup_broker
from portal.infrastructure.db import create_engine, session_factory, transaction
from portal.infrastructure.redis_client import async_client, flush
from portal.infrastructure.settings import Settings
from portal.ingest.partitions import forget_known
from portal.keys.service import create_key
from portal.live import redis_keys as live_keys
from portal.operations.migrate import migrate
from portal.tables import metadata

ROOT = Path(__file__).resolve().parent.parent

# The same for the strategy modules hypothesis imports lazily: `st.randoms()`, drawn deep
# inside a schemathesis case (tests/http/test_fuzz_openapi.py), imported its module there
# and failed the test on a fresh clone, where pytest rewrites each module on first import.
# Not `regex`: importing it reads hypothesis' storage, which a conftest may not do.
for _lazy in ("random", "types", "flatmapped", "attrs"):
    importlib.import_module(f"hypothesis.strategies._internal.{_lazy}")
# And the engine's parts it imports when a search goes on long enough to optimise or shrink
# (`conjecture.optimiser` failed tests/http/test_json_nesting.py that way under load).
for _part in (
    "optimiser",
    "pareto",
    "shrinker",
    *(
        f"shrinking.{m}"
        for m in ("bytes", "choicetree", "collection", "common", "floats", "integer", "ordering", "string")
    ),
):
    with contextlib.suppress(ImportError):
        importlib.import_module(f"hypothesis.internal.conjecture.{_part}")

# And the report writers schemathesis' xdist plugin imports in its `pytest_sessionfinish`,
# deep inside pluggy: with pytest-xdist installed (make test), a fresh clone's fuzz run
# failed there after all its operations had passed.
for _writer in ("reporting.html.writer", "reporting.junitxml", "reporting.allure"):
    try:
        importlib.import_module(f"schemathesis.{_writer}")
    except ImportError:
        # allure is optional and not installed: a failed import is not remembered, so every
        # session's end parsed the module again, deep in pluggy (the same failure, seen at
        # the end of plain runs). None in sys.modules makes that import fail at once.
        sys.modules[f"schemathesis.{_writer}"] = None  # type: ignore[assignment]

# The SMTP server and HTTP receiver that deliveries go to (fixtures: mail_sink, hook_sink, …).
pytest_plugins = ["tests.sinks"]


# Retry quickly in tests; production defaults are in portal/infrastructure/settings.py.
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Alert notices from the test workers go to a local SMTP server and HTTP receiver on these
# ports (started by tests/alerts/sinks.py when a test needs them).
ALERT_SMTP_PORT = _free_port()
ALERT_HTTP_PORT = _free_port()

TEST_ENV = {
    "PORTAL_PERSIST_MAX_RETRIES": "2",
    "PORTAL_PERSIST_MIN_BACKOFF_MS": "100",
    "PORTAL_PERSIST_MAX_BACKOFF_MS": "300",
    "PORTAL_BROKER_HEARTBEAT_MS": "2000",
    "PORTAL_BROKER_MAINTENANCE_CHANCE": "1000000",
    "PORTAL_RECONCILE_SECONDS": "3600",
    "PORTAL_SMTP_URL": f"smtp://127.0.0.1:{ALERT_SMTP_PORT}?from=alerts@usage-portal.test&mode=insecure",
    "PORTAL_SLACK_WEBHOOK_BASE": f"http://127.0.0.1:{ALERT_HTTP_PORT}/slack",
    "PORTAL_PUBLIC_URL": "http://portal.test",
    # Processes the tests start see catalog changes at once, like the in-process app.
    "PORTAL_CATALOG_CACHE_SECONDS": "0",
    # The same for customers' limits and plans (tests/entitlements checks the cache itself).
    "PORTAL_ENTITLEMENT_CACHE_SECONDS": "0",
    "PORTAL_ALERT_DEBOUNCE_MS": "200",
    "PORTAL_ALERT_RETRY_DELAYS_MS": "300,600",
    "PORTAL_ALERT_LEASE_SECONDS": "3",
    "PORTAL_ALERT_SEND_TIMEOUT_S": "10",
    "PORTAL_WEBHOOK_RETRY_DELAYS_MS": "200,400,800",
    "PORTAL_FORECAST_MIN_ELAPSED_MINUTES": "0",
    # The sinks above listen on the loopback, which alert destinations may not reach by
    # default (alerts/destinations.py).
    "PORTAL_DESTINATION_ALLOW_NETWORKS": "127.0.0.0/8,::1/128",
    # `up --demo` runs of the tests load 10 days of history, not 90 (tests/cli/test_demo_history.py).
    "PORTAL_DEMO_HISTORY_DAYS": "10",
}


EMBEDDED: dict[str, Any] = {}


@pytest.fixture(scope="session")
def settings() -> Iterator[Settings]:
    data_dir = Path(tempfile.mkdtemp(prefix="portal-test-"))
    servers = None
    database_url = os.environ.get("TEST_DATABASE_URL")
    redis_url = os.environ.get("TEST_REDIS_URL")
    if database_url and redis_url:
        base = redis_url.rsplit("/", 1)[0]
        redis_url, broker_url = f"{base}/0", os.environ.get("TEST_BROKER_URL") or f"{base}/1"
    else:
        from portal.infrastructure.embedded import EmbeddedServers

        # As `up` runs them: the live view's Valkey and the broker's apart.
        servers = EmbeddedServers(data_dir)
        EMBEDDED["servers"] = servers
        urls = servers.start()
        database_url, redis_url, broker_url = urls.database_url, urls.redis_url, urls.broker_url
    for name, value in TEST_ENV.items():
        os.environ[name] = value
    configured = Settings(
        data_dir=data_dir,
        database_url=database_url,
        redis_url=redis_url,
        broker_url=broker_url,
        persist_max_retries=2,
        persist_min_backoff_ms=100,
        persist_max_backoff_ms=300,
        broker_heartbeat_timeout_ms=2000,
        broker_maintenance_chance=1_000_000,
        catalog_cache_seconds=0.0,
        entitlement_cache_seconds=0.0,
        # What the web process itself sends (password links) goes to the same sinks.
        smtp_url=TEST_ENV["PORTAL_SMTP_URL"],
        public_url=TEST_ENV["PORTAL_PUBLIC_URL"],
        destination_allow_networks=parse_networks(TEST_ENV["PORTAL_DESTINATION_ALLOW_NETWORKS"]),
    )
    migrate(configured)
    setup_broker(configured)
    yield configured
    if servers is not None:
        servers.stop()
    shutil.rmtree(data_dir, ignore_errors=True)


# Every table, from the models (the tests empty each of them before every test).
TABLES = tuple(table.name for table in reversed(metadata.sorted_tables))


_EMPTYING: list[str] = []


async def _emptying_sql(conn: asyncpg.Connection) -> str:
    """Empty every table and restart every id sequence, as `TRUNCATE ... RESTART IDENTITY`
    would, in about 2 ms instead of 100 (a test's tables hold a few rows; TRUNCATE makes
    new files for each of 30 tables and their indexes). Foreign keys are not checked
    meanwhile (replica role), so the order of the deletes does not matter."""
    if not _EMPTYING:
        sequences = [
            r[0]
            for r in await conn.fetch("SELECT format('%I.%I', schemaname, sequencename) FROM pg_sequences")
        ]
        resets = ", ".join(f"setval('{name}', 1, false)" for name in sequences)
        _EMPTYING.append(
            "; ".join(
                [
                    "SET session_replication_role = replica",
                    *(f"DELETE FROM {table}" for table in TABLES),
                    "SET session_replication_role = DEFAULT",
                    f"SELECT {resets}",
                ]
            )
        )
    return _EMPTYING[0]


@pytest.fixture(autouse=True)
async def clean(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Every test that uses the servers starts with empty tables, an empty live view and
    an empty broker. Pure tests do not start the servers at all."""
    if "settings" not in request.fixturenames:
        yield
        return
    settings: Settings = request.getfixturevalue("settings")
    assert settings.database_url and settings.redis_url and settings.broker_url
    # A running worker may still hold batches of the previous test: let it finish them, or
    # it would commit them into this test's fresh tables.
    if any(w.process is not None and w.process.poll() is None for w in RUNNING_WORKERS):
        redis = async_client(settings.redis_url)
        with contextlib.suppress(AssertionError):
            await wait_until_persisted(redis, timeout=10.0)
        await redis.aclose()
        # ...and the jobs it is running or has yet to run (an event correction read before
        # the tables are emptied, applied to the next test's live view after: seen in CI).
        broker = async_client(settings.broker_url)
        with contextlib.suppress(AssertionError):
            await wait_for(lambda: _queues_idle(broker), timeout=5.0, what="the previous test's jobs")
        await broker.aclose()
    conn = await asyncpg.connect(settings.database_url)
    await conn.execute(await _emptying_sql(conn))
    await conn.close()
    for url in (settings.redis_url, settings.broker_url):
        redis = async_client(url)  # REDIS_URL may name a cluster (tests/cluster)
        await flush(redis)
        await redis.aclose()
    # The live view starts "built": a test that wants a rebuild deletes the marker.
    redis = async_client(settings.redis_url)
    await redis.set(live_keys.BUILT_KEY, "test")
    await redis.aclose()
    forget_known()
    yield


async def _queues_idle(broker: Redis) -> bool:
    """No message of any queue waiting or being worked on (retries waiting their delay and
    dead letters aside)."""
    for queue in QUEUES:
        if await broker.hlen(redis_queue_keys(queue).messages):
            return False
    return True


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = async_client(settings.redis_url or "", decode_responses=True)
    yield client
    await client.aclose()


@pytest.fixture
async def pg(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(settings.database_url)
    yield conn
    await conn.close()


@pytest.fixture(scope="session")
def app(settings: Settings) -> Litestar:
    """One app for the session's tests: building one (registering every route) costs about
    0.3 s. Each test's client runs its own lifespan, so its state (pools, caches, the key
    cache, the clock) is new; the app holds nothing else between tests."""
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(app=app) as test_client:
        yield test_client


async def _key(settings: Settings, scope: str) -> str:
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    async with transaction(session_factory(engine)) as session:
        _, token = await create_key(session, scope=scope, name=f"test {scope}")  # type: ignore[arg-type]
    await engine.dispose()
    return token


@pytest.fixture
async def admin_key(settings: Settings) -> str:
    return await _key(settings, "admin")


@pytest.fixture
async def ingest_key(settings: Settings) -> str:
    return await _key(settings, "ingest")


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


RUNNING_WORKERS: set[WorkerProcess] = set()


class WorkerProcess:
    """A real `dramatiq workers.main` process against the test servers."""

    def __init__(
        self, settings: Settings, queues: tuple[str, ...] = ("ingest", "maintenance", "alerts")
    ) -> None:
        self.settings = settings
        self.queues = queues
        self.process: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="worker-", suffix=".log")[1])

    def start(self) -> None:
        RUNNING_WORKERS.add(self)
        env = dict(os.environ)
        env.update(TEST_ENV)
        env.update(
            {
                "DATABASE_URL": self.settings.database_url or "",
                "REDIS_URL": self.settings.redis_url or "",
                "BROKER_URL": self.settings.broker_url or "",
                # The data dir's generated secret key (portal/infrastructure/settings.py) decrypts what the
                # tests' in-process app stored.
                "PORTAL_DATA_DIR": str(self.settings.data_dir),
            }
        )
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dramatiq",
                "workers.main",
                "--processes",
                "1",
                "--threads",
                "2",
                "--queues",
                *self.queues,
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no acks."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="session")
def shared_worker(settings: Settings) -> Iterator[WorkerProcess]:
    """One worker for the tests that only need one running (starting one costs seconds)."""
    process = WorkerProcess(settings)
    process.start()
    yield process
    process.stop()


@pytest.fixture
def worker(shared_worker: WorkerProcess) -> WorkerProcess:
    if shared_worker.process is None or shared_worker.process.poll() is not None:
        shared_worker.start()
    return shared_worker


@pytest.fixture
def own_worker(settings: Settings) -> Iterator[WorkerProcess]:
    """A worker this test may kill, and the only one running while it does."""
    for other in RUNNING_WORKERS:
        other.stop()
    process = WorkerProcess(settings)
    process.start()
    yield process
    process.stop()


async def wait_until_persisted(redis: Redis, timeout: float = 30.0) -> None:
    """Wait until no accepted batch is in flight (all of them are in Postgres)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await redis.zcard(live_keys.INFLIGHT_KEY) == 0:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("accepted batches were not persisted in time")


@pytest.fixture
def embedded() -> Any:
    """The embedded servers, for tests that stop and restart them."""
    servers = EMBEDDED.get("servers")
    if servers is None:
        pytest.fail("this test stops servers; run it against the embedded ones")
    return servers


async def wait_for(predicate: Any, *, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
