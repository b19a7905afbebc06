"""What the benchmark runs against: Postgres and Valkey (embedded or named by the
environment), the web tier and the Dramatiq workers as `usage-portal` subprocesses, and
the catalog (customers, meters, an ingest key) the load refers to.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from bench.config import ROOT, ZONES, Options, log

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
        env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "BROKER_URL": self.broker_url,
                "PORTAL_DATA_DIR": str(self.data_dir),
            }
        )
        return env

    def close(self, *, keep_data: bool) -> None:
        self.stop_processes()
        if self.servers is not None:
            log("stopping embedded Postgres and Valkey")
            self.servers.stop()
        if keep_data:
            log(f"data kept in {self.data_dir}")
        else:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def stop_processes(self) -> None:
        """Stop the tiers this run started (the servers keep running)."""
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
        from portal.infrastructure.embedded import EmbeddedServers

        log(f"starting embedded Postgres and Valkey in {env.data_dir}")
        env.servers = EmbeddedServers(env.data_dir)
        urls = env.servers.start()
        # Commit timestamps give the exact moment each batch became visible (persisted_at
        # is the transaction's start); both settings need a restart (which picks a new port).
        asyncio.run(
            alter_system(
                urls.database_url,
                pg_stats=opts.pg_stats,
                pg_settings=opts.pg_settings,
                extra={"track_commit_timestamp": "on"},
            )
        )
        env.servers.postgres.stop()
        urls = env.servers.start()
        env.database_url, env.redis_url = urls.database_url, urls.redis_url
        env.broker_url = urls.broker_url
    env.broker_url = os.environ.get("BROKER_URL") or env.broker_url or env.redis_url.rsplit("/", 1)[0] + "/1"


async def alter_system(
    database_url: str, *, pg_stats: bool, pg_settings: Sequence[str], extra: dict[str, str] | None = None
) -> None:
    """ALTER SYSTEM for a bench run (takes effect at the restart that follows):
    pg_stat_statements if asked, `extra`, then each `--pg-set NAME=VALUE`."""
    conn = await asyncpg.connect(database_url)
    try:
        if pg_stats:
            await conn.execute("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        for item in [f"{k}={v}" for k, v in (extra or {}).items()] + list(pg_settings):
            name, _, value = item.partition("=")
            log(f"postgres: ALTER SYSTEM SET {name} = {value!r}")
            await conn.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await conn.close()


def postmaster_pid(env: Environment) -> int:
    return int((env.data_dir / "postgres" / "postmaster.pid").read_text().split()[0])


def server_roots(env: Environment) -> dict[int, str]:
    """The embedded servers' root processes and the role their CPU counts for (both Valkeys,
    the broker's and the live view's, count as `valkey`)."""
    roots = {postmaster_pid(env): "postgres"}
    for directory in ("valkey", "valkey-live"):
        roots[int((env.data_dir / directory / "valkey.pid").read_text())] = "valkey"
    return roots


def _portal_command() -> list[str]:
    script = Path(sys.executable).parent / "usage-portal"
    return [str(script)] if script.exists() else [sys.executable, "-m", "portal.cli.main"]


def start_tiers(env: Environment, opts: Options) -> None:
    child_env = env.child_env()
    command = _portal_command()
    tiers: dict[str, list[str]] = {}
    if opts.web_mode == "workers":
        env.ports = [_free_port()]
        tiers["web"] = [*command, "web", "--port", str(env.ports[0]), "--workers", str(opts.web_workers)]
    else:  # one single-process web server per port, as behind a load balancer
        env.ports = [_free_port() for _ in range(opts.web_workers)]
        for i, port in enumerate(env.ports):
            tiers[f"web{i}"] = [*command, "web", "--port", str(port), "--workers", "1"]
    tiers["worker"] = [
        *command,
        "worker",
        "--processes",
        str(opts.worker_processes),
        "--threads",
        str(opts.worker_threads),
    ]
    for name, argv in tiers.items():
        logfile = (env.data_dir / f"{name}.log").open("ab")
        log(f"starting {name}: {' '.join(argv[1:])}")
        env.processes[name] = subprocess.Popen(
            argv, cwd=ROOT, env=child_env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )  # own process group: stopped as a whole, immune to Ctrl-C
    _wait_healthy(env)


def _wait_healthy(env: Environment, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    pending = list(env.ports)
    while time.monotonic() < deadline:
        for name, process in env.processes.items():
            if process.poll() is not None:
                raise RuntimeError(
                    f"{name} exited with {process.returncode}:\n" + tail(env.data_dir / f"{name}.log")
                )
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
            raise RuntimeError(
                f"{name} exited with {process.returncode} during the run:\n"
                + tail(env.data_dir / f"{name}.log")
            )


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
    from portal.infrastructure.db import create_engine, session_factory, transaction
    from portal.keys.service import create_key

    customers = [f"bench-{run}-c{i:02d}" for i in range(len(ZONES))]
    meters = {
        "sum": MeterCreate(
            metric_name=f"bench_{run}_api_calls", aggregation="sum", unit="call", group_by=["region"]
        ),
        "count": MeterCreate(metric_name=f"bench_{run}_requests", aggregation="count", unit="request"),
        "max": MeterCreate(metric_name=f"bench_{run}_storage_gb", aggregation="max", unit="GB"),
    }
    engine = create_engine(env.database_url, pool_size=1)
    try:
        async with transaction(session_factory(engine)) as session:
            for customer_id, zone in zip(customers, ZONES, strict=True):
                await create_customer(
                    session, CustomerCreate(id=customer_id, name=f"Bench {customer_id}", timezone=zone)
                )
            for meter in meters.values():
                await create_meter(session, meter)
            _, token = await create_key(session, scope="ingest", name=f"bench {run}")
    finally:
        await engine.dispose()
    return Catalog(
        run,
        customers,
        meters["sum"].metric_name,
        meters["count"].metric_name,
        meters["max"].metric_name,
        token,
    )
