"""Entitlement check benchmark: `python -m bench.entitlements [--duration 30] ...`.

Measures how fast `POST /v1/entitlements/check` answers from the live counters while ingest
is busy (issue 18: on 2 cores with ingest at half its maximum, >= 5,000 single checks/s with
p99 <= 5 ms, and >= 50,000 customer-meter answers/s through the batch check).

1. Starts the stack as bench/stack.py does (embedded Postgres and Valkey in a temp dir,
   migrations, `usage-portal web --workers 2` and `usage-portal worker`) plus `usage-portal
   scheduler` (as `usage-portal up` does; its first reconcile builds the live view, which
   checks wait for), the ingest benchmark's catalog (10 busy customers, a sum, a count and
   a max meter, an ingest key) plus a unique_count meter (distinct regions; one event in
   eleven is for it) and quiet customers up to --customers (no events during the run),
   and, through the admin API, hard and soft limits on every customer's four meters
   (`PUT /v1/customers/{id}/limits`; the busy customers pass the distinct-region one).
2. Ingest runs through every phase at half the batch ingest maximum: the one the ingest
   benchmark measured (--max-from its JSON file), or measured here first for --measure-max
   seconds (closed loop, 8 connections; 20 s unless another source is given; the events
   accepted over the time until they were all persisted); or at --ingest-rate. 1000-event
   batches on a fixed schedule (open loop) to the busy customers.
3. Phases, one after the other, under that ingest:
   - baseline (--baseline s): ingest alone, for the web processes' CPU without checks;
   - single (--duration s): --connections keep-alive connections each POST one check (a
     random customer and meter of all of them) as soon as the previous one is answered;
   - fixed rate (--open-duration s): one-check requests at --open-rate/s (the target's
     5,000) on a schedule, latency from the scheduled moment: what a client sees at that
     rate. The p99 target is read here: a closed loop of --connections requests at
     saturation measures capacity, and its latency is its queue (Little's law: 32 in flight
     at 5,000/s is 6.4 ms on average, whatever the server);
   - listing (--listing-duration s): `GET /v1/customers/{id}/entitlements` closed loop;
   - batch (--duration s): --batch-connections connections each POST --batch-checks checks
     (customers x meters) in a closed loop.
Prints, per phase, the requests and answers per second, p50/p95/p99/max latency, the
answers allowed, denied and in error, the ingest rate achieved and the CPU per role (the web
processes' CPU per check, with and without what ingest alone costs them), and PASS/MISS
against the targets (also as verdicts in the --json file, for `python -m bench.summary`).
Never asserts on time; exits 0 once it has measured. Stops what it started (also on Ctrl-C)
and deletes the temp data dir unless --keep-data.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from redis.asyncio import Redis

from bench import harness
from bench.config import ROOT, ZONES, Options, log, tier_options
from bench.dashboard import max_from_json, measure_max, wait_persisted
from bench.figures import distribution
from bench.harness import add_run_options
from bench.httpclient import HttpConnection, HttpError
from bench.load import EventFactory, LoadStats, open_connections, open_loop
from bench.machine import describe, machine_info
from bench.procstat import ROLES, Roles, Snapshot, snapshot, usage_between
from bench.serverstats import delta, valkey_commands
from bench.stack import Catalog, Environment, check_alive, create_catalog, server_roots, start_tiers
from bench.stack import _portal_command as portal_command
from bench.verdicts import Verdict
from bench.verdicts import lines as verdict_lines

CHECK_PATH = "/v1/entitlements/check"
TARGET_SINGLE_RPS = 5_000
TARGET_SINGLE_P99_S = 0.005
TARGET_BATCH_ANSWERS = 50_000
DEFAULT_MEASURE_MAX_S = 20.0
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class EntitlementOptions:
    duration: float
    connections: int
    open_rate: float
    open_duration: float
    listing_duration: float
    batch_checks: int
    batch_connections: int
    baseline: float
    customers: int
    ingest_rate: float | None
    measure_max: float
    max_from: str | None
    batch_size: int
    web_workers: int
    worker_processes: int
    worker_threads: int
    keep_data: bool
    data_parent: str | None
    json_out: str | None
    wait_idle: float


def parse_options(argv: list[str] | None = None) -> EntitlementOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.entitlements",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--duration", type=float, default=30.0, help="seconds of each of the single and batch phases (30)"
    )
    parser.add_argument("--connections", type=int, default=32, help="connections sending single checks (32)")
    parser.add_argument(
        "--open-rate",
        type=float,
        default=float(TARGET_SINGLE_RPS),
        help=f"single checks/s of the fixed-rate phase ({TARGET_SINGLE_RPS}: the target's)",
    )
    parser.add_argument(
        "--open-duration",
        type=float,
        default=20.0,
        help="seconds of the fixed-rate phase, where the p99 target is read (20; 0: skip)",
    )
    parser.add_argument(
        "--listing-duration",
        type=float,
        default=5.0,
        help="seconds of GET /v1/customers/{id}/entitlements (5; 0: skip)",
    )
    parser.add_argument("--batch-checks", type=int, default=1000, help="checks per batch request (1000)")
    parser.add_argument(
        "--batch-connections", type=int, default=4, help="connections sending batch checks (4)"
    )
    parser.add_argument(
        "--baseline",
        type=float,
        default=5.0,
        help="seconds of ingest alone first, for the web's CPU without checks (5)",
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=250,
        help="customers in all (250: the 10 busy ones that get every event and quiet ones; "
        "250 x 4 meters = one 1000-check batch)",
    )
    parser.add_argument(
        "--ingest-rate",
        type=float,
        default=None,
        help="events/s sent during the run (default: half the batch ingest maximum, from "
        "--max-from or --measure-max; 0: no ingest)",
    )
    parser.add_argument(
        "--measure-max",
        type=float,
        default=None,
        metavar="SECONDS",
        help="first measure the batch ingest maximum for this long and run at half of it "
        f"(default {DEFAULT_MEASURE_MAX_S:g} unless --ingest-rate or --max-from is given)",
    )
    parser.add_argument(
        "--max-from",
        default=None,
        metavar="FILE",
        help="the ingest benchmark's --json file: its batch phase's sustained rate "
        "(min of accepted and persisted) is the maximum to halve",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="events per ingest batch (1000)")
    parser.add_argument("--web-workers", type=int, default=2, help="web processes (2)")
    parser.add_argument("--worker-processes", type=int, default=2, help="Dramatiq worker processes (2)")
    parser.add_argument(
        "--worker-threads", type=int, default=4, help="Dramatiq threads per worker process (4)"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.connections < 1 or args.batch_connections < 1:
        parser.error("--duration must be above 0, --connections and --batch-connections at least 1")
    if not 1 <= args.batch_checks <= 10_000:
        parser.error("--batch-checks must be 1 to 10,000 (the API's bound)")
    if args.customers < 10:
        parser.error("--customers must be at least 10 (the busy ones)")
    if args.open_rate <= 0 or min(args.open_duration, args.listing_duration, args.baseline) < 0:
        parser.error("--open-rate must be above 0, the other durations at least 0")
    if args.ingest_rate is not None and args.ingest_rate < 0:
        parser.error("--ingest-rate must be at least 0")
    return EntitlementOptions(
        duration=args.duration,
        connections=args.connections,
        open_rate=args.open_rate,
        open_duration=args.open_duration,
        listing_duration=args.listing_duration,
        batch_checks=args.batch_checks,
        batch_connections=args.batch_connections,
        baseline=args.baseline,
        customers=args.customers,
        ingest_rate=args.ingest_rate,
        measure_max=(
            args.measure_max
            if args.measure_max is not None
            else (DEFAULT_MEASURE_MAX_S if args.ingest_rate is None and args.max_from is None else 0.0)
        ),
        max_from=args.max_from,
        batch_size=args.batch_size,
        web_workers=args.web_workers,
        worker_processes=args.worker_processes,
        worker_threads=args.worker_threads,
        keep_data=args.keep_data,
        data_parent=args.data_parent,
        json_out=args.json_out,
        wait_idle=args.wait_idle,
    )


def stack_options(opts: EntitlementOptions) -> Options:
    return tier_options(
        batch_size=opts.batch_size,
        web_workers=opts.web_workers,
        worker_processes=opts.worker_processes,
        worker_threads=opts.worker_threads,
        keep_data=opts.keep_data,
        data_parent=opts.data_parent,
        wait_idle=opts.wait_idle,
    )


# --------------------------------------------------------------------------- setup


@dataclass(frozen=True, slots=True)
class Setup:
    catalog: Catalog
    customers: list[str]  # busy first, then quiet
    meters: list[str]
    admin_key: str
    port: int

    @property
    def pairs(self) -> list[tuple[str, str]]:
        return [(c, m) for c in self.customers for m in self.meters]


async def create_accounts(env: Environment, run: str, customers: int) -> tuple[Catalog, list[str], str, str]:
    """The ingest benchmark's catalog, a unique_count meter, the quiet customers and an admin
    key (straight into Postgres, before the web tier starts). Returns (catalog, quiet
    customers, unique_count meter, admin key)."""
    from portal.catalog.schemas import CustomerCreate, MeterCreate
    from portal.catalog.service import create_customer, create_meter
    from portal.infrastructure.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    catalog = await create_catalog(env, run)
    quiet = [f"bench-{run}-q{i:04d}" for i in range(customers - len(catalog.customers))]
    # The load's events carry four regions: the distinct count reaches 4 for busy customers.
    unique = MeterCreate(
        metric_name=f"bench_{run}_regions", aggregation="unique_count", unit="region", unique_by="region"
    )
    engine = create_engine(env.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            await create_meter(session, unique)
            for i, customer_id in enumerate(quiet):
                await create_customer(
                    session,
                    CustomerCreate(
                        id=customer_id, name=f"Bench {customer_id}", timezone=ZONES[i % len(ZONES)]
                    ),
                )
            _, admin = await create_key(session, scope="admin", name=f"bench entitlements {run} admin")
    finally:
        await engine.dispose()
    return catalog, quiet, unique.metric_name, admin


def limits_for(setup: Setup) -> list[dict[str, str]]:
    """Hard limits on the sum, count and distinct-region meters, a soft one on the max: the
    busy customers reach the distinct-region limit (3 of 4), so answers are also denied."""
    sum_meter, count_meter, max_meter, unique_meter = setup.meters
    return [
        {"meter": sum_meter, "limit": "1000000000", "enforcement": "hard"},
        {"meter": count_meter, "limit": "50000000", "enforcement": "hard"},
        {"meter": max_meter, "limit": "40", "enforcement": "soft"},
        {"meter": unique_meter, "limit": "3", "enforcement": "hard"},
    ]


async def set_limits(setup: Setup) -> None:
    headers = {"Authorization": f"Bearer {setup.admin_key}"}
    body = {"limits": limits_for(setup)}
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{setup.port}", headers=headers, timeout=30
    ) as client:
        for customer in setup.customers:
            answer = await client.put(f"/v1/customers/{customer}/limits", json=body)
            if answer.status_code != 200:
                raise RuntimeError(f"limits of {customer}: {answer.status_code} {answer.text[:500]}")


class Events(EventFactory):
    """The ingest benchmark's events, and one in eleven for the distinct-region meter (its
    events carry a region, one of 4), so the busy customers pass its limit of 3."""

    def __init__(self, catalog: Catalog, unique_meter: str) -> None:
        super().__init__(catalog)
        self._heads += [f'"customerId":"{c}","metricName":"{unique_meter}",' for c in catalog.customers]


# --------------------------------------------------------------------------- answers


class _Answer(msgspec.Struct, rename="camel"):
    allowed: bool
    lag_ms: int = 0
    error: str | None = None


class _Answers(msgspec.Struct):
    results: list[_Answer]


_decode_checks = msgspec.json.Decoder(_Answers).decode
_decode_listing = msgspec.json.Decoder(list[_Answer]).decode


def check_body(pairs: list[tuple[str, str]]) -> bytes:
    return msgspec.json.encode({"checks": [{"customerId": c, "meter": m} for c, m in pairs]})


@dataclass(slots=True)
class PhaseStats:
    """What the load generator saw during one phase."""

    requests: int = 0
    answers: int = 0
    allowed: int = 0
    denied: int = 0
    errors: int = 0  # unanswerable checks (unknown customer or meter), non-200s, failures
    lagging: int = 0  # answers trailing the live counters (lagMs > 0: from Postgres)
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    sample_errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    late_sends: int = 0
    abandoned: int = 0  # fixed rate: requests not sent, the server being too far behind

    def count(self, status: int, payload: bytes, latency: float, listing: bool) -> None:
        self.requests += 1
        self.statuses[status] += 1
        self.latencies.append(latency)
        if status != 200:
            self.errors += 1
            if len(self.sample_errors) < 3:
                self.sample_errors.append(f"{status}: {payload[:200]!r}")
            return
        results = _decode_listing(payload) if listing else _decode_checks(payload).results
        self.answers += len(results)
        for result in results:
            self.lagging += result.lag_ms > 0
            if result.error is not None:
                self.errors += 1
                if len(self.sample_errors) < 3:
                    self.sample_errors.append(result.error)
            elif result.allowed:
                self.allowed += 1
            else:
                self.denied += 1

    def failed(self, exc: BaseException) -> None:
        self.statuses[0] += 1
        self.errors += 1
        if len(self.sample_errors) < 3:
            self.sample_errors.append(f"{type(exc).__name__}: {exc}")


Request = Callable[[HttpConnection], Awaitable[tuple[int, bytes]]]


async def closed_phase(
    conns: list[HttpConnection], make: Callable[[], Request], duration: float, *, listing: bool = False
) -> PhaseStats:
    """Each connection sends its next request as soon as the previous one is answered."""
    stats = PhaseStats()
    started = time.perf_counter()
    deadline = started + duration

    async def run(conn: HttpConnection) -> None:
        while time.perf_counter() < deadline:
            request = make()
            sent = time.perf_counter()
            try:
                status, payload = await request(conn)
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                stats.failed(exc)
                await asyncio.sleep(0.05)
                continue
            stats.count(status, payload, time.perf_counter() - sent, listing)

    await asyncio.gather(*(run(c) for c in conns))
    stats.elapsed = time.perf_counter() - started
    return stats


async def open_phase(
    pool: list[HttpConnection],
    make: Callable[[], Request],
    rate: float,
    duration: float,
    key: str,
    max_in_flight: int = 128,
) -> PhaseStats:
    """One request every 1/rate s whatever the answers take, on a free connection of the pool
    (a new one when all are busy); latency runs from the scheduled moment."""
    stats = PhaseStats()
    free = list(pool)
    tasks: set[asyncio.Task[None]] = set()
    started = time.perf_counter()
    ports = sorted({c.port for c in pool})

    # Beyond this many requests in flight a request waits for an answer (still timed from
    # its scheduled moment): a server far slower than the rate gets a queue, not sockets.
    in_flight = asyncio.Semaphore(max_in_flight)

    # A request still waiting this long after the phase's end is not sent: a server far
    # slower than the rate would otherwise stretch the phase without end.
    give_up = started + duration + max(5.0, duration / 2)

    async def fire(request: Request, scheduled: float) -> None:
        async with in_flight:
            if time.perf_counter() > give_up:
                stats.abandoned += 1
                return
            conn = free.pop() if free else HttpConnection(HOST, ports[0], {"Authorization": f"Bearer {key}"})
            try:
                status, payload = await request(conn)
            except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
                stats.failed(exc)
            else:
                stats.count(status, payload, time.perf_counter() - scheduled, False)
            free.append(conn)

    interval = 1.0 / rate
    k = 0
    while k * interval < duration:
        scheduled = started + k * interval
        wait = scheduled - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        elif wait < -interval:
            stats.late_sends += 1
        task = asyncio.create_task(fire(make(), scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        k += 1
    await asyncio.gather(*tasks)
    stats.elapsed = time.perf_counter() - started
    for conn in free:  # the ones opened beyond the pool
        if conn not in pool:
            await conn.close()
    return stats


def single_requests(setup: Setup, seed: int) -> Callable[[], Request]:
    """A random customer and meter of all of them per request (bodies built beforehand)."""
    bodies = [check_body([pair]) for pair in setup.pairs]
    rng = random.Random(seed)

    def make() -> Request:
        body = bodies[int(rng.random() * len(bodies))]
        return lambda conn: conn.post(CHECK_PATH, body)

    return make


def batch_requests(setup: Setup, size: int, seed: int) -> Callable[[], Request]:
    """`size` checks of consecutive customers x meters, each request starting further on."""
    pairs = setup.pairs
    rng = random.Random(seed)
    starts = list(range(0, len(pairs), max(1, len(pairs) // 16)))
    bodies = [check_body([pairs[(s + i) % len(pairs)] for i in range(size)]) for s in starts]

    def make() -> Request:
        body = bodies[int(rng.random() * len(bodies))]
        return lambda conn: conn.post(CHECK_PATH, body)

    return make


def listing_requests(setup: Setup, seed: int) -> Callable[[], Request]:
    paths = [f"/v1/customers/{c}/entitlements" for c in setup.customers]
    rng = random.Random(seed)

    def make() -> Request:
        path = paths[int(rng.random() * len(paths))]
        return lambda conn: conn.get(path)

    return make


# --------------------------------------------------------------------------- run


@dataclass(slots=True)
class Phase:
    name: str
    stats: PhaseStats
    cpu_by_role: dict[str, float]  # CPU seconds
    machine_busy: float
    seconds: float
    ingest_accepted: int
    valkey: list[dict[str, Any]]
    foreign: list[tuple[str, float]]  # other processes on the machine: (name, CPU seconds)


async def ingest_rate(
    env: Environment, factory: EventFactory, opts: EntitlementOptions, redis: Redis, key: str
) -> tuple[float, float | None, str]:
    """(rate to run at, the maximum it halves or None, where that maximum came from)."""
    maximum = None
    source = ""
    if opts.max_from is not None and opts.measure_max <= 0:
        maximum = max_from_json(opts.max_from)
        source = f"the ingest benchmark ({opts.max_from})"
    if opts.ingest_rate is not None:
        return opts.ingest_rate, maximum, source
    if maximum is None:
        seconds = opts.measure_max if opts.measure_max > 0 else DEFAULT_MEASURE_MAX_S
        maximum = await measure_max(env, factory, seconds, opts.batch_size, redis, key)
        source = f"measured here ({seconds:g} s, closed loop)"
    return maximum / 2, maximum, source


async def run_bench(opts: EntitlementOptions, env: Environment, busy_before: float) -> dict[str, Any]:
    run = os.urandom(3).hex()
    machine = machine_info()
    catalog, quiet, unique_meter, admin = await create_accounts(env, run, opts.customers)
    start_tiers(env, stack_options(opts))
    start_scheduler(env)
    setup = Setup(
        catalog,
        [*catalog.customers, *quiet],
        [catalog.sum_meter, catalog.count_meter, catalog.max_meter, unique_meter],
        admin,
        env.ports[0],
    )
    log(f"catalog: {len(setup.customers)} customers ({len(catalog.customers)} busy), 4 meters (run {run})")
    # The scheduler only queues jobs; what it queues runs (and is counted) in the worker.
    roles = Roles({p.pid: "web" if name == "web" else "worker" for name, p in env.processes.items()})
    if env.servers is not None:
        roles.roots.update(server_roots(env))
    redis = Redis.from_url(env.redis_url)
    key = catalog.ingest_key
    conns: list[HttpConnection] = []
    phases: list[Phase] = []
    try:
        await wait_built(env, redis)
        await set_limits(setup)
        log(f"limits set on {len(setup.customers)} customers x 4 meters")
        factory = Events(catalog, unique_meter)
        rate, maximum, max_source = await ingest_rate(env, factory, opts, redis, key)
        await wait_persisted(redis)
        conns = await open_connections(env.ports, key, max(opts.connections, opts.batch_connections))
        # Each web process loads its customers' limits and fills the period accumulators once.
        warm = batch_requests(setup, min(len(setup.pairs), 10_000), 0)
        await closed_phase(conns[: opts.web_workers * 2], warm, 1.0)
        plan: list[tuple[str, float, Callable[[], Awaitable[PhaseStats]]]] = [
            ("baseline", opts.baseline, lambda: _idle(opts.baseline)),
            (
                "single",
                opts.duration,
                lambda: closed_phase(conns[: opts.connections], single_requests(setup, 1), opts.duration),
            ),
            (
                "fixed rate",
                opts.open_duration,
                lambda: open_phase(
                    conns[:8], single_requests(setup, 2), opts.open_rate, opts.open_duration, key
                ),
            ),
            (
                "listing",
                opts.listing_duration,
                lambda: closed_phase(
                    conns[: opts.connections], listing_requests(setup, 3), opts.listing_duration, listing=True
                ),
            ),
            (
                "batch",
                opts.duration,
                lambda: closed_phase(
                    conns[: opts.batch_connections],
                    batch_requests(setup, opts.batch_checks, 4),
                    opts.duration,
                ),
            ),
        ]
        plan = [p for p in plan if p[1] > 0]
        log(
            f"run: ingest at {rate:,.0f} events/s throughout; phases "
            + ", ".join(f"{name} {seconds:g} s" for name, seconds, _ in plan)
        )
        ingest = Ingest(env.ports, key, lambda: factory.batch("E", opts.batch_size), opts.batch_size, rate)
        ingest_task = asyncio.ensure_future(ingest.run())
        await asyncio.sleep(1.0)  # the first batches on their way
        for name, _, measure in plan:
            log(f"phase {name}")
            phases.append(await _phase(name, measure, roles, redis, ingest))
            check_alive(env)
        ingest.stop()
        await ingest_task
        log("load stopped; waiting for the backlog to be persisted")
        drain_s = await wait_persisted(redis)
    finally:
        await redis.aclose()
        await asyncio.gather(*(c.close() for c in conns))
    return _result(
        opts, setup, machine, busy_before, phases, rate, maximum, max_source, ingest.summary(), drain_s
    )


def start_scheduler(env: Environment) -> None:
    """`usage-portal scheduler`, as `usage-portal up` runs it beside web and worker: its
    first reconcile builds the live view, and until the live view is built checks are
    answered from Postgres (the fallback after a Redis loss), not the live counters."""
    argv = [*portal_command(), "scheduler"]
    log(f"starting scheduler: {' '.join(argv[1:])}")
    env.processes["scheduler"] = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env.child_env(),
        stdout=(env.data_dir / "scheduler.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def wait_built(env: Environment, redis: Redis, timeout: float = 120.0) -> None:
    """Until the scheduler's first reconcile has marked the live view built."""
    from portal.live.redis_keys import BUILT_KEY

    started = time.monotonic()
    while not await redis.exists(BUILT_KEY):
        check_alive(env)
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"the live view was not built within {timeout:g} s (no reconcile ran)")
        await asyncio.sleep(0.2)
    log(f"live view built ({time.monotonic() - started:.1f} s after the tiers started)")


