"""Dashboard benchmark: `python -m bench.dashboard [--duration 60] [--viewers 50]`.

Measures how fast the customer page's live panel answers its poll while ingest is busy
(issue 15's target 6: p99 <= 30 ms for `GET /portal/customers/{id}/usage?seen=<version>`
with 50 viewers while ingest runs at half its maximum, sharing the web processes).

1. Starts the stack as bench/stack.py does (embedded Postgres and Valkey in a temp dir,
   migrations, `usage-portal web --workers 2` and `usage-portal worker`), the ingest
   benchmark's catalog (10 customers in mixed zones, a sum, a count and a max meter, an
   ingest key) plus --quiet-customers more that receive no events during the run, one plan
   (a flat fee and a per-unit price on the sum meter) every customer is subscribed to, and
   one customer user per customer. Quiet customers get a few events first, so every panel
   has a chart.
2. Signs in --viewers sessions through the real login form (viewers spread round-robin over
   the customers, so several sessions share a user) and loads each panel once.
3. Ingest runs at half the batch ingest maximum: the one the ingest benchmark measured in
   this `make bench` (--max-from its JSON file), or measured here first for --measure-max
   seconds (closed loop, 8 connections; 20 s unless another source is given; the events
   accepted over the time until they were all persisted); or at --ingest-rate.
4. For --duration s: ingest at that rate (1000-event batches on a fixed schedule, open
   loop) while every viewer polls `…/usage?seen=<version>` every --interval s as
   static/portal.js does (HX-Request header, the version of the last 200 answer), on its
   own keep-alive connection. Busy customers change between polls (200 with the panel),
   quiet ones do not (204).
5. Then, for --breakdown-duration s more under the same load, times the steps of the
   panel in this process (portal/pages/service.py's usage_panel and what it calls, the
   session lookup, the customer lookup and the template), one panel at a time.

Prints p50/p95/p99/max of the poll latency (all, 200s, 204s), the count of each status,
the ingest rate achieved, CPU per role, the breakdown, and PASS/MISS against the target
(also as a verdict in the --json file, for `python -m bench.summary`).
Never asserts on time; exits 0 once it has measured. Stops what it started (also on
Ctrl-C) and deletes the temp data dir unless --keep-data.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import re
import subprocess
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from bench import harness
from bench.config import BATCH_PATH, INFLIGHT_KEY, ROOT, ZONES, Options, log, tier_options
from bench.figures import distribution
from bench.harness import add_run_options
from bench.httpclient import HttpConnection, HttpError
from bench.load import EventFactory, LoadStats, closed_loop, open_connections, open_loop
from bench.machine import describe, machine_info
from bench.procstat import ROLES, Roles, snapshot, usage_between
from bench.serverstats import delta, valkey_commands
from bench.stack import (
    Catalog,
    Environment,
    check_alive,
    create_catalog,
    server_roots,
    start_tiers,
)
from bench.stack import _free_port as free_port
from bench.stack import _portal_command as portal_command
from bench.verdicts import Verdict
from bench.verdicts import lines as verdict_lines

TARGET_P99_S = 0.030
TARGET_VIEWERS = 50
DEFAULT_MEASURE_MAX_S = 20.0
HOST = "127.0.0.1"
PASSWORD = "bench dashboard password"
PLAN_ID = "bench-dashboard"
SEEN = re.compile(rb'<input type="hidden" name="seen" value="([^"]*)">')


# --------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class DashboardOptions:
    duration: float
    viewers: int
    interval: float
    quiet_customers: int
    ingest_rate: float | None
    measure_max: float
    max_from: str | None
    batch_size: int
    plan: bool
    breakdown_duration: float
    viewer_web: int
    web_workers: int
    worker_processes: int
    worker_threads: int
    keep_data: bool
    data_parent: str | None
    json_out: str | None
    wait_idle: float


def parse_options(argv: list[str] | None = None) -> DashboardOptions:
    parser = argparse.ArgumentParser(
        prog="python -m bench.dashboard",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds (60)")
    parser.add_argument("--viewers", type=int, default=50, help="signed-in sessions polling (50)")
    parser.add_argument(
        "--interval",
        type=float,
        default=2.0,
        help="seconds between one viewer's polls (2, as static/portal.js)",
    )
    parser.add_argument(
        "--quiet-customers",
        type=int,
        default=10,
        help="customers that get no events during the run; their viewers "
        "mostly get 204 (10; the 10 busy ones get every event)",
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
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (1000)")
    parser.add_argument(
        "--no-plan",
        action="store_true",
        help="no plan or subscriptions: the panel shows usage without a price",
    )
    parser.add_argument(
        "--breakdown-duration",
        type=float,
        default=10.0,
        help="seconds of timing the panel's steps after the run (10; 0: skip)",
    )
    parser.add_argument("--web-workers", type=int, default=2, help="web processes (2)")
    parser.add_argument(
        "--viewer-web",
        type=int,
        default=0,
        metavar="N",
        help="serve the viewers from a separate `usage-portal web --workers N` "
        "(0, the default: the same web tier as ingest, as `usage-portal up` "
        "runs it); shows what sharing the event loops with ingest costs",
    )
    parser.add_argument("--worker-processes", type=int, default=2, help="Dramatiq worker processes (2)")
    parser.add_argument(
        "--worker-threads", type=int, default=4, help="Dramatiq threads per worker process (4)"
    )
    add_run_options(parser)
    args = parser.parse_args(argv)
    if args.duration <= 0 or args.viewers < 1 or args.interval <= 0 or args.quiet_customers < 0:
        parser.error(
            "--duration and --interval must be above 0, --viewers at least 1, --quiet-customers at least 0"
        )
    if args.ingest_rate is not None and args.ingest_rate < 0:
        parser.error("--ingest-rate must be at least 0")
    return DashboardOptions(
        duration=args.duration,
        viewers=args.viewers,
        interval=args.interval,
        quiet_customers=args.quiet_customers,
        ingest_rate=args.ingest_rate,
        measure_max=(
            args.measure_max
            if args.measure_max is not None
            else (DEFAULT_MEASURE_MAX_S if args.ingest_rate is None and args.max_from is None else 0.0)
        ),
        max_from=args.max_from,
        batch_size=args.batch_size,
        plan=not args.no_plan,
        breakdown_duration=args.breakdown_duration,
        viewer_web=max(0, args.viewer_web),
        web_workers=args.web_workers,
        worker_processes=args.worker_processes,
        worker_threads=args.worker_threads,
        keep_data=args.keep_data,
        data_parent=args.data_parent,
        json_out=args.json_out,
        wait_idle=args.wait_idle,
    )


def stack_options(opts: DashboardOptions) -> Options:
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
    quiet: list[str]
    admin_key: str
    port: int

    @property
    def customers(self) -> list[str]:
        return [*self.catalog.customers, *self.quiet]


def user_email(customer_id: str) -> str:
    return f"viewer@{customer_id}.bench.test"


async def create_accounts(env: Environment, run: str, quiet: int) -> tuple[Catalog, list[str], str]:
    """The ingest benchmark's catalog, the quiet customers, an admin key and one customer
    user per customer (straight into Postgres, before the web tier starts)."""
    from portal.accounts.passwords import hash_password
    from portal.catalog.schemas import CustomerCreate
    from portal.catalog.service import create_customer
    from portal.infrastructure.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    catalog = await create_catalog(env, run)
    quiet_ids = [f"bench-{run}-q{i:02d}" for i in range(quiet)]
    engine = create_engine(env.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            for i, customer_id in enumerate(quiet_ids):
                await create_customer(
                    session,
                    CustomerCreate(
                        id=customer_id, name=f"Bench {customer_id}", timezone=ZONES[i % len(ZONES)]
                    ),
                )
            _, admin = await create_key(session, scope="admin", name=f"bench dashboard {run} admin")
    finally:
        await engine.dispose()
    import asyncpg

    hashed = hash_password(PASSWORD)
    conn = await asyncpg.connect(env.database_url)
    try:
        await conn.executemany(
            "INSERT INTO users (email, name, role, customer_id, all_customers, password_hash) "
            "VALUES ($1, $2, 'customer', $3, false, $4)",
            [(user_email(c), f"Viewer {c}", c, hashed) for c in [*catalog.customers, *quiet_ids]],
        )
    finally:
        await conn.close()
    return catalog, quiet_ids, admin


async def subscribe_all(setup: Setup) -> None:
    """One plan through the admin API, every customer subscribed: the panel then also
    computes the cost so far (the live preview), as a customer with a plan sees it."""
    headers = {"Authorization": f"Bearer {setup.admin_key}"}
    async with httpx.AsyncClient(
        base_url=f"http://{HOST}:{setup.port}", headers=headers, timeout=30
    ) as client:
        plan = {
            "id": PLAN_ID,
            "name": "Bench pay as you go",
            "currency": "USD",
            "charges": [
                {"key": "base", "model": "flat", "amount": "49.00"},
                {
                    "key": "calls",
                    "model": "per_unit",
                    "meter": setup.catalog.sum_meter,
                    "unitPrice": "0.0001",
                },
            ],
        }
        answer = await client.post("/v1/plans", json=plan)
        if answer.status_code != 201:
            raise RuntimeError(f"POST /v1/plans answered {answer.status_code}: {answer.text[:500]}")
        for customer in setup.customers:
            answer = await client.post(f"/v1/customers/{customer}/subscriptions", json={"planId": PLAN_ID})
            if answer.status_code != 201:
                raise RuntimeError(
                    f"subscribing {customer} answered {answer.status_code}: {answer.text[:500]}"
                )


async def seed_quiet(setup: Setup) -> None:
    """A few events for each quiet customer, so their panels have a chart and totals."""
    if not setup.quiet:
        return
    now_ms = int(time.time() * 1000)
    events = [
        {
            "eventId": f"seed-{customer}-{i}",
            "timestamp": now_ms - i * 600_000,
            "customerId": customer,
            "metricName": setup.catalog.sum_meter,
            "quantity": 10 + i,
            "dimensions": {"region": "eu-west"},
        }
        for customer in setup.quiet
        for i in range(6)
    ]
    conn = HttpConnection(HOST, setup.port, {"Authorization": f"Bearer {setup.catalog.ingest_key}"})
    try:
        status, answer = await conn.post(BATCH_PATH, json.dumps({"events": events}).encode())
    finally:
        await conn.close()
    if status != 202:
        raise RuntimeError(f"seeding answered {status}: {answer[:300]!r}")


async def wait_persisted(redis: Redis, timeout: float = 300.0) -> float:
    """Until no accepted batch is in flight; returns how long that took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if await redis.zcard(INFLIGHT_KEY) == 0:
            return time.monotonic() - started
        await asyncio.sleep(0.2)
    log(f"the backlog was not persisted within {timeout:g} s; going on")
    return time.monotonic() - started


