"""`usage-portal`: run the product, or one role of it, and operate it.

With DATABASE_URL and REDIS_URL unset, commands use the embedded servers of the data dir
(`--data-dir` or PORTAL_DATA_DIR, default `.portal-data/`): found if `up` is running,
started otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import logging
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from portal.cli import arguments
from portal.infrastructure.queues import ALERTS_QUEUE, INGEST_QUEUE, MAINTENANCE_QUEUE, QUEUES
from portal.infrastructure.settings import Settings, from_environment

# Where the running `up` of a data dir serves (its links' base), for the commands beside it.
PUBLIC_URL_FILE = "public_url"


def _base_settings(args: argparse.Namespace) -> Settings:
    # The data dir is known before Settings is built: in development it holds the key.
    data_dir = getattr(args, "data_dir", None)
    settings = from_environment(data_dir=Path(data_dir) if data_dir else None)
    served_at = settings.data_dir / PUBLIC_URL_FILE
    if "PORTAL_PUBLIC_URL" not in os.environ and served_at.is_file():
        # A command beside a running `up` (an invitation's link) points where `up` serves.
        settings = replace(settings, public_url=served_at.read_text().strip().rstrip("/"))
    if bool(settings.database_url) != bool(settings.redis_url):
        sys.exit("set both DATABASE_URL and REDIS_URL, or neither (to use the embedded servers)")
    return settings


def _with_broker(settings: Settings, urls: Any) -> Settings:
    broker = settings.broker_url or urls.broker_url
    return settings.with_urls(database_url=urls.database_url, redis_url=urls.redis_url, broker_url=broker)


def _settings(args: argparse.Namespace, *, start_embedded: bool = True) -> tuple[Settings, Any]:
    """Settings with server URLs filled in; also the embedded servers if we started them."""
    settings = _base_settings(args)
    if settings.database_url and settings.redis_url:
        return settings, None
    from portal.infrastructure.embedded import EmbeddedServers
    from portal.operations.supervisor import up_pid

    servers = EmbeddedServers(settings.data_dir)
    urls = servers.running()
    started = None
    if urls is None:
        if up_pid(settings.data_dir) is not None or not start_embedded:
            # `up` owns this data dir and restarts what is down: never start a second copy
            # beside it. `status` reports what is down rather than nothing.
            running = servers.running_pid()
            urls = servers.recorded() if running or up_pid(settings.data_dir) else None
            if urls is None:
                sys.exit(f"no embedded servers are running for {settings.data_dir}")
        else:
            urls = servers.start()
            started = servers
    return _with_broker(settings, urls), started


@contextlib.contextmanager
def _operator_settings(args: argparse.Namespace) -> Iterator[Settings]:
    """Settings for a one-off operator command; embedded servers it had to start for it are
    stopped when it ends (an exit included)."""
    settings, started = _settings(args)
    try:
        yield settings
    finally:
        if started:
            started.stop()


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment of a role process: server URLs (with their passwords) go here, never
    on a command line."""
    env = dict(os.environ)
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "REDIS_URL": settings.redis_url or "",
            "BROKER_URL": settings.effective_broker_url or "",
            "PORTAL_DATA_DIR": str(settings.data_dir),
        }
    )
    return env