class Ingest:
    """Batches at `rate` events/s (open loop) until stopped, in 10 s runs of bench.load's
    open_loop: the phases' lengths are not known beforehand (a slow server stretches them)."""

    CHUNK_S = 10.0

    def __init__(
        self, ports: list[int], key: str, make_body: Callable[[], bytes], batch_size: int, rate: float
    ) -> None:
        self.args = (ports, key, make_body, batch_size, rate)
        self.runs: list[LoadStats] = []
        self._stopped = False

    def stop(self) -> None:
        self._stopped = True

    async def run(self) -> None:
        ports, key, make_body, batch_size, rate = self.args
        while rate > 0 and not self._stopped:
            stats = LoadStats()
            self.runs.append(stats)
            await open_loop(ports, key, make_body, batch_size, rate, self.CHUNK_S, stats)

    def accepted_between(self, start: float, end: float) -> int:
        """Events accepted from `start` to `end` (time.monotonic())."""
        return sum(
            n for stats in self.runs for t, n in stats.timeline if start <= stats.started_mono + t < end
        )

    def summary(self) -> LoadStats:
        out = LoadStats()
        for stats in self.runs:
            out.statuses.update(stats.statuses)
            out.late_sends += stats.late_sends
            out.latencies += stats.latencies
        return out


