"""Alert latency benchmark: `python -m bench.alerts [--crossings 200] [--rate 5]`.

Measures the time from the request that crosses a level to the notice arriving at a local
SMTP server and at a webhook receiver (the issue's target: p99 under 5 s).

1. Starts the sinks in this process (bench/alerts_sinks.py): an aiosmtpd SMTP server and
   an HTTP receiver, each recording when every message arrived and for which customer.
2. Starts the stack as bench/stack.py does (embedded Postgres and Valkey in a temp dir,
   migrations, `usage-portal web` and one `usage-portal worker` process) with
   PORTAL_SMTP_URL pointing at the SMTP sink; creates a sum meter, the customers, an
   admin and an ingest key, and through the API for each customer an email channel
   `mailto://ops+<id>@bench.test`, a webhook channel `json://127.0.0.1:<port>/hook/<id>`
   and one rule: absolute level 100 on the meter.
3. Phase "steady": one event of quantity 100 per customer (each crosses the level once),
   paced at --rate crossings/s, open loop; t0 is taken just before each request. Waits
   until every customer has an email and a webhook (or --timeout s after the last send).
   Phase "burst" does the same for other customers at --burst-rate.
4. Prints per phase and channel: p50/p90/p99/max of arrival - t0, duplicates (a customer
   with more than one message of a channel), missing notices, PASS/FAIL against the target,
   and where the time went (from the rows: event committed, evaluation started, firing
   committed, send started), plus the machine.

Never asserts on time; exits 0 once it has measured. Stops what it started (also on
Ctrl-C) and deletes the temp data dir unless --keep-data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench import figures, harness
from bench.alerts_sinks import CHANNELS, Sinks
from bench.config import ROOT, SINGLE_PATH, Options, log, tier_options
from bench.harness import add_run_options
from bench.httpclient import HttpConnection, HttpError
from bench.machine import describe, machine_info
from bench.stack import Environment, check_alive, start_tiers, tail
from portal.infrastructure.settings import from_environment

TARGET_P99_S = 5.0
LEVEL = 100
HOST = "127.0.0.1"


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class AlertOptions:
    crossings: int
    rate: float
    burst_crossings: int
    burst_rate: float
    timeout: float
    settle: float
    web_workers: int
    worker_processes: int
    worker_threads: int
    scheduler: bool
    debounce_ms: int | None
    setup_concurrency: int
    keep_data: bool
    data_parent: str | None
    json_out: str | None
    wait_idle: float


def parse_options(argv: list[str] | None = None) -> AlertOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.alerts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--crossings", type=int, default=200, help="crossings (customers) in the steady phase (200)"
    )
    parser.add_argument("--rate", type=float, default=5.0, help="steady phase crossings/s (5)")
    parser.add_argument(
        "--burst-crossings", type=int, default=100, help="crossings in the burst phase (100; 0 skips it)"
    )
    parser.add_argument("--burst-rate", type=float, default=20.0, help="burst phase crossings/s (20)")
    parser.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds to wait for notices after a phase's last send (60)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=6.0,
        help="seconds to keep listening after a phase's notices all arrived, to "
        "catch duplicates (6: past the first retry delay, 5 s by default)",
    )
    parser.add_argument("--web-workers", type=int, default=1, help="web processes (1)")
    parser.add_argument("--worker-processes", type=int, default=1, help="Dramatiq worker processes (1)")
    parser.add_argument(
        "--worker-threads",
        type=int,
        default=4,
        help="Dramatiq threads per worker process (4, the CLI's default)",
    )
    parser.add_argument(
        "--scheduler",
        action="store_true",
        help="also run `usage-portal scheduler` (sweep_alerts every minute, as "
        "`usage-portal up` does); off by default to measure the fast path alone",
    )
    parser.add_argument(
        "--debounce-ms",
        type=int,
        default=None,
        help="PORTAL_ALERT_DEBOUNCE_MS for the tiers (default: the portal's, 500)",
    )
    parser.add_argument(
        "--setup-concurrency", type=int, default=8, help="connections creating channels and rules (8)"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.crossings < 1 or args.rate <= 0 or args.burst_crossings < 0 or args.burst_rate <= 0:
        parser.error("--crossings must be at least 1, --burst-crossings at least 0, rates above 0")
    return AlertOptions(
        crossings=args.crossings,
        rate=args.rate,
        burst_crossings=args.burst_crossings,
        burst_rate=args.burst_rate,
        timeout=args.timeout,
        settle=args.settle,
        web_workers=args.web_workers,
        worker_processes=args.worker_processes,
        worker_threads=args.worker_threads,
        scheduler=args.scheduler,
        debounce_ms=args.debounce_ms,
        setup_concurrency=max(1, args.setup_concurrency),
        keep_data=args.keep_data,
        data_parent=args.data_parent,
        json_out=args.json_out,
        wait_idle=args.wait_idle,
    )


def stack_options(opts: AlertOptions) -> Options:
    return tier_options(
        batch_size=1,
        web_workers=opts.web_workers,
        worker_processes=opts.worker_processes,
        worker_threads=opts.worker_threads,
        keep_data=opts.keep_data,
        data_parent=opts.data_parent,
        wait_idle=opts.wait_idle,
    )


# --------------------------------------------------------------------------- phases


@dataclass(slots=True)
class Phase:
    name: str
    rate: float
    customers: list[str]
    sent: dict[str, float] = field(default_factory=dict)  # t0: just before the request
    acked: dict[str, float] = field(default_factory=dict)  # the 202 answer arrived
    errors: dict[str, str] = field(default_factory=dict)  # not accepted: why
    first_send: float = 0.0
    last_send: float = 0.0
    waited_s: float = 0.0
    complete: bool = False

    @property
    def accepted(self) -> list[str]:
        return [c for c in self.customers if c in self.acked and c not in self.errors]


@dataclass(frozen=True, slots=True)
class Setup:
    run: str
    meter: str
    admin_key: str
    ingest_key: str
    port: int


async def create_catalog(env: Environment, run: str, customers: list[str]) -> tuple[str, str, str]:
    """The customers, one sum meter, an admin key and an ingest key (straight into Postgres,
    before the web tier starts, as bench.stack does). Returns (meter, admin key, ingest key)."""
    from portal.catalog.schemas import CustomerCreate, MeterCreate
    from portal.catalog.service import create_customer, create_meter
    from portal.infrastructure.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    meter = f"bench_{run}_alert_calls"
    engine = create_engine(env.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            for customer_id in customers:
                await create_customer(session, CustomerCreate(id=customer_id, name=f"Bench {customer_id}"))
            await create_meter(session, MeterCreate(metric_name=meter, aggregation="sum", unit="call"))
            _, admin = await create_key(session, scope="admin", name=f"bench alerts {run} admin")
            _, ingest = await create_key(session, scope="ingest", name=f"bench alerts {run} ingest")
    finally:
        await engine.dispose()
    return meter, admin, ingest


async def create_alerts(setup: Setup, sinks: Sinks, customers: list[str], concurrency: int) -> None:
    """Per customer, through the API: an email channel, a webhook channel (its signing
    secret goes to the webhook sink) and the rule."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for customer in customers:
        queue.put_nowait(customer)

    async def post(conn: HttpConnection, path: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await conn.post(path, json.dumps(body).encode())
        if status != 201:
            raise RuntimeError(f"POST {path} answered {status}: {answer[:500].decode(errors='replace')}")
        result: dict[str, Any] = json.loads(answer)
        return result

    async def worker() -> None:
        conn = HttpConnection(HOST, setup.port, {"Authorization": f"Bearer {setup.admin_key}"})
        try:
            while not queue.empty():
                customer = queue.get_nowait()
                base = f"/v1/customers/{customer}"
                await post(
                    conn,
                    f"{base}/alert-channels",
                    {"name": "email", "destination": f"mailto://ops+{customer}@bench.test"},
                )
                hook = await post(
                    conn,
                    f"{base}/alert-channels",
                    {"name": "webhook", "destination": sinks.webhook_url(customer)},
                )
                if hook.get("signingSecret"):
                    sinks.secrets[customer] = hook["signingSecret"]
                await post(
                    conn,
                    f"{base}/alert-rules",
                    {
                        "name": f"bench level {LEVEL}",
                        "metricName": setup.meter,
                        "basis": "absolute",
                        "levels": [LEVEL],
                    },
                )
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(customers)))))