def cmd_migrate(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations.migrate import migrate

        migrate(settings)
        print("migrations applied", file=sys.stderr)


def cmd_keys_create(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations.operator_tasks import create_api_key

        token = asyncio.run(create_api_key(settings, scope=args.scope, name=args.name))
        print(token)


def cmd_users_create(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.infrastructure.domain_errors import Problem
        from portal.operations.operator_tasks import create_user

        try:
            print(
                asyncio.run(
                    create_user(
                        settings,
                        email=args.email,
                        name=args.name,
                        role=args.role,
                        customer_id=args.customer,
                        all_customers=args.all_customers,
                        assigned=[c for c in (args.assign or "").split(",") if c],
                    )
                )
            )
        except Problem as exc:
            raise SystemExit(f"error: {exc}") from None


def cmd_failed_replay(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations.operator_tasks import replay_failed

        count = asyncio.run(replay_failed(settings, ids=args.id or None))
        print(f"replayed {count} failed events", file=sys.stderr)
        named = len(set(args.id or ()))
        if count < named:  # an operator who named ids learns that some did nothing
            sys.exit(
                f"{named - count} of the {named} id(s) named no outstanding failed event that holds "
                "a stored copy (unknown, already replayed or discarded, or kept without one)"
            )


def cmd_reconcile(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations.operator_tasks import enqueue_reconcile

        enqueue_reconcile(settings, full=args.full)
        print("reconcile queued", file=sys.stderr)


def cmd_rebuild_days(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations.operator_tasks import rebuild_daily_usage

        rows = asyncio.run(rebuild_daily_usage(settings, customer_ids=args.customer or None))
        print(f"daily_usage rebuilt from hourly_usage: {rows:,} day rows", file=sys.stderr)
    if args.customer and not rows:
        # As `failed replay --id`: ids that did nothing are a mistake to say, not success.
        sys.exit(f"usage-portal: no hourly usage for customer(s) {', '.join(args.customer)}: nothing rebuilt")


def cmd_status(args: argparse.Namespace) -> None:
    # Status of what runs: it never starts servers of its own, nor makes a data dir (the
    # settings would write a development key into one) where nothing ever ran.
    named = getattr(args, "data_dir", None) or os.environ.get("PORTAL_DATA_DIR") or ".portal-data"
    if not os.environ.get("DATABASE_URL") and not Path(named).is_dir():
        sys.exit(f"no embedded servers are running for {named} (no such data dir)")
    settings, _ = _settings(args, start_embedded=False)
    from portal.operations.status import gather_status, render

    status = asyncio.run(gather_status(settings))
    print(render(status))
    # For monitors and scripts: 1 when something needs an operator (the first line says what).
    if status.attention:
        sys.exit(1)


def cmd_archive(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.infrastructure.clock import system_clock
        from portal.ingest.archive import archive_with_settings

        report = asyncio.run(archive_with_settings(settings, now=system_clock(), dry_run=args.dry_run))
        print("\n".join(report.lines()))
        print(report.summary(), file=sys.stderr)
        # A partition kept because its export did not verify needs an operator.
        if any(o.action == "kept" for o in report.outcomes):
            sys.exit(1)


def cmd_dead_letters_list(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations import dead_letters

        with dead_letters.broker_client(settings) as client:
            letters = dead_letters.listing(client)
        for letter in letters:
            died = letter.died_at.isoformat(timespec="seconds")
            print(f"{letter.queue:<12}{letter.message_id}  {letter.actor:<22}died {died}")
        print(f"{len(letters)} dead letter(s)", file=sys.stderr)


def cmd_dead_letters_replay(args: argparse.Namespace) -> None:
    with _operator_settings(args) as settings:
        from portal.operations import dead_letters

        with dead_letters.broker_client(settings) as client:
            moved = dead_letters.requeue(client, args.queue, ids=args.id or None)
        print(f"put {moved} dead letter(s) of {args.queue} back on their queue", file=sys.stderr)
    if args.id and moved < len(set(args.id)):
        sys.exit(f"usage-portal: {len(set(args.id)) - moved} of the ids named no dead letter of {args.queue}")


def cmd_web(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    os.environ.update(_child_env(settings))
    # Each web process configures structured logs when create_app() runs (see portal/infrastructure/logs.py);
    # uvicorn must not install its own handlers over them.
    os.environ["PORTAL_LOG_ROLE"] = "web"
    import uvicorn

    from portal.http.slow_clients import DeadlineHttpToolsProtocol

    uvicorn.run(
        "portal.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        log_config=None,
        # uvicorn would otherwise take X-Forwarded-For from any local peer as the client's
        # address before the app sees the real one; whom to trust is PORTAL_TRUSTED_PROXIES'
        # decision (portal/http/client_address.py), empty by default.
        proxy_headers=False,
        # Each request must arrive within a deadline (headers, then body): clients that
        # trickle or stall are dropped, not kept until the process runs out of sockets.
        http=DeadlineHttpToolsProtocol,
    )


def cmd_worker(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    argv = [
        sys.executable,
        "-m",
        "dramatiq",
        "workers.main",
        "--processes",
        str(args.processes),
        "--threads",
        str(args.threads),
    ]
    if args.queues:
        argv += ["--queues", *args.queues]
    os.execve(sys.executable, argv, _child_env(settings))


def cmd_scheduler(args: argparse.Namespace) -> None:
    settings, _ = _settings(args)
    os.environ.update(_child_env(settings))
    from portal.infrastructure.logs import configure
    from portal.operations.scheduler import run_scheduler

    configure(role="scheduler")

    run_scheduler(settings)


def _port_taken(host: str, port: int) -> str | None:
    """Why the web could not listen on host:port (in use, not this machine's address), or None."""
    import socket

    try:
        with socket.create_server((host, port), reuse_port=False):
            return None
    except OSError as exc:
        return os.strerror(exc.errno) if exc.errno else str(exc)


def cmd_up(args: argparse.Namespace) -> None:
    """Everything on this machine, supervised (portal/operations/supervisor.py): the embedded servers
    (unless DATABASE_URL and REDIS_URL name others), migrations, web, worker, scheduler and
    with --demo a trickle of demo events, each restarted when it dies, until Ctrl-C/SIGTERM."""
    from portal.infrastructure.logs import configure
    from portal.operations.supervisor import AlreadyRunning, Supervisor, UpLock, stop_leftovers

    configure(role="up")
    log = logging.getLogger("portal.up")
    # Links in invitations, notices and invoice emails lead to where `up` serves, unless the
    # operator names the public address (a proxy's). Before the settings are read: every
    # role inherits it.
    link_host = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    os.environ["PORTAL_PUBLIC_URL"] = os.environ.get("PORTAL_PUBLIC_URL") or f"http://{link_host}:{args.port}"
    settings = _base_settings(args)
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = UpLock(data_dir)
    try:
        lock.acquire()
    except AlreadyRunning as exc:
        sys.exit(str(exc))
    (data_dir / PUBLIC_URL_FILE).write_text(settings.public_url + "\n")
    # An earlier `up` that was killed may have left roles running (a Dramatiq consumer,
    # say): they would run beside ours.
    left = stop_leftovers(data_dir, grace_s=10)
    if left:
        log.warning(
            "stopped %d process(es) an earlier `up` on %s left running: %s", len(left), data_dir, left
        )
    taken = _port_taken(args.host, args.port)
    if taken:  # said now, not after the web's restarts give up a minute later
        lock.release()
        sys.exit(f"usage-portal up: cannot listen on {args.host}:{args.port}: {taken}; choose another --port")
    servers = None
    if not (settings.database_url and settings.redis_url):
        from portal.infrastructure.embedded import EmbeddedServers

        servers = EmbeddedServers(data_dir)
    supervisor = Supervisor(data_dir=data_dir, servers=servers)
    signal.signal(signal.SIGINT, supervisor.request_stop)
    signal.signal(signal.SIGTERM, supervisor.request_stop)
    try:
        _run_up(args, settings, supervisor)
    finally:
        supervisor.shutdown()
        lock.release()
        if supervisor.failure:
            print(f"usage-portal up: {supervisor.failure}", file=sys.stderr, flush=True)
        print("stopped", file=sys.stderr, flush=True)
    if supervisor.failure:
        sys.exit(1)


def _run_up(args: argparse.Namespace, settings: Settings, supervisor: Any) -> None:
    """`up` until Ctrl-C/SIGTERM or a crash loop: servers, migrations, roles, the banner."""
    from portal.operations.supervisor import UP_MARKER, RoleSpec

    data_dir = supervisor.data_dir
    urls = supervisor.start_servers()
    if urls is not None:
        settings = _with_broker(settings, urls)
    from portal.operations.migrate import migrate

    if not supervisor.attempt("moving the live view to its own Valkey", supervisor.move_live_view)[0]:
        return
    if not supervisor.attempt("applying migrations", lambda: migrate(settings))[0]:
        return
    env = _child_env(settings)
    env[UP_MARKER] = str(data_dir)
    if settings.redis_url:
        supervisor.watch_beats(settings.redis_url)
    # Web and worker processes write their metrics here; /metrics sums them. Stale files
    # of an earlier run would add dead processes' counts, so the folder starts empty.
    metrics_dir = data_dir / "metrics"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    me = [sys.executable, "-m", "portal.cli.main"]
    supervisor.add_role(RoleSpec("web", [*me, "web", "--host", args.host, "--port", str(args.port)], env))
    # Notices (alert evaluation and delivery, billing webhooks) in a worker of their own: a
    # send waits on someone else's server (up to twice its timeout), and four slow ones held
    # every thread of a shared worker, so events stopped being persisted meanwhile.
    worker = [*me, "worker", "--processes", "1"]
    supervisor.add_role(
        RoleSpec("worker", [*worker, "--threads", "4", "--queues", INGEST_QUEUE, MAINTENANCE_QUEUE], env)
    )
    # Its threads mostly wait on other servers, so it has more of them than cores: with two,
    # one endpoint timing out delayed the first attempt to every other endpoint by its timeout.
    supervisor.add_role(RoleSpec("notices", [*worker, "--threads", "8", "--queues", ALERTS_QUEUE], env))
    supervisor.add_role(RoleSpec("scheduler", [*me, "scheduler"], env))
    url = f"http://{args.host}:{args.port}"
    if not _wait_healthy(url, supervisor):
        return
    if args.demo:
        from portal.cli.demo import print_demo_banner, seed_demo
        from portal.cli.demo_history import HISTORY_DAYS

        # Days of history the first start loads (the tests' `up` runs load fewer).
        days = int(os.environ.get(DEMO_DAYS_ENV, HISTORY_DAYS))
        seeded, demo = supervisor.attempt(
            "creating the demo data", lambda: asyncio.run(seed_demo(settings, days=days))
        )
        if not seeded or demo is None:
            return
        # The key travels in the environment: a command line is visible to every user.
        supervisor.add_role(
            RoleSpec(
                "demo-trickle",
                [*me, "demo-trickle", "--url", url],
                {**env, DEMO_KEY_ENV: demo.ingest_key},
                needs_servers=False,
            )
        )
        print_demo_banner(url, demo)
    else:
        print(f"usage portal running at {url} (Ctrl-C to stop)", flush=True)
    supervisor.run_until(lambda: False)


def _wait_healthy(url: str, supervisor: Any) -> bool:
    """Supervise until the web process answers /readyz with 200 (True), or `up` stops or
    gives up (False). Every 30 s without an answer, the log says what /readyz says."""
    import urllib.error
    import urllib.request

    from portal.operations.supervisor import RUN_HEADER, up_run_token

    log = logging.getLogger("portal.up")
    mine = up_run_token(str(supervisor.data_dir))
    started = time.monotonic()
    next_poll, next_note = started, started + 30

    def ready() -> bool:
        nonlocal next_poll, next_note
        now = time.monotonic()
        if now < next_poll:
            return False
        next_poll = now + 0.3
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
                if response.headers.get(RUN_HEADER) != mine:
                    answer = "another `up`'s web answers on this port"
                elif response.status == 200:
                    return True
                else:
                    answer = f"HTTP {response.status}"
        except urllib.error.HTTPError as exc:
            answer = f"HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        except OSError as exc:
            answer = str(exc)
        if now >= next_note:
            next_note = now + 30
            log.warning("%s/readyz is not ready after %.0f s: %s", url, now - started, answer)
        return False

    return bool(supervisor.run_until(ready))


DEMO_KEY_ENV = "PORTAL_DEMO_INGEST_KEY"
DEMO_DAYS_ENV = "PORTAL_DEMO_HISTORY_DAYS"


def cmd_demo_trickle(args: argparse.Namespace) -> None:
    from portal.cli.demo import trickle

    key = os.environ.get(DEMO_KEY_ENV)
    if not key:
        sys.exit(f"{DEMO_KEY_ENV} must hold the ingest key")
    trickle(args.url, key)


DATA_DIR_HELP = "the embedded servers' data and secrets (default: PORTAL_DATA_DIR, else .portal-data/)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="usage-portal", description=__doc__)
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    # The command list names the commands with help (`demo-trickle` is `up --demo`'s own).
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")

    up = sub.add_parser("up", help="run everything: embedded servers, web, worker, scheduler")
    up.add_argument("--host", default="127.0.0.1", help="address the web listens on (default 127.0.0.1)")
    up.add_argument("--port", type=arguments.port, default=8000, help="the web's port (default 8000)")
    up.add_argument("--demo", action="store_true", help="create demo data and keep events flowing")
    up.add_argument("--data-dir", dest="data_dir", default=argparse.SUPPRESS, help=DATA_DIR_HELP)
    up.set_defaults(func=cmd_up)

    web = sub.add_parser("web", help="the HTTP server alone")
    web.add_argument("--host", default="127.0.0.1")
    web.add_argument("--port", type=arguments.port, default=8000)
    web.add_argument("--workers", type=arguments.count, default=1)
    web.set_defaults(func=cmd_web)

    worker = sub.add_parser("worker", help="a Dramatiq worker alone")
    worker.add_argument("--processes", type=arguments.count, default=1)
    worker.add_argument("--threads", type=arguments.count, default=4)
    worker.add_argument("--queues", nargs="+", choices=QUEUES, help="only these queues (default: every one)")
    worker.set_defaults(func=cmd_worker)

    sub.add_parser("scheduler", help="the periodic job scheduler alone").set_defaults(func=cmd_scheduler)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create a key and print it (shown only once)")
    create.add_argument("--scope", choices=["ingest", "admin"], required=True)
    create.add_argument("--name", type=arguments.short_text(100), default="")
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
    replay.add_argument(
        "--id", type=arguments.record_id, action="append", help="a failed event id (repeatable)"
    )
    replay.set_defaults(func=cmd_failed_replay)

    sub.add_parser(
        "status",
        help="stores, roles, queue depths, lag, failed events, drift, the last "
        "reconcile; exits 1 when something needs an operator",
    ).set_defaults(func=cmd_status)

    dead = sub.add_parser("dead-letters", help="messages the workers gave up on")
    dead_sub = dead.add_subparsers(dest="dead_letters_command", required=True)
    dead_sub.add_parser("list", help="every dead letter: queue, message id, job, when it died").set_defaults(
        func=cmd_dead_letters_list
    )
    requeue = dead_sub.add_parser("replay", help="put dead letters back on their queue (all, or --id)")
    requeue.add_argument("--queue", choices=QUEUES, default=INGEST_QUEUE)
    requeue.add_argument("--id", action="append", help="a message id from `dead-letters list` (repeatable)")
    requeue.set_defaults(func=cmd_dead_letters_replay)

    archive = sub.add_parser(
        "archive",
        help="export the months of raw events past PORTAL_RAW_EVENT_RETENTION_DAYS to the "
        "archive dir, verify them, then drop them from Postgres (the scheduler runs it daily)",
    )
    archive.add_argument("--dry-run", action="store_true", help="only say which months are due")
    archive.set_defaults(func=cmd_archive)

    reconcile = sub.add_parser("reconcile", help="queue a reconcile of the live view now")
    reconcile.add_argument("--full", action="store_true", help="rebuild every live hour")
    reconcile.set_defaults(func=cmd_reconcile)

    rebuild = sub.add_parser(
        "rebuild-days",
        help="rebuild the daily usage bills read from the hourly usage (after hours were "
        "changed by hand; the workers keep them in step themselves)",
    )
    rebuild.add_argument("--customer", action="append", help="only this customer (repeatable)")
    rebuild.set_defaults(func=cmd_rebuild_days)

    from portal.cli.billing import register_billing_commands

    register_billing_commands(sub, _settings)

    from portal.cli.secrets import register_secrets_commands

    register_secrets_commands(sub, _settings)

    # Started by `up --demo` only; no help=, so the command list does not name it.
    trickle = sub.add_parser("demo-trickle")
    trickle.add_argument("--url", required=True)  # the ingest key comes in PORTAL_DEMO_INGEST_KEY
    trickle.set_defaults(func=cmd_demo_trickle)
    _data_dir_after_any_command(parser)
    return parser


def _data_dir_after_any_command(parser: argparse.ArgumentParser) -> None:
    """`usage-portal status --data-dir D` as well as `usage-portal --data-dir D status`: every
    (sub)command takes the option too, overriding the one before it only when given."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in action.choices.values():
                if not any("--data-dir" in a.option_strings for a in command._actions):
                    command.add_argument(
                        "--data-dir", dest="data_dir", default=argparse.SUPPRESS, help=DATA_DIR_HELP
                    )
                _data_dir_after_any_command(command)


def main(argv: list[str] | None = None) -> None:
    from portal.infrastructure.settings import SettingsError

    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except SettingsError as exc:
        # A refused setting (a short secret key…) is a message and exit status 1, not a traceback.
        sys.exit(f"usage-portal: {exc}")
    except BrokenPipeError:
        # `usage-portal status | head`: the reader has what it wanted.
        # Python flushes stdout at exit, into the closed pipe again: point it at /dev/null
        # (the recipe of Python's signal module documentation).
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except (NotADirectoryError, PermissionError, FileExistsError) as exc:
        # A data dir that is a file, or one this user may not write (a read-only disk).
        sys.exit(f"usage-portal: {exc.filename or ''}: {exc.strerror or exc}")
    except OSError as exc:
        if exc.errno != errno.EROFS:
            raise
        sys.exit(f"usage-portal: {exc.filename or ''}: {exc.strerror} (the data dir must be writable)")


if __name__ == "__main__":
    main()
