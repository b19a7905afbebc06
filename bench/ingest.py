"""Ingest benchmark: `python -m bench.ingest` (`make bench`).

Starts everything on this machine (embedded Postgres and Valkey in a fresh temp data dir,
or the servers DATABASE_URL / REDIS_URL name), the web tier and the Dramatiq workers as
the real `usage-portal` subprocesses, and drives them over HTTP from this process:

1. batch: 1000-event batches from several connections for `--duration` s. Accepted
   events/s from the 202 answers; persisted events/s from `event_ledger` (rows whose
   `persisted_at` falls in the same window), and how long the backlog takes to drain.
2. single: one event per request for `--single-duration` s: requests/s, latency p50/p99.
3. lag: batches at half the sustained rate of phase 1 (open loop) for `--lag-duration`
   s; accepted-to-persisted lag p50/p99 from `event_ledger.persisted_at - received_at`.

Prints a table of figures, CPU per role, the machine and the settings, and PASS/MISS
against the issue's targets. Always exits 0 once it has measured; it stops what it
started (also on Ctrl-C) and deletes the temp data dir unless --keep-data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import msgspec
from redis.asyncio import Redis

from bench import serverstats
from bench.httpclient import HttpConnection
from bench.procstat import ROLES, CpuUsage, Roles, machine_times, snapshot, usage_between

ROOT = Path(__file__).resolve().parent.parent
BATCH_PATH = "/v1/events/batch"
SINGLE_PATH = "/v1/events"
INFLIGHT_KEY = "live:inflight"  # portal.live.keys.INFLIGHT_KEY

TARGET_BATCH_EPS = 20_000
TARGET_LAG_P99_S = 2.0
TARGET_LAG_RATE = TARGET_BATCH_EPS // 2

ZONES = [
    "UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu",
    "Australia/Adelaide", "America/St_Johns", "Pacific/Chatham", "America/Los_Angeles",
    "Asia/Tokyo",
]
REGIONS = ["eu-west", "us-east", "us-west", "ap-south"]


def log(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- options


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


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phase", action="append", choices=["all", "batch", "single", "lag"],
                        help="phase(s) to run (repeatable; default all)")
    parser.add_argument("--duration", type=float, default=None,
                        help="batch phase seconds (default 60; 10 with --quick)")
    parser.add_argument("--single-duration", type=float, default=None,
                        help="single-event phase seconds (default 20; 5 with --quick)")
    parser.add_argument("--lag-duration", type=float, default=None,
                        help="lag phase seconds (default 30; 10 with --quick)")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="connections sending batches (closed loop; default 8)")
    parser.add_argument("--single-concurrency", type=int, default=32,
                        help="connections sending single events (closed loop; default 32)")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
    parser.add_argument("--lag-rate", type=float, default=None,
                        help="events/s of the lag phase (default: half the batch phase's "
                             f"sustained rate, or {TARGET_LAG_RATE} if that phase is not run)")
    parser.add_argument("--web-workers", type=int, default=2, help="web processes (2)")
    parser.add_argument("--web-mode", choices=["workers", "ports"], default="workers",
                        help="workers: one `usage-portal web --workers N` (uvicorn processes "
                             "sharing one socket; default); ports: N single-process web "
                             "servers on N ports, connections spread evenly, as behind a "
                             "load balancer")
    parser.add_argument("--worker-processes", type=int, default=2,
                        help="Dramatiq worker processes (2)")
    parser.add_argument("--worker-threads", type=int, default=4,
                        help="Dramatiq threads per worker process (4)")
    parser.add_argument("--drain-timeout", type=float, default=300.0,
                        help="seconds to wait for the backlog to be persisted after a phase")
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    parser.add_argument("--keep-data", action="store_true",
                        help="keep the temp data dir (and its logs) at the end")
    parser.add_argument("--data-parent", default=None,
                        help="where to create the temp data dir (default: the system temp dir)")
    parser.add_argument("--json", dest="json_out", default=None,
                        help="also write the results as JSON to this file")
    parser.add_argument("--wait-idle", type=float, default=0.0, metavar="SECONDS",
                        help="before starting, wait up to this long for the machine to be "
                             "idle (<10%% busy); it always warns if it is not")
    parser.add_argument("--event-ids", choices=["random", "sequential"], default="random",
                        help="random (UUID-like, default) or sequential event ids")
    parser.add_argument("--pg-set", action="append", metavar="NAME=VALUE",
                        help="ALTER SYSTEM SET for the embedded Postgres before the run, to try "
                             "a setting (repeatable), e.g. --pg-set max_wal_size=16GB")
    parser.add_argument("--valkey-set", action="append", metavar="NAME=VALUE",
                        help="CONFIG SET on Valkey before the run (repeatable), e.g. "
                             "--valkey-set auto-aof-rewrite-percentage=0")
    parser.add_argument("--pg-stats", action="store_true",
                        help="load pg_stat_statements into the embedded Postgres and print "
                             "the statements that took the most time (adds a little overhead)")
    args = parser.parse_args(argv)
    phases = tuple(args.phase or ["all"])
    if "all" in phases:
        phases = ("batch", "single", "lag")
    ordered = tuple(p for p in ("batch", "single", "lag") if p in phases)

    def pick(value: float | None, normal: float, quick: float) -> float:
        return value if value is not None else (quick if args.quick else normal)

    return Options(
        phases=ordered,
        duration=pick(args.duration, 60, 10),
        single_duration=pick(args.single_duration, 20, 5),
        lag_duration=pick(args.lag_duration, 30, 10),
        concurrency=args.concurrency,
        single_concurrency=args.single_concurrency,
        batch_size=args.batch_size,
        lag_rate=args.lag_rate,
        web_workers=args.web_workers,
        web_mode=args.web_mode,
        worker_processes=args.worker_processes,
        worker_threads=args.worker_threads,
        drain_timeout=args.drain_timeout,
        keep_data=args.keep_data,
        data_parent=args.data_parent,
        json_out=args.json_out,
        quick=args.quick,
        pg_stats=args.pg_stats,
        wait_idle=args.wait_idle,
        event_ids=args.event_ids,
        pg_settings=tuple(args.pg_set or ()),
        valkey_settings=tuple(args.valkey_set or ()),
    )


# --------------------------------------------------------------------------- environment


@dataclass(slots=True)
class Environment:
    """Servers, URLs and the subprocesses this run started (stopped by `close()`)."""

    data_dir: Path
    database_url: str = ""
    redis_url: str = ""
    broker_url: str = ""
    servers: Any = None  # portal.embedded.EmbeddedServers when we started them
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ports: list[int] = field(default_factory=list)

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.database_url,
            "REDIS_URL": self.redis_url,
            "BROKER_URL": self.broker_url,
            "PORTAL_DATA_DIR": str(self.data_dir),
        })
        return env

    def close(self, *, keep_data: bool) -> None:
        for name, process in self.processes.items():
            if process.poll() is None:
                log(f"stopping {name} (pid {process.pid})")
                # The leader only: it stops its own children. Dramatiq's children take a
                # second SIGTERM (from a group-wide signal) as "kill now", and its main
                # process then hangs; the group is swept with SIGKILL below.
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # Children of a process group leader that was killed first may linger: sweep the
        # groups we created once more.
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
        if self.servers is not None:
            log("stopping embedded Postgres and Valkey")
            self.servers.stop()
        if keep_data:
            log(f"data kept in {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_servers(env: Environment, opts: Options) -> None:
    database_url = os.environ.get("DATABASE_URL")
    redis_url = os.environ.get("REDIS_URL")
    if database_url and redis_url:
        log("using the servers DATABASE_URL and REDIS_URL name")
        env.database_url, env.redis_url = database_url, redis_url
    else:
        from portal.embedded import EmbeddedServers

        log(f"starting embedded Postgres and Valkey in {env.data_dir}")
        env.servers = EmbeddedServers(env.data_dir)
        urls = env.servers.start()
        # Commit timestamps give the exact moment each batch became visible (persisted_at
        # is the transaction's start); both settings need a restart (which picks a new port).
        asyncio.run(_alter_system(urls.database_url, opts))
        env.servers.postgres.stop()
        urls = env.servers.start()
        env.database_url, env.redis_url = urls.database_url, urls.redis_url
    env.broker_url = os.environ.get("BROKER_URL") or env.redis_url.rsplit("/", 1)[0] + "/1"


async def _alter_system(database_url: str, opts: Options) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("ALTER SYSTEM SET track_commit_timestamp = on")
        if opts.pg_stats:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        for item in opts.pg_settings:
            name, _, value = item.partition("=")
            log(f"postgres: ALTER SYSTEM SET {name} = {value!r}")
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


def postmaster_pid(env: Environment) -> int:
    return int((env.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def _portal_command() -> list[str]:
    script = Path(sys.executable).parent / "usage-portal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "portal.cli"]


def start_tiers(env: Environment, opts: Options) -> None:
    child_env = env.child_env()
    command = _portal_command()
    tiers: dict[str, list[str]] = {}
    if opts.web_mode == "workers":
        env.ports = [_free_port()]
        tiers["web"] = [*command, "web", "--port", str(env.ports[0]),
                        "--workers", str(opts.web_workers)]
    else:  # one single-process web server per port, as behind a load balancer
        env.ports = [_free_port() for _ in range(opts.web_workers)]
        for i, port in enumerate(env.ports):
            tiers[f"web{i}"] = [*command, "web", "--port", str(port), "--workers", "1"]
    tiers["worker"] = [*command, "worker", "--processes", str(opts.worker_processes),
                       "--threads", str(opts.worker_threads)]
    for name, argv in tiers.items():
        logfile = (env.data_dir / f"{name}.log").open("ab")
        log(f"starting {name}: {' '.join(argv[1:])}")
        env.processes[name] = subprocess.Popen(
            argv, cwd=ROOT, env=child_env, stdout=logfile, stderr=subprocess.STDOUT,
            start_new_session=True)  # own process group: stopped as a whole, immune to Ctrl-C
    _wait_healthy(env)


def _wait_healthy(env: Environment, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = list(env.ports)
    while time.monotonic() < deadline:
        for name, process in env.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with {process.returncode}:\n"
                                   + tail(env.data_dir / f"{name}.log"))
        try:
            url = f"http://127.0.0.1:{pending[0]}/healthz"
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    pending.pop(0)
                    if not pending:
                        return
                    continue
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError("the web tier did not become healthy:\n" + tail(env.data_dir / "web.log"))


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def check_alive(env: Environment) -> None:
    for name, process in env.processes.items():
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode} during the run:\n"
                               + tail(env.data_dir / f"{name}.log"))


# --------------------------------------------------------------------------- catalog


@dataclass(frozen=True, slots=True)
class Catalog:
    run: str
    customers: list[str]
    sum_meter: str
    count_meter: str
    max_meter: str
    ingest_key: str


async def create_catalog(env: Environment, run: str) -> Catalog:
    """10 customers in mixed zones (:30/:45 offsets, DST and none), a sum meter grouped by
    region, a count meter and a max meter, and an ingest key."""
    from portal.catalog.schemas import CustomerCreate, MeterCreate
    from portal.catalog.service import create_customer, create_meter
    from portal.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    customers = [f"bench-{run}-c{i:02d}" for i in range(len(ZONES))]
    meters = {
        "sum": MeterCreate(metric_name=f"bench_{run}_api_calls", aggregation="sum", unit="call",
                           group_by=["region"]),
        "count": MeterCreate(metric_name=f"bench_{run}_requests", aggregation="count",
                             unit="request"),
        "max": MeterCreate(metric_name=f"bench_{run}_storage_gb", aggregation="max", unit="GB"),
    }
    engine = create_engine(env.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            for customer_id, zone in zip(customers, ZONES, strict=True):
                await create_customer(session, CustomerCreate(
                    id=customer_id, name=f"Bench {customer_id}", timezone=zone))
            for meter in meters.values():
                await create_meter(session, meter)
            _, token = await create_key(session, scope="ingest", name=f"bench {run}")
    finally:
        await engine.dispose()
    return Catalog(run, customers, meters["sum"].metric_name, meters["count"].metric_name,
                   meters["max"].metric_name, token)


# --------------------------------------------------------------------------- load


class EventFactory:
    """Unique, valid events as JSON text, cheaply: a few string formats per event.

    Event ids are `<tag><run>-<unique part>`, so each phase's rows are found in
    `event_ledger` by prefix. The unique part is random (like the UUIDs clients usually
    send, which land all over the ledger's primary-key index) followed by a sequence
    number (which makes it unique), or only the sequence number (`sequential`, the
    friendliest case for the index). Timestamps spread over the last two hours (several
    local hours per customer); 60 % sum events (with a region), 30 % count, 10 % max.
    """

    def __init__(self, catalog: Catalog, seed: int = 1, *, random_ids: bool = True) -> None:
        self.catalog = catalog
        self.rng = random.Random(seed)
        self.seq = 0
        self.random_ids = random_ids
        self._heads: list[str] = []
        for customer in catalog.customers:
            for metric, weight in ((catalog.sum_meter, 6), (catalog.count_meter, 3),
                                   (catalog.max_meter, 1)):
                self._heads += [f'"customerId":"{customer}","metricName":"{metric}",'] * weight

    def prefix(self, tag: str) -> str:
        return f"{tag}{self.catalog.run}-"

    def _events(self, tag: str, n: int) -> Iterator[str]:
        rng = self.rng
        now_ms = int(time.time() * 1000)
        prefix = self.prefix(tag)
        heads = self._heads
        for _ in range(n):
            self.seq += 1
            unique = (f"{rng.getrandbits(64):016x}{self.seq:08x}" if self.random_ids
                      else f"{self.seq:09d}")
            yield (
                f'{{"eventId":"{prefix}{unique}","timestamp":'
                f'{now_ms - int(rng.random() * 7_200_000)},{heads[int(rng.random() * len(heads))]}'
                f'"quantity":{int(rng.random() * 5000) / 100},'
                f'"dimensions":{{"region":"{REGIONS[self.seq & 3]}","tier":"pro"}},'
                f'"metadata":{{"source":"bench","version":"1"}}}}'
            )

    def batch(self, tag: str, n: int) -> bytes:
        return ('{"events":[' + ",".join(self._events(tag, n)) + "]}").encode()

    def single(self, tag: str) -> bytes:
        return next(self._events(tag, 1)).encode()


class _Answer(msgspec.Struct):
    accepted: int
    duplicates: int
    rejected: list[Any]


_decode_answer = msgspec.json.Decoder(_Answer).decode


@dataclass(slots=True)
class LoadStats:
    """What the load generator saw during one phase."""

    started_wall: float = 0.0
    ended_wall: float = 0.0
    started_mono: float = 0.0
    requests: int = 0
    events_sent: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    sample_errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (t since start, accepted)
    late_sends: int = 0
    extra_connections: int = 0
    loadgen_cpu_s: float = 0.0
    _cpu0: float = 0.0

    @property
    def elapsed(self) -> float:
        return self.ended_wall - self.started_wall

    def begin(self) -> None:
        self.started_wall = time.time()
        self.started_mono = time.monotonic()
        self._cpu0 = time.process_time()

    def end(self) -> None:
        self.ended_wall = time.time()
        self.loadgen_cpu_s = time.process_time() - self._cpu0


async def send(conn: HttpConnection, path: str, body: bytes, events: int, stats: LoadStats,
               give_up_at: float) -> None:
    """One request; a 503 is retried (as a client must) until `give_up_at`."""
    while True:
        started = time.perf_counter()
        try:
            status, payload = await conn.post(path, body)
        except Exception as exc:  # connection trouble: counted as status 0, retried
            stats.statuses[0] += 1
            if len(stats.sample_errors) < 3:
                stats.sample_errors.append(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.1)
            if time.monotonic() > give_up_at:
                return
            continue
        latency = time.perf_counter() - started
        stats.requests += 1
        stats.statuses[status] += 1
        if status == 202:
            answer = _decode_answer(payload)
            stats.events_sent += events
            stats.accepted += answer.accepted
            stats.duplicates += answer.duplicates
            stats.rejected += len(answer.rejected)
            if answer.rejected and len(stats.sample_errors) < 3:
                stats.sample_errors.append(f"rejected: {answer.rejected[:2]}")
            stats.latencies.append(latency)
            stats.timeline.append((time.monotonic() - stats.started_mono, answer.accepted))
            return
        if len(stats.sample_errors) < 3:
            stats.sample_errors.append(f"{status}: {payload[:300]!r}")
        if status == 503 and time.monotonic() < give_up_at:
            await asyncio.sleep(0.2)
            continue
        return


async def open_connections(ports: list[int], key: str, n: int) -> list[HttpConnection]:
    """`n` keep-alive connections, spread round-robin over `ports`.

    Opened one by one, 20 ms apart: uvicorn's worker processes share one listening
    socket and each accepts every connection pending when it wakes, so connections
    opened at once all land on one process."""
    conns = []
    for i in range(n):
        conn = HttpConnection("127.0.0.1", ports[i % len(ports)], {"Authorization": f"Bearer {key}"})
        await conn.connect()
        conns.append(conn)
        await asyncio.sleep(0.02)
    return conns


async def closed_loop(conns: list[HttpConnection], path: str, make_body: Callable[[], bytes],
                      events_per_body: int, duration: float, stats: LoadStats) -> None:
    """Each connection sends its next request as soon as the previous one is answered."""
    stats.begin()
    deadline = time.monotonic() + duration

    async def run(conn: HttpConnection) -> None:
        while time.monotonic() < deadline:
            await send(conn, path, make_body(), events_per_body, stats, deadline + 30)

    await asyncio.gather(*(run(c) for c in conns))
    stats.end()


async def open_loop(ports: list[int], key: str, make_body: Callable[[], bytes], events_per_body: int,
                    rate: float, duration: float, stats: LoadStats) -> None:
    """Requests on a fixed schedule (`rate` events/s) whatever the answers take; a free
    connection is taken from a pool, or a new one opened if all are busy."""
    pool: list[HttpConnection] = await open_connections(ports, key, 4)
    interval = events_per_body / rate
    tasks: set[asyncio.Task[None]] = set()

    async def fire(body: bytes) -> None:
        if pool:
            conn = pool.pop()
        else:
            stats.extra_connections += 1
            port = ports[stats.extra_connections % len(ports)]
            conn = HttpConnection("127.0.0.1", port, {"Authorization": f"Bearer {key}"})
        try:
            await send(conn, BATCH_PATH, body, events_per_body, stats, time.monotonic() + 30)
        finally:
            pool.append(conn)

    stats.begin()
    start = time.monotonic()
    k = 0
    while start + k * interval < start + duration:
        body = make_body()
        delay = start + k * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -interval:
            stats.late_sends += 1
        task = asyncio.create_task(fire(body))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    await asyncio.gather(*tasks)
    stats.end()
    await asyncio.gather(*(c.close() for c in pool))


# --------------------------------------------------------------------------- persisted side


@dataclass(slots=True)
class Persisted:
    """What Postgres says about one phase's events."""

    total: int = 0
    in_window: int = 0
    first_at: float | None = None
    last_at: float | None = None
    drained: bool = False
    lag_p50_s: float | None = None
    lag_p99_s: float | None = None
    lag_p999_s: float | None = None
    lag_max_s: float | None = None
    # From the commit timestamps of the persisting transactions, when Postgres tracks them.
    commit_lag_p50_s: float | None = None
    commit_lag_p99_s: float | None = None
    commit_lag_max_s: float | None = None
    per_second: dict[int, int] = field(default_factory=dict)  # second since phase start -> rows
    failed_events: int = 0


async def wait_drained(pg: asyncpg.Connection, redis: Redis, catalog: Catalog, prefix: str,
                       expected: int, timeout: float) -> bool:
    """Wait until every accepted event of the phase is in `event_ledger`.

    Polls the (cheap) in-flight set of the live view and counts the ledger only when it is
    empty, or every 5 s, so the polling does not load Postgres."""
    deadline = time.monotonic() + timeout
    last_count = 0.0
    while time.monotonic() < deadline:
        inflight = await redis.zcard(INFLIGHT_KEY)
        if inflight == 0 or time.monotonic() - last_count > 5:
            last_count = time.monotonic()
            done = await count_persisted(pg, catalog, prefix)
            if done >= expected:
                return True
        await asyncio.sleep(0.1)
    return False


async def count_persisted(pg: asyncpg.Connection, catalog: Catalog, prefix: str) -> int:
    return int(await pg.fetchval(
        "SELECT count(*) FROM event_ledger WHERE customer_id = ANY($1::text[]) "
        "AND event_id LIKE $2", catalog.customers, prefix + "%"))


async def measure_persisted(pg: asyncpg.Connection, catalog: Catalog, prefix: str,
                            stats: LoadStats, drained: bool) -> Persisted:
    start = datetime.fromtimestamp(stats.started_wall, UTC)
    end = datetime.fromtimestamp(stats.ended_wall, UTC)
    row = await pg.fetchrow(
        "SELECT count(*) AS total, count(*) FILTER (WHERE persisted_at <= $3) AS in_window, "
        "extract(epoch FROM min(persisted_at)) AS first_at, "
        "extract(epoch FROM max(persisted_at)) AS last_at, "
        "percentile_cont(ARRAY[0.5, 0.99, 0.999]) WITHIN GROUP "
        "  (ORDER BY extract(epoch FROM persisted_at - received_at)) AS lag, "
        "extract(epoch FROM max(persisted_at - received_at)) AS lag_max "
        "FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
        catalog.customers, prefix + "%", end)
    assert row is not None
    out = Persisted(total=int(row["total"]), in_window=int(row["in_window"]), drained=drained)
    if out.total:
        out.first_at = float(row["first_at"])
        out.last_at = float(row["last_at"])
        out.lag_p50_s, out.lag_p99_s, out.lag_p999_s = (float(v) for v in row["lag"])
        out.lag_max_s = float(row["lag_max"])
    rows = await pg.fetch(
        "SELECT floor(extract(epoch FROM persisted_at - $3::timestamptz))::int AS s, "
        "count(*) AS n FROM event_ledger WHERE customer_id = ANY($1::text[]) "
        "AND event_id LIKE $2 GROUP BY 1 ORDER BY 1",
        catalog.customers, prefix + "%", start)
    out.per_second = {int(r["s"]): int(r["n"]) for r in rows}
    if out.total and await pg.fetchval("SHOW track_commit_timestamp") == "on":
        lag = await pg.fetchrow(
            "SELECT percentile_cont(ARRAY[0.5, 0.99]) WITHIN GROUP (ORDER BY "
            "  extract(epoch FROM pg_xact_commit_timestamp(xmin) - received_at)) AS lag, "
            "extract(epoch FROM max(pg_xact_commit_timestamp(xmin) - received_at)) AS lag_max "
            "FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
            catalog.customers, prefix + "%")
        if lag is not None and lag["lag"] is not None:
            out.commit_lag_p50_s, out.commit_lag_p99_s = (float(v) for v in lag["lag"])
            out.commit_lag_max_s = float(lag["lag_max"])
    out.failed_events = int(await pg.fetchval(
        "SELECT count(*) FROM failed_events WHERE customer_id = ANY($1::text[]) "
        "AND event_id LIKE $2", catalog.customers, prefix + "%"))
    return out


# --------------------------------------------------------------------------- phases


@dataclass(slots=True)
class PhaseResult:
    name: str
    load: LoadStats
    persisted: Persisted
    cpu: CpuUsage
    valkey: list[serverstats.Stat] = field(default_factory=list)
    statements: list[serverstats.Stat] = field(default_factory=list)
    counters: tuple[dict[str, float], dict[str, float]] = ({}, {})
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def accepted_eps(self) -> float:
        return self.load.accepted / self.load.elapsed if self.load.elapsed else 0.0

    @property
    def persisted_eps(self) -> float:
        """Events whose persist transaction started within the load window, per second."""
        return self.persisted.in_window / self.load.elapsed if self.load.elapsed else 0.0

    @property
    def drain_s(self) -> float | None:
        if self.persisted.last_at is None:
            return None
        return max(0.0, self.persisted.last_at - self.load.ended_wall)

    @property
    def end_to_end_eps(self) -> float | None:
        if self.persisted.last_at is None:
            return None
        span = max(self.persisted.last_at, self.load.ended_wall) - self.load.started_wall
        return self.persisted.total / span if span > 0 else None


@dataclass(slots=True)
class Bench:
    opts: Options
    env: Environment
    catalog: Catalog
    roles: Roles
    pg: asyncpg.Connection
    redis: Redis
    factory: EventFactory
    pg_stats: bool = False
    results: dict[str, PhaseResult] = field(default_factory=dict)

    async def _measured(self, name: str, tag: str,
                        body: Callable[[LoadStats], Awaitable[None]]) -> PhaseResult:
        stats = LoadStats()
        valkey_before = await serverstats.valkey_commands(self.redis)
        pg_before = await serverstats.pg_statements(self.pg) if self.pg_stats else {}
        counters_before = await serverstats.counters(self.pg, self.redis)
        before = snapshot(self.roles)
        await body(stats)
        after = snapshot(self.roles)
        valkey_after = await serverstats.valkey_commands(self.redis)
        pg_after = await serverstats.pg_statements(self.pg) if self.pg_stats else {}
        counters_after = await serverstats.counters(self.pg, self.redis)
        check_alive(self.env)
        prefix = self.factory.prefix(tag)
        # Every event a 202 counted as accepted must reach the ledger.
        expected = stats.accepted
        log(f"{name}: load done ({stats.accepted:,} accepted in {stats.elapsed:.1f} s); "
            f"waiting for the backlog to be persisted")
        drained = await wait_drained(self.pg, self.redis, self.catalog, prefix, expected,
                                     self.opts.drain_timeout)
        if not drained:
            log(f"{name}: backlog NOT drained within {self.opts.drain_timeout:.0f} s")
        persisted = await measure_persisted(self.pg, self.catalog, prefix, stats, drained)
        result = PhaseResult(name, stats, persisted, usage_between(before, after),
                             valkey=serverstats.delta(valkey_before, valkey_after),
                             statements=serverstats.delta(pg_before, pg_after),
                             counters=(counters_before, counters_after))
        self.results[name] = result
        return result

    async def warm_up(self) -> None:
        """A few batches and single events, persisted, so pools and caches are warm."""
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, 2)
        stats = LoadStats()
        await closed_loop(conns, BATCH_PATH, lambda: self.factory.batch("W", self.opts.batch_size),
                          self.opts.batch_size, 3.0, stats)
        for _ in range(50):
            await send(conns[0], SINGLE_PATH, self.factory.single("W"), 1, stats,
                       time.monotonic() + 10)
        await asyncio.gather(*(c.close() for c in conns))
        if stats.accepted == 0:
            raise RuntimeError(f"warm-up: nothing accepted: {stats.statuses} {stats.sample_errors}")
        await wait_drained(self.pg, self.redis, self.catalog, self.factory.prefix("W"),
                           stats.accepted, self.opts.drain_timeout)
        log(f"warm-up: {stats.accepted:,} events accepted and persisted")

    async def batch_phase(self) -> PhaseResult:
        opts = self.opts
        log(f"batch: {opts.batch_size}-event batches on {opts.concurrency} connections "
            f"for {opts.duration:.0f} s")
        conns = await open_connections(self.env.ports, self.catalog.ingest_key, opts.concurrency)

        async def body(stats: LoadStats) -> None:
            await closed_loop(conns, BATCH_PATH, lambda: self.factory.batch("B", opts.batch_size),
                              opts.batch_size, opts.duration, stats)

        result = await self._measured("batch", "B", body)
        await asyncio.gather(*(c.close() for c in conns))
        result.settings = {"batch_size": opts.batch_size, "connections": opts.concurrency,
                           "duration_s": opts.duration}
        return result

    async def single_phase(self) -> PhaseResult:
        opts = self.opts
        log(f"single: one event per request on {opts.single_concurrency} connections "
            f"for {opts.single_duration:.0f} s")
        conns = await open_connections(self.env.ports, self.catalog.ingest_key,
                                       opts.single_concurrency)

        async def body(stats: LoadStats) -> None:
            await closed_loop(conns, SINGLE_PATH, lambda: self.factory.single("S"), 1,
                              opts.single_duration, stats)

        result = await self._measured("single", "S", body)
        await asyncio.gather(*(c.close() for c in conns))
        result.settings = {"connections": opts.single_concurrency,
                           "duration_s": opts.single_duration}
        return result

    async def lag_phases(self) -> None:
        """At half the batch phase's sustained rate (or --lag-rate); when that is below
        the rate the target names, once more at that rate, so the target is judged."""
        opts = self.opts
        rate = opts.lag_rate
        if rate is None:
            batch = self.results.get("batch")
            rate = (min(batch.accepted_eps, batch.persisted_eps) / 2 if batch
                    else float(TARGET_LAG_RATE))
        await self.lag_phase("lag", "L", max(rate, 100.0))
        if opts.lag_rate is None and rate < TARGET_LAG_RATE * 0.99:
            await self.lag_phase("lag@target", "T", float(TARGET_LAG_RATE))

    async def lag_phase(self, name: str, tag: str, rate: float) -> PhaseResult:
        opts = self.opts
        log(f"{name}: {opts.batch_size}-event batches at {rate:,.0f} events/s (open loop) "
            f"for {opts.lag_duration:.0f} s")

        async def body(stats: LoadStats) -> None:
            await open_loop(self.env.ports, self.catalog.ingest_key,
                            lambda: self.factory.batch(tag, opts.batch_size), opts.batch_size,
                            rate, opts.lag_duration, stats)

        result = await self._measured(name, tag, body)
        result.settings = {"rate_eps": rate, "batch_size": opts.batch_size,
                           "duration_s": opts.lag_duration}
        return result