async def send_crossings(setup: Setup, phase: Phase) -> None:
    """One event of quantity LEVEL per customer, started every 1/rate s whatever the answers
    (open loop); idle connections are reused, a new one is opened when none is free."""
    headers = {"Authorization": f"Bearer {setup.ingest_key}"}
    idle: list[HttpConnection] = []
    opened: list[HttpConnection] = []

    async def one(customer: str) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = HttpConnection(HOST, setup.port, headers)
            opened.append(conn)
        body = json.dumps(
            {
                "eventId": f"alert-{setup.run}-{customer}",
                "timestamp": int(time.time() * 1000),
                "customerId": customer,
                "metricName": setup.meter,
                "quantity": LEVEL,
                "metadata": {"source": "bench.alerts"},
            }
        ).encode()
        phase.sent[customer] = time.time()
        try:
            status, answer = await conn.post(SINGLE_PATH, body)
        except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
            phase.errors[customer] = f"{type(exc).__name__}: {exc}"
            await conn.close()
            return
        phase.acked[customer] = time.time()
        if status != 202:
            phase.errors[customer] = f"HTTP {status}: {answer[:300].decode(errors='replace')}"
        idle.append(conn)

    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    phase.first_send = time.time()
    for i, customer in enumerate(phase.customers):
        delay = start + i / phase.rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(customer)))
    await asyncio.gather(*tasks)
    phase.last_send = max(phase.sent.values())
    for conn in opened:
        await conn.close()


