"""`--startup`: how long `usage-portal up` takes on the benchmark's data dir, from the
command to /readyz answering 200 (issue 15: <= 30 s on a data dir with 100 million
events; a Valkey full of dedup markers is what made restarts slow).

Run at the end: the tiers and the embedded servers the benchmark started are stopped, then
`usage-portal up --data-dir <the run's data dir>` starts the servers again from their files
(Postgres recovery, Valkey loading its AOF), migrates, and starts web, worker and scheduler,
as an operator's restart would; then it is stopped with SIGTERM (it stops its servers).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from bench.config import ROOT, log
from bench.stack import Environment, _free_port, _portal_command, tail

TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Startup:
    seconds: float | None  # None: /readyz never answered 200 within the timeout
    events_in_store: int
    valkey_keys: int
    note: str = ""


def measure_startup(env: Environment, *, events_in_store: int, valkey_keys: int) -> Startup:
    if env.servers is None:
        return Startup(None, events_in_store, valkey_keys, "servers not embedded (DATABASE_URL/REDIS_URL)")
    log("startup: stopping the tiers and the embedded servers")
    env.stop_processes()
    env.servers.stop()
    port = _free_port()
    child = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")}
    child["PORTAL_DATA_DIR"] = str(env.data_dir)
    argv = [*_portal_command(), "up", "--data-dir", str(env.data_dir), "--port", str(port)]
    logfile = (env.data_dir / "up.log").open("ab")
    log(f"startup: {' '.join(argv[1:])}")
    started = time.monotonic()
    process = subprocess.Popen(
        argv, cwd=ROOT, env=child, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
    )
    env.processes["up"] = process  # swept by Environment.close if anything below fails
    seconds: float | None = None
    note = ""
    try:
        while time.monotonic() - started < TIMEOUT_S:
            if process.poll() is not None:
                note = f"up exited with {process.returncode}: {tail(env.data_dir / 'up.log', 5)}"
                break
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer,
            ):
                if answer.status == 200:
                    seconds = time.monotonic() - started
                    break
            time.sleep(0.1)
        else:
            note = f"/readyz not 200 within {TIMEOUT_S:.0f} s"
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # the leader only: it stops its roles and servers
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    log(f"startup: {'-' if seconds is None else f'{seconds:.1f} s'} {note}")
    return Startup(seconds, events_in_store, valkey_keys, note)
