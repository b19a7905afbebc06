"""The first README command, as a new user runs it: `usage-portal up --demo`, the printed
curl line, a key created beside the running product, and a clean Ctrl-C."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from portal.infrastructure.embedded import EmbeddedServers

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "portal.cli.main"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, key: str) -> dict[str, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return dict(json.loads(response.read()))


def _sign_in(base: str, email: str, password: str) -> tuple[urllib.request.OpenerDirector, str]:
    """Sign in through the real form; returns the signed-in opener and where it landed."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
    with opener.open(f"{base}/portal/login", timeout=10) as form:
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.read().decode())
    assert token is not None
    body = urllib.parse.urlencode({"email": email, "password": password, "csrf_token": token.group(1)})
    with opener.open(f"{base}/portal/login", data=body.encode(), timeout=10) as page:
        return opener, str(page.geturl())


def _env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "BROKER_URL", "PORTAL_SMTP_URL", "PORTAL_PUBLIC_URL")
    }
    env["PORTAL_DATA_DIR"] = str(data_dir)
    env["PORTAL_DEMO_HISTORY_DAYS"] = (
        "10"  # the demo's history path, shorter (tests/cli/test_demo_history.py)
    )
    return env


def test_up_demo_runs_the_product_and_stops_cleanly() -> None:
    data_dir = Path(tempfile.mkdtemp(prefix="portal-up-"))
    port = _free_port()
    env = _env(data_dir)
    up = subprocess.Popen(
        [*CLI, "up", "--demo", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        banner = ""
        assert up.stdout is not None
        deadline = time.monotonic() + 90
        while "Ctrl-C stops everything" not in banner and time.monotonic() < deadline:
            line = up.stdout.readline()
            assert line, f"`up` ended early: {banner}"
            banner += line
        admin = re.search(r"Admin key\s+(\S+)", banner)
        assert admin is not None, banner
        curl = re.search(r"^\s*(curl .*?\n.*?)$", banner, re.MULTILINE)
        assert curl is not None, banner
        usage_url = f"http://127.0.0.1:{port}/v1/customers/acme/usage?metric=api_calls&source=billed"

        # The printed curl line is accepted as it stands (exact totals after many sends
        # are covered by tests/ingest/test_pipeline.py; here the demo trickle moves them too).
        assert _get(usage_url, admin.group(1))["customerId"] == "acme"
        sent = subprocess.run(
            ["bash", "-c", curl.group(1).replace("\\\n", " ")], capture_output=True, text=True, check=True
        )
        assert json.loads(sent.stdout) == {"accepted": 1, "duplicates": 0, "rejected": []}

        # Another command finds the running servers through the data dir.
        created = subprocess.run(
            [*CLI, "keys", "create", "--scope", "admin", "--name", "ops"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        new_key = created.stdout.strip()
        assert re.fullmatch(r"up_admin_[A-Za-z0-9_\-]{32}", new_key)
        # People sign in to the portal with the printed password; an admin adds another.
        password = re.search(r"password\s+(\S+)", banner)
        assert password is not None, banner
        _, landed = _sign_in(f"http://127.0.0.1:{port}", "user@acme.test", password.group(1))
        assert landed.endswith("/portal/customers/acme"), landed
        manager, _ = _sign_in(f"http://127.0.0.1:{port}", "manager@demo.test", password.group(1))
        with manager.open(f"http://127.0.0.1:{port}/portal/customers", timeout=10) as table:
            html = table.read().decode()
        # The demo's running periods are drafted at start: spend so far shows at once.
        assert "Acme Inc" in html and "No draft yet" not in html
        invited = subprocess.run(
            [
                *CLI,
                "users",
                "create",
                "--email",
                "bob@acme.test",
                "--name",
                "Bob",
                "--role",
                "customer",
                "--customer",
                "acme",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert re.search(
            r"password link not emailed \(the portal has no SMTP server configured "
            r"\(PORTAL_SMTP_URL\)\):\n" + re.escape(f"http://127.0.0.1:{port}/portal/set-password/") + r"\S+",
            invited.stdout,
        )
        health = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status == 200
        # The number moves: the curl event and the demo trickle reach the billed total.
        deadline = time.monotonic() + 60
        total = "0"
        while time.monotonic() < deadline:
            total = str(_get(usage_url, new_key)["total"])
            if float(total) >= 250:
                break
            time.sleep(0.5)
        assert re.fullmatch(r"\d+(\.\d+)?", total)
        assert float(total) >= 250, total
    finally:
        up.send_signal(signal.SIGINT)
        assert up.wait(timeout=60) == 0
    servers = EmbeddedServers(data_dir)
    assert servers.running() is None, "embedded servers must be stopped after Ctrl-C"


def test_every_command_takes_the_data_dir_after_its_name_too() -> None:
    from portal.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["status", "--data-dir", "/a"]).data_dir == "/a"
    assert parser.parse_args(["--data-dir", "/b", "status"]).data_dir == "/b"
    assert (
        parser.parse_args(
            ["--data-dir", "/b", "keys", "create", "--scope", "ingest", "--data-dir", "/c"]
        ).data_dir
        == "/c"
    )
    assert parser.parse_args(["invoices", "list"]).data_dir is None
    # The command list names what operators run, not `up --demo`'s own helper
    assert "demo-trickle" not in parser.format_help()


def test_up_on_a_port_in_use_says_so_at_once(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*CLI, "up", "--port", str(port), "--data-dir", str(tmp_path / "data")],
            cwd=ROOT,
            env=_env(tmp_path / "data"),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use; choose another --port" in done.stderr
