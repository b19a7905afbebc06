"""`usage-portal up`'s supervisor: it keeps the embedded servers and every role running.

Each child (a role: web, worker, scheduler, the demo trickle; an embedded server: Postgres,
the broker's Valkey, the live view's Valkey) is restarted when it dies, after a backoff that
doubles from 0.5 s to 30 s and starts over once the child has run stably for 30 s. The log
names what died and how (its exit code or signal). A child that dies 8 times within 5
minutes is crash-looping: for a role `up` then gives up, names it, and shows its last lines
(a role that cannot run is a mistake to show, not to hide); an embedded server that keeps
failing is waiting on its machine (a full disk, say), so `up` keeps starting it every 30 s,
naming it with its last lines every 5 minutes, and comes back by itself once it can.

A role's process that runs but has stopped beating (heartbeats in the live view's Redis,
portal/operations/heartbeats.py) for `hung_after_s` is hung: stopped by a signal, stuck in
the kernel, every thread blocked. No exit status would ever say so, so `up` kills its
process group, and the restart above follows. It judges only while Redis has been readable
for that long (beats are not written while it is away).

Roles start only while every server is ready (Valkey answers PING, not -LOADING, which it
answers while it loads its append-only file; Postgres accepts a password connection). A
server that dies is started again on the same port and data dir; roles are restarted only
if they died themselves.

No orphans: each role runs in its own process group (its own session), and when its leader
dies the rest of the group (a Dramatiq master's worker processes) gets SIGTERM, then SIGKILL
after a grace, before the role starts again. Roles get SIGTERM if `up` itself dies
(PR_SET_PDEATHSIG, Linux). Every role's environment carries `PORTAL_UP_RUN=<data dir>`, so
leftovers of an earlier `up` on the same data dir (one that was SIGKILLed) are found and
stopped when the next one starts, and when `up` exits. One `up` per data dir: `up.lock`
(flock) in the data dir says which `up` owns it.

Times are in seconds from `time.monotonic()`. The supervisor is single-threaded (it forks
with a pre-exec hook, which is only safe without other threads).
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import redis

from portal.infrastructure.embedded import _pid_alive, tail

if TYPE_CHECKING:
    from portal.infrastructure.embedded import EmbeddedPostgres, EmbeddedServers, EmbeddedValkey, ServerUrls

log = logging.getLogger("portal.operations.supervisor")
T = TypeVar("T")

# In every role's environment: the (resolved) data dir of the `up` that started it.
UP_MARKER = "PORTAL_UP_RUN"
# The header by which a web under `up` says which `up` it belongs to (`up_run_token`).
RUN_HEADER = "X-Portal-Run"


def up_run_token(data_dir: str) -> str:
    """A digest of an `up`'s data dir: tells its own web from another's on the same port,
    without showing the path."""
    return hashlib.sha256(data_dir.encode()).hexdigest()[:16]


LOCK_FILE = "up.lock"
TAIL_LINES = 20


@dataclass(frozen=True, slots=True)
class Policy:
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    # A child that ran this long before dying starts again after `initial_backoff_s`.
    stable_after_s: float = 30.0
    # This many deaths of one child within the window is a crash loop: `up` gives up.
    crash_loop_deaths: int = 8
    crash_loop_window_s: float = 300.0
    # After a role's leader died, the rest of its group gets SIGTERM, then SIGKILL after this.
    kill_grace_s: float = 5.0
    # When `up` stops: how long roles may take to finish what they hold (Dramatiq drains).
    stop_grace_s: float = 20.0
    tick_s: float = 0.1
    # How often a starting server is asked whether it is ready.
    ready_poll_s: float = 0.2
    # A role's process that is running but has not beaten for this long (and six of its
    # own beat intervals) is hung: its group is killed so that it starts again.
    hung_after_s: float = 60.0
    beat_check_s: float = 5.0


def describe_exit(returncode: int | None) -> str:
    """How a child ended, for the log: `exited with code 3`, `was killed by SIGKILL`."""
    if returncode is None:
        return "exited (its status is unknown: this `up` did not start it)"
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class Restarts:
    """When to start a child again after it died (pure bookkeeping; times in seconds)."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.delay = policy.initial_backoff_s
        self.deaths: deque[float] = deque()

    def died(self, *, at: float, ran_for: float) -> float | None:
        """The delay before the next start, or None if the child is crash-looping."""
        self.deaths.append(at)
        while self.deaths and self.deaths[0] < at - self.policy.crash_loop_window_s:
            self.deaths.popleft()
        if len(self.deaths) >= self.policy.crash_loop_deaths:
            return None
        if ran_for >= self.policy.stable_after_s:
            self.delay = self.policy.initial_backoff_s
        delay = self.delay
        self.delay = min(self.delay * 2, self.policy.max_backoff_s)
        return delay


