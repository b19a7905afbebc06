"""`usage-portal up` heals by itself (issue 13), as an operator would try it: a real `up`
under load, each role and each embedded server SIGKILLed in turn, and the product serves
again with exact live and billed totals; `up` starting on a data dir whose Valkey holds
millions of keys, and on one from before the live view had a Valkey of its own; nothing
left running after it stops, nothing secret on a command line.

Recovery times are printed (run with -s), never asserted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from redis import Redis

from portal.infrastructure.embedded import PASSWORD_FILE, EmbeddedServers, server_password
from portal.operations.supervisor import UP_MARKER

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "portal.cli.main"]
CUSTOMER = "killtest"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(data_dir: Path) -> dict[str, str]:
    """`up`'s environment: the embedded servers (no server URLs, no inherited PORTAL_*), and
    quicker retries and requeues than production, so a test waits seconds, not minutes."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PORTAL_") and k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL")
    }
    env.update(
        {
            "PORTAL_DATA_DIR": str(data_dir),
            "PORTAL_CATALOG_CACHE_SECONDS": "0",
            "PORTAL_PERSIST_MIN_BACKOFF_MS": "200",
            "PORTAL_PERSIST_MAX_BACKOFF_MS": "2000",
            "PORTAL_BROKER_HEARTBEAT_MS": "2000",
            "PORTAL_BROKER_MAINTENANCE_CHANCE": "1000000",
            "PORTAL_DEMO_HISTORY_DAYS": "10",  # `up --demo` loads 10 days, not 90
        }
    )
    return env


def _wait(predicate: Callable[[], Any], what: str, timeout: float = 90) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


# ---------------------------------------------------------------------------- processes


def _proc(pid: int) -> tuple[int, str, str] | None:
    """(ppid, state, command line) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return None
    return int(fields[1]), fields[0], cmdline


def _alive(pid: int) -> bool:
    found = _proc(pid)
    return found is not None and found[1] != "Z"


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _children(parent: int, needle: str) -> list[int]:
    found = []
    for pid in _pids():
        info = _proc(pid)
        if info and info[0] == parent and info[1] != "Z" and needle in info[2]:
            found.append(pid)
    return found


def _of_run(data_dir: Path) -> list[str]:
    """Live processes whose command line or environment names the data dir."""
    needle = str(data_dir).encode()
    found = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        info = _proc(pid)
        if info is None or info[1] == "Z":
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = fh.read()
        except OSError:
            environ = b""
        if needle in info[2].encode() or needle in environ:
            found.append(f"{pid} {info[2][:120]}")
    return found


def _pidfile(path: Path) -> int | None:
    try:
        pid = int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _alive(pid) else None


def _command_lines() -> list[str]:
    return [info[2] for pid in _pids() if (info := _proc(pid)) is not None]


class Up:
    """A `usage-portal up` process: its stdout read by a thread (the banner), its stderr in
    a file (the supervisor's log)."""

    def __init__(self, data_dir: Path, port: int, *, demo: bool) -> None:
        self.data_dir, self.port = data_dir, port
        self.url = f"http://127.0.0.1:{port}"
        self.stderr = Path(tempfile.mkstemp(prefix="up-", suffix=".log")[1])
        argv = [*CLI, "up", "--port", str(port), *(["--demo"] if demo else [])]
        self.started = time.monotonic()
        with self.stderr.open("wb") as stderr:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=_env(data_dir), stdout=subprocess.PIPE, stderr=stderr, text=True
            )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def banner(self, marker: str) -> str:
        def shown() -> bool:
            assert self.process.poll() is None, f"`up` ended early:\n{self.log()[-3000:]}"
            return any(marker in line for line in self.lines)

        _wait(shown, f"`up` to print {marker!r}", timeout=180)
        return "".join(self.lines)

    def log(self) -> str:
        return self.stderr.read_text(errors="replace")

    def supervisor_log(self) -> list[str]:
        events = []
        for line in self.log().splitlines():
            if '"portal.operations.supervisor"' in line:
                events.append(json.loads(line)["event"])
        return events

    def stop(self, signum: int = signal.SIGTERM) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signum)
        return self.process.wait(timeout=90)


# ---------------------------------------------------------------------------- HTTP