async def wait_for_notices(env: Environment, sinks: Sinks, phase: Phase, opts: AlertOptions) -> None:
    """Until every accepted crossing has an email and a webhook, or --timeout s after the
    last send; then --settle s more for duplicates."""
    deadline = phase.last_send + opts.timeout
    pending = {(ch, c) for c in phase.accepted for ch in CHANNELS}
    next_note = time.time() + 10
    while pending and time.time() < deadline:
        pending = {(ch, c) for ch, c in pending if not sinks.recorder.has(ch, c)}
        if time.time() >= next_note:
            log(f"{phase.name}: {len(pending)} notices still to arrive")
            next_note += 10
            check_alive(env)
        await asyncio.sleep(0.05)
    phase.complete = not pending
    phase.waited_s = time.time() - phase.last_send
    if pending:
        log(f"{phase.name}: {len(pending)} notices missing {opts.timeout:g} s after the last send")
    await asyncio.sleep(opts.settle)


# --------------------------------------------------------------------------- figures


def distribution(values: list[float]) -> dict[str, Any]:
    return figures.distribution(values, (0.5, 0.9, 0.99))


def channel_figures(sinks: Sinks, phase: Phase) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for channel in CHANNELS:
        latencies: list[float] = []
        duplicates = missing = bad_signatures = 0
        for customer in phase.accepted:
            arrivals = sorted(sinks.recorder.of(channel, customer), key=lambda a: a.at)
            if not arrivals:
                missing += 1
                continue
            latencies.append(arrivals[0].at - phase.sent[customer])
            duplicates += len(arrivals) > 1
            bad_signatures += sum(a.signature_ok is False for a in arrivals)
        figures = distribution(latencies)
        p99 = figures["p99"]
        figures.update(
            {
                "duplicates": duplicates,
                "missing": missing,
                "extra_messages": sum(max(0, len(sinks.recorder.of(channel, c)) - 1) for c in phase.accepted),
                "target_p99_s": TARGET_P99_S,
                "verdict": "PASS" if p99 is not None and p99 < TARGET_P99_S and not missing else "FAIL",
            }
        )
        if channel == "webhook":
            figures["bad_signatures"] = bad_signatures
        out[channel] = figures
    return out


