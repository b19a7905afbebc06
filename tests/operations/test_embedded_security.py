"""The embedded servers are safe by default: a password generated once per data dir (kept
0600) that both require, loopback only, and no password on any command line."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import AuthenticationError, BusyLoadingError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from portal.infrastructure.embedded import PASSWORD_FILE, PG_HBA, EmbeddedServers


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def _listeners(port: int) -> set[str]:
    """The local addresses listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            for line in fh.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, hex_port = local.rsplit(":", 1)
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(address)
    return found


def _command_lines() -> list[str]:
    lines = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/cmdline", "rb") as fh:
                    lines.append(fh.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines


async def _pg_refuses(url: str) -> str:
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidPasswordError as exc:
        return str(exc)
    await conn.close()
    return "connected"


def _redis_refuses(port: int, password: str | None) -> str:
    client = Redis(host="127.0.0.1", port=port, password=password, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (AuthenticationError, BusyLoadingError, ResponseError) as exc:
        return type(exc).__name__
    finally:
        client.close()
    return "connected"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[EmbeddedServers]:
    servers = EmbeddedServers(tmp_path / "data")
    yield servers
    servers.stop()


def test_both_servers_require_the_data_dirs_password_on_loopback_only(servers: EmbeddedServers) -> None:
    urls = servers.start()
    data_dir = servers.data_dir
    password = (data_dir / PASSWORD_FILE).read_text().strip()
    assert len(password) >= 40  # 32 random bytes, URL-safe
    # The password and everything that holds it is the owner's only.
    assert _mode(data_dir / PASSWORD_FILE) == 0o600
    assert _mode(data_dir / "servers.json") == 0o600
    for valkey_dir in ("valkey", "valkey-live"):
        assert _mode(data_dir / valkey_dir / "valkey.conf") == 0o600
        assert _mode(data_dir / valkey_dir) == 0o700
    assert _mode(data_dir / "postgres") == 0o700
    pg_port, broker_port = servers.postgres.running_port(), servers.valkey.running_port()
    live_port = servers.live_valkey.running_port()
    assert pg_port and broker_port and live_port and broker_port != live_port
    assert urls.database_url == f"postgresql://postgres:{password}@127.0.0.1:{pg_port}/portal"
    assert urls.redis_url == f"redis://:{password}@127.0.0.1:{live_port}/0"
    assert urls.broker_url == f"redis://:{password}@127.0.0.1:{broker_port}/1"
    assert json.loads((data_dir / "servers.json").read_text()) == {
        "databaseUrl": urls.database_url,
        "redisUrl": urls.redis_url,
        "brokerUrl": urls.broker_url,
    }

    # Postgres: no connection without the password, none with a wrong one. (It accepts the
    # right one: the SCRAM verifier we computed for it is what it stores.)
    refused = 'password authentication failed for user "postgres"'
    assert asyncio.run(_pg_refuses(f"postgresql://postgres@127.0.0.1:{pg_port}/portal")) == refused
    assert asyncio.run(_pg_refuses(f"postgresql://postgres:wrong@127.0.0.1:{pg_port}/portal")) == refused
    assert asyncio.run(_pg_refuses(urls.database_url)) == "connected"
    assert (servers.data_dir / "postgres" / "pg_hba.conf").read_text() == PG_HBA
    assert "trust" not in PG_HBA

    async def settings() -> list[object]:
        conn = await asyncpg.connect(urls.database_url)
        try:
            return [
                await conn.fetchval(f"SHOW {name}")
                for name in ("listen_addresses", "unix_socket_directories", "password_encryption")
            ] + [
                await conn.fetchval("SELECT left(rolpassword, 14) FROM pg_authid WHERE rolname = 'postgres'")
            ]
        finally:
            await conn.close()

    assert asyncio.run(settings()) == ["127.0.0.1", "", "scram-sha-256", "SCRAM-SHA-256$"]

    # Both Valkeys: NOAUTH without the password, WRONGPASS with a wrong one.
    for redis_port in (broker_port, live_port):
        assert _redis_refuses(redis_port, None) == "AuthenticationError"
        assert _redis_refuses(redis_port, "wrong") == "AuthenticationError"
        assert _redis_refuses(redis_port, password) == "connected"

    # Loopback only (127.0.0.1 is 0100007F in /proc/net/tcp), no IPv6 or wildcard listener.
    for port in (pg_port, broker_port, live_port):
        assert _listeners(port) == {"0100007F"}

    # The password is on no command line (it is in files and environments only).
    assert not [line for line in _command_lines() if password in line]

    # Another command on the same data dir finds the servers, password included.
    assert EmbeddedServers(data_dir).running() == urls


def test_a_data_dir_made_before_passwords_is_secured_when_started(servers: EmbeddedServers) -> None:
    servers.start()
    servers.stop()
    data_dir = servers.data_dir
    # As an older version left it: trust for every local connection, no password file, and
    # a Valkey running without a password.
    hba = data_dir / "postgres" / "pg_hba.conf"
    hba.write_text("local all all trust\nhost all all 127.0.0.1/32 trust\n")
    (data_dir / "postgres" / "usage-portal.password-sha256").unlink()
    (data_dir / PASSWORD_FILE).unlink()
    config = data_dir / "valkey" / "valkey.conf"
    config.write_text(
        "\n".join(line for line in config.read_text().splitlines() if not line.startswith("requirepass"))
    )
    subprocess.run([servers.valkey.binary, str(config), "--daemonize", "yes"], check=True)
    deadline = time.monotonic() + 10
    while servers.valkey.running_port() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    redis_port = servers.valkey.running_port()
    assert redis_port is not None
    # It answers without a password (once it has loaded its data, or -LOADING before), once
    # it listens: its port file is written a moment before (a loaded machine saw the gap).
    answer = "not listening"
    while answer == "not listening" and time.monotonic() < deadline:
        try:
            answer = _redis_refuses(redis_port, None)
        except RedisConnectionError:
            time.sleep(0.02)
    assert answer in ("connected", "BusyLoadingError")

    urls = servers.start()
    password = (data_dir / PASSWORD_FILE).read_text().strip()
    assert password in urls.database_url
    assert hba.read_text() == PG_HBA
    pg_port = servers.postgres.running_port()
    assert asyncio.run(_pg_refuses(f"postgresql://postgres@127.0.0.1:{pg_port}/portal")) != "connected"
    assert asyncio.run(_pg_refuses(urls.database_url)) == "connected"
    assert servers.valkey.running_port() == redis_port
    assert _redis_refuses(redis_port, None) == "AuthenticationError"
    assert _redis_refuses(redis_port, password) == "connected"


def test_status_finds_the_servers_while_one_of_them_is_down(
    servers: EmbeddedServers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from argparse import Namespace

    from portal.cli.main import _settings

    for name in ("DATABASE_URL", "REDIS_URL", "BROKER_URL"):
        monkeypatch.delenv(name, raising=False)
    urls = servers.start()
    servers.postgres.stop()
    # `status` starts nothing: it gets the URLs (to report Postgres down, Valkey up), not
    # "no embedded servers are running".
    settings, started = _settings(Namespace(data_dir=str(servers.data_dir)), start_embedded=False)
    assert started is None
    assert (settings.database_url, settings.redis_url, settings.broker_url) == (
        urls.database_url,
        urls.redis_url,
        urls.broker_url,
    )
    assert servers.postgres.running_port() is None


def test_the_tuning_is_ours_until_an_operator_alters_it_but_the_address_stays_loopback(
    servers: EmbeddedServers,
) -> None:
    urls = servers.start()

    async def settings(url: str, *alter: str) -> dict[str, str]:
        conn = await asyncpg.connect(url)
        try:
            for statement in alter:
                await conn.execute(statement)
            names = (
                "shared_buffers",
                "wal_compression",
                "random_page_cost",
                "listen_addresses",
                "checkpoint_timeout",
                "max_wal_size",
            )
            return {name: await conn.fetchval(f"SHOW {name}") for name in names}
        finally:
            await conn.close()

    before = asyncio.run(
        settings(
            urls.database_url,
            "ALTER SYSTEM SET random_page_cost = 2",
            "ALTER SYSTEM SET listen_addresses = '*'",
        )
    )
    assert before["wal_compression"] == "pglz" and before["random_page_cost"] == "1.1"
    assert before["checkpoint_timeout"] == "30min"
    wal_gb = (
        int(before["max_wal_size"].removesuffix("MB")) / 1024
        if before["max_wal_size"].endswith("MB")
        else int(before["max_wal_size"].removesuffix("GB"))
    )
    assert 1 <= wal_gb <= 32
    memory_mb = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // (1024 * 1024)
    expected_mb = min(8192, max(128, memory_mb // 4))
    assert before["shared_buffers"] in (f"{expected_mb}MB", f"{expected_mb // 1024}GB")

    # The broker's Valkey fsyncs every write (an event is acknowledged once its message is
    # in it); the live view's writes each before its answer and leaves fsyncs to the OS
    # (rebuilt from Postgres; pages never wait for the broker's fsyncs; `everysec` would
    # answer writes it had postponed, which a kill -9 then lost). Both rewrite their
    # append-only file only after 256 MB (each rewrite held the fsyncs, so all of Valkey,
    # for up to half a second).
    def valkey_tuning(url: str) -> dict[str, str]:
        valkey = Redis.from_url(url)
        try:
            return {
                name: valkey.config_get(name)[name]
                for name in ("appendonly", "appendfsync", "auto-aof-rewrite-min-size")
            }
        finally:
            valkey.close()

    rewrite = str(256 << 20)
    assert valkey_tuning(urls.broker_url) == {
        "appendonly": "yes",
        "appendfsync": "always",
        "auto-aof-rewrite-min-size": rewrite,
    }
    assert valkey_tuning(urls.redis_url) == {
        "appendonly": "yes",
        "appendfsync": "no",
        "auto-aof-rewrite-min-size": rewrite,
    }
    servers.stop()
    urls = servers.start()
    after = asyncio.run(settings(urls.database_url))
    assert after["random_page_cost"] == "2"  # the operator's, kept across restarts
    assert after["listen_addresses"] == "127.0.0.1"  # the command line's, whatever was altered
    port = servers.postgres.running_port()
    assert port is not None and _listeners(port) == {"0100007F"}