def _call(url: str, key: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url,
        data=data,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        method="POST" if body is not None else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


class Totals:
    """The customer's api_calls total, live and billed, over a window around the test."""

    def __init__(self, url: str, admin_key: str) -> None:
        now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
        self.query = urllib.parse.urlencode(
            {
                "metric": "api_calls",
                "start": (now - timedelta(hours=1)).isoformat(),
                "end": (now + timedelta(days=1)).isoformat(),
            }
        )
        self.url, self.key = url, admin_key

    def get(self, source: str) -> int | None:
        try:
            status, body = _call(
                f"{self.url}/v1/customers/{CUSTOMER}/usage?{self.query}&source={source}", self.key
            )
        except OSError:
            return None
        return int(body["total"]) if status == 200 else None


def _settle(totals: Totals, expected: int) -> None:
    """Wait until the live and billed totals are both `expected` (the assertion shows them
    as they last were)."""
    seen: tuple[int | None, int | None] = (None, None)

    def exact() -> bool:
        nonlocal seen
        seen = (totals.get("live"), totals.get("billed"))
        return seen == (expected, expected)

    deadline = time.monotonic() + 90
    while not exact() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert seen == (expected, expected), f"live, billed {seen}; acknowledged {expected}"


class Sender(threading.Thread):
    """Sends batches of events with fresh ids, each batch again (same ids) until it gets a
    202; `acknowledged` is the sum of the quantities of every acknowledged batch."""

    def __init__(self, url: str, ingest_key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, ingest_key
        self.acknowledged = 0
        self.batches = 0
        self.retries = 0
        self.refusals: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            number += 1
            now_ms = int(time.time() * 1000)
            batch = [
                {
                    "eventId": uuid.uuid4().hex,
                    "timestamp": now_ms,
                    "customerId": CUSTOMER,
                    "metricName": "api_calls",
                    "quantity": 1 + (number + i) % 9,
                    "dimensions": {"region": "eu"},
                }
                for i in range(25)
            ]
            while True:
                try:
                    status, answer = _call(f"{self.url}/v1/events/batch", self.key, {"events": batch})
                except OSError:
                    status, answer = 0, None
                if status == 202:
                    assert isinstance(answer, dict) and answer["rejected"] == [], answer
                    self.acknowledged += sum(int(e["quantity"]) for e in batch)
                    self.batches += 1
                    break
                if status not in (0, 429, 500, 502, 503, 504):
                    self.refusals.append(f"{status}: {answer}")
                self.retries += 1
                time.sleep(0.1)
            time.sleep(0.05)


# ---------------------------------------------------------------------------- the tests


def test_up_brings_back_whatever_is_killed_under_load_with_exact_totals() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="portal-kill-")).resolve()
    up = Up(data_dir, _free_port(), demo=True)
    try:
        banner = up.banner("Ctrl-C stops everything")
        print(f"\n`up --demo` served after {time.monotonic() - up.started:.1f} s")
        admin = re.search(r"Admin key\s+(\S+)", banner)
        ingest = re.search(r"Ingest key\s+(\S+)", banner)
        assert admin and ingest, banner
        admin_key, ingest_key = admin.group(1), ingest.group(1)
        assert (
            _call(
                f"{up.url}/v1/customers",
                admin_key,
                {"id": CUSTOMER, "name": "Kill Test", "timezone": "UTC", "currency": "EUR"},
            )[0]
            == 201
        )

        # No password or key on any command line: the roles get them in their environment.
        password = (data_dir / PASSWORD_FILE).read_text().strip()
        assert not [
            line for line in _command_lines() if password in line or admin_key in line or ingest_key in line
        ]

        totals = Totals(up.url, admin_key)
        sender = Sender(up.url, ingest_key)
        sender.start()
        _wait(lambda: sender.batches >= 5, "the first batches")

        def role(needle: str) -> Callable[[], int | None]:
            return lambda: next(iter(_children(up.process.pid, needle)), None)

        # Two Dramatiq workers: ingest and maintenance, and the notices (alerts, webhooks).
        ingest_worker = "dramatiq workers.main --processes 1 --threads 4 --queues ingest maintenance"
        notices_worker = "dramatiq workers.main --processes 1 --threads 8 --queues alerts"

        def worker_child() -> int | None:
            master = role(ingest_worker)()
            return next(iter(_children(master, ingest_worker)), None) if master else None

        targets: list[tuple[str, Callable[[], int | None]]] = [
            ("web", role("portal.cli.main web")),
            ("worker (the Dramatiq master)", role(ingest_worker)),
            ("worker (a Dramatiq worker process)", worker_child),
            ("notices (the Dramatiq master)", role(notices_worker)),
            ("scheduler", role("portal.cli.main scheduler")),
            ("demo-trickle", role("portal.cli.main demo-trickle")),
            ("valkey", lambda: _pidfile(data_dir / "valkey" / "valkey.pid")),
            ("valkey-live", lambda: _pidfile(data_dir / "valkey-live" / "valkey.pid")),
            ("postgres", lambda: _pidfile(data_dir / "postgres" / "postmaster.pid")),
        ]
        killed: dict[str, int] = {}
        for name, find in targets:
            pid = _wait(find, f"the {name} to run")
            batches = sender.batches
            _wait(lambda b=batches: sender.batches >= b + 3, "load before the kill")
            descendants = _children(pid, "")
            os.kill(pid, signal.SIGKILL)
            killed[name] = pid
            t0 = time.monotonic()
            _wait(lambda f=find, p=pid: (f() or p) != p, f"a new {name}")
            replaced = time.monotonic() - t0
            # Nothing it had started outlives it (a Dramatiq master's worker processes would
            # go on consuming beside the new master's; Postgres backends hold its memory).
            assert [child for child in descendants if _alive(child)] == []
            _wait(lambda: _ready(up.url), "/readyz to answer 200")
            ready = time.monotonic() - t0
            # Billing catches up: everything acknowledged so far is in Postgres.
            snapshot = sender.acknowledged
            _wait(lambda s=snapshot: (totals.get("billed") or 0) >= s, "billing to catch up")
            billed = time.monotonic() - t0
            print(
                f"SIGKILL {name} (pid {pid}): replaced after {replaced:.1f} s, /readyz 200 after "
                f"{ready:.1f} s, billed total caught up after {billed:.1f} s",
                flush=True,
            )

        sender.stopping.set()
        sender.join(timeout=60)
        assert not sender.is_alive()
        assert sender.refusals == []
        expected = sender.acknowledged
        print(f"sent {sender.batches} batches ({expected} units), {sender.retries} retries")
        _settle(totals, expected)

        # The log names what died and how.
        log = "\n".join(up.supervisor_log())
        for name, prefix in (
            ("web", "web"),
            ("worker (the Dramatiq master)", "worker"),
            ("notices (the Dramatiq master)", "notices"),
            ("scheduler", "scheduler"),
            ("demo-trickle", "demo-trickle"),
            ("valkey", "valkey"),
            ("valkey-live", "valkey-live"),
            ("postgres", "postgres"),
        ):
            assert f"{prefix} (pid {killed[name]}) was killed by SIGKILL" in log, log
        crashed = [
            line
            for line in up.supervisor_log()
            if " after " in line and "SIGKILL" not in line and "started" not in line and "ready" not in line
        ]
        print("other deaths the supervisor saw:", crashed or "none")
    finally:
        code = up.stop(signal.SIGTERM)
        up.stderr.unlink()
    assert code == 0
    # Nothing of the run is left: no role, no worker process, no server.
    assert _of_run(data_dir) == []
    shutil.rmtree(data_dir)


