"""How `usage-portal web` serves: uvicorn must not decide who the client is."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from portal.cli.main import main


def test_web_leaves_forwarded_headers_to_the_trusted_proxies_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: dict[str, Any] = {}
    monkeypatch.setattr(os, "environ", os.environ.copy())  # the command exports its settings
    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    main(["web", "--port", "8123"])
    # uvicorn's default trusts X-Forwarded-For from 127.0.0.1: any local process could then
    # pose as any client (login throttling is per client) unless PORTAL_TRUSTED_PROXIES says so.
    assert served["proxy_headers"] is False
    assert (served["app"], served["port"]) == ("portal.app:create_app", 8123)