async def _idle(seconds: float) -> PhaseStats:
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    return PhaseStats(elapsed=time.perf_counter() - started)


async def _phase(
    name: str, measure: Callable[[], Awaitable[PhaseStats]], roles: Roles, redis: Redis, ingest: Ingest
) -> Phase:
    before: Snapshot = snapshot(roles)
    valkey_before = await valkey_commands(redis)
    started = time.monotonic()
    stats = await measure()
    ended = time.monotonic()
    cpu = usage_between(before, snapshot(roles))
    valkey = delta(valkey_before, await valkey_commands(redis))
    accepted = ingest.accepted_between(started, ended)
    return Phase(
        name,
        stats,
        dict(cpu.by_role),
        cpu.machine_busy_fraction,
        stats.elapsed,
        accepted,
        [
            {"command": v.label, "calls": v.calls, "usec_per_call": v.usec / v.calls}
            for v in valkey[:4]
            if v.calls
        ],
        cpu.foreign(),
    )


# --------------------------------------------------------------------------- figures


def _result(
    opts: EntitlementOptions,
    setup: Setup,
    machine: dict[str, Any],
    busy_before: float,
    phases: list[Phase],
    rate: float,
    maximum: float | None,
    max_source: str,
    ingest: LoadStats,
    drain_s: float,
) -> dict[str, Any]:
    baseline = next((p for p in phases if p.name == "baseline"), None)
    web_idle_rate = (
        baseline.cpu_by_role.get("web", 0.0) / baseline.seconds if baseline and baseline.seconds else None
    )
    out_phases: dict[str, Any] = {}
    for phase in phases:
        s = phase.stats
        seconds = phase.seconds or 1.0
        web = phase.cpu_by_role.get("web", 0.0)

        def per_answer(cpu: float, answers: int = s.answers) -> float | None:
            return cpu / answers * 1e6 if answers else None

        out_phases[phase.name] = {
            "seconds": phase.seconds,
            "requests": s.requests,
            "requests_per_s": s.requests / seconds,
            "answers": s.answers,
            "answers_per_s": s.answers / seconds,
            "allowed": s.allowed,
            "denied": s.denied,
            "errors": s.errors,
            "lagging": s.lagging,
            "statuses": {str(k): v for k, v in sorted(s.statuses.items())},
            "sample_errors": s.sample_errors,
            "late_sends": s.late_sends,
            "abandoned": s.abandoned,
            "latency": distribution(s.latencies),
            "ingest_eps": phase.ingest_accepted / seconds,
            "machine_busy_pct": 100 * phase.machine_busy,
            "cpu_s": {role: phase.cpu_by_role[role] for role in ROLES if role in phase.cpu_by_role},
            # CPU µs per answer: the web processes' whole CPU, and that less what ingest
            # alone cost them in the baseline phase (the check's own server time).
            "web_us_per_answer": per_answer(web),
            "web_net_us_per_answer": (
                per_answer(max(0.0, web - web_idle_rate * seconds)) if web_idle_rate is not None else None
            ),
            "valkey_us_per_answer": per_answer(phase.cpu_by_role.get("valkey", 0.0)),
            "loadgen_us_per_answer": per_answer(phase.cpu_by_role.get("loadgen", 0.0)),
            "valkey_top": phase.valkey,
            "foreign_cpu_s": dict(phase.foreign),
        }
    result: dict[str, Any] = {
        "bench": "entitlements",
        "settings": {
            "duration": opts.duration,
            "connections": opts.connections,
            "open_rate": opts.open_rate,
            "batch_checks": opts.batch_checks,
            "batch_connections": opts.batch_connections,
            "customers": len(setup.customers),
            "busy_customers": len(setup.catalog.customers),
            "meters": setup.meters,
            "web_workers": opts.web_workers,
            "worker_processes": opts.worker_processes,
            "worker_threads": opts.worker_threads,
            "ingest_batch_size": opts.batch_size,
        },
        "machine": machine,
        "busy_before_start": busy_before,
        "measured_max_eps": maximum,
        "max_source": max_source,
        "ingest": {
            "target_eps": rate,
            "statuses": {str(k): v for k, v in ingest.statuses.items()},
            "late_sends": ingest.late_sends,
            "drain_s": drain_s,
            "batch_latency": distribution(ingest.latencies),
        },
        "phases": out_phases,
    }
    result["verdicts"] = [v.as_dict() for v in _verdicts(result, maximum, rate)]
    return result


