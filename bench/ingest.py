"""Ingest benchmark: `python -m bench.ingest` (`make bench`).

Starts everything on this machine (embedded Postgres and Valkey in a fresh temp data dir,
or the servers DATABASE_URL / REDIS_URL name), the web tier and the Dramatiq workers as
the real `usage-portal` subprocesses, and drives them over HTTP from this process:

1. batch: 1000-event batches from several connections for `--duration` s. Accepted
   events/s from the 202 answers; persisted events/s from `event_ledger` (rows whose
   `persisted_at` falls in the same window), and how long the backlog takes to drain.
   Valkey's memory and keys are read before and after it for the memory projection.
2. single: one event per request for `--single-duration` s, closed loop: requests/s; then
   the same at a fixed --single-rate requests/s (open loop): latency p50/p99.
3. lag: batches at half the sustained rate of phase 1 (open loop) for `--lag-duration`
   s; accepted-to-persisted lag p50/p99 from `event_ledger.persisted_at - received_at`.
4. copy: the raw COPY floor, usage_events-shaped rows into a scratch table for
   `--copy-seconds` s (bench/copyfloor.py), to judge the persisted rate against.

With `--preload-millions N`, N million events of 30 days' history are loaded first
(bench/preload.py), and the batch rate is compared with the empty store's (`--empty-rate`
or `--compare-empty`). With `--startup`, `usage-portal up` is timed at the end on the
run's data dir, until /readyz answers 200.

Prints a table of figures, CPU per role, the machine and the settings, and every target
of issue 15 with PASS/MISS beside its floor (also in the `--json` file, for
`python -m bench.summary`). Always exits 0 once it has measured; it stops what it started
(also on Ctrl-C) and deletes the temp data dir unless --keep-data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import sys
from typing import Any

import asyncpg
from redis.asyncio import Redis

from bench import harness
from bench.config import DEFAULT_LAG_RATE, SINGLE_OPEN_RATE, Options, log
from bench.harness import add_run_options
from bench.load import EventFactory
from bench.machine import machine_info
from bench.measure import server_info
from bench.phases import Bench
from bench.procstat import Roles
from bench.report import report
from bench.stack import Environment, create_catalog, server_roots, start_tiers
from bench.startup import measure_startup


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ingest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--phase",
        action="append",
        choices=["all", "batch", "single", "lag", "copy"],
        help="phase(s) to run (repeatable; default all)",
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="batch phase seconds (default 60; 10 with --quick)"
    )
    parser.add_argument(
        "--single-duration",
        type=float,
        default=None,
        help="single-event phase seconds (default 20; 5 with --quick)",
    )
    parser.add_argument(
        "--lag-duration", type=float, default=None, help="lag phase seconds (default 30; 10 with --quick)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=8, help="connections sending batches (closed loop; default 8)"
    )
    parser.add_argument(
        "--single-concurrency",
        type=int,
        default=32,
        help="connections sending single events (closed loop; default 32)",
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
    parser.add_argument(
        "--lag-rate",
        type=float,
        default=None,
        help="events/s of the lag phase (default: half the batch phase's "
        f"sustained rate, or {DEFAULT_LAG_RATE} if that phase is not run)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="web processes (2)")
    parser.add_argument(
        "--web-mode",
        choices=["workers", "ports"],
        default="workers",
        help="workers: one `usage-portal web --workers N` (uvicorn processes "
        "sharing one socket; default); ports: N single-process web "
        "servers on N ports, connections spread evenly, as behind a "
        "load balancer",
    )
    parser.add_argument("--worker-processes", type=int, default=2, help="Dramatiq worker processes (2)")
    parser.add_argument(
        "--worker-threads", type=int, default=4, help="Dramatiq threads per worker process (4)"
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=300.0,
        help="seconds to wait for the backlog to be persisted after a phase",
    )
    parser.add_argument(
        "--single-rate",
        type=float,
        default=SINGLE_OPEN_RATE,
        help=f"requests/s of the open-loop single-event sub-phase ({SINGLE_OPEN_RATE:g}; 0: skip it)",
    )
    parser.add_argument(
        "--copy-seconds",
        type=float,
        default=None,
        help="seconds of the raw COPY floor measurement (default 10; 5 with --quick)",
    )
    parser.add_argument(
        "--copy-connections", type=int, default=2, help="connections sending the COPY floor's rows (2)"
    )
    parser.add_argument(
        "--preload-millions",
        type=float,
        default=0.0,
        metavar="N",
        help="before the phases, load N million events of 30 days' history straight into "
        "the store with SQL (the target asks for at least 100)",
    )
    parser.add_argument(
        "--empty-rate",
        type=float,
        default=None,
        metavar="EPS",
        help="with --preload-millions: the batch rate an empty store gave (a run without "
        "preload), to compare the rate with history against",
    )
    parser.add_argument(
        "--compare-empty",
        action="store_true",
        help="with --preload-millions: first run the batch phase on the empty store "
        "(as 'batch@empty'), then load the history, then the phases",
    )
    parser.add_argument(
        "--startup",
        action="store_true",
        help="at the end, stop everything and time `usage-portal up` on the run's data dir "
        "until /readyz answers 200",
    )
    parser.add_argument("--quick", action="store_true", help="short phases: a smoke run")
    add_run_options(parser)
    parser.add_argument(
        "--event-ids",
        choices=["random", "sequential"],
        default="random",
        help="random (UUID-like, default) or sequential event ids",
    )
    parser.add_argument(
        "--pg-set",
        action="append",
        metavar="NAME=VALUE",
        help="ALTER SYSTEM SET for the embedded Postgres before the run, to try "
        "a setting (repeatable), e.g. --pg-set max_wal_size=16GB",
    )
    parser.add_argument(
        "--valkey-set",
        action="append",
        metavar="NAME=VALUE",
        help="CONFIG SET on Valkey before the run (repeatable), e.g. "
        "--valkey-set auto-aof-rewrite-percentage=0",
    )
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="load pg_stat_statements into the embedded Postgres and print "
        "the statements that took the most time (adds a little overhead)",
    )
    args = parser.parse_args(argv)
    phases = tuple(args.phase or ["all"])
    if "all" in phases:
        phases = ("batch", "single", "lag", "copy")
    ordered = tuple(p for p in ("batch", "single", "lag", "copy") if p in phases)
    if (args.empty_rate is not None or args.compare_empty) and args.preload_millions <= 0:
        parser.error("--empty-rate and --compare-empty compare with a history: give --preload-millions")

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
        copy_seconds=pick(args.copy_seconds, 10, 5),
        copy_connections=args.copy_connections,
        single_rate=args.single_rate,
        preload_millions=args.preload_millions,
        empty_rate=args.empty_rate,
        compare_empty=args.compare_empty,
        startup=args.startup,
    )


async def run_phases(opts: Options, env: Environment, busy_before: float) -> dict[str, Any]:
    run = os.urandom(3).hex()
    machine = machine_info()  # now: the code the tiers are about to load
    catalog = await create_catalog(env, run)
    log(f"catalog: {len(catalog.customers)} customers, 3 meters, ingest key (run {run})")
    start_tiers(env, opts)
    roles = Roles({p.pid: "worker" if name == "worker" else "web" for name, p in env.processes.items()})
    if env.servers is not None:
        roles.roots.update(server_roots(env))
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
        servers = await server_info(pg, redis, env.broker_url)
        servers["busy_before_start"] = busy_before
        await bench.warm_up()
        if opts.preload_millions > 0:
            if opts.compare_empty:
                await bench.batch_phase("batch@empty", "E", memory=False)
            await bench.preload_history()
        if "batch" in opts.phases:
            await bench.batch_phase()
        if "single" in opts.phases:
            await bench.single_phase()
            if opts.single_rate > 0:
                await bench.single_open_phase()
        if "lag" in opts.phases:
            await bench.lag_phases()
        if "copy" in opts.phases:
            await bench.measure_copy_floor()
        # For the startup figure: what `up` will find in the store.
        if opts.startup:
            await pg.execute("ANALYZE event_ledger")  # a fresh row estimate, not a count(*)
        events_in_store = int(
            await pg.fetchval(
                "SELECT greatest(reltuples, 0)::bigint FROM pg_class WHERE relname = 'event_ledger'"
            )
            or 0
        )
        valkey_keys = int(await redis.dbsize())
    finally:
        await redis.aclose()
        await pg.close()
    startup = (
        await asyncio.to_thread(
            measure_startup, env, events_in_store=events_in_store, valkey_keys=valkey_keys
        )
        if opts.startup
        else None
    )
    result = report(bench, machine, servers, startup)
    result["settings"] = dataclasses.asdict(opts)
    return result


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    return harness.run(
        opts, name="ingest", stack=opts, measure=lambda env, busy_before: run_phases(opts, env, busy_before)
    )


if __name__ == "__main__":
    sys.exit(main())
