"""How `usage-portal web` serves: uvicorn must not decide who the client is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from portal.cli.main import main
from portal.http.slow_clients import DeadlineHttpToolsProtocol


def test_web_leaves_forwarded_headers_to_the_trusted_proxies_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the command exports its settings
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    # Named stores, so the command starts no embedded servers (it would leave them running:
    # uvicorn does not really run here). It connects to neither before serving.
    monkeypatch.setenv("DATABASE_URL", "postgresql://portal@127.0.0.1:1/portal")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    main(["web", "--port", "8123"])
    # uvicorn's default trusts X-Forwarded-For from 127.0.0.1: any local process could then
    # pose as any client (login throttling is per client) unless PORTAL_TRUSTED_PROXIES says so.
    assert served["proxy_headers"] is False
    assert (served["app"], served["port"]) == ("portal.app:create_app", 8123)
    # Requests must arrive within their deadlines (tests/http/test_slow_clients.py)
    assert served["http"] is DeadlineHttpToolsProtocol
