"""A private RabbitMQ node: for the tests and for local runs of several nodes.

It runs Debian's `rabbitmq-server` (scripts/ensure-rabbitmq installs it) as the current
user, with everything of its own under one directory: data, logs, the Erlang cookie (its
HOME), a config file and an empty plugins file (no management plugin: it would double the
boot time and open an HTTP port). It listens on the loopback only, on a free AMQP port, with
its own Erlang distribution port and its own `epmd` (the port mapper every Erlang node
registers with), so it shares nothing with a system RabbitMQ or another private node, and
`close()` leaves no process behind.

Starting one takes about 5 s on 2 cores (the Erlang boot, mostly); a restart on the same
data directory the same. Production runs a RabbitMQ the operator manages: this module is
never used by the roles themselves.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

# The script that starts the node as the current user (/usr/sbin/rabbitmq-server switches to
# the `rabbitmq` system user, whose rights our directories would need).
SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server",)
EPMD_PATHS = ("/usr/bin/epmd",)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _find(candidates: tuple[str, ...], name: str) -> str:
    for path in candidates:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} not found: run scripts/ensure-rabbitmq (Debian's rabbitmq-server)")
    return found


def _erlang_binary(text: str) -> str:
    return "<<" + '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"' + ">>"


class RabbitmqServer:
    """One RabbitMQ node under `base_dir`; `start()`, `stop()`/`kill()`, `restart()`,
    `close()` (the node and its epmd). The AMQP URL is `url`."""

    def __init__(self, base_dir: Path, *, user: str = "portal", password: str | None = None) -> None:
        self.base_dir = base_dir
        self.user = user
        self.password = password or secrets.token_urlsafe(16)
        self.port = _free_port()
        self.dist_port = _free_port()
        self.epmd_port = _free_port()
        self.node = f"portal-{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self.log_path = base_dir / "server.log"
        # Seconds the last start() took until the AMQP port answered (reported by the tests).
        self.last_start_s = 0.0

    @property
    def url(self) -> str:
        return f"amqp://{quote(self.user, safe='')}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/%2F"

    def _write_files(self) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        (self.base_dir / "enabled_plugins").write_text("[].\n")
        # Classic Erlang-term config: no schema translation at boot (faster than .conf).
        # The default user exists from the first boot of an empty data directory. The
        # disk alarm stays on but low: a test machine's disk is often near full, and an
        # alarm would block every publish.
        (self.base_dir / "rabbitmq.config").write_text(
            "[{rabbit, ["
            f'{{tcp_listeners, [{{"127.0.0.1", {self.port}}}]}}, '
            f"{{default_user, {_erlang_binary(self.user)}}}, "
            f"{{default_pass, {_erlang_binary(self.password)}}}, "
            "{loopback_users, []}, "
            "{disk_free_limit, 10000000}"
            "]},\n"
            " {kernel, [{inet_dist_use_interface, {127,0,0,1}}]}].\n"
        )

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "HOME": str(self.base_dir),  # the Erlang cookie lives here
                "ERL_EPMD_PORT": str(self.epmd_port),
                "ERL_EPMD_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODENAME": self.node,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(self.port),
                "RABBITMQ_DIST_PORT": str(self.dist_port),
                "RABBITMQ_MNESIA_BASE": str(self.base_dir / "mnesia"),
                "RABBITMQ_LOG_BASE": str(self.base_dir / "log"),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base_dir / "enabled_plugins"),
                "RABBITMQ_CONFIG_FILE": str(self.base_dir / "rabbitmq.config"),
                "RABBITMQ_CONF_ENV_FILE": str(self.base_dir / "rabbitmq-env.conf"),  # none: ignore /etc's
                "RABBITMQ_ADVANCED_CONFIG_FILE": str(self.base_dir / "advanced.config"),
            }
        )
        return env

    def start(self, *, timeout_s: float = 60.0) -> None:
        """Start the node (on the data directory of an earlier start, if any) and return once
        it accepts AMQP connections with its user. Raises RuntimeError if it does not."""
        if self.process is not None and self.process.poll() is None:
            return
        self._write_files()
        began = time.monotonic()
        if self.epmd is None or self.epmd.poll() is not None:
            # In the foreground, a child of ours: `-daemon` would outlive us.
            self.epmd = subprocess.Popen(
                [_find(EPMD_PATHS, "epmd"), "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [_find(SERVER_SCRIPTS, "rabbitmq-server")],
                env=self._env(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = began + timeout_s
        while not self._answers():
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.process.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"rabbitmq-server did not answer within {timeout_s:.0f} s: {self._tail()}")
            time.sleep(0.1)
        self.last_start_s = time.monotonic() - began

    def _answers(self) -> bool:
        import pika
        import pika.exceptions

        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                return False
        try:
            params = pika.URLParameters(self.url + "?connection_attempts=1&socket_timeout=2&stack_timeout=5")
            pika.BlockingConnection(params).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def _tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def _signal_node(self, sig: signal.Signals, timeout_s: float) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            # The node's group: the start script and the Erlang VM. Its helpers
            # (erl_child_setup, inet_gethost) end with the VM.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, sig)
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # The VM may outlive the script that started it by a moment.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        self.process = None

    def stop(self, *, timeout_s: float = 30.0) -> None:
        """Stop the node cleanly (SIGTERM: RabbitMQ shuts down in about a second)."""
        self._signal_node(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """Kill the node outright (SIGKILL): what a crash or a power cut leaves."""
        self._signal_node(signal.SIGKILL, 10.0)

    def restart(self, *, timeout_s: float = 60.0) -> None:
        self.stop()
        self.start(timeout_s=timeout_s)

    def close(self) -> None:
        """Stop the node and its epmd; nothing of ours keeps running."""
        self.stop()
        if self.epmd is not None and self.epmd.poll() is None:
            self.epmd.terminate()
            try:
                self.epmd.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.epmd.kill()
                self.epmd.wait()
        self.epmd = None