# --------------------------------------------------------------------------- viewers


async def sign_in(port: int, email: str) -> str:
    """A session through the real login form; returns the session cookie's value."""
    from portal.pages.sessions import SESSION_COOKIE

    async with httpx.AsyncClient(base_url=f"http://{HOST}:{port}", timeout=30) as client:
        form = await client.get("/portal/login")
        match = re.search(r'<input type="hidden" name="csrf_token" value="([^"]*)">', form.text)
        if form.status_code != 200 or match is None:
            raise RuntimeError(f"login form: {form.status_code} {form.text[:300]}")
        answer = await client.post(
            "/portal/login", data={"email": email, "password": PASSWORD, "csrf_token": match.group(1)}
        )
        session = answer.cookies.get(SESSION_COOKIE)
        if answer.status_code != 303 or not session:
            raise RuntimeError(f"sign-in of {email}: {answer.status_code} {answer.text[:300]}")
        return session


@dataclass(slots=True)
class Poll:
    at: float  # seconds since the run started (when the request was sent)
    status: int
    latency: float
    customer: str


@dataclass(slots=True)
class Viewer:
    customer: str
    session: str
    conn: HttpConnection
    seen: str = ""
    polls: list[Poll] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"/portal/customers/{urllib.parse.quote(self.customer)}/usage"

    async def poll(self, started: float) -> None:
        query = f"?seen={urllib.parse.quote(self.seen)}" if self.seen else ""
        sent = time.perf_counter()
        try:
            status, body = await self.conn.get(self.path + query)
        except (OSError, HttpError, asyncio.IncompleteReadError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return
        latency = time.perf_counter() - sent
        self.polls.append(Poll(sent - started, status, latency, self.customer))
        if status == 200:
            match = SEEN.search(body)
            if match:
                self.seen = match.group(1).decode()
        elif status != 204 and len(self.errors) < 3:
            self.errors.append(f"{status}: {body[:200]!r}")


async def open_viewers(setup: Setup, n: int) -> list[Viewer]:
    customers = setup.customers
    viewers = []
    for i in range(n):
        customer = customers[i % len(customers)]
        session = await sign_in(setup.port, user_email(customer))
        from portal.pages.sessions import SESSION_COOKIE

        conn = HttpConnection(
            HOST,
            setup.port,
            {"Cookie": f"{SESSION_COOKIE}={session}", "HX-Request": "true", "Accept": "text/html"},
        )
        await conn.connect()
        viewers.append(Viewer(customer, session, conn))
        # uvicorn's processes share one socket: spaced out, connections spread over them.
        await asyncio.sleep(0.02)
    for viewer in viewers:  # as the page does once: its first panel, and the version
        await viewer.poll(time.perf_counter())
        viewer.polls.clear()
        if not viewer.seen:
            raise RuntimeError(f"no panel for {viewer.customer}: {viewer.errors}")
    return viewers


async def poll_loop(viewer: Viewer, interval: float, started: float, until: float, offset: float) -> None:
    """Every `interval` s from `offset` on, as setInterval does: a slow answer delays only
    its own poll (portal.js does not wait for one to answer before the next tick either,
    but htmx drops a trigger while a request of the element is in flight)."""
    tick = started + offset
    while True:
        now = time.perf_counter()
        if tick > now:
            await asyncio.sleep(tick - now)
        if time.perf_counter() >= until:
            return
        await viewer.poll(started)
        tick += interval
        while tick < time.perf_counter():  # a missed tick is skipped, not sent late
            tick += interval


# --------------------------------------------------------------------------- breakdown


STEPS = (
    "session (Redis)",
    "customer (cached)",
    "watermark (Redis)",
    "rating setup (cached)",
    "preview (Postgres)",
    "meters (cached)",
    "live usage (Redis, all meters)",
    "recent alerts (Postgres)",
    "anomalies (Postgres, cached hourly)",
    "budgets (Postgres)",
    "entitlement limits (cached)",
    "version hash",
    "template render",
    "usage_panel total",
)


Breakdown = Callable[[list[Viewer], float], Awaitable[dict[str, list[float]]]]


def prepare_breakdown(env: Environment) -> Breakdown:
    """The panel's steps, timed one after the other in this process against the same servers,
    under the same load: what GET …/usage does, minus HTTP and Litestar. Mirrors
    portal/pages/service.py usage_panel (also timed whole) and the handler around it.

    Call before the measured window: importing the portal and opening its state here took
    ~0.8 s of this process's loop, which the polls and ingest requests in flight then
    counted as theirs (the runs' rare 0.7-0.9 s maxima and ingest p99s of 0.3-0.9 s)."""
    from portal.billing.preview import preview
    from portal.infrastructure.periods import BillingPeriod, period_for
    from portal.pages import service
    from portal.pages.routes import template_config
    from portal.pages.sessions import load_session
    from portal.state import PortalState

    settings = _settings(env)
    portal = PortalState.open(settings)
    ttl = settings.catalog_cache_seconds
    engine = template_config().instance
    assert engine is not None
    template = engine.get_template("partials/usage_panel.html")
    times: dict[str, list[float]] = {step: [] for step in STEPS}

    async def timed(step: str, call: Awaitable[Any]) -> Any:
        t0 = time.perf_counter()
        result = await call
        times[step].append(time.perf_counter() - t0)
        return result

    def timed_sync(step: str, call: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        result = call()
        times[step].append(time.perf_counter() - t0)
        return result

    async def one_panel(viewer: Viewer) -> None:
        now = datetime.now(UTC)
        await timed("session (Redis)", load_session(portal.redis, viewer.session))
        async with portal.sessions() as db:
            customer = await timed(
                "customer (cached)", portal.customers.get(db, viewer.customer, seen_by=viewer.session)
            )
            watermark_ms = await timed("watermark (Redis)", portal.live.watermark_ms())
            watermark = datetime.fromtimestamp(watermark_ms / 1000, UTC)
            period = period_for(now, customer.timezone)
            setup = await timed("rating setup (cached)", service._rating_setup(db, customer, now, ttl))
            if setup is not None:  # no plan (--no-plan): the panel skips the preview too
                estimate = await timed(
                    "preview (Postgres)",
                    preview(db, customer.id, now=now, complete_through=watermark, setup=setup),
                )
                period = BillingPeriod(estimate.period_start, estimate.period_end)
            meters = await timed("meters (cached)", service._meters(db, ttl))
            end = min(period.end, now + settings.future_tolerance)
            await timed(
                "live usage (Redis, all meters)",
                asyncio.gather(*(service._meter_usage(portal, customer, m, period, end) for m in meters)),
            )
            await timed("recent alerts (Postgres)", service.recent_alerts(db, customer))
            await timed("anomalies (Postgres, cached hourly)", service._anomalies(db, customer, meters, now))
            await timed("budgets (Postgres)", service._budget_rules(db, customer.id))
            await timed("entitlement limits (cached)", portal.entitlements.profiles({customer.id}, now))
            panel = await timed("usage_panel total", service.usage_panel(portal, db, customer, now=now))
        timed_sync("version hash", lambda: panel.version)
        timed_sync("template render", lambda: template.render(panel=panel))

    async def breakdown(viewers: list[Viewer], until: float) -> dict[str, list[float]]:
        rng = random.Random(7)
        try:
            while time.perf_counter() < until:
                await one_panel(viewers[rng.randrange(len(viewers))])
                await asyncio.sleep(0.05)  # one panel at a time, ~15/s: a small share of the load
        finally:
            await portal.close()
        return times

    return breakdown


def _settings(env: Environment) -> Any:
    from portal.infrastructure.settings import from_environment

    return from_environment().with_urls(
        database_url=env.database_url, redis_url=env.redis_url, broker_url=env.broker_url
    )


# --------------------------------------------------------------------------- figures


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.1f}"


def print_report(result: dict[str, Any]) -> None:
    s = result["settings"]
    polls = result["polls"]
    print()
    print("Dashboard benchmark: GET /portal/customers/{id}/usage?seen=<version> while ingesting")
    print(
        f"  {s['viewers']} signed-in viewers over {s['customers']} customers ({s['busy_customers']} busy, "
        f"{s['quiet_customers']} quiet), one poll each every {s['interval']:g} s, "
        f"{s['duration']:g} s; plan: {'yes' if s['plan'] else 'no'}"
    )
    print(
        f"  tiers: web x{s['web_workers']}, worker x{s['worker_processes']} "
        f"({s['worker_threads']} threads)"
        + (
            f"; viewers on their own web tier x{s['viewer_web']}"
            if s["viewer_web"]
            else "; viewers and ingest on the same web tier"
        )
    )
    if result.get("measured_max_eps") is not None:
        print(
            f"  batch ingest maximum: {result['measured_max_eps']:,.0f} events/s "
            f"({result.get('max_source') or 'measured'}); ingest runs at half of it"
        )
    ingest = result["ingest"]
    print(
        f"  ingest: target {ingest['target_eps']:,.0f} events/s, achieved {ingest['accepted_eps']:,.0f} "
        f"events/s accepted ({ingest['accepted']:,} events, {ingest['late_sends']} late sends, "
        f"statuses {ingest['statuses']}), backlog persisted {ingest['drain_s']:.1f} s after the load"
    )
    batch = ingest["batch_latency"]
    if batch["n"]:
        print(
            f"  ingest request latency ({s['batch_size']}-event batches): p50 {_ms(batch['p50'])} ms, "
            f"p99 {_ms(batch['p99'])} ms, max {_ms(batch['max'])} ms"
        )
    print()
    print(f"  {'answers':<10} {'n':>6} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for name in ("all", "200", "204"):
        d = polls[name]
        print(
            f"  {name:<10} {d['n']:>6} {_ms(d['p50']):>8} {_ms(d['p95']):>8} {_ms(d['p99']):>8} "
            f"{_ms(d['max']):>8}"
        )
    print(
        "  over time:  "
        + "  ".join(
            f"{w['from_s']:>3.0f}s p50 {_ms(w['p50'])} p99 {_ms(w['p99'])}" for w in polls["timeline"][:4]
        )
    )
    for i in range(4, len(polls["timeline"]), 4):
        print(
            "              "
            + "  ".join(
                f"{w['from_s']:>3.0f}s p50 {_ms(w['p50'])} p99 {_ms(w['p99'])}"
                for w in polls["timeline"][i : i + 4]
            )
        )
    print(f"  statuses: {polls['statuses']}; errors: {polls['errors']}")
    for error in polls["sample_errors"]:
        print(f"    {error}")
    p99 = polls["all"]["p99"]
    print(
        f"  target p99 <= {TARGET_P99_S * 1000:g} ms: {result['verdict']}"
        + ("" if p99 is None else f" (p99 {p99 * 1000:.1f} ms)")
    )
    print()
    print("  Targets of issue 15:")
    for line in verdict_lines([Verdict(**_verdict_args(v)) for v in result["verdicts"]]):
        print(f"     {line}")
    cpu = result.get("cpu")
    if cpu:
        print()
        print(
            f"  CPU during the run (% of the machine, {cpu['machine_busy_pct']:.0f}% busy): "
            + ", ".join(f"{role} {pct:.0f}%" for role, pct in cpu["by_role_pct"].items())
        )
    valkey = result.get("valkey")
    if valkey:
        print(
            "  Valkey's busiest commands (share of the run's time): "
            + ", ".join(
                f"{v['command']} {v['calls']} calls x {v['usec_per_call'] / 1000:.2f} ms "
                f"({v['busy_pct']:.0f}%)"
                for v in valkey["top"]
            )
        )
    steps = result.get("breakdown")
    if steps:
        print()
        print(
            f"  where a panel's time goes (timed in-process under the same load, "
            f"{steps['usage_panel total']['n']} panels; ms):"
        )
        print(f"    {'step':<38} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>7}")
        for name, d in steps.items():
            print(
                f"    {name:<38} {_ms(d['p50']):>7} {_ms(d['p95']):>7} {_ms(d['p99']):>7} {_ms(d['max']):>7}"
            )
    m = result["machine"]
    print()
    print(
        f"machine: {describe(m)}; code {m.get('code')}; "
        f"busy before start {100 * result['busy_before_start']:.0f}%"
    )


# --------------------------------------------------------------------------- run


async def measure_max(
    env: Environment, factory: EventFactory, seconds: float, batch_size: int, redis: Redis, key: str
) -> float:
    """The sustained batch ingest maximum: a closed loop of 8 connections for `seconds`, the
    events accepted over the time until they were all persisted (as the ingest benchmark's
    figure that `make bench` hands in with --max-from is the smaller of accepted and
    persisted). Accepted alone is a burst the worker then takes seconds to persist: half of
    it was more than the stack sustains, and the runs at it measured a growing backlog."""
    log(f"measuring the batch ingest maximum for {seconds:g} s")
    conns = await open_connections(env.ports, key, 8)
    stats = LoadStats()
    try:
        await closed_loop(
            conns, BATCH_PATH, lambda: factory.batch("M", batch_size), batch_size, seconds, stats
        )
    finally:
        await asyncio.gather(*(c.close() for c in conns))
    log(f"{stats.accepted / stats.elapsed:,.0f} events/s accepted; waiting for the backlog to be persisted")
    drain_s = await wait_persisted(redis)
    eps = stats.accepted / (stats.elapsed + drain_s) if stats.elapsed else 0.0
    log(f"maximum: {eps:,.0f} events/s accepted and persisted (backlog persisted in {drain_s:.1f} s)")
    return eps


def spawn_viewer_web(env: Environment, workers: int) -> int:
    """A second web tier for the viewers only (ingest keeps the first); returns its port."""
    port = free_port()
    argv = [*portal_command(), "web", "--port", str(port), "--workers", str(workers)]
    log(f"starting web-viewers: {' '.join(argv[1:])}")
    env.processes["web-viewers"] = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env.child_env(),
        stdout=(env.data_dir / "web-viewers.log").open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return port


async def start_viewer_web(env: Environment, workers: int) -> int:
    port = spawn_viewer_web(env, workers)
    async with httpx.AsyncClient(timeout=2) as client:
        for _ in range(300):
            check_alive(env)
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://{HOST}:{port}/healthz")).status_code == 200:
                    return port
            await asyncio.sleep(0.3)
    raise RuntimeError("the viewers' web tier did not become healthy")


async def run_bench(opts: DashboardOptions, env: Environment, busy_before: float) -> dict[str, Any]:
    run = os.urandom(3).hex()
    machine = machine_info()
    catalog, quiet, admin = await create_accounts(env, run, opts.quiet_customers)
    log(
        f"catalog: {len(catalog.customers)} busy and {len(quiet)} quiet customers, 3 meters, "
        f"one customer user each (run {run})"
    )
    start_tiers(env, stack_options(opts))
    viewer_port = await start_viewer_web(env, opts.viewer_web) if opts.viewer_web else env.ports[0]
    setup = Setup(catalog, quiet, admin, viewer_port)
    roles = Roles({p.pid: "worker" if name == "worker" else "web" for name, p in env.processes.items()})
    if env.servers is not None:
        roles.roots.update(server_roots(env))
    redis = Redis.from_url(env.redis_url)
    viewers: list[Viewer] = []
    try:
        if opts.plan:
            await subscribe_all(setup)
            log(f"plan {PLAN_ID}: {len(setup.customers)} customers subscribed")
        await seed_quiet(setup)
        factory = EventFactory(catalog)
        measured_max = None
        max_source = ""
        if opts.max_from is not None and opts.measure_max <= 0:
            measured_max = max_from_json(opts.max_from)
            max_source = f"the ingest benchmark ({opts.max_from})"
        if measured_max is None and opts.measure_max > 0:
            measured_max = await measure_max(
                env, factory, opts.measure_max, opts.batch_size, redis, catalog.ingest_key
            )
            max_source = f"measured here ({opts.measure_max:g} s, closed loop)"
        if opts.ingest_rate is not None:
            rate = opts.ingest_rate
        elif measured_max is not None:
            rate = measured_max / 2
        else:  # --max-from named a file without a batch phase, and nothing was measured
            measured_max = await measure_max(
                env, factory, DEFAULT_MEASURE_MAX_S, opts.batch_size, redis, catalog.ingest_key
            )
            max_source = f"measured here ({DEFAULT_MEASURE_MAX_S:g} s, closed loop)"
            rate = measured_max / 2
        await wait_persisted(redis)
        log(f"signing in {opts.viewers} viewers")
        viewers = await open_viewers(setup, opts.viewers)
        total = opts.duration + opts.breakdown_duration
        log(
            f"run: {opts.viewers} viewers polling every {opts.interval:g} s while ingesting "
            f"{rate:,.0f} events/s, {opts.duration:g} s measured"
            + (
                f", then {opts.breakdown_duration:g} s timing the panel's steps"
                if opts.breakdown_duration
                else ""
            )
        )
        breakdown = prepare_breakdown(env) if opts.breakdown_duration > 0 else None
        # The load generator's own full collections (80-130 ms each, measured with a
        # gc.callbacks probe) would count as poll latency: what it set up stays out of them.
        gc.freeze()
        stats = LoadStats()
        started = time.perf_counter()
        before = snapshot(roles)
        valkey_before = await valkey_commands(redis)
        ingest: Awaitable[None] = (
            open_loop(
                env.ports,
                catalog.ingest_key,
                lambda: factory.batch("D", opts.batch_size),
                opts.batch_size,
                rate,
                total,
                stats,
            )
            if rate > 0
            else asyncio.sleep(total)
        )

        async def measured_cpu() -> Any:
            await asyncio.sleep(opts.duration)
            return usage_between(before, snapshot(roles)), delta(valkey_before, await valkey_commands(redis))

        async def profile() -> dict[str, list[float]] | None:
            if breakdown is None:
                return None
            await asyncio.sleep(opts.duration)
            return await breakdown(viewers, started + total)

        gathered = await asyncio.gather(
            ingest,
            measured_cpu(),
            profile(),
            *(
                poll_loop(v, opts.interval, started, started + total, opts.interval * i / len(viewers))
                for i, v in enumerate(viewers)
            ),
        )
        cpu, valkey = gathered[1]
        steps: dict[str, list[float]] | None = gathered[2]
        check_alive(env)
        log("load stopped; waiting for the backlog to be persisted")
        drain_s = await wait_persisted(redis)
    finally:
        await redis.aclose()
        for viewer in viewers:
            await viewer.conn.close()

    polls = [p for v in viewers for p in v.polls if p.at < opts.duration]
    statuses = Counter(p.status for p in polls)
    errors = [e for v in viewers for e in v.errors]
    all_latencies = [p.latency for p in polls]
    figures: dict[str, Any] = {
        "all": distribution(all_latencies),
        "200": distribution([p.latency for p in polls if p.status == 200]),
        "204": distribution([p.latency for p in polls if p.status == 204]),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": len(errors),
        "sample_errors": errors[:3],
    }
    # Per 5 s of the run: a latency that keeps growing means the web tier is overloaded
    # (requests queue), not merely slow.
    step = 5.0
    figures["timeline"] = [
        {"from_s": k * step, **distribution([p.latency for p in polls if k * step <= p.at < (k + 1) * step])}
        for k in range(int(-(-opts.duration // step)))
    ]
    p99 = figures["all"]["p99"]
    window_accepted = sum(n for t, n in stats.timeline if t < opts.duration)
    machine_total = cpu.machine_total_s or 1.0
    result: dict[str, Any] = {
        "settings": {
            "duration": opts.duration,
            "viewers": opts.viewers,
            "interval": opts.interval,
            "customers": len(setup.customers),
            "busy_customers": len(catalog.customers),
            "quiet_customers": len(quiet),
            "plan": opts.plan,
            "measure_max": opts.measure_max,
            "web_workers": opts.web_workers,
            "worker_processes": opts.worker_processes,
            "worker_threads": opts.worker_threads,
            "batch_size": opts.batch_size,
            "viewer_web": opts.viewer_web,
        },
        "machine": machine,
        "busy_before_start": busy_before,
        "measured_max_eps": measured_max,
        "max_source": max_source,
        "ingest": {
            "target_eps": rate,
            "accepted": window_accepted,
            "accepted_eps": window_accepted / opts.duration,
            "late_sends": stats.late_sends,
            "statuses": {str(k): v for k, v in stats.statuses.items()},
            "drain_s": drain_s,
            "batch_latency": distribution(stats.latencies),
        },
        "polls": figures,
        "verdict": "PASS" if p99 is not None and p99 <= TARGET_P99_S and not errors else "MISS",
        "cpu": {
            "machine_busy_pct": 100 * cpu.machine_busy_fraction,
            "by_role_pct": {
                role: 100 * cpu.by_role.get(role, 0.0) / machine_total
                for role in [*ROLES, "other"]
                if role in cpu.by_role
            },
        },
        # Valkey runs one command at a time: a panel's reads queue behind long ones (ingest's
        # scripts). EVALSHA's time includes the commands its scripts run, which are also
        # counted under their own names: the shares do not add up.
        "valkey": {
            "top": [
                {
                    "command": v.label,
                    "calls": v.calls,
                    "usec_per_call": v.usec / v.calls,
                    "busy_pct": 100 * v.usec / 1e6 / opts.duration,
                }
                for v in valkey[:4]
                if v.calls
            ]
        },
        "breakdown": {name: distribution(values) for name, values in steps.items()} if steps else None,
    }
    result["bench"] = "dashboard"
    result["verdicts"] = [_verdict(result, opts, measured_max, rate).as_dict()]
    return result


def max_from_json(path: str) -> float | None:
    """The sustained batch rate (min of accepted and persisted) in an ingest --json file."""
    try:
        batch = json.loads(Path(path).read_text())["phases"]["batch"]
        return float(min(batch["accepted_eps"], batch["persisted_eps"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log(f"--max-from {path}: no batch rate in it ({type(exc).__name__}: {exc}); measuring it here")
        return None


def _verdict(result: dict[str, Any], opts: DashboardOptions, maximum: float | None, rate: float) -> Verdict:
    p99 = result["polls"]["all"]["p99"]
    notes = []
    if opts.viewers < TARGET_VIEWERS:
        notes.append(f"{opts.viewers} viewers; the target names {TARGET_VIEWERS}")
    if opts.viewer_web:
        notes.append("viewers on their own web tier, not sharing ingest's")
    if maximum is None or abs(rate - maximum / 2) > 0.02 * maximum / 2:
        notes.append(f"ingest at {rate:,.0f} events/s, not half a measured maximum")
    if result["polls"]["errors"]:
        notes.append(f"{result['polls']['errors']} poll errors")
    achieved = result["ingest"]["accepted_eps"]
    if rate > 0 and achieved < 0.95 * rate:
        notes.append(f"ingest achieved only {achieved:,.0f} of {rate:,.0f} events/s")
    return Verdict(
        f"6. dashboard partials p99, {opts.viewers} viewers, ingest at half max",
        f"<= {TARGET_P99_S * 1000:g} ms",
        "-" if p99 is None else f"{p99 * 1000:.1f} ms at {rate:,.0f} events/s",
        p99 is not None and p99 <= TARGET_P99_S and not notes,
        "; ".join(notes),
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
        name="dashboard",
        stack=stack_options(opts),
        report=print_report,
        measure=lambda env, busy_before: run_bench(opts, env, busy_before),
    )


if __name__ == "__main__":
    sys.exit(main())
