"""Settings an operator gets wrong are refused at start, naming the setting and what it
takes, rather than starting a process that fails at first use (a marker window of 0
divided by zero on every batch: ingest answered 503 while /readyz said ready)."""

from __future__ import annotations

from pathlib import Path

import pytest

from portal.cli.main import main
from portal.infrastructure.settings import SettingsError, from_environment


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        (
            "PORTAL_DEDUP_MARKER_MINUTES",
            "0",
            "PORTAL_DEDUP_MARKER_MINUTES must be an integer from 1 to 1440, got '0'",
        ),
        ("PORTAL_DEDUP_MARKER_MINUTES", "-1", "from 1 to 1440"),
        ("PORTAL_RECONCILE_SECONDS", "0", "PORTAL_RECONCILE_SECONDS must be an integer from 5 to 86400"),
        ("PORTAL_RECONCILE_SECONDS", "99999999999999999999999", "from 5 to 86400"),
        ("PORTAL_INGEST_BACKLOG_EVENTS", "-1", "PORTAL_INGEST_BACKLOG_EVENTS must be an integer from 1 to"),
        ("PORTAL_PERSIST_MAX_RETRIES", "-3", "PORTAL_PERSIST_MAX_RETRIES must be an integer from 0 to 1000"),
        ("PORTAL_BROKER_HEARTBEAT_MS", "0", "from 1000 to 3600000"),
        ("PORTAL_ACCEPTED_LATENESS_DAYS", "-10", "from 1 to 3650"),
        ("PORTAL_INVOICE_GRACE_HOURS", "-1", "from 0 to 744"),
        ("PORTAL_ALERT_RETRY_DELAYS_MS", "5000,-5", "PORTAL_ALERT_RETRY_DELAYS_MS must be delays from 0 to"),
        ("PORTAL_CATALOG_CACHE_SECONDS", "-1", "from 0 to 3600"),
        ("PORTAL_ALERT_SEND_TIMEOUT_S", "0", "from 1 to 600"),
        ("PORTAL_LOG_LEVEL", "LOUD", "PORTAL_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("PORTAL_LOG_FORMAT", "xml", "PORTAL_LOG_FORMAT must be json or console, got 'xml'"),
        ("PORTAL_PUBLIC_URL", "notaurl", "PORTAL_PUBLIC_URL must be the portal's address"),
        ("PORTAL_SMTP_URL", "garbage", "PORTAL_SMTP_URL: scheme must be smtp:// or smtps://"),
    ],
)
def test_an_unusable_setting_is_refused_naming_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, says: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError) as refused:
        from_environment(data_dir=tmp_path)
    assert says in str(refused.value)


def test_a_command_says_so_in_one_line_without_a_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PORTAL_DEDUP_MARKER_MINUTES", "0")
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    with pytest.raises(SystemExit) as exited:
        main(["status", "--data-dir", str(tmp_path)])
    assert str(exited.value.code).startswith(
        "usage-portal: PORTAL_DEDUP_MARKER_MINUTES must be an integer from 1 to 1440"
    )


def test_usable_settings_are_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name, value in (
        ("PORTAL_DEDUP_MARKER_MINUTES", "10"),
        ("PORTAL_LOG_LEVEL", "debug"),
        ("PORTAL_PUBLIC_URL", "https://usage.example.com/"),
        ("PORTAL_SMTP_URL", "smtp://mail.example.com:587?from=alerts@example.com"),
    ):
        monkeypatch.setenv(name, value)
    settings = from_environment(data_dir=tmp_path)
    assert settings.dedup_marker_window.total_seconds() == 600
    assert settings.public_url == "https://usage.example.com"


def test_status_of_a_data_dir_that_does_not_exist_makes_none(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)
    missing = tmp_path / "typo"
    with pytest.raises(SystemExit) as exited:
        main(["status", "--data-dir", str(missing)])
    assert exited.value.code == f"no embedded servers are running for {missing} (no such data dir)"
    assert not missing.exists()