def _verdicts(result: dict[str, Any], maximum: float | None, rate: float) -> list[Verdict]:
    phases = result["phases"]
    common = []
    if maximum is None or abs(rate - maximum / 2) > 0.02 * maximum / 2:
        common.append(f"ingest at {rate:,.0f} events/s, not half a measured maximum")

    def notes(phase: dict[str, Any]) -> list[str]:
        out = list(common)
        if rate > 0 and phase["ingest_eps"] < 0.95 * rate:
            out.append(f"ingest achieved only {phase['ingest_eps']:,.0f} events/s")
        if phase["errors"]:
            out.append(f"{phase['errors']} errors")
        if phase["lagging"]:
            out.append(f"{phase['lagging']} answers not from the live counters")
        return out

    single = phases["single"]
    single_notes = notes(single)
    batch = phases["batch"]
    batch_notes = notes(batch)
    fixed = phases.get("fixed rate")
    if fixed is None:
        p99, p99_ok, p99_notes = None, False, ["no fixed-rate phase (--open-duration 0)"]
    else:
        p99 = fixed["latency"]["p99"]
        p99_notes = notes(fixed)
        asked = result["settings"]["open_rate"]
        if fixed["answers_per_s"] < 0.98 * asked or fixed["abandoned"]:
            p99_notes.append(f"{fixed['answers_per_s']:,.0f}/s answered of {asked:,.0f}/s")
        if asked < TARGET_SINGLE_RPS:
            p99_notes.append(f"at {asked:,.0f}/s, below the target's rate")
        p99_ok = p99 is not None and p99 <= TARGET_SINGLE_P99_S and not p99_notes
    return [
        Verdict(
            "18. single checks/s, ingest at half max",
            f">= {TARGET_SINGLE_RPS:,}/s",
            f"{single['answers_per_s']:,.0f}/s",
            single["answers_per_s"] >= TARGET_SINGLE_RPS and not single_notes,
            "; ".join(single_notes),
        ),
        Verdict(
            f"18. single check p99 at {result['settings']['open_rate']:,.0f}/s",
            f"<= {TARGET_SINGLE_P99_S * 1000:g} ms",
            "-" if p99 is None else f"{p99 * 1000:.1f} ms",
            p99_ok,
            "; ".join(p99_notes),
        ),
        Verdict(
            f"18. batch check answers/s ({result['settings']['batch_checks']:,} a request)",
            f">= {TARGET_BATCH_ANSWERS:,}/s",
            f"{batch['answers_per_s']:,.0f}/s",
            batch["answers_per_s"] >= TARGET_BATCH_ANSWERS and not batch_notes,
            "; ".join(batch_notes),
        ),
    ]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.2f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def print_report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print()
    print("Entitlement check benchmark: POST /v1/entitlements/check while ingesting")
    print(
        f"  {s['customers']} customers ({s['busy_customers']} busy) x {len(s['meters'])} meters "
        f"(sum, count, max, unique_count), every one with limits; tiers: web x{s['web_workers']}, "
        f"worker x{s['worker_processes']} ({s['worker_threads']} threads)"
    )
    print(
        f"  single: {s['connections']} connections, closed loop, {s['duration']:g} s; fixed rate: "
        f"{s['open_rate']:,.0f} checks/s; batch: {s['batch_connections']} connections x "
        f"{s['batch_checks']:,} checks, closed loop, {s['duration']:g} s"
    )
    if result.get("measured_max_eps") is not None:
        print(
            f"  batch ingest maximum: {result['measured_max_eps']:,.0f} events/s "
            f"({result.get('max_source') or 'measured'})"
        )
    ingest = result["ingest"]
    print(
        f"  ingest: target {ingest['target_eps']:,.0f} events/s ({ingest['late_sends']} late sends, statuses "
        f"{ingest['statuses']}), backlog persisted {ingest['drain_s']:.1f} s after the load"
    )
    print()
    print(
        f"  {'phase':<11} {'req/s':>8} {'answers/s':>10} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
        f"{'max ms':>7} {'ingest ev/s':>11} {'busy':>5}  allowed/denied/errors/lagging"
    )
    for name, p in result["phases"].items():
        lat = p["latency"]
        print(
            f"  {name:<11} {p['requests_per_s']:>8,.0f} {p['answers_per_s']:>10,.0f} {_ms(lat['p50']):>7} "
            f"{_ms(lat['p95']):>7} {_ms(lat['p99']):>7} {_ms(lat['max']):>7} {p['ingest_eps']:>11,.0f} "
            f"{p['machine_busy_pct']:>4.0f}%  "
            f"{p['allowed']:,}/{p['denied']:,}/{p['errors']:,}/{p['lagging']:,}"
        )
        for error in p["sample_errors"]:
            print(f"      {error}")
        if p["abandoned"]:
            print(
                f"      {p['abandoned']:,} requests not sent: the server fell too far behind the rate "
                "(its latencies are those of the requests sent)"
            )
    print()
    print(
        "  CPU per answer (µs): web (all, and less ingest's share from the baseline), Valkey, load generator"
    )
    for name, p in result["phases"].items():
        if p["answers"]:
            print(
                f"  {name:<11} web {_us(p['web_us_per_answer'])}, net {_us(p['web_net_us_per_answer'])}; "
                f"valkey {_us(p['valkey_us_per_answer'])}; loadgen {_us(p['loadgen_us_per_answer'])}"
            )
    print()
    print("  CPU seconds per role:")
    for name, p in result["phases"].items():
        print(
            f"  {name:<11} {p['seconds']:>5.1f} s: "
            + ", ".join(f"{role} {cpu:.1f}" for role, cpu in p["cpu_s"].items())
            + (
                "; others on the machine: " + ", ".join(f"{n} {c:.1f}" for n, c in p["foreign_cpu_s"].items())
                if p["foreign_cpu_s"]
                else ""
            )
        )
    for name in ("single", "batch"):
        top = result["phases"].get(name, {}).get("valkey_top")
        if top:
            print(
                f"  Valkey's busiest commands ({name}): "
                + ", ".join(f"{v['command']} {v['calls']:,} x {v['usec_per_call']:.0f} µs" for v in top)
            )
    print()
    print("  Targets of issue 18:")
    for line in verdict_lines([Verdict(**_verdict_args(v)) for v in result["verdicts"]]):
        print(f"     {line}")
    m = result["machine"]
    print()
    print(
        f"machine: {describe(m)}; code {m.get('code')}; "
        f"busy before start {100 * result['busy_before_start']:.0f}%"
    )


def _verdict_args(raw: dict[str, Any]) -> dict[str, Any]:
    return {
        "target": raw["target"],
        "floor": raw["floor"],
        "measured": raw["measured"],
        "ok": raw["verdict"] == "PASS",
        "note": raw["note"],
    }


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    return harness.run(
        opts,
        name="entitlements",
        stack=stack_options(opts),
        report=print_report,
        measure=lambda env, busy_before: run_bench(opts, env, busy_before),
    )


if __name__ == "__main__":
    sys.exit(main())