def _fill_valkey(data_dir: Path, keys: int) -> float:
    """Give the data dir's live Valkey (the one that grows with the data) `keys` keys (in db
    2, out of the product's way) through a debug-enabled copy of the server on the same
    files; returns seconds spent."""
    started = time.monotonic()
    valkey = EmbeddedServers(data_dir).live_valkey
    password = server_password(data_dir)
    valkey.start(password)
    valkey.stop()
    port = _free_port()
    config = data_dir / "fill.conf"
    config.write_text(
        f'include "{valkey.config}"\nport {port}\nenable-debug-command yes\n'
        f'pidfile "{data_dir / "fill.pid"}"\n'
    )
    process = subprocess.Popen([valkey.binary, str(config)])
    try:
        client = Redis(host="127.0.0.1", port=port, password=password, db=2)
        _wait(lambda: valkey.ready(password, port), "the filling Valkey")
        client.execute_command("DEBUG", "POPULATE", keys, "filler", 16)
        client.bgrewriteaof()
        _wait(
            lambda: (
                client.info("persistence")["aof_rewrite_in_progress"] == 0
                and client.info("persistence")["aof_rewrite_scheduled"] == 0
            ),
            "the AOF rewrite",
        )
        assert client.dbsize() == keys
        client.shutdown()
    except Exception:
        process.kill()
        raise
    finally:
        process.wait(timeout=60)
        config.unlink()
    return time.monotonic() - started


