"""`usage-portal`: run the product, or one role of it, and operate it.

With DATABASE_URL and REDIS_URL unset, commands use the embedded servers of the data dir
(`--data-dir` or PORTAL_DATA_DIR, default `.portal-data/`): found if `up` is running,
started otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from portal.settings import Settings, from_environment


def _settings(args: argparse.Namespace, *, start_embedded: bool = True) -> tuple[Settings, Any]:
    """Settings with server URLs filled in; also the embedded servers if we started them."""
    settings = from_environment()
    if getattr(args, "data_dir", None):
        settings = replace(settings, data_dir=Path(args.data_dir))
    if settings.database_url and settings.redis_url:
        return settings, None
    if settings.database_url or settings.redis_url:
        sys.exit("set both DATABASE_URL and REDIS_URL, or neither (to use the embedded servers)")
    from portal.embedded import EmbeddedServers

    servers = EmbeddedServers(settings.data_dir)
    urls = servers.running()
    started = None
    if urls is None:
        if not start_embedded:
            sys.exit(f"no embedded servers are running for {settings.data_dir}")
        urls = servers.start()
        started = servers
    broker = settings.broker_url or urls.redis_url.rsplit("/", 1)[0] + "/1"
    return settings.with_urls(database_url=urls.database_url, redis_url=urls.redis_url,
                              broker_url=broker), started


def _child_env(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
        "BROKER_URL": settings.effective_broker_url or "",
        "PORTAL_DATA_DIR": str(settings.data_dir),
    })
    return env


def cmd_migrate(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    try:
        from portal.migrate import migrate

        migrate(settings)
        print("migrations applied", file=sys.stderr)
    finally:
        if started:
            started.stop()


def cmd_keys_create(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    try:
        from portal.admin_tasks import create_api_key

        token = asyncio.run(create_api_key(settings, scope=args.scope, name=args.name))
        print(token)
    finally:
        if started:
            started.stop()


def cmd_users_create(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    try:
        from portal.admin_tasks import create_user
        from portal.problems import Problem

        try:
            print(asyncio.run(create_user(
                settings, email=args.email, name=args.name, role=args.role, customer_id=args.customer,
                all_customers=args.all_customers,
                assigned=[c for c in (args.assign or "").split(",") if c])))
        except Problem as exc:
            raise SystemExit(f"error: {exc}") from None
    finally:
        if started:
            started.stop()


def cmd_failed_replay(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    try:
        from portal.admin_tasks import replay_failed

        count = asyncio.run(replay_failed(settings, ids=args.id or None))
        print(f"replayed {count} failed events", file=sys.stderr)
    finally:
        if started:
            started.stop()


def cmd_reconcile(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    try:
        from portal.admin_tasks import enqueue_reconcile

        enqueue_reconcile(settings, full=args.full)
        print("reconcile queued", file=sys.stderr)
    finally:
        if started:
            started.stop()


def cmd_status(args: argparse.Namespace) -> None:
    # Status of what runs: it never starts servers of its own.
    settings, _ = _settings(args, start_embedded=False)
    from portal.status import gather_status, render

    print(render(asyncio.run(gather_status(settings))))


def cmd_web(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    os.environ.update(_child_env(settings))
    # Each web process configures structured logs when create_app() runs (see portal/logs.py);
    # uvicorn must not install its own handlers over them.
    os.environ["PORTAL_LOG_ROLE"] = "web"
    import uvicorn

    uvicorn.run("portal.app:create_app", factory=True, host=args.host, port=args.port,
                workers=args.workers, log_level="warning", access_log=False, log_config=None)


def cmd_worker(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    argv = [sys.executable, "-m", "dramatiq", "workers.main", "--processes", str(args.processes),
            "--threads", str(args.threads)]
    os.execve(sys.executable, argv, _child_env(settings))


def cmd_scheduler(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    os.environ.update(_child_env(settings))
    from portal.logs import configure
    from portal.scheduler import run_scheduler

    configure(role="scheduler")

    run_scheduler(settings)


def cmd_up(args: argparse.Namespace) -> None:
    settings, started = _settings(args)
    from portal.embedded import EmbeddedServers

    servers = started or EmbeddedServers(settings.data_dir)
    env = _child_env(settings)
    # Web and worker processes write their metrics here; /metrics sums them. Stale files
    # of an earlier run would add dead processes' counts, so the folder starts empty.
    metrics_dir = settings.data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir.resolve())
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        from portal.migrate import migrate

        migrate(settings)
        me = [sys.executable, "-m", "portal.cli"]

        def spawn(*argv: str) -> None:
            # Own sessions: Ctrl-C reaches only `up`, which stops each child once, in order
            # (a second signal makes Dramatiq kill its workers instead of draining them).
            children.append(subprocess.Popen([*me, *argv], env=env, start_new_session=True))

        spawn("web", "--host", args.host, "--port", str(args.port))
        spawn("worker", "--processes", "1", "--threads", "4")
        spawn("scheduler")
        url = f"http://{args.host}:{args.port}"
        _wait_healthy(url)
        if args.demo:
            from portal.demo import print_demo_banner, seed_demo

            demo = asyncio.run(seed_demo(settings))
            spawn("demo-trickle", "--url", url, "--key", demo.ingest_key)
            print_demo_banner(url, demo)
        else:
            print(f"usage portal running at {url} (Ctrl-C to stop)", flush=True)
        while not stopping:
            if any(child.poll() is not None for child in children):
                print("a portal process exited; stopping", file=sys.stderr)
                break
            time.sleep(0.5)
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                child.kill()
        servers.stop()
        print("stopped", file=sys.stderr)


def _wait_healthy(url: str, timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the web process did not become healthy at {url}")


def cmd_demo_trickle(args: argparse.Namespace) -> None:
    from portal.demo import trickle

    trickle(args.url, args.key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-portal", description=__doc__)
    parser.add_argument("--data-dir", help="embedded servers' data (default .portal-data/)")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run everything: embedded servers, web, worker, scheduler")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8000)
    up.add_argument("--demo", action="store_true", help="create demo data and keep events flowing")
    up.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS)
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="the HTTP server alone")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=int, default=8000)
    web.add_argument("--workers", type=int, default=1)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="a Dramatiq worker alone")
    worker.add_argument("--processes", type=int, default=1)
    worker.add_argument("--threads", type=int, default=4)
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("scheduler", help="the periodic job scheduler alone").set_defaults(
        func=cmd_scheduler)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--scope", choices=["ingest", "admin"], required=True)
    create.add_argument("--name", default="")
    create.set_defaults(func=cmd_keys_create)

    users = sub.add_parser("users", help="portal users").add_subparsers(dest="users_command", required=True)
    user = users.add_parser("create", help="create a user and email them a link to set a password")
    user.add_argument("--email", required=True)
    user.add_argument("--name", required=True)
    user.add_argument("--role", choices=["customer", "account_manager", "admin"], required=True)
    user.add_argument("--customer", help="the customer a customer user belongs to")
    user.add_argument("--all-customers", action="store_true", help="an account manager of every customer")
    user.add_argument("--assign", help="comma-separated customers assigned to an account manager")
    user.set_defaults(func=cmd_users_create)

    failed = sub.add_parser("failed", help="events the workers could not persist")
    failed_sub = failed.add_subparsers(dest="failed_command", required=True)
    replay = failed_sub.add_parser("replay", help="queue failed events again (all, or --id)")
    replay.add_argument("--id", type=int, action="append", help="a failed event id (repeatable)")
    replay.set_defaults(func=cmd_failed_replay)

    sub.add_parser("status", help="queue depths, lag, failed events, drift, the last reconcile").set_defaults(
        func=cmd_status)

    reconcile = sub.add_parser("reconcile", help="queue a reconcile of the live view now")
    reconcile.add_argument("--full", action="store_true", help="rebuild every live hour")
    reconcile.set_defaults(func=cmd_reconcile)

    from portal.billing.cli import register_billing_commands

    register_billing_commands(sub, _settings)

    trickle = sub.add_parser("demo-trickle", help=argparse.SUPPRESS)
    trickle.add_argument("--url", required=True)
    trickle.add_argument("--key", required=True)
    trickle.set_defaults(func=cmd_demo_trickle)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