# --------------------------------------------------------------------------- report


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


def fmt_ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:,.1f} ms"


def fmt_s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:,.2f} s"


def code_version() -> str:
    """The commit measured, and whether the tree had changes outside bench/ (the figures
    then describe uncommitted code)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--", ".", ":!bench"], cwd=ROOT,
                                check=True, capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (f" + uncommitted changes in {len(status.splitlines())} files" if status else "")


def machine_info() -> dict[str, Any]:
    model = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_gb = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().splitlines()[0].split()[1])
        mem_gb = round(mem_kb / 1024 / 1024, 1)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "memory_gb": mem_gb,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "code": code_version(),
    }


async def server_info(pg: asyncpg.Connection, redis: Redis) -> dict[str, Any]:
    info = await redis.info("server")
    persistence = await redis.config_get("appendfsync")
    return {
        "postgres": await pg.fetchval("SHOW server_version"),
        "postgres_fsync": await pg.fetchval("SHOW fsync"),
        "postgres_synchronous_commit": await pg.fetchval("SHOW synchronous_commit"),
        "valkey": info.get("valkey_version") or info.get("redis_version"),
        "valkey_appendfsync": persistence.get("appendfsync") or persistence.get(b"appendfsync"),
    }


def machine_busy_fraction(seconds: float) -> float:
    busy0, total0, _ = machine_times()
    time.sleep(seconds)
    busy1, total1, _ = machine_times()
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else 0.0


def wait_for_idle(max_wait: float) -> float:
    """The machine's busy share over 2 s; with `max_wait`, keep sampling until it is
    below 10 % or the time is up. Another workload on the machine skews every figure."""
    deadline = time.monotonic() + max_wait
    busy = machine_busy_fraction(2.0)
    while busy > 0.1 and time.monotonic() < deadline:
        log(f"machine {100 * busy:.0f}% busy; waiting for it to be idle")
        busy = machine_busy_fraction(5.0)
    if busy > 0.1:
        log(f"WARNING: the machine is {100 * busy:.0f}% busy before the run: something else "
            "is running, and the figures will be pessimistic")
    return busy


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def timeline_rows(result: PhaseResult, step: int = 10) -> list[str]:
    """Accepted/s (client) and persisted/s (ledger) per `step` seconds of the phase."""
    horizon = int(result.load.elapsed + (result.drain_s or 0)) + 1
    accepted: Counter[int] = Counter()
    for t, n in result.load.timeline:
        accepted[int(t // step)] += n
    persisted: Counter[int] = Counter()
    for s, n in result.persisted.per_second.items():
        persisted[max(0, s) // step] += n
    rows = []
    for bucket in range(0, horizon // step + 1):
        a, p = accepted.get(bucket, 0), persisted.get(bucket, 0)
        if a == 0 and p == 0:
            continue
        rows.append(f"    {bucket * step:>4}-{bucket * step + step:<4} s   accepted {a / step:>9,.0f}/s"
                    f"   persisted {p / step:>9,.0f}/s")
    return rows


def _commit_lag(persisted: Persisted) -> list[str]:
    if persisted.commit_lag_p99_s is None:
        return []
    return [f"   lag to commit p50 {fmt_s(persisted.commit_lag_p50_s)}, "
            f"p99 {fmt_s(persisted.commit_lag_p99_s)}, max {fmt_s(persisted.commit_lag_max_s)}   "
            "(commit timestamp - received_at: when the rows became visible)"]


def report(bench: Bench, machine: dict[str, Any], servers: dict[str, Any]) -> dict[str, Any]:
    opts = bench.opts
    out: dict[str, Any] = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
                           "machine": machine, "servers": servers, "phases": {}}
    lines = ["", "=" * 78, "Ingest benchmark", "=" * 78]
    lines.append(f"date      {out['date']}")
    lines.append(f"code      {machine['code']}")
    lines.append(f"machine   {machine['nproc']} CPUs ({machine['cpu_model']}), "
                 f"{machine['memory_gb']} GB, Linux {machine['kernel']}, Python {machine['python']}")
    lines.append(f"servers   Postgres {servers['postgres']} (fsync={servers['postgres_fsync']}, "
                 f"synchronous_commit={servers['postgres_synchronous_commit']}), "
                 f"Valkey {servers['valkey']} (appendfsync={servers['valkey_appendfsync']})")
    lines.append(f"idle      machine {100 * servers['busy_before_start']:.0f}% busy in the 2 s "
                 "before the run (should be ~0)")
    web = (f"`usage-portal web --workers {opts.web_workers}`" if opts.web_mode == "workers"
           else f"{opts.web_workers} x `usage-portal web` on their own ports")
    lines.append(f"settings  web {web}, Dramatiq {opts.worker_processes} "
                 f"processes x {opts.worker_threads} threads, batch size {opts.batch_size}, "
                 f"{opts.event_ids} event ids, "
                 + "".join(f"postgres {x}, " for x in opts.pg_settings)
                 + "".join(f"valkey {x}, " for x in opts.valkey_settings)
                 + "everything incl. the load generator on this machine")
    targets: list[str] = []

    batch = bench.results.get("batch")
    if batch:
        lb = batch.load
        lines += ["", f"1. Batch ingest ({opts.batch_size}-event batches, {opts.concurrency} "
                  f"connections, closed loop, {lb.elapsed:.1f} s)"]
        lines.append(f"   accepted      {batch.accepted_eps:>10,.0f} events/s   "
                     f"({lb.accepted:,} events, {lb.requests:,} requests)")
        lines.append(f"   persisted     {batch.persisted_eps:>10,.0f} events/s   "
                     f"(ledger rows with persisted_at in the same window)")
        lines.append(f"   end to end    {batch.end_to_end_eps or 0:>10,.0f} events/s   "
                     f"(all {batch.persisted.total:,} persisted / first send to last persist)")
        lines.append(f"   backlog drain {fmt_s(batch.drain_s):>10}     after the load stopped"
                     + ("" if batch.persisted.drained else "  (NOT fully drained)"))
        lines.append(f"   batch latency p50 {fmt_ms(pct(lb.latencies, 0.5))}, "
                     f"p99 {fmt_ms(pct(lb.latencies, 0.99))}")
        lines.append(f"   lag (closed loop at full speed) p50 {fmt_s(batch.persisted.lag_p50_s)}, "
                     f"p99 {fmt_s(batch.persisted.lag_p99_s)}")
        lines += _commit_lag(batch.persisted)
        lines += ["   timeline:", *timeline_rows(batch)]
        sustained = min(batch.accepted_eps, batch.persisted_eps)
        targets.append(f"batch ingest >= {TARGET_BATCH_EPS:,} events/s accepted and persisted: "
                       f"{sustained:,.0f}  {verdict(sustained >= TARGET_BATCH_EPS)}")

    single = bench.results.get("single")
    if single:
        ls = single.load
        rps = ls.requests / ls.elapsed if ls.elapsed else 0.0
        lines += ["", f"2. Single-event requests ({opts.single_concurrency} connections, "
                  f"closed loop, {ls.elapsed:.1f} s)"]
        lines.append(f"   requests      {rps:>10,.0f} /s   ({ls.requests:,} requests, "
                     f"{ls.accepted:,} accepted)")
        lines.append(f"   latency       p50 {fmt_ms(pct(ls.latencies, 0.5))}, "
                     f"p99 {fmt_ms(pct(ls.latencies, 0.99))}, "
                     f"max {fmt_ms(max(ls.latencies) if ls.latencies else None)}")
        lines.append(f"   persisted     {single.persisted_eps:>10,.0f} events/s in the window; "
                     f"backlog drain {fmt_s(single.drain_s)}"
                     + ("" if single.persisted.drained else "  (NOT fully drained)"))
        lines += ["   timeline:", *timeline_rows(single, step=5)]

    lag_results = [r for n, r in bench.results.items() if n.startswith("lag")]
    for lag in lag_results:
        ll = lag.load
        rate = float(lag.settings["rate_eps"])
        why = ("the rate the target names" if lag.name == "lag@target"
               else "half the batch phase's sustained rate" if opts.lag_rate is None
               and "batch" in bench.results else "as asked")
        lines += ["", f"3. Accepted-to-persisted lag (open loop at {rate:,.0f} events/s: {why}; "
                  f"{ll.elapsed:.1f} s)"]
        lines.append(f"   accepted      {lag.accepted_eps:>10,.0f} events/s   "
                     f"({ll.accepted:,} events; {ll.late_sends} sends late, "
                     f"{ll.extra_connections} extra connections)")
        lines.append(f"   lag           p50 {fmt_s(lag.persisted.lag_p50_s)}, "
                     f"p99 {fmt_s(lag.persisted.lag_p99_s)}, p99.9 {fmt_s(lag.persisted.lag_p999_s)}, "
                     f"max {fmt_s(lag.persisted.lag_max_s)}   (persisted_at - received_at)")
        lines += _commit_lag(lag.persisted)
        lines.append(f"   batch latency p50 {fmt_ms(pct(ll.latencies, 0.5))}, "
                     f"p99 {fmt_ms(pct(ll.latencies, 0.99))}")
        if not lag.persisted.drained:
            lines.append("   (backlog NOT fully drained: the lag figures cover persisted events only)")

    if lag_results:
        judged = max(lag_results, key=lambda r: float(r.settings["rate_eps"]))
        rate = float(judged.settings["rate_eps"])
        p99 = judged.persisted.lag_p99_s
        ok = p99 is not None and p99 < TARGET_LAG_P99_S and rate >= TARGET_LAG_RATE * 0.99
        note = "" if rate >= TARGET_LAG_RATE * 0.99 else (
            f" (measured at {rate:,.0f} events/s, below the {TARGET_LAG_RATE:,} the target names)")
        targets.append(f"lag p99 < {TARGET_LAG_P99_S:.0f} s at {TARGET_LAG_RATE:,} events/s: "
                       f"{fmt_s(p99)}{note}  {verdict(ok)}")

    lines += ["", "CPU per role during each load window (s of CPU; % of the machine; "
              "µs per accepted event)"]
    header = f"   {'phase':<10}" + "".join(f"{r:>17}" for r in ROLES) + f"{'machine busy':>15}"
    lines.append(header)
    for name, result in bench.results.items():
        per_event = 1e6 / result.load.accepted if result.load.accepted else 0.0
        capacity = result.cpu.machine_total_s or 1.0
        cells = ""
        for role in ROLES:
            cpu = result.cpu.by_role.get(role, 0.0)
            cells += f"{cpu:>6.1f}s {100 * cpu / capacity:>3.0f}% {cpu * per_event:>4.0f}"
        steal = result.cpu.machine_steal_s / capacity
        lines.append(f"   {name:<10}{cells}{100 * result.cpu.machine_busy_fraction:>14.0f}%"
                     + (f" (steal {100 * steal:.0f}%)" if steal >= 0.005 else ""))
    for name, result in bench.results.items():
        kernel = [f"{role} {100 * result.cpu.sys_by_role.get(role, 0) / cpu:.0f}%"
                  for role in ROLES if (cpu := result.cpu.by_role.get(role, 0)) > 0.1
                  and role in result.cpu.sys_by_role]
        lines.append(f"   {name}: share of that CPU spent in the kernel: {', '.join(kernel)}")
    lines.append("   (loadgen = this process: building bodies, sending, parsing answers; other = busy "
                 "CPU outside our processes: kernel work such as fsync and TCP, and anything "
                 "else running on the machine)")
    for name, result in bench.results.items():
        splits = []
        for role in ("web", "worker"):
            cpus = [cpu for r, cpu in result.cpu.by_pid.values() if r == role]
            total = sum(cpus) or 1.0
            shares = sorted((cpu for cpu in cpus if cpu > 0.01 * total), reverse=True)
            splits.append(f"{role} processes " + " / ".join(f"{100 * c / total:.0f}%" for c in shares))
        lines.append(f"   {name}: CPU split between {'; '.join(splits)}")
    for name, result in bench.results.items():
        foreign = result.cpu.foreign()
        if foreign:
            lines.append(f"   {name}: other processes " + ", ".join(
                f"{comm} {cpu:.1f}s" for comm, cpu in foreign))
    busy_elsewhere = [name for name, r in bench.results.items() if r.cpu.machine_total_s
                      and r.cpu.by_role.get("other", 0) / r.cpu.machine_total_s > 0.1]
    if busy_elsewhere:
        lines.append(f"   WARNING: >10% of the machine went to 'other' during {', '.join(busy_elsewhere)}: "
                     "was something else running? The figures are then pessimistic.")
    errors = {name: (dict(r.load.statuses), r.load.sample_errors, r.persisted.failed_events)
              for name, r in bench.results.items()
              if set(r.load.statuses) - {202} or r.load.rejected or r.persisted.failed_events}
    if errors:
        lines += ["", "Non-202 answers / rejections / failed events:"]
        for name, (statuses, samples, failed) in errors.items():
            lines.append(f"   {name}: statuses {statuses}, failed_events {failed}; {samples}")
    for name, result in bench.results.items():
        lines += ["", f"Valkey commands during {name} (time inside Valkey; EVALSHA includes the "
                  "commands its script runs, which are also listed on their own)"]
        lines += serverstats.table(result.valkey, result.load.accepted)
        lines += serverstats.counter_lines(*result.counters, result.load.accepted)
        if result.statements:
            lines += [f"Postgres statements during {name} (pg_stat_statements execution time)"]
            lines += serverstats.table(result.statements, result.load.accepted)
    lines += ["", "Targets (2-core machine, everything on it):", *(f"   {t}" for t in targets)]
    lines.append("=" * 78)
    print("\n".join(lines), flush=True)

    for name, result in bench.results.items():
        load = result.load
        out["phases"][name] = {
            "settings": result.settings,
            "elapsed_s": load.elapsed,
            "requests": load.requests,
            "accepted": load.accepted,
            "duplicates": load.duplicates,
            "rejected": load.rejected,
            "statuses": {str(k): v for k, v in load.statuses.items()},
            "accepted_eps": result.accepted_eps,
            "persisted_eps": result.persisted_eps,
            "end_to_end_eps": result.end_to_end_eps,
            "drain_s": result.drain_s,
            "drained": result.persisted.drained,
            "latency_p50_s": pct(load.latencies, 0.5),
            "latency_p99_s": pct(load.latencies, 0.99),
            "lag_p50_s": result.persisted.lag_p50_s,
            "lag_p99_s": result.persisted.lag_p99_s,
            "lag_p999_s": result.persisted.lag_p999_s,
            "lag_max_s": result.persisted.lag_max_s,
            "commit_lag_p50_s": result.persisted.commit_lag_p50_s,
            "commit_lag_p99_s": result.persisted.commit_lag_p99_s,
            "cpu_s": result.cpu.by_role,
            "machine_busy_fraction": result.cpu.machine_busy_fraction,
            "loadgen_cpu_s": load.loadgen_cpu_s,
            "persisted_per_second": result.persisted.per_second,
            "valkey_commands": [dataclasses.asdict(x) for x in result.valkey[:15]],
            "pg_statements": [dataclasses.asdict(x) for x in result.statements[:15]],
        }
    out["targets"] = targets
    return out


# --------------------------------------------------------------------------- main


async def run_phases(opts: Options, env: Environment, busy_before: float) -> dict[str, Any]:
    run = os.urandom(3).hex()
    machine = machine_info()  # now: the code the tiers are about to load
    catalog = await create_catalog(env, run)
    log(f"catalog: {len(catalog.customers)} customers, 3 meters, ingest key (run {run})")
    start_tiers(env, opts)
    roles = Roles({p.pid: "worker" if name == "worker" else "web"
                   for name, p in env.processes.items()})
    if env.servers is not None:
        roles.roots[postmaster_pid(env)] = "postgres"
        roles.roots[int((env.data_dir / "valkey" / "valkey.pid").read_text())] = "valkey"
    pg = await asyncpg.connect(env.database_url)
    redis = Redis.from_url(env.redis_url)
    try:
        pg_stats = False
        if opts.pg_stats:
            with contextlib.suppress(asyncpg.PostgresError):
                await pg.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                await pg.fetchval("SELECT count(*) FROM pg_stat_statements")
                pg_stats = True
            if not pg_stats:
                log("pg_stat_statements is not available; --pg-stats ignored")
        factory = EventFactory(catalog, random_ids=opts.event_ids == "random")
        bench = Bench(opts, env, catalog, roles, pg, redis, factory, pg_stats)
        for item in opts.valkey_settings:
            name, _, value = item.partition("=")
            log(f"valkey: CONFIG SET {name} {value}")
            await redis.config_set(name, value)
        servers = await server_info(pg, redis)
        servers["busy_before_start"] = busy_before
        await bench.warm_up()
        if "batch" in opts.phases:
            await bench.batch_phase()
        if "single" in opts.phases:
            await bench.single_phase()
        if "lag" in opts.phases:
            await bench.lag_phases()
        result = report(bench, machine, servers)
        result["settings"] = dataclasses.asdict(opts)
        return result
    finally:
        await redis.aclose()
        await pg.close()


def _install_sigterm() -> None:
    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    _install_sigterm()
    busy_before = wait_for_idle(opts.wait_idle)
    data_dir = Path(tempfile.mkdtemp(prefix="portal-bench-", dir=opts.data_parent))
    env = Environment(data_dir=data_dir)
    try:
        start_servers(env, opts)
        from portal.migrate import migrate
        from portal.settings import Settings

        migrate(Settings(data_dir=data_dir, database_url=env.database_url,
                         redis_url=env.redis_url, broker_url=env.broker_url))
        try:
            import uvloop

            loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = uvloop.new_event_loop
        except ImportError:  # pragma: no cover - uvicorn[standard] brings it
            loop_factory = None
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(run_phases(opts, env, busy_before))
        if opts.json_out:
            Path(opts.json_out).write_text(json.dumps(result, indent=2, default=str))
            log(f"results written to {opts.json_out}")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        env.close(keep_data=opts.keep_data)
    return 0


if __name__ == "__main__":
    sys.exit(main())