def test_up_starts_on_a_data_dir_holding_millions_of_keys_and_after_being_killed() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="portal-big-")).resolve()
    keys = 3_000_000
    print(f"\nfilled Valkey with {keys} keys in {_fill_valkey(data_dir, keys):.1f} s")
    port = _free_port()
    up = Up(data_dir, port, demo=False)
    try:
        up.banner("usage portal running at")
        print(
            f"`up` served after {time.monotonic() - up.started:.1f} s;",
            [line for line in up.supervisor_log() if "is ready" in line],
        )
        urls = json.loads((data_dir / "servers.json").read_text())
        client = Redis.from_url(urls["redisUrl"].rsplit("/", 1)[0] + "/2")
        assert client.dbsize() == keys

        # Another command finds the servers `up` runs, and the product counts exactly.
        admin_key, ingest_key = (
            subprocess.run(
                [*CLI, "keys", "create", "--scope", scope],
                cwd=ROOT,
                env=_env(data_dir),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            for scope in ("admin", "ingest")
        )
        assert (
            _call(
                f"{up.url}/v1/customers",
                admin_key,
                {"id": CUSTOMER, "name": "Big Data", "timezone": "UTC", "currency": "EUR"},
            )[0]
            == 201
        )
        assert (
            _call(
                f"{up.url}/v1/meters",
                admin_key,
                {"metricName": "api_calls", "aggregation": "sum", "unit": "call", "groupBy": []},
            )[0]
            == 201
        )
        totals = Totals(up.url, admin_key)
        sender = Sender(up.url, ingest_key)
        sender.start()
        _wait(lambda: sender.batches >= 10, "batches")

        # `up` itself SIGKILLed under load: its roles stop by themselves (none is left to
        # consume beside the next `up`'s); the servers keep running.
        up.stop(signal.SIGKILL)
        up.stderr.unlink()
        _wait(lambda: not [pid for pid in _pids() if _marked(pid, data_dir)], "the roles to stop", timeout=30)
        assert _pidfile(data_dir / "valkey" / "valkey.pid")
        assert _pidfile(data_dir / "valkey-live" / "valkey.pid")
        assert _pidfile(data_dir / "postgres" / "postmaster.pid")

        # The next `up` takes over the running servers and serves; the sender gets through.
        up = Up(data_dir, port, demo=False)
        up.banner("usage portal running at")
        print(f"`up` after a SIGKILLed `up` served after {time.monotonic() - up.started:.1f} s")
        assert sum("already runs on" in line for line in up.supervisor_log()) == 3
        batches = sender.batches
        _wait(lambda: sender.batches >= batches + 10, "batches through the new `up`")
        sender.stopping.set()
        sender.join(timeout=60)
        assert sender.refusals == []
        expected = sender.acknowledged
        _settle(totals, expected)
    finally:
        code = up.stop(signal.SIGTERM)
        up.stderr.unlink()
    assert code == 0
    assert _of_run(data_dir) == []
    shutil.rmtree(data_dir)


def test_up_on_a_data_dir_from_before_the_live_valkey_moves_the_live_view_before_serving() -> None:
    # As an older version left it: one Valkey, the live view and sessions in db 0.
    data_dir = Path(tempfile.mkdtemp(prefix="portal-move-")).resolve()
    servers = EmbeddedServers(data_dir)
    password = server_password(data_dir)
    broker_port = servers.valkey.start(password)
    old = Redis(host="127.0.0.1", port=broker_port, password=password, db=0)
    old.set("sess:from-before", "signed in", ex=3600)
    old.hset("quality:2026-12-07", "accepted|api", 5)
    up = Up(data_dir, _free_port(), demo=False)
    try:
        up.banner("usage portal running at")
        assert "moved 2 keys of the live view from the broker's Valkey to its own" in up.log()
        urls = json.loads((data_dir / "servers.json").read_text())
        live, broker = Redis.from_url(urls["redisUrl"]), Redis.from_url(urls["brokerUrl"])
        try:
            assert live.get("sess:from-before") == b"signed in"
            assert 0 < live.ttl("sess:from-before") <= 3600
            assert live.hget("quality:2026-12-07", "accepted|api") == b"5"
            assert broker.connection_pool.connection_kwargs["port"] == broker_port
            assert old.dbsize() == 0
        finally:
            live.close()
            broker.close()
        assert _ready(up.url)
    finally:
        old.close()
        code = up.stop(signal.SIGTERM)
        up.stderr.unlink()
    assert code == 0
    assert _of_run(data_dir) == []
    shutil.rmtree(data_dir)


def _marked(pid: int, data_dir: Path) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as fh:
            return f"{UP_MARKER}={data_dir}".encode() in fh.read().split(b"\0")
    except OSError:
        return False
