"""The secret key: refused when weak outside development, generated per data dir in
development, and rotated without a channel ever becoming unreadable."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient

from alerts.secrets import decrypt, encrypt, readable_with_newest
from portal.alerting.channels import destination
from portal.infrastructure.db import create_engine, session_factory
from portal.infrastructure.settings import PLACEHOLDER_SECRET, Settings, SettingsError, from_environment
from portal.operations.secret_rotation import RotationRefused, rotate
from tests.factories import make_customer

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "A" * 20 + "-first-key-of-the-portal-32+"
KEY_B = "B" * 20 + "-second-key-of-the-portal-32+"


# --- refusing weak keys -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "PORTAL_SECRET_KEY is empty"),
        (PLACEHOLDER_SECRET, "PORTAL_SECRET_KEY is the public placeholder"),
        ("x" * 31, "PORTAL_SECRET_KEY is 31 bytes long; it must be at least 32"),
        ("é" * 15 + "x", "PORTAL_SECRET_KEY is 31 bytes long"),  # bytes, not characters
    ],
)
def test_a_weak_key_refuses_to_start_in_production(tmp_path: Path, key: str, reason: str) -> None:
    with pytest.raises(SettingsError, match=reason):
        Settings(environment="production", secret_key=key, data_dir=tmp_path)
    assert not (tmp_path / "secret_key").exists()  # no generated key outside development


def test_a_32_byte_key_starts_in_production(tmp_path: Path) -> None:
    assert Settings(environment="production", secret_key="k" * 32, data_dir=tmp_path).secret_key == "k" * 32


def test_the_app_refuses_a_short_key(settings: Settings) -> None:
    with pytest.raises(SettingsError, match="at least 32"):
        replace(settings, environment="production", secret_key="short")


def test_an_explicit_key_is_held_to_the_same_rule_in_development(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="PORTAL_SECRET_KEY is 5 bytes long"):
        Settings(secret_key="short", data_dir=tmp_path)


def _cli(*argv: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "portal.cli.main", *argv],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "command", [["web"], ["worker"], ["scheduler"], ["migrate"], ["secrets", "rotate"], ["up"]]
)
def test_every_role_exits_non_zero_with_the_message(tmp_path: Path, command: list[str]) -> None:
    env = {
        **os.environ,
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": "too-short",
        "PORTAL_DATA_DIR": str(tmp_path),
    }
    done = _cli(*command, env=env)
    assert done.returncode == 1
    assert done.stderr == (
        "usage-portal: refusing to start (PORTAL_ENV=production): PORTAL_SECRET_KEY is 9 bytes long; "
        "it must be at least 32; generate one with: "
        "python -c 'import secrets; print(secrets.token_urlsafe(48))'\n"
    )
    assert list(tmp_path.iterdir()) == []  # refused before starting any server


# --- development: one random key per data dir ----------------------------------------------


def test_development_generates_a_private_key_once_per_data_dir(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path / "data")
    key_file = tmp_path / "data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert key_file.read_text() == first.secret_key + "\n"
    assert len(first.secret_key) == 64 and first.secret_key != PLACEHOLDER_SECRET
    assert Settings(data_dir=tmp_path / "data").secret_key == first.secret_key
    assert Settings(data_dir=tmp_path / "other").secret_key != first.secret_key
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["secret_key"]


def test_the_environment_reads_the_same_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generated = Settings(data_dir=tmp_path).secret_key
    monkeypatch.delenv("PORTAL_ENV", raising=False)
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PORTAL_SECRET_KEY", "")
    assert from_environment().secret_key == generated


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    Settings(data_dir=tmp_path)
    (tmp_path / "secret_key").chmod(0o644)
    with pytest.raises(SettingsError, match=r"can be read by other users \(mode 644\); run `chmod 600"):
        Settings(data_dir=tmp_path)


def test_previous_keys_and_trusted_proxies_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORTAL_ENV", "production")
    monkeypatch.setenv("PORTAL_SECRET_KEY", KEY_B)
    monkeypatch.setenv("PORTAL_SECRET_KEY_PREVIOUS", f" {KEY_A} ,, short-old-key ")
    monkeypatch.setenv("PORTAL_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7 ,::1")
    settings = from_environment()
    assert settings.secret_keys == (KEY_B, KEY_A, "short-old-key")  # old keys are only read
    assert settings.trusted_proxies == ("10.0.0.0/8", "192.0.2.7/32", "::1/128")
    monkeypatch.setenv("PORTAL_TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal")
    with pytest.raises(SettingsError, match=r"PORTAL_TRUSTED_PROXIES: 'proxy\.internal' is not an IP"):
        from_environment()


# --- rotation ------------------------------------------------------------------------------

DESTINATIONS = {
    "email": ("mailto://alerts:pa55@smtp.example.com", None),
    "slack": ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7", None),
    "webhook": ("jsons://hooks.example.com/usage", "whsec_signing-secret-of-the-hook"),
}


async def _store_channels(pg: asyncpg.Connection, key: str, *, disabled: bool = False) -> dict[str, int]:
    """Channels as create_channel stores them, encrypted under `key`."""
    ids = {}
    for kind, (url, signing) in DESTINATIONS.items():
        ids[kind] = await pg.fetchval(
            "INSERT INTO alert_channels (customer_id, name, kind, destination_encrypted, destination_masked, "
            "signing_secret_encrypted, disabled_at) VALUES ('acme', $1, $2, $3, 'masked', $4, "
            "CASE WHEN $5 THEN now() END) RETURNING id",
            f"{kind}{' (disabled)' if disabled else ''}",
            kind,
            encrypt(key, url),
            None if signing is None else encrypt(key, signing),
            disabled,
        )
    return ids


async def _read(settings: Settings, channel_id: int, key: str) -> tuple[str, str | None]:
    """A channel as the sender reads it (portal.alerting.channels.destination)."""
    assert settings.database_url
    engine = create_engine(settings.database_url, pool_size=1)
    try:
        async with session_factory(engine)() as session:
            found = await destination(session, channel_id, secret_key=key)
        return found.url, found.signing_secret
    finally:
        await engine.dispose()


@pytest.fixture
async def acme(client: AsyncTestClient[Any], admin_key: str) -> None:
    await make_customer(client, admin_key)


async def test_rotation_keeps_every_channel_readable(
    settings: Settings, pg: asyncpg.Connection, acme: None
) -> None:
    # Given channels stored under key A
    ids = await _store_channels(pg, KEY_A)
    # While rotating (processes restarted with B current and A previous)
    rotating = replace(settings, secret_key=KEY_B, previous_secret_keys=(KEY_A,))
    stored = await pg.fetch("SELECT destination_encrypted FROM alert_channels ORDER BY id")
    assert [decrypt(rotating.secret_keys, row[0]) for row in stored] == [u for u, _ in DESTINATIONS.values()]
    # every channel is read by the sender, which is handed `settings.secret_key` alone
    for kind, (url, signing) in DESTINATIONS.items():
        assert await _read(settings, ids[kind], rotating.secret_key) == (url, signing)
    # When they are rotated to B
    report = await rotate(rotating)
    assert (report.rotated, report.were_under_previous, report.unreadable_disabled) == (3, 3, [])
    # Then B alone reads every stored value, and A none
    for row in await pg.fetch("SELECT destination_encrypted, signing_secret_encrypted FROM alert_channels"):
        assert all(readable_with_newest(KEY_B, value) for value in row if value is not None)
    for kind, (url, signing) in DESTINATIONS.items():
        assert await _read(settings, ids[kind], KEY_B) == (url, signing)
        with pytest.raises(ValueError, match="secret key changed"):
            await _read(settings, ids[kind], KEY_A)
    # And running it again finds nothing left under A
    assert (await rotate(rotating)).were_under_previous == 0


async def test_rotation_through_the_cli(settings: Settings, pg: asyncpg.Connection, acme: None) -> None:
    ids = await _store_channels(pg, KEY_A)
    env = {
        **os.environ,
        "PORTAL_ENV": "production",
        "PORTAL_SECRET_KEY": KEY_B,
        "PORTAL_SECRET_KEY_PREVIOUS": KEY_A,
        "DATABASE_URL": settings.database_url or "",
        "REDIS_URL": settings.redis_url or "",
    }
    done = _cli("secrets", "rotate", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "re-encrypted 3 stored alert channel secrets under the current key (3 were under a previous key)"
    )
    assert await _read(settings, ids["webhook"], KEY_B) == DESTINATIONS["webhook"]


async def test_rotation_refuses_when_an_active_channel_reads_with_no_key(
    settings: Settings,
    pg: asyncpg.Connection,
    acme: None,
) -> None:
    await _store_channels(pg, KEY_A)
    before = await pg.fetch("SELECT id, destination_encrypted FROM alert_channels ORDER BY id")
    wrong = replace(settings, secret_key=KEY_B, previous_secret_keys=("C" * 40,))
    with pytest.raises(RotationRefused, match=r"channels 1 \(acme: 'email'\), 2 .* nothing was changed"):
        await rotate(wrong)
    assert await pg.fetch("SELECT id, destination_encrypted FROM alert_channels ORDER BY id") == before


async def test_rotation_leaves_unreadable_disabled_channels_and_names_them(
    settings: Settings,
    pg: asyncpg.Connection,
    acme: None,
) -> None:
    active = await _store_channels(pg, KEY_A)
    lost = await _store_channels(pg, "C" * 40, disabled=True)
    report = await rotate(replace(settings, secret_key=KEY_B, previous_secret_keys=(KEY_A,)))
    assert report.rotated == 3
    assert report.unreadable_disabled == sorted(lost.values())
    assert await _read(settings, active["slack"], KEY_B) == DESTINATIONS["slack"]


def test_a_commands_data_dir_holds_its_key(tmp_path: Path) -> None:
    # `--data-dir` is the data dir whose key the command (and the processes it starts) use;
    # nothing is made in the working directory. (`status` starts no server: it exits 1.)
    workdir, data = tmp_path / "cwd", tmp_path / "data"
    workdir.mkdir()
    data.mkdir()  # `status` of a data dir that does not exist makes none (test_settings.py)
    unset = ("PORTAL_DATA_DIR", "PORTAL_SECRET_KEY", "PORTAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [sys.executable, "-m", "portal.cli.main", "--data-dir", str(data), "status"],
        cwd=workdir,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "no embedded servers are running" in done.stderr
    assert (data / "secret_key").read_text().strip() == Settings(data_dir=data).secret_key
    assert list(workdir.iterdir()) == []
