"""What every stack benchmark does around its own measurement: the common options, the
embedded servers and migrations in a temp data dir, the event loop, the JSON output, and
cleaning up on Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from bench.config import Options, log
from bench.machine import wait_for_idle
from bench.stack import Environment, start_servers


def add_run_options(parser: argparse.ArgumentParser) -> None:
    """--keep-data, --data-parent, --json and --wait-idle."""
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the temp data dir (and the tiers' logs) at the end"
    )
    parser.add_argument(
        "--data-parent", default=None, help="where to create the temp data dir (default: the system temp dir)"
    )
    parser.add_argument(
        "--json", dest="json_out", default=None, help="also write the results as JSON to this file"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before starting, wait up to this long for the machine to be "
        "idle (<10%% busy); it always warns if it is not",
    )


def run(
    opts: Any,
    *,
    name: str,
    stack: Options,
    measure: Callable[[Environment, float], Coroutine[Any, Any, dict[str, Any]]],
    report: Callable[[dict[str, Any]], None] | None = None,
    uvloop: bool = True,
) -> int:
    """Start the servers under a fresh temp dir, migrate, run `measure(env, busy_before)`
    on an event loop, print and save its result; 130 when interrupted."""

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    busy_before = wait_for_idle(opts.wait_idle)
    data_dir = Path(tempfile.mkdtemp(prefix=f"portal-bench-{name}-", dir=opts.data_parent))
    env = Environment(data_dir=data_dir)
    try:
        start_servers(env, stack)
        from portal.infrastructure.settings import Settings
        from portal.operations.migrate import migrate

        migrate(
            Settings(
                data_dir=data_dir,
                database_url=env.database_url,
                redis_url=env.redis_url,
                broker_url=env.broker_url,
            )
        )
        with asyncio.Runner(loop_factory=_loop_factory() if uvloop else None) as runner:
            result = runner.run(measure(env, busy_before))
        if report is not None:
            report(result)
        if opts.json_out:
            Path(opts.json_out).write_text(json.dumps(result, indent=2, default=str))
            log(f"results written to {opts.json_out}")
    except KeyboardInterrupt:
        log("interrupted")
        return 130
    finally:
        env.close(keep_data=opts.keep_data)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] brings it
        return None
    return uvloop.new_event_loop
