"""Invoice-run benchmark: `python -m bench.invoices [--customers 100000] [--meters 5]`.

Issue 15's target 7: the invoice run for 100,000 customers x 5 metered charges over a
month in <= 120 s on 2 cores, and the scheduled refresh of running periods costing
Postgres less than 10% of one core at that size.

1. Starts embedded Postgres and Valkey in a fresh temp data dir and migrates it.
2. Loads the data (bench/invoices_data.py): customers in four zones, sum meters m1..mN,
   one plan with every charge model, a flat fee and a 10% discount (created through
   `create_plan`), one subscription each from local midnight of 2026-10-01, and an
   hourly_usage row per customer, meter and local hour of October 2026 (≈37M rows at the
   default size), written hour after hour like production writes them (`--layout`).
   Then VACUUM ANALYZE and a CHECKPOINT, so the run does not pay for the load.
3. Times `portal.billing.run.run_invoices(month="2026-10", now=2026-11-20T00:00Z)` twice:
   run 1 creates the drafts, run 2 refreshes them. CPU seconds of this process (the Python
   side of the run) and of Postgres during each run say where the time went.
4. Times the period's aggregate query alone (UTC customers' period) as Postgres' floor.
5. The scheduled refresh of running periods: what the scheduler's `draft_current_periods`
   job runs (`run_current_periods`), once, at a moment inside every customer's October
   period (2026-10-31T12:00Z, so the whole month is live). Postgres' CPU seconds during it
   (/proc, bench/procstat.py), divided by the job's interval (read from the scheduler's
   schedule), is the share of one core the refresh costs.

Prints figures and PASS/MISS beside each floor (also as verdicts in --json FILE, for
`python -m bench.summary`); it never fails on a time. Stops the servers and deletes the data dir
at the end, unless `--keep-data DIR` (the data then lives in DIR and the servers keep
running; `usage-portal` with PORTAL_DATA_DIR=DIR finds them).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import pstats
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import invoices_data as data
from bench.config import log
from bench.machine import describe, machine_info, wait_for_idle
from bench.procstat import Roles, snapshot, usage_between
from bench.stack import alter_system
from bench.verdicts import Verdict, not_measured
from bench.verdicts import lines as verdict_lines

TARGET_S = 120.0
TARGET_CUSTOMERS = 100_000
TARGET_METERS = 5
TARGET_REFRESH_CORE_SHARE = 0.10  # of one core, averaged over the refresh interval
REFRESH_ACTOR = "draft_current_periods"
DEFAULT_REFRESH_INTERVAL_S = 900.0
# Inside every zone's October 2026 period (the latest, Kathmandu, is at 17:45 on the 31st).
REFRESH_NOW = datetime(2026, 10, 31, 12, tzinfo=UTC)


@dataclass(slots=True)
class Options:
    customers: int
    meters: int
    keep_data: Path | None
    layout: str
    load_connections: int
    pool_size: int
    pg_stats: bool
    profile: bool
    pg_settings: tuple[str, ...]
    wait_idle: float
    json_out: str | None = None
    refresh: bool = True


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.invoices",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--customers",
        type=int,
        default=TARGET_CUSTOMERS,
        help=f"customers ({TARGET_CUSTOMERS}: the target's size; ~372M hourly_usage rows)",
    )
    parser.add_argument("--meters", type=int, default=5, help="metered charges per customer (5)")
    parser.add_argument(
        "--keep-data",
        type=Path,
        default=None,
        metavar="DIR",
        help="create the data in DIR (new or empty) and leave it and the servers running at the end",
    )
    parser.add_argument(
        "--layout",
        choices=sorted(data.LAYOUTS),
        default="time",
        help="physical order of hourly_usage: time (hour after hour, as "
        "production writes it; default) or customer (each customer's rows "
        "together, the friendliest case for per-customer reads; no sort files, "
        "about 20 GB less disk at the peak of a 100,000-customer load). "
        "daily_usage is always written day after day, as production writes it",
    )
    parser.add_argument(
        "--load-connections", type=int, default=2, help="connections generating usage rows in parallel (2)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="SQLAlchemy pool size of the engine handed to run_invoices (10)",
    )
    parser.add_argument(
        "--pg-stats",
        action="store_true",
        help="load pg_stat_statements and print the statements that took the most "
        "time in each run (adds a little overhead)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="after the measured runs, a third run (a refresh) under cProfile; "
        "prints the functions with the most cumulative time",
    )
    parser.add_argument(
        "--pg-set",
        action="append",
        metavar="NAME=VALUE",
        help="ALTER SYSTEM SET for the embedded Postgres before the run "
        "(repeatable), e.g. --pg-set work_mem=64MB",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before the load and again before run 1, wait up to this long for the "
        "machine to be idle (<10%% busy); it always warns if it is not",
    )
    parser.add_argument(
        "--json",
        dest="json_out",
        default=None,
        help="also write the figures and verdicts as JSON to this file",
    )
    parser.add_argument(
        "--no-refresh",
        action="store_true",
        help="skip the scheduled refresh of running periods (target 7's second figure)",
    )
    args = parser.parse_args(argv)
    if args.customers < 1 or not 1 <= args.meters <= 50:
        parser.error("--customers must be at least 1 and --meters 1-50")
    return Options(
        args.customers,
        args.meters,
        args.keep_data,
        args.layout,
        args.load_connections,
        args.pool_size,
        args.pg_stats,
        args.profile,
        tuple(args.pg_set or ()),
        args.wait_idle,
        args.json_out,
        not args.no_refresh,
    )


# --------------------------------------------------------------------------- servers


@dataclass(slots=True)
class Stack:
    data_dir: Path
    servers: Any = None  # portal.embedded.EmbeddedServers
    database_url: str = ""
    redis_url: str = ""

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def new_stack(opts: Options) -> Stack:
    if opts.keep_data is not None:
        data_dir = opts.keep_data.resolve()
        if data_dir.exists() and any(data_dir.iterdir()):
            raise SystemExit(f"--keep-data {data_dir}: not empty (the benchmark needs fresh data)")
        data_dir.mkdir(parents=True, exist_ok=True)
    else:
        data_dir = Path(tempfile.mkdtemp(prefix="portal-bench-invoices-"))
    return Stack(data_dir)


def start_stack(stack: Stack, opts: Options) -> None:
    from portal.infrastructure.embedded import EmbeddedServers
    from portal.infrastructure.settings import Settings
    from portal.operations.migrate import migrate

    log(f"starting embedded Postgres and Valkey in {stack.data_dir}")
    stack.servers = EmbeddedServers(stack.data_dir)
    urls = stack.servers.start()
    if opts.pg_stats or opts.pg_settings:
        asyncio.run(alter_system(urls.database_url, pg_stats=opts.pg_stats, pg_settings=opts.pg_settings))
        stack.servers.postgres.stop()
        urls = stack.servers.start()
    stack.database_url, stack.redis_url = urls.database_url, urls.redis_url
    log("migrating")
    migrate(Settings(data_dir=stack.data_dir, database_url=stack.database_url, redis_url=stack.redis_url))
    if opts.pg_stats:
        asyncio.run(_create_pg_stats(stack.database_url))


async def _create_pg_stats(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    finally:
        await conn.close()


def stop_stack(stack: Stack, opts: Options) -> None:
    if opts.keep_data is not None:
        log(
            f"data kept in {stack.data_dir}; Postgres and Valkey still running "
            f"(DATABASE_URL={stack.database_url} REDIS_URL={stack.redis_url}); stop them with "
            f'.venv/bin/python -c "from pathlib import Path; from portal.infrastructure.embedded import '
            f"EmbeddedServers; EmbeddedServers(Path('{stack.data_dir}')).stop()\""
        )
        return
    if stack.servers is not None:
        log("stopping embedded Postgres and Valkey")
        stack.servers.stop()
    shutil.rmtree(stack.data_dir, ignore_errors=True)


# --------------------------------------------------------------------------- data


@dataclass(slots=True)
class LoadFigures:
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds
    usage_rows: int = 0
    total_s: float = 0.0
    table_bytes: int = 0
    daily_bytes: int = 0
    zones: Counter[str] = field(default_factory=Counter)


async def load_data(stack: Stack, opts: Options) -> LoadFigures:
    figures = LoadFigures()
    periods = {zone: data.period_hours(zone) for zone in data.ZONES}  # asserts the hours
    meters = data.metric_names(opts.meters)
    figures.zones = Counter(data.zone_of(i) for i in range(opts.customers))
    expected = data.expected_rows(opts.customers, opts.meters, periods)
    started = time.perf_counter()

    async def step(name: str, work: Callable[[], Awaitable[Any]]) -> None:
        t0 = time.perf_counter()
        await work()
        figures.steps[name] = time.perf_counter() - t0
        log(f"{name}: {figures.steps[name]:.1f} s")

    conn = await asyncpg.connect(stack.database_url)
    try:
        await step("customers + meters (COPY)", lambda: data.copy_catalog(conn, opts.customers, meters))
        await step("plan (create_plan)", lambda: data.create_plan_via_service(stack.database_url, meters))
        await step("subscriptions (COPY)", lambda: data.copy_subscriptions(conn, opts.customers, periods))
        # The primary keys are rebuilt after the load: one sort instead of 37M random index
        # inserts (the rows come hour by hour, the key leads with the customer). Rows in
        # customer order go into the key in its order: it stays (no sort files on disk).
        if opts.layout == "time":
            await conn.execute("ALTER TABLE hourly_usage DROP CONSTRAINT hourly_usage_pkey")
        await conn.execute("ALTER TABLE daily_usage DROP CONSTRAINT daily_usage_pkey")
        log(
            f"generating {expected:,} hourly_usage rows ({opts.layout} order, "
            f"{opts.load_connections} connections)"
        )

        def report(chunks: int, rows: int, elapsed: float) -> None:
            if chunks % 4 == 0 or rows >= expected:
                log(
                    f"  {rows:>12,} rows  {rows / expected:6.1%}  {elapsed:6.1f} s  "
                    f"{rows / elapsed:,.0f} rows/s"
                )

        async def usage() -> None:
            figures.usage_rows = await data.generate_usage(
                stack.database_url,
                opts.customers,
                meters,
                periods,
                layout=opts.layout,
                connections=opts.load_connections,
                report=report,
            )

        await step("hourly_usage and daily_usage rows (INSERT … SELECT)", usage)

        async def primary_key() -> None:
            await conn.execute("SET maintenance_work_mem = '2GB'")
            if opts.layout == "time":
                await conn.execute(
                    "ALTER TABLE hourly_usage ADD CONSTRAINT hourly_usage_pkey "
                    "PRIMARY KEY (customer_id, metric_name, hour, group_key)"
                )
            await conn.execute(
                "ALTER TABLE daily_usage ADD CONSTRAINT daily_usage_pkey "
                "PRIMARY KEY (customer_id, metric_name, day, group_key)"
            )

        await step("primary keys", primary_key)
        await step("VACUUM ANALYZE", lambda: conn.execute("VACUUM (ANALYZE)"))
        await step("CHECKPOINT", lambda: conn.execute("CHECKPOINT"))
        figures.total_s = time.perf_counter() - started
        count = await conn.fetchval("SELECT count(*) FROM hourly_usage")
        if count != expected:
            raise RuntimeError(f"hourly_usage has {count} rows, expected {expected}")
        days = await conn.fetchval("SELECT count(*) FROM daily_usage")
        if days * 24 != expected:
            raise RuntimeError(f"daily_usage has {days} rows, expected {expected // 24}")
        figures.table_bytes = await conn.fetchval("SELECT pg_total_relation_size('hourly_usage')")
        figures.daily_bytes = await conn.fetchval("SELECT pg_total_relation_size('daily_usage')")
    finally:
        await conn.close()
    return figures


# --------------------------------------------------------------------------- the runs


@dataclass(slots=True)
class RunFigures:
    name: str
    wall_s: float
    summary: Any  # portal.billing.run.RunSummary
    python_cpu_s: float
    postgres_cpu_s: float
    other_cpu_s: float
    machine_busy: float
    foreign: list[tuple[str, float]]
    first_progress_s: float | None
    progress_calls: int
    invoices: int
    lines: int
    statuses: dict[str, int]
    statements: list[tuple[str, int, float]] = field(default_factory=list)  # query, calls, ms


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def invoice_run(
    stack: Stack,
    opts: Options,
    name: str,
    *,
    profiler: cProfile.Profile | None = None,
    current_at: datetime | None = None,
) -> RunFigures:
    """`run_invoices` of the month, or with `current_at` the scheduler's refresh of the
    periods running at that moment (`run_current_periods`)."""
    from portal.billing.run import run_current_periods, run_invoices
    from portal.infrastructure.db import create_engine, session_factory

    engine = create_engine(stack.database_url, pool_size=opts.pool_size)
    conn = await asyncpg.connect(stack.database_url)
    try:
        sessions = session_factory(engine)
        if opts.pg_stats:
            await conn.execute("SELECT pg_stat_statements_reset()")
        calls: list[float] = []
        last_logged = [0.0]
        started = 0.0

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            calls.append(now - started)
            if now - last_logged[0] >= 5 or done >= total:
                last_logged[0] = now
                log(f"  {name}: {done:,}/{total:,} customers after {now - started:.1f} s")

        roles = Roles({stack.postmaster_pid(): "postgres"})
        before, cpu_before = snapshot(roles), _cpu_self()
        if current_at is None:
            log(f"{name}: run_invoices(month={data.MONTH!r}, now={data.RUN_NOW.isoformat()})")
        else:
            log(f"{name}: run_current_periods(now={current_at.isoformat()})")
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        if current_at is None:
            summary = await run_invoices(sessions, month=data.MONTH, now=data.RUN_NOW, progress=progress)
        else:
            summary = await run_current_periods(sessions, now=current_at)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - started
        cpu_self = _cpu_self() - cpu_before
        usage = usage_between(before, snapshot(roles))
        log(f"{name}: {wall:.2f} s")
        statements: list[tuple[str, int, float]] = []
        if opts.pg_stats:
            rows = await conn.fetch(
                "SELECT query, calls, total_exec_time FROM pg_stat_statements "
                "WHERE query NOT LIKE '%pg_stat_statements%' "
                "ORDER BY total_exec_time DESC LIMIT 8"
            )
            statements = [(r["query"], r["calls"], r["total_exec_time"]) for r in rows]
        invoices = await conn.fetchval("SELECT count(*) FROM invoices")
        lines = await conn.fetchval("SELECT count(*) FROM invoice_lines")
        statuses = dict(await conn.fetch("SELECT status, count(*) FROM invoices GROUP BY 1"))
    finally:
        await conn.close()
        await engine.dispose()
    return RunFigures(
        name=name,
        wall_s=wall,
        summary=summary,
        python_cpu_s=cpu_self,
        postgres_cpu_s=usage.by_role.get("postgres", 0.0),
        other_cpu_s=max(0.0, usage.machine_busy_s - cpu_self - usage.by_role.get("postgres", 0.0)),
        machine_busy=usage.machine_busy_fraction,
        # A process that reaped a long-lived child shows the child's whole life: not this run's.
        foreign=[(n, c) for n, c in usage.foreign() if c <= usage.machine_busy_s],
        first_progress_s=calls[0] if calls else None,
        progress_calls=len(calls),
        invoices=invoices,
        lines=lines,
        statuses=statuses,
        statements=statements,
    )


async def aggregate_query(stack: Stack, opts: Options) -> list[tuple[float, int]]:
    """The UTC customers' period aggregate alone, as the run reads it (`window_sums`: whole
    days from daily_usage, edge hours from hourly_usage): (seconds, rows), twice."""
    from portal.infrastructure.db import create_engine, session_factory
    from portal.usage.repository import window_sums

    start, end = data.utc_period()
    utc = [data.customer_id(i) for i in range(opts.customers) if data.zone_of(i) == "UTC"]
    engine = create_engine(stack.database_url, pool_size=1)
    out: list[tuple[float, int]] = []
    try:
        async with session_factory(engine)() as session:
            for _ in range(2):
                t0 = time.perf_counter()
                rows = await window_sums(
                    session,
                    customer_ids=utc,
                    metric_names=data.metric_names(opts.meters),
                    start=start,
                    end=end,
                )
                out.append((time.perf_counter() - t0, len(rows)))
    finally:
        await engine.dispose()
    return out


# --------------------------------------------------------------------------- report


def _summary_line(run: RunFigures) -> str:
    s = run.summary
    fields = ("customers", "created", "refreshed", "skipped_finalized", "without_subscription")
    return "  ".join(f"{f}={getattr(s, f, '?')}" for f in fields)


def refresh_interval() -> tuple[float, str]:
    """How often the scheduler runs the refresh of running periods, from its schedule."""
    try:
        from portal.infrastructure.settings import Settings
        from portal.operations.scheduler import jobs

        for job in jobs(Settings()):
            if job.actor_name == REFRESH_ACTOR:
                return float(job.every_s), f"every {job.every_s} s in the scheduler's schedule"
    except Exception as exc:  # the schedule moved: say so and use the last known interval
        return DEFAULT_REFRESH_INTERVAL_S, f"assumed ({type(exc).__name__} reading the schedule)"
    return DEFAULT_REFRESH_INTERVAL_S, f"assumed ({REFRESH_ACTOR} not in the scheduler's schedule)"


def verdicts(opts: Options, measured: Measured) -> list[Verdict]:
    size_note = (
        ""
        if opts.customers >= TARGET_CUSTOMERS and opts.meters >= TARGET_METERS
        else f"{opts.customers:,} customers x {opts.meters}; the target is for "
        f"{TARGET_CUSTOMERS:,} x {TARGET_METERS}"
    )
    run_target = f"7. invoice run, {TARGET_CUSTOMERS:,} customers x {TARGET_METERS} metered charges"
    out: list[Verdict] = []
    if measured.runs:
        first = measured.runs[0]
        errors = len(first.summary.errors)
        notes = [n for n in (size_note, f"{errors} errors" if errors else "") if n]
        out.append(
            Verdict(
                run_target,
                f"<= {TARGET_S:g} s",
                f"{first.wall_s:.1f} s",
                first.wall_s <= TARGET_S and not notes,
                "; ".join(notes),
            )
        )
    else:
        out.append(not_measured(run_target, f"<= {TARGET_S:g} s", measured.missing or "no run"))
    refresh_target = "7. scheduled refresh of running periods, Postgres CPU"
    floor = f"< {TARGET_REFRESH_CORE_SHARE:.0%} of a core"
    refresh = measured.refresh
    if refresh is None:
        out.append(not_measured(refresh_target, floor, measured.refresh_missing or "--no-refresh"))
    else:
        share = refresh.postgres_cpu_s / measured.refresh_interval_s
        out.append(
            Verdict(
                refresh_target,
                floor,
                f"{share:.1%} ({refresh.postgres_cpu_s:.1f} s / {measured.refresh_interval_s:g} s)",
                share < TARGET_REFRESH_CORE_SHARE and not size_note,
                size_note,
            )
        )
    return out


def print_report(opts: Options, machine: dict[str, Any], load: LoadFigures, measured: Measured) -> None:
    runs, aggregate, missing = measured.runs, measured.aggregate, measured.missing
    out: list[str] = []
    add = out.append
    add("")
    add("=" * 78)
    add("invoice run benchmark")
    add("=" * 78)
    add(f"machine        {describe(machine)}")
    add(f"code           {machine['code']}")
    add(
        f"quiet?         machine {machine['busy_before']:.0%} busy before the load, "
        f"{machine.get('busy_before_runs', 0.0):.0%} before run 1 (other processes per run below)"
    )
    zones = ", ".join(f"{z} {n:,}" for z, n in load.zones.most_common())
    add(
        f"data           {opts.customers:,} customers ({zones}); {opts.meters} sum meters; "
        f"1 plan, {opts.customers:,} subscriptions"
    )
    add(
        f"               {load.usage_rows:,} hourly_usage rows ({opts.layout} order), "
        f"{load.table_bytes / 2**30:.2f} GiB with its index; {load.usage_rows // 24:,} daily_usage "
        f"rows, {load.daily_bytes / 2**30:.2f} GiB"
    )
    add(f"generation     {load.total_s:.1f} s in all")
    for name, seconds in load.steps.items():
        extra = ""
        if name.startswith("hourly_usage rows") and seconds > 0:
            extra = f"  ({load.usage_rows / seconds:,.0f} rows/s)"
        add(f"                 {name:<38} {seconds:7.1f} s{extra}")
    if missing is not None:
        add(f"invoice runs   not measured: {missing}")
    # The scheduled refresh is printed like the runs: its figures are the same kind.
    for run in [*runs, *([measured.refresh] if measured.refresh is not None else [])]:
        s = run.summary
        rate = s.customers / run.wall_s if run.wall_s > 0 else 0.0
        add(f"{run.name:<17}{run.wall_s:.2f} s wall, {rate:,.0f} customers/s")
        add(f"                 summary: {_summary_line(run)}")
        totals = ", ".join(f"{cur} {amount:,}" for cur, amount in sorted(s.totals.items()))
        add(f"                 totals: {totals or '-'}; errors: {len(s.errors)}")
        for error in list(s.errors)[:5]:
            add(f"                   ! {error}")
        add(f"                 invoices {run.invoices:,} {run.statuses}; invoice_lines {run.lines:,}")
        add(
            f"                 CPU: python (this process) {run.python_cpu_s:.1f} s, postgres "
            f"{run.postgres_cpu_s:.1f} s, other {run.other_cpu_s:.1f} s; machine busy "
            f"{run.machine_busy:.0%} of {machine['nproc']} cores"
        )
        if run.foreign:
            add(
                "                 other processes: "
                + ", ".join(f"{name} {cpu:.1f} s" for name, cpu in run.foreign)
            )
        if run.first_progress_s is not None:
            add(
                f"                 first progress callback after {run.first_progress_s:.2f} s "
                f"({run.progress_calls} calls)"
            )
        for query, calls, ms in run.statements:
            text = " ".join(query.split())
            add(f"                 pg {ms / 1000:7.2f} s {calls:>7,}×  {text[:90]}")
    if aggregate:
        times = ", ".join(f"{t:.2f} s" for t, _ in aggregate)
        add(
            f"aggregate      the UTC customers' period as the run reads it (window_sums), alone: "
            f"{times} ({aggregate[0][1]:,} rows)"
        )
    if measured.profile_text:
        add("profile        (a third run, a refresh, under cProfile; cumulative time)")
        out.extend("  " + line for line in measured.profile_text.splitlines())
    if measured.refresh is not None:
        add(
            f"refresh        the scheduled refresh of running periods ({REFRESH_ACTOR}, "
            f"{measured.refresh_interval_note}): Postgres {measured.refresh.postgres_cpu_s:.1f} s of CPU "
            f"per run = {measured.refresh.postgres_cpu_s / measured.refresh_interval_s:.1%} of one core"
        )
    elif measured.refresh_missing:
        add(f"refresh        not measured: {measured.refresh_missing}")
    add("targets        (issue 15; MISS also when not measured or at another size)")
    out.extend("                 " + line for line in verdict_lines(verdicts(opts, measured)))
    print("\n".join(out), flush=True)


def _profile_text(profiler: cProfile.Profile) -> str:
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("cumulative").print_stats(r"portal|sqlalchemy|asyncpg|msgspec|decimal", 35)
    stats.sort_stats("tottime").print_stats(20)
    return stream.getvalue()


# --------------------------------------------------------------------------- main


@dataclass(slots=True)
class Measured:
    runs: list[RunFigures] = field(default_factory=list)
    aggregate: list[tuple[float, int]] = field(default_factory=list)
    profile_text: str | None = None
    missing: str | None = None
    refresh: RunFigures | None = None
    refresh_interval_s: float = DEFAULT_REFRESH_INTERVAL_S
    refresh_interval_note: str = ""
    refresh_missing: str | None = None


async def measure(stack: Stack, opts: Options, machine: dict[str, Any]) -> Measured:
    try:
        import portal.billing.run  # noqa: F401
    except ImportError as exc:
        return Measured(missing=f"portal.billing.run is not importable ({exc})")
    machine["busy_before_runs"] = await asyncio.to_thread(wait_for_idle, opts.wait_idle)
    out = Measured()
    out.runs.append(await invoice_run(stack, opts, "run 1 (create)"))
    out.runs.append(await invoice_run(stack, opts, "run 2 (refresh)"))
    out.aggregate = await aggregate_query(stack, opts)
    if opts.refresh:
        out.refresh_interval_s, out.refresh_interval_note = refresh_interval()
        try:
            out.refresh = await invoice_run(stack, opts, "scheduled refresh", current_at=REFRESH_NOW)
        except ImportError as exc:
            out.refresh_missing = f"portal.billing.run.run_current_periods is not importable ({exc})"
    if opts.profile:
        profiler = cProfile.Profile()
        await invoice_run(stack, opts, "run 3 (profiled)", profiler=profiler)
        out.profile_text = _profile_text(profiler)
    return out


def write_json(opts: Options, machine: dict[str, Any], load: LoadFigures, measured: Measured) -> None:
    def run(figures: RunFigures) -> dict[str, Any]:
        return {
            "name": figures.name,
            "wall_s": figures.wall_s,
            "customers": getattr(figures.summary, "customers", None),
            "errors": len(getattr(figures.summary, "errors", [])),
            "python_cpu_s": figures.python_cpu_s,
            "postgres_cpu_s": figures.postgres_cpu_s,
            "machine_busy": figures.machine_busy,
        }

    result = {
        "bench": "invoices",
        "settings": {"customers": opts.customers, "meters": opts.meters, "layout": opts.layout},
        "machine": machine,
        "load_s": load.total_s,
        "usage_rows": load.usage_rows,
        "runs": [run(r) for r in measured.runs],
        "refresh": run(measured.refresh) if measured.refresh is not None else None,
        "refresh_interval_s": measured.refresh_interval_s,
        "verdicts": [v.as_dict() for v in verdicts(opts, measured)],
    }
    Path(opts.json_out or "").write_text(json.dumps(result, indent=2, default=str))
    log(f"results written to {opts.json_out}")


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    machine = machine_info()
    machine["busy_before"] = wait_for_idle(opts.wait_idle)
    stack = new_stack(opts)
    try:
        start_stack(stack, opts)
        load = asyncio.run(load_data(stack, opts))
        measured = asyncio.run(measure(stack, opts, machine))
        print_report(opts, machine, load, measured)
        if opts.json_out:
            write_json(opts, machine, load, measured)
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        stop_stack(stack, opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