async def stage_figures(pg: asyncpg.Connection, sinks: Sinks, phase: Phase, run: str) -> dict[str, Any]:
    """Where the time went, per crossing, from the rows the pipeline wrote (all clocks are
    this machine's): request → event committed → evaluation started (debounce + queue) →
    firing committed → send started (per channel) → arrival."""
    customers = phase.accepted
    commit_ts = await pg.fetchval("SHOW track_commit_timestamp") == "on"
    committed = "pg_xact_commit_timestamp(xmin)" if commit_ts else "persisted_at"
    events = {
        r["customer_id"]: r
        for r in await pg.fetch(
            f"SELECT customer_id, extract(epoch FROM {committed})::float8 AS committed "
            "FROM event_ledger WHERE customer_id = ANY($1::text[]) AND event_id LIKE $2",
            customers,
            f"alert-{run}-%",
        )
    }
    firing_committed = "pg_xact_commit_timestamp(xmin)" if commit_ts else "fired_at"
    firings = {
        r["customer_id"]: r
        for r in await pg.fetch(
            "SELECT customer_id, count(*) AS n, extract(epoch FROM min(fired_at))::float8 AS started, "
            f"extract(epoch FROM min({firing_committed}))::float8 AS committed "
            "FROM alert_firings WHERE customer_id = ANY($1::text[]) AND kind = 'crossing' GROUP BY 1",
            customers,
        )
    }
    deliveries = await pg.fetch(
        "SELECT d.customer_id, c.kind, d.status, d.attempts, d.last_error, "
        "  (SELECT extract(epoch FROM min(a.started_at))::float8 FROM alert_delivery_attempts a "
        "   WHERE a.delivery_id = d.id) AS first_start, "
        "  (SELECT extract(epoch FROM max(a.started_at))::float8 FROM alert_delivery_attempts a "
        "   WHERE a.delivery_id = d.id) AS last_start "
        "FROM alert_deliveries d JOIN alert_channels c ON c.id = d.channel_id "
        "WHERE d.customer_id = ANY($1::text[]) AND d.firing_id IS NOT NULL",
        customers,
    )
    stages: dict[str, list[float]] = {
        "request → 202": [],
        "request → event committed": [],
        "event committed → evaluation started": [],
        "evaluation started → firing committed": [],
    }
    for customer in customers:
        t0 = phase.sent[customer]
        stages["request → 202"].append(phase.acked[customer] - t0)
        event = events.get(customer)
        firing = firings.get(customer)
        if event is not None:
            stages["request → event committed"].append(event["committed"] - t0)
            if firing is not None:
                stages["event committed → evaluation started"].append(firing["started"] - event["committed"])
        if firing is not None:
            stages["evaluation started → firing committed"].append(firing["committed"] - firing["started"])
    statuses: dict[str, dict[str, int]] = {}
    retried: dict[str, int] = {}
    errors: dict[str, str] = {}
    kind_channel = {"email": "email", "webhook": "webhook"}
    for row in deliveries:
        channel = kind_channel.get(row["kind"], row["kind"])
        statuses.setdefault(channel, {}).setdefault(row["status"], 0)
        statuses[channel][row["status"]] += 1
        retried[channel] = retried.get(channel, 0) + (row["attempts"] > 1)
        if row["last_error"] and channel not in errors:
            errors[channel] = row["last_error"]
        firing = firings.get(row["customer_id"])
        if firing is not None and row["first_start"] is not None:
            stages.setdefault(f"firing committed → {channel} send started", []).append(
                row["first_start"] - firing["committed"]
            )
        arrivals = sinks.recorder.of(channel, row["customer_id"])
        if arrivals and row["last_start"] is not None:
            stages.setdefault(f"{channel} send started → arrival", []).append(
                min(a.at for a in arrivals) - row["last_start"]
            )
    return {
        "commit_timestamps": commit_ts,
        "events_persisted": len(events),
        "firings": sum(int(r["n"]) for r in firings.values()),
        "customers_fired": len(firings),
        "deliveries": statuses,
        "deliveries_retried": retried,
        "last_errors": errors,
        "stages": {name: distribution(values) for name, values in stages.items()},
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(result: dict[str, Any]) -> None:
    settings = result["settings"]
    print()
    print("Alert latency: crossing request → notice received (seconds)")
    print(f"  level {LEVEL} (absolute) on a sum meter; one event of {LEVEL} per customer crosses it")
    print(
        f"  tiers: web x{settings['web_workers']}, worker x{settings['worker_processes']} "
        f"({settings['worker_threads']} threads), scheduler {'on' if settings['scheduler'] else 'off'}, "
        f"debounce {settings['debounce_ms']} ms, retry delays {settings['retry_delays_ms']} ms"
    )
    for phase in result["phases"]:
        print()
        print(
            f"phase {phase['name']}: {phase['crossings']} crossings at {phase['rate']:g}/s "
            f"(sent over {phase['send_s']:.1f} s, {phase['accepted']} accepted, "
            f"{len(phase['errors'])} not accepted)"
        )
        for customer, error in list(phase["errors"].items())[:3]:
            print(f"  not accepted: {customer}: {error}")
        print(
            f"  {'channel':<9} {'n':>5} {'p50':>8} {'p90':>8} {'p99':>8} {'max':>8}  "
            f"{'dup':>4} {'miss':>5}  target p99 < {TARGET_P99_S:g} s"
        )
        for channel, f in phase["channels"].items():
            extra = f"  bad signatures: {f['bad_signatures']}" if f.get("bad_signatures") else ""
            print(
                f"  {channel:<9} {f['n']:>5} {_s(f['p50']):>8} {_s(f['p90']):>8} {_s(f['p99']):>8} "
                f"{_s(f['max']):>8}  {f['duplicates']:>4} {f['missing']:>5}  {f['verdict']}{extra}"
            )
        stages = phase.get("breakdown")
        if stages:
            print(
                f"  where the time went ({stages['events_persisted']} events persisted, "
                f"{stages['firings']} crossing firings, deliveries {stages['deliveries']}, "
                f"retried {stages['deliveries_retried']}):"
            )
            for name, d in stages["stages"].items():
                print(
                    f"    {name:<42} p50 {_s(d['p50']):>7}  p90 {_s(d['p90']):>7}  "
                    f"p99 {_s(d['p99']):>7}  max {_s(d['max']):>7}  (n={d['n']})"
                )
            for channel, error in stages["last_errors"].items():
                print(f"    last error ({channel}): {error[:300]}")
    unknown = result.get("unattributed_messages")
    if unknown:
        print(f"\nmessages the sinks could not attribute to a customer: {unknown}")
    m = result["machine"]
    print()
    print(
        f"machine: {describe(m)}; code {m.get('code')}; "
        f"busy before start {100 * result['busy_before_start']:.0f}%"
    )


# --------------------------------------------------------------------------- main


def _portal_command() -> list[str]:
    script = Path(sys.executable).parent / "usage-portal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "portal.cli.main"]


def start_scheduler(env: Environment) -> None:
    logfile = (env.data_dir / "scheduler.log").open("ab")
    log("starting scheduler")
    env.processes["scheduler"] = subprocess.Popen(
        [*_portal_command(), "scheduler"],
        cwd=ROOT,
        env=env.child_env(),
        stdout=logfile,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


async def run_bench(opts: AlertOptions, env: Environment, sinks: Sinks, busy_before: float) -> dict[str, Any]:
    run = os.urandom(3).hex()
    machine = machine_info()
    steady = Phase("steady", opts.rate, [f"ab{run}-s{i:04d}" for i in range(opts.crossings)])
    phases = [steady]
    if opts.burst_crossings:
        phases.append(
            Phase("burst", opts.burst_rate, [f"ab{run}-b{i:04d}" for i in range(opts.burst_crossings)])
        )
    customers = [c for p in phases for c in p.customers]
    meter, admin, ingest = await create_catalog(env, run, customers)
    log(f"catalog: {len(customers)} customers, meter {meter}, admin and ingest keys (run {run})")
    start_tiers(env, stack_options(opts))
    if opts.scheduler:
        start_scheduler(env)
    setup = Setup(run, meter, admin, ingest, env.ports[0])
    started = time.monotonic()
    await create_alerts(setup, sinks, customers, opts.setup_concurrency)
    log(
        f"alerts: 2 channels and 1 rule for each of {len(customers)} customers "
        f"in {time.monotonic() - started:.1f} s"
    )
    for phase in phases:
        log(f"{phase.name}: {len(phase.customers)} crossings at {phase.rate:g}/s")
        await send_crossings(setup, phase)
        log(
            f"{phase.name}: sent in {phase.last_send - phase.first_send:.1f} s "
            f"({len(phase.errors)} not accepted); waiting for the notices"
        )
        await wait_for_notices(env, sinks, phase, opts)
        check_alive(env)
    known = set(customers)
    tier_settings = from_environment()
    result: dict[str, Any] = {
        "settings": {
            "crossings": opts.crossings,
            "rate": opts.rate,
            "burst_crossings": opts.burst_crossings,
            "burst_rate": opts.burst_rate,
            "web_workers": opts.web_workers,
            "worker_processes": opts.worker_processes,
            "worker_threads": opts.worker_threads,
            "scheduler": opts.scheduler,
            # As the tiers read them: they inherit this process's environment.
            "debounce_ms": tier_settings.alert_debounce_ms,
            "retry_delays_ms": ",".join(str(d) for d in tier_settings.alert_retry_delays_ms),
        },
        "machine": machine,
        "busy_before_start": busy_before,
        "phases": [],
        "unattributed_messages": sum(a.customer_id not in known for a in sinks.recorder.all()),
        "smtp_sink_errors": sinks.smtp_errors,
    }
    pg = await asyncpg.connect(env.database_url)
    try:
        for phase in phases:
            entry: dict[str, Any] = {
                "name": phase.name,
                "rate": phase.rate,
                "crossings": len(phase.customers),
                "accepted": len(phase.accepted),
                "errors": phase.errors,
                "send_s": phase.last_send - phase.first_send,
                "all_arrived": phase.complete,
                "channels": channel_figures(sinks, phase),
            }
            try:
                entry["breakdown"] = await stage_figures(pg, sinks, phase, run)
            except asyncpg.PostgresError as exc:  # the schema may still be changing
                log(f"no breakdown for {phase.name}: {exc}")
            result["phases"].append(entry)
    finally:
        await pg.close()
    if any(f["missing"] for p in result["phases"] for f in p["channels"].values()):
        log(
            "some notices never arrived; the worker's log ends with:\n"
            + tail(env.data_dir / "worker.log", 20)
        )
    return result


def _alert_environment(opts: AlertOptions, sinks: Sinks) -> None:
    """What the tiers read (bench.stack copies this process's environment into theirs)."""
    os.environ["PORTAL_SMTP_URL"] = sinks.smtp_url()
    # The webhook sink listens on the loopback, which destinations may reach only when allowed.
    os.environ.setdefault("PORTAL_DESTINATION_ALLOW_NETWORKS", "127.0.0.0/8")
    # Only links in the notices use it; the web port is not chosen yet.
    os.environ.setdefault("PORTAL_PUBLIC_URL", "http://portal.bench.test")
    if opts.debounce_ms is not None:
        os.environ["PORTAL_ALERT_DEBOUNCE_MS"] = str(opts.debounce_ms)


def main(argv: list[str] | None = None) -> int:
    opts = parse_options(argv)
    sinks = Sinks(re.compile(r"ab[0-9a-f]{6}-[sb]\d{4,}"))
    sinks.start()
    log(f"sinks: SMTP on {HOST}:{sinks.smtp_port}, webhooks on {HOST}:{sinks.http_port}")
    _alert_environment(opts, sinks)
    try:
        return harness.run(
            opts,
            name="alerts",
            stack=stack_options(opts),
            report=print_report,
            uvloop=False,
            measure=lambda env, busy_before: run_bench(opts, env, sinks, busy_before),
        )
    finally:
        with contextlib.suppress(Exception):
            sinks.stop()


if __name__ == "__main__":
    sys.exit(main())
