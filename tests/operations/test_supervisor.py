"""`up`'s supervisor with stand-in children (real processes, seconds): backoff and crash
loops, a dead leader's process group stopped before its restart, nothing left at shutdown,
leftovers of an earlier `up` found by their marker, one `up` per data dir.

The real roles and servers under `up` are in test_up_recovery.py."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from portal.infrastructure.settings import Settings
from portal.operations.supervisor import (
    UP_MARKER,
    AlreadyRunning,
    Policy,
    Restarts,
    RoleSpec,
    Supervisor,
    UpLock,
    _Server,
    describe_exit,
    marked_processes,
    stop_leftovers,
    up_pid,
)

FAST = Policy(
    initial_backoff_s=0.05,
    max_backoff_s=0.2,
    stable_after_s=30,
    crash_loop_deaths=3,
    crash_loop_window_s=60,
    kill_grace_s=2,
    stop_grace_s=5,
    tick_s=0.02,
)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def _wait(predicate: object, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _python(code: str, data_dir: Path, **env: str) -> tuple[list[str], dict[str, str]]:
    return [sys.executable, "-c", code], {**os.environ, UP_MARKER: str(data_dir.resolve()), **env}


@pytest.mark.parametrize(
    ("returncode", "said"),
    [
        (3, "exited with code 3"),
        (0, "exited with code 0"),
        (-9, "was killed by SIGKILL"),
        (-15, "was killed by SIGTERM"),
        (None, "exited (its status is unknown: this `up` did not start it)"),
    ],
)
def test_the_log_says_how_a_child_ended(returncode: int | None, said: str) -> None:
    assert describe_exit(returncode) == said


def test_backoff_doubles_to_its_cap_and_starts_over_after_a_stable_run() -> None:
    policy = Policy(initial_backoff_s=0.5, max_backoff_s=30, stable_after_s=30, crash_loop_deaths=100)
    restarts = Restarts(policy)
    delays = [restarts.died(at=float(n), ran_for=1.0) for n in range(8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    assert restarts.died(at=100.0, ran_for=45.0) == 0.5
    assert restarts.died(at=101.0, ran_for=1.0) == 1.0


def test_a_crash_loop_is_so_many_deaths_within_the_window() -> None:
    policy = Policy(crash_loop_deaths=3, crash_loop_window_s=60)
    restarts = Restarts(policy)
    assert restarts.died(at=0.0, ran_for=1) is not None
    assert restarts.died(at=10.0, ran_for=1) is not None
    # The first death has left the window by the third: not a loop yet.
    assert restarts.died(at=65.0, ran_for=1) is not None
    # Three within 60 s (10, 65, 69) is.
    assert restarts.died(at=69.0, ran_for=1) is None


def test_a_crashing_role_is_restarted_then_given_up_on_with_its_last_lines(tmp_path: Path) -> None:
    argv, env = _python(
        "print('loading the config'); print('boom: no such table'); raise SystemExit(3)", tmp_path
    )
    supervisor = Supervisor(data_dir=tmp_path, servers=None, policy=FAST)
    supervisor.add_role(RoleSpec("scheduler", argv, env))
    try:
        assert supervisor.run_until(lambda: False) is False
    finally:
        supervisor.shutdown()
    assert supervisor.failure is not None
    assert supervisor.failure.startswith(
        "giving up: scheduler died 3 times within 60 s (a crash loop; the last time it exited with "
        "code 3). Its last lines:\n"
    )
    assert "    boom: no such table" in supervisor.failure


class _FullDiskServer:
    """A stand-in embedded server that cannot start while the "disk" is full."""

    name = "valkey"

    def __init__(self, tmp_path: Path) -> None:
        self.logfile = tmp_path / "valkey.log"
        self.logfile.write_text("Can't open the append-only file: No space left on device\n")
        self.disk_full = True
        self.launches = 0
        self.process: subprocess.Popen[bytes] | None = None

    def launch(self, password: str, *, port: int | None = None) -> tuple[int, subprocess.Popen[bytes]]:
        self.launches += 1
        if self.disk_full:
            raise OSError(28, "No space left on device")
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True
        )
        return 6399, self.process

    def ready(self, password: str, port: int) -> bool:
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()


def test_a_server_that_keeps_failing_is_started_again_until_it_stays_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a store that fails to start (a full disk) more often than a role may crash
    server = _FullDiskServer(tmp_path)
    supervisor = Supervisor(data_dir=tmp_path, servers=None, policy=FAST)
    supervisor._servers.append(_Server(server=server, restarts=Restarts(FAST)))  # type: ignore[arg-type]
    try:
        with caplog.at_level(logging.CRITICAL, logger="portal.operations.supervisor"):
            assert supervisor.run_until(lambda: server.launches > FAST.crash_loop_deaths + 2)
        # Then `up` does not give up: it names the server with its last lines and goes on
        assert server.launches > FAST.crash_loop_deaths + 2
        assert supervisor.failure is None
        [note] = [r.getMessage() for r in caplog.records if "keeps failing" in r.getMessage()]
        assert note.startswith("valkey keeps failing (3 times within 60 s; the last time it did not start (")
        assert "    Can't open the append-only file: No space left on device" in note
        # And once the disk has room again it is up, without a person
        server.disk_full = False
        assert supervisor.run_until(supervisor.servers_ready)
    finally:
        supervisor.shutdown()


def test_a_dead_leaders_group_is_stopped_before_the_role_starts_again(tmp_path: Path) -> None:
    # Like a Dramatiq master and its worker process: the leader starts a child in its group
    # and records both pids.
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        "time.sleep(600)\n"
    )
    argv, env = _python(code, tmp_path)
    supervisor = Supervisor(data_dir=tmp_path, servers=None, policy=FAST)
    supervisor.add_role(RoleSpec("worker", argv, env))

    def started(count: int) -> bool:
        return pids.exists() and len(pids.read_text().splitlines()) >= count

    try:
        assert supervisor.run_until(lambda: started(1))
        leader, child = map(int, pids.read_text().split())
        os.kill(leader, signal.SIGKILL)
        assert supervisor.run_until(lambda: started(2))
        # The orphaned child was stopped before the new leader started: never two consumers.
        assert not _alive(child)
        new_leader, new_child = map(int, pids.read_text().splitlines()[1].split())
        assert _alive(new_leader) and _alive(new_child)
    finally:
        supervisor.shutdown()
    # Shutdown leaves nothing behind.
    assert not _alive(new_leader) and not _alive(new_child)
    assert marked_processes(tmp_path) == []


def test_a_role_whose_process_stops_beating_is_killed_and_started_again(
    tmp_path: Path, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    # Like a Dramatiq worker process that hangs: it beats once, then is stopped (SIGSTOP:
    # alive, exit status never comes), under a leader that waits on it forever.
    pids = tmp_path / "pids"
    child_code = (
        "import os, signal\n"
        "from portal.infrastructure.redis_client import sync_client\n"
        "from portal.operations.heartbeats import Identity, beat\n"
        "beat(sync_client(os.environ['REDIS_URL']), Identity.of_this_process('worker'), every_s=0.1)\n"
        "os.kill(os.getpid(), signal.SIGSTOP)\n"
    )
    code = (
        "import os, subprocess, sys\n"
        f"child = subprocess.Popen([sys.executable, '-c', {child_code!r}])\n"
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}} {{child.pid}}\\n')\n"
        "child.wait()\n"
    )
    argv, env = _python(code, tmp_path, REDIS_URL=settings.redis_url or "")
    policy = replace(FAST, hung_after_s=1.0, beat_check_s=0.1)
    supervisor = Supervisor(data_dir=tmp_path, servers=None, policy=policy)
    supervisor.watch_beats(settings.redis_url or "")
    supervisor.add_role(RoleSpec("worker", argv, env))

    def started(count: int) -> bool:
        return pids.exists() and len(pids.read_text().splitlines()) >= count

    try:
        with caplog.at_level(logging.ERROR, logger="portal.operations.supervisor"):
            assert supervisor.run_until(lambda: started(1))
            leader, child = map(int, pids.read_text().split())
            assert supervisor.run_until(lambda: started(2))
        assert not _alive(leader) and not _alive(child)
        hung = [r.getMessage() for r in caplog.records if "has not beaten" in r.getMessage()]
        assert hung and hung[0].startswith(f"worker: process {child} runs but has not beaten for ")
        assert hung[0].endswith(f"(hung or stopped); killing its process group {leader} to start it again")
    finally:
        supervisor.shutdown()
    assert marked_processes(tmp_path) == []


def test_a_role_that_ignores_sigterm_is_killed_at_shutdown(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        f"open({str(ready)!r}, 'w').write('1')\ntime.sleep(600)\n"
    )
    argv, env = _python(code, tmp_path)
    supervisor = Supervisor(data_dir=tmp_path, servers=None, policy=Policy(stop_grace_s=0.5, tick_s=0.02))
    supervisor.add_role(RoleSpec("web", argv, env))
    assert supervisor.run_until(ready.exists)
    supervisor.shutdown()
    assert marked_processes(tmp_path) == []


def test_leftovers_of_an_earlier_up_on_the_same_data_dir_are_stopped(tmp_path: Path) -> None:
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    env = {**os.environ, UP_MARKER: str(tmp_path.resolve())}
    # One ignores SIGTERM: it gets SIGKILL after the grace.
    ignoring = tmp_path / "ignoring"
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            f"open({str(ignoring)!r}, 'w').close(); time.sleep(600)",
        ],
        env=env,
    )
    polite = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], env=env)
    elsewhere = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={**os.environ, UP_MARKER: str(other_dir.resolve())},
    )
    try:
        _wait(ignoring.exists, "the stubborn process to ignore SIGTERM")
        _wait(lambda: {stubborn.pid, polite.pid} <= set(marked_processes(tmp_path)), "the processes")
        assert sorted(stop_leftovers(tmp_path, grace_s=0.5)) == sorted([stubborn.pid, polite.pid])
        assert stubborn.wait(5) == -signal.SIGKILL
        assert polite.wait(5) == -signal.SIGTERM
        assert elsewhere.poll() is None
    finally:
        for process in (stubborn, polite, elsewhere):
            process.kill()
            process.wait()


def test_one_up_per_data_dir(tmp_path: Path) -> None:
    assert up_pid(tmp_path) is None
    lock = UpLock(tmp_path)
    lock.acquire()
    try:
        # Another process sees who holds it (flock is per open file, so a second lock in
        # this process would conflict too).
        assert up_pid(tmp_path) == os.getpid()
        with pytest.raises(AlreadyRunning, match=rf"another `usage-portal up` \(pid {os.getpid()}\) runs on"):
            UpLock(tmp_path).acquire()
    finally:
        lock.release()
    assert up_pid(tmp_path) is None
    assert (tmp_path / "up.lock").stat().st_mode & 0o777 == 0o600