@dataclass(frozen=True, slots=True)
class RoleSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    # Started only while the embedded servers are ready (the demo trickle does not wait).
    needs_servers: bool = True


@dataclass(eq=False)
class _Role:
    spec: RoleSpec
    restarts: Restarts
    process: subprocess.Popen[bytes] | None = None
    pgid: int | None = None
    started_at: float = 0.0
    next_start: float = 0.0
    # Set while the rest of a dead leader's group is being stopped: SIGKILL at this time.
    draining_until: float | None = None
    lines: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    partial: bytes = b""


@dataclass(eq=False)
class _Server:
    server: EmbeddedPostgres | EmbeddedValkey
    restarts: Restarts
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    # Set for a server this `up` found running (not its child): watched by pid.
    adopted_pid: int | None = None
    pgid: int | None = None
    state: str = "down"  # down | starting | ready
    started_at: float = 0.0
    next_start: float = 0.0
    next_poll: float = 0.0
    next_wait_note: float = 0.0
    next_loop_note: float = 0.0  # when a server that keeps failing is named again

    @property
    def name(self) -> str:
        return self.server.name

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else self.adopted_pid


# ---------------------------------------------------------------------------- processes


def _prctl() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _prctl()
_PR_SET_PDEATHSIG = 1


def _die_with(parent: int) -> Callable[[], None] | None:
    """A pre-exec hook: the child gets SIGTERM when `parent` dies (Linux), and exits at once
    if it already has."""
    if _PRCTL is None:
        return None
    prctl = _PRCTL

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return hook


def group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` runs. Zombies do not count: they hold nothing,
    and whoever inherits an orphan may take seconds to reap it."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not os.path.isdir("/proc"):
        return True
    return bool(processes_in_group(pgid))


def processes_in_group(pgid: int) -> set[int]:
    """The pids of group `pgid` that are not zombies (Linux: read from /proc; elsewhere none)."""
    found: set[int] = set()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After the command name: state, ppid, pgrp, …
        if len(fields) > 2 and fields[2] == str(pgid) and fields[0] != "Z":
            found.add(int(name))
    return found


def process_group_of(pid: int) -> int | None:
    """The process group of `pid` while it runs (not a zombie); None otherwise (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return int(fields[2]) if len(fields) > 2 and fields[0] != "Z" else None


def signal_group(pgid: int | None, signum: signal.Signals) -> None:
    if pgid is None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def marked_processes(data_dir: Path) -> list[int]:
    """Processes whose environment says an `up` on `data_dir` started them (Linux /proc;
    empty elsewhere), not counting this one."""
    needle = f"{UP_MARKER}={data_dir.resolve()}".encode()
    found = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for name in entries:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as fh:
                environ = fh.read().split(b"\0")
        except OSError:
            continue
        if needle in environ:
            found.append(int(name))
    return found


def stop_leftovers(data_dir: Path, *, grace_s: float) -> list[int]:
    """Stop processes an earlier `up` on `data_dir` left behind: SIGTERM, then SIGKILL after
    `grace_s`. Returns their pids."""
    pids = marked_processes(data_dir)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_pid_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
    return pids


# ---------------------------------------------------------------------------- the lock


class AlreadyRunning(Exception):
    pass


class UpLock:
    """`<data dir>/up.lock`, flocked by the `up` that owns the data dir (the kernel drops
    the lock when that process dies, however it dies); it holds that process's pid."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK_FILE
        self.fd: int | None = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"another `usage-portal up` (pid {up_pid(self.path.parent) or '?'}) runs on "
                f"{self.path.parent}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def up_pid(data_dir: Path) -> int | None:
    """The pid of the `up` running on `data_dir`, or None if none runs."""
    try:
        fd = os.open(data_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------- supervisor


def _after(seconds: float) -> Callable[[], bool]:
    until = time.monotonic() + seconds
    return lambda: time.monotonic() >= until


class Supervisor:
    """Starts, watches and restarts the children of one `up` (see the module docstring)."""

    def __init__(
        self, *, data_dir: Path, servers: EmbeddedServers | None, policy: Policy | None = None
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.policy = policy or Policy()
        self.servers = servers
        self.password = servers.password if servers is not None else ""
        self._servers: list[_Server] = []
        self._roles: list[_Role] = []
        self._selector = selectors.DefaultSelector()
        self.stopping = False
        self.hurry = False
        self.failure: str | None = None
        # Heartbeats (portal/operations/heartbeats.py), read to find hung roles.
        self._beats: redis.Redis | None = None
        self._beats_readable_since: float | None = None
        self._next_beat_check = 0.0

    # -- servers

    def start_servers(self) -> ServerUrls | None:
        """Adopt the embedded servers already running for the data dir, or start them (not
        waiting: `servers_ready()` says when); returns their URLs (None if external)."""
        if self.servers is None:
            return None
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for server in self.servers.all:
            watched = _Server(server=server, restarts=Restarts(self.policy))
            self._servers.append(watched)
            self._adopt_or_launch(watched)
        postgres, broker, live = self._servers
        urls = self.servers.urls(pg_port=postgres.port, broker_port=broker.port, live_port=live.port)
        self.servers.record(urls)
        return urls

    def move_live_view(self) -> int:
        """Move a data dir's live view from the broker's Valkey to its own (once, before any
        role starts: `EmbeddedServers.move_live_view`); the servers must be ready."""
        if self.servers is None:
            return 0
        _, broker, live = self._servers
        return self.servers.move_live_view(broker_port=broker.port, live_port=live.port)

    def _adopt_or_launch(self, watched: _Server) -> None:
        server = watched.server
        pid, port = server.running_pid(), server.running_port()
        if pid is not None and port is not None:
            if server.secured(self.password, port):
                watched.adopted_pid, watched.port, watched.state = pid, port, "starting"
                # Counted from the adoption (its own start is unknown): "ready N s after".
                watched.started_at = watched.next_poll = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    watched.pgid = os.getpgid(pid)
                log.info("%s (pid %d) already runs on 127.0.0.1:%d; watching it", server.name, pid, port)
                return
            log.warning("%s (pid %d) runs without this data dir's password; restarting it", server.name, pid)
            server.stop()
        self._launch(watched)

    def _launch(self, watched: _Server) -> None:
        now = time.monotonic()
        try:
            port, process = watched.server.launch(self.password, port=watched.port or None)
        except Exception as exc:  # a failed start is a death: backoff, or a crash loop
            log.error("%s did not start: %s", watched.name, exc)
            self._server_died(watched, None, ran_for=0.0, how=f"did not start ({exc})")
            return
        watched.port, watched.process, watched.adopted_pid = port, process, None
        watched.pgid = process.pid  # its own session
        watched.state, watched.started_at, watched.next_poll = "starting", now, now
        watched.next_wait_note = now + 30
        log.info("started %s (pid %d) on 127.0.0.1:%d", watched.name, process.pid, port)

    def servers_ready(self) -> bool:
        return all(watched.state == "ready" for watched in self._servers)

    def _watch_server(self, watched: _Server, now: float) -> None:
        if watched.state == "down":
            if now >= watched.next_start and not self.stopping:
                self._launch(watched)
            return
        returncode: int | None
        if watched.process is not None:
            returncode = watched.process.poll()
            dead = returncode is not None
        else:
            returncode = None
            dead = watched.adopted_pid is None or not _pid_alive(watched.adopted_pid)
        if dead:
            self._server_died(watched, returncode, ran_for=now - watched.started_at)
            return
        if watched.state == "starting" and now >= watched.next_poll:
            watched.next_poll = now + self.policy.ready_poll_s
            if watched.server.ready(self.password, watched.port):
                watched.state = "ready"
                log.info(
                    "%s is ready on 127.0.0.1:%d (%.1f s after its start)",
                    watched.name,
                    watched.port,
                    time.monotonic() - watched.started_at,
                )
            elif now >= watched.next_wait_note:
                watched.next_wait_note = now + 30
                log.info(
                    "%s is not ready yet after %.0f s (loading or recovering its data)",
                    watched.name,
                    now - watched.started_at,
                )

    def _server_died(
        self, watched: _Server, returncode: int | None, *, ran_for: float, how: str | None = None
    ) -> None:
        now = time.monotonic()
        pid = watched.pid
        # What is left of it (Postgres backends, a Valkey rewrite child) goes too: the new
        # server needs the port and the shared memory.
        signal_group(watched.pgid, signal.SIGKILL)
        watched.process, watched.adopted_pid, watched.pgid, watched.state = None, None, None, "down"
        what = how or describe_exit(returncode)
        delay = watched.restarts.died(at=now, ran_for=ran_for)
        if delay is None:
            # A store that keeps failing is waiting on its machine (a full disk, a port taken,
            # memory): `up` keeps trying, slowly, and the web keeps answering 503 meanwhile.
            # Giving up would stop every role and need a person once the machine recovers.
            delay = self.policy.max_backoff_s
            if now >= watched.next_loop_note:
                watched.next_loop_note = now + self.policy.crash_loop_window_s
                lines = "\n".join(f"    {line}" for line in tail(watched.server.logfile, TAIL_LINES))
                log.critical(
                    "%s keeps failing (%d times within %.0f s; the last time it %s); `up` keeps "
                    "starting it every %g s until it stays up. Its last lines:\n%s",
                    watched.name,
                    self.policy.crash_loop_deaths,
                    self.policy.crash_loop_window_s,
                    what,
                    delay,
                    lines or "    (no output)",
                )
        watched.next_start = now + delay
        log.error(
            "%s%s %s after %.1f s; starting it again in %.1f s",
            watched.name,
            f" (pid {pid})" if pid else "",
            what,
            ran_for,
            delay,
        )

    # -- roles

    def add_role(self, spec: RoleSpec) -> None:
        self._roles.append(_Role(spec=spec, restarts=Restarts(self.policy), next_start=time.monotonic()))

    def _spawn(self, role: _Role, now: float) -> None:
        try:
            process = subprocess.Popen(
                role.spec.argv,
                env=role.spec.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with(os.getpid()),
            )
        except OSError as exc:
            log.error("could not start %s: %s", role.spec.name, exc)
            self._role_died(role, None, ran_for=0.0, how=f"did not start ({exc})")
            return
        role.process, role.pgid, role.started_at = process, process.pid, now
        for stream, target in ((process.stdout, sys.stdout), (process.stderr, sys.stderr)):
            assert stream is not None
            os.set_blocking(stream.fileno(), False)
            self._selector.register(stream, selectors.EVENT_READ, (role, target))
        log.info("started %s (pid %d)", role.spec.name, process.pid)

    def _watch_role(self, role: _Role, now: float) -> None:
        if role.process is not None:
            returncode = role.process.poll()
            if returncode is not None:
                self._role_died(role, returncode, ran_for=now - role.started_at)
            return
        if role.draining_until is not None:
            if role.pgid is None or not group_alive(role.pgid):
                role.draining_until, role.pgid = None, None
            elif now >= role.draining_until:
                log.warning("%s: SIGKILL to the rest of its process group %d", role.spec.name, role.pgid)
                signal_group(role.pgid, signal.SIGKILL)
                role.draining_until = now + self.policy.kill_grace_s
            return
        if self.stopping or now < role.next_start:
            return
        if role.spec.needs_servers and not self.servers_ready():
            return
        self._spawn(role, now)

    def _role_died(
        self, role: _Role, returncode: int | None, *, ran_for: float, how: str | None = None
    ) -> None:
        now = time.monotonic()
        pid = role.process.pid if role.process is not None else None
        role.process = None
        if role.pgid is not None and group_alive(role.pgid):
            # A Dramatiq master's workers, say: they must not keep consuming beside the
            # next master.
            signal_group(role.pgid, signal.SIGTERM)
            role.draining_until = now + self.policy.kill_grace_s
        else:
            role.pgid = None
        if self.stopping:
            return
        what = how or describe_exit(returncode)
        delay = role.restarts.died(at=now, ran_for=ran_for)
        if delay is None:
            self._crash_loop(role.spec.name, what, list(role.lines))
            return
        role.next_start = now + delay
        waits = " (once the servers are ready)" if role.spec.needs_servers and self._servers else ""
        log.error(
            "%s%s %s after %.1f s; starting it again in %.1f s%s",
            role.spec.name,
            f" (pid {pid})" if pid else "",
            what,
            ran_for,
            delay,
            waits,
        )

    # -- output

    def _relay(self, timeout: float) -> None:
        """Copy children's output to ours (keeping each role's last lines) for up to `timeout`."""
        if not self._selector.get_map():
            time.sleep(timeout)
            return
        for key, _ in self._selector.select(timeout):
            role, target = key.data
            try:
                data = os.read(key.fd, 65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._selector.unregister(key.fileobj)
                with contextlib.suppress(OSError):
                    key.fileobj.close()  # type: ignore[union-attr]
                continue
            with contextlib.suppress(OSError, ValueError, AttributeError):
                target.flush()
                target.buffer.write(data)
                target.buffer.flush()
            text = (role.partial + data).split(b"\n")
            role.partial = text.pop()[-4096:]
            role.lines.extend(line.decode(errors="replace") for line in text if line.strip())

    # -- the loop

    def _crash_loop(self, name: str, what: str, lines: list[str]) -> None:
        window = self.policy.crash_loop_window_s
        shown = "\n".join(f"    {line}" for line in lines[-TAIL_LINES:]) or "    (no output)"
        self.failure = (
            f"giving up: {name} died {self.policy.crash_loop_deaths} times within "
            f"{window:.0f} s (a crash loop; the last time it {what}). Its last lines:\n{shown}"
        )
        log.critical(
            "giving up: %s is crash-looping (%d deaths within %.0f s; the last time it %s)",
            name,
            self.policy.crash_loop_deaths,
            window,
            what,
        )

    def tick(self) -> None:
        """One round: relay output, notice deaths and hangs, start what is due."""
        self._relay(self.policy.tick_s)
        now = time.monotonic()
        for watched in self._servers:
            self._watch_server(watched, now)
        for role in self._roles:
            self._watch_role(role, now)
        if self._beats is not None and now >= self._next_beat_check:
            self._next_beat_check = now + self.policy.beat_check_s
            self._watch_beats(now)

    # -- hangs

    def watch_beats(self, redis_url: str) -> None:
        """Read the roles' heartbeats from the live view's Redis (`redis_url`) from now on:
        a role's process that runs but stopped beating is hung (stopped by a signal, stuck
        in the kernel, every thread blocked), which its exit status would never tell."""
        from portal.infrastructure.redis_client import sync_client

        self._beats = sync_client(redis_url, socket_timeout=2, socket_connect_timeout=2)

    def _watch_beats(self, now: float) -> None:
        from portal.operations.heartbeats import read_roles_sync

        assert self._beats is not None
        try:
            seen = read_roles_sync(self._beats)
        except Exception:  # Redis down or loading: its own outage, reported elsewhere
            self._beats_readable_since = None
            return
        if self._beats_readable_since is None:
            self._beats_readable_since = now
        # Beats are not written while Redis is away: judge only once it has been readable
        # for a whole hung period, so a Redis outage does not read as every role hung.
        if now - self._beats_readable_since < self.policy.hung_after_s:
            return
        host = socket.gethostname()
        roles = {
            role.pgid: role for role in self._roles if role.process is not None and role.pgid is not None
        }
        for beat in seen.processes:
            silent = (seen.now - beat.seen_at).total_seconds()
            if beat.host != host or beat.stopped or silent < max(self.policy.hung_after_s, 6 * beat.every_s):
                continue
            # Silent: is it a process of one of our roles, still there (a record of one that
            # ended stays until forgotten)? Read for the rare silent beat only.
            group = process_group_of(beat.pid)
            role = None if group is None else roles.get(group)
            if role is None or role.pgid is None or now - role.started_at < self.policy.hung_after_s:
                continue
            log.error(
                "%s: process %d runs but has not beaten for %.0f s (hung or stopped); "
                "killing its process group %d to start it again",
                role.spec.name,
                beat.pid,
                silent,
                role.pgid,
            )
            signal_group(role.pgid, signal.SIGKILL)
            del roles[role.pgid]

    @property
    def done(self) -> bool:
        return self.stopping or self.failure is not None

    def run_until(self, condition: Callable[[], bool]) -> bool:
        """Supervise until `condition()` holds (True) or `up` stops or gives up (False)."""
        while not self.done:
            if condition():
                return True
            self.tick()
        return False

    def attempt(self, what: str, action: Callable[[], T], *, tries: int = 5) -> tuple[bool, T | None]:
        """Run a step that needs the servers (migrations, demo data), again after a failure
        once they are ready; after `tries` failures `up` gives up. Returns (whether it
        succeeded, its result)."""
        last: Exception | None = None
        for number in range(1, tries + 1):
            if not self.run_until(self.servers_ready):
                return False, None
            try:
                return True, action()
            except Exception as exc:
                log.error("%s failed (try %d of %d): %s", what, number, tries, exc)
                last = exc
                self.run_until(_after(self.policy.initial_backoff_s * 2**number))
        self.failure = f"giving up: {what} failed {tries} times; the last error: {last}"
        return False, None

    def request_stop(self, *_: Any) -> None:
        if self.stopping:
            self.hurry = True
        self.stopping = True

    def shutdown(self) -> None:
        """Stop every role (SIGTERM to each group, SIGKILL after the grace), then the servers,
        then whatever an `up` on this data dir left."""
        self.stopping = True
        beats, self._beats = self._beats, None
        if beats is not None:
            with contextlib.suppress(Exception):
                beats.close()
        for role in self._roles:
            # The leader only: it stops its own children (a second SIGTERM makes a Dramatiq
            # worker process exit without draining, and hang on its threads).
            if role.process is not None and role.process.poll() is None:
                role.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.policy.stop_grace_s
        killed = False
        while True:
            self._relay(self.policy.tick_s)
            for role in self._roles:
                if role.process is not None and role.process.poll() is not None:
                    role.process = None
                    # Its leader is gone and left members behind: they get their SIGTERM now.
                    signal_group(role.pgid, signal.SIGTERM)
            alive = [role for role in self._roles if role.pgid is not None and group_alive(role.pgid)]
            if not alive:
                break
            if not killed and (self.hurry or time.monotonic() >= deadline):
                for role in alive:
                    log.warning(
                        "%s did not stop within %.0f s: SIGKILL", role.spec.name, self.policy.stop_grace_s
                    )
                    signal_group(role.pgid, signal.SIGKILL)
                killed, deadline = True, time.monotonic() + 5
            elif killed and time.monotonic() >= deadline:
                break
        for role in self._roles:
            if role.process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    role.process.wait(timeout=1)
        for watched in reversed(self._servers):
            try:
                watched.server.stop()
            except Exception as exc:
                log.error("stopping %s: %s", watched.name, exc)
            if watched.process is not None:
                try:
                    watched.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    signal_group(watched.pgid, signal.SIGKILL)
                    watched.process.wait()
        while self._selector.get_map():
            self._relay(0)
            if not self._selector.select(0):
                break
        for key in list(self._selector.get_map().values()):
            self._selector.unregister(key.fileobj)
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        left = stop_leftovers(self.data_dir, grace_s=0.0)
        if left:
            log.warning("killed %d process(es) left by the roles: %s", len(left), left)
