"""Destinations that would reach the portal's own network: refused when checked (the URL
rules), and at send time after DNS resolution, on every connection and redirect, against
real local servers. The only thing faked is a third party's DNS answer."""

from __future__ import annotations

import dataclasses
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from alerts import egress
from alerts.channels import ChannelError, validate_destination
from alerts.delivery import SendOutcome, Transport, send
from alerts.destinations import NO_NETWORKS, AllowedNetworks, parse_networks
from tests.alerts.conftest import HttpReceiver, SmtpServer
from tests.alerts.test_delivery import NOTICE

SLACK_TOKENS = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
LOOPBACK = parse_networks("127.0.0.0/8, ::1/128")
REFUSED = "refused by the portal's destination rules: "


def transport(
    allow: AllowedNetworks, *, smtp: SmtpServer | None = None, http: HttpReceiver | None = None
) -> Transport:
    return Transport(
        smtp_url=None
        if smtp is None
        else f"smtp://127.0.0.1:{smtp.port}?from=alerts@vendor.example&mode=insecure",
        slack_webhook_base="https://hooks.slack.com/services" if http is None else f"{http.url}/services",
        timeout_s=5.0,
        allow_networks=allow,
    )


def refusal(url: str, allow: AllowedNetworks = NO_NETWORKS) -> str:
    with pytest.raises(ChannelError) as caught:
        validate_destination(url, allow_networks=allow, resolve=egress.resolve)
    return str(caught.value)


# --- when a destination is checked (saved) ------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # the cases
        ("json://127.0.0.1:5432/", "host 127.0.0.1 is a loopback address (127.0.0.0/8)"),
        ("json://169.254.169.254/latest/meta-data/iam", "host 169.254.169.254 is a cloud metadata service"),
        ("json://metadata.google.internal/computeMetadata/v1/", "is the name of a cloud metadata service"),
        ("json://localhost:6379/", "host localhost resolves to a loopback address"),
        ("json://10.0.0.1/", "host 10.0.0.1 is a private address (RFC 1918, 10.0.0.0/8)"),
        ("json://[::1]:22/", "host [::1] is a loopback address (::1)"),
        ("jsons://0x7f000001/", "host 0x7f000001 (127.0.0.1) is a loopback address"),
        ("json://2130706433/", "host 2130706433 (127.0.0.1) is a loopback address"),
        ("xml://169.254.169.254/", "host 169.254.169.254 is a cloud metadata service address"),
        ("json://example.com:99999/", "port 99999 is not a valid port (1 to 65535)"),
        # the other tricks
        ("json://evil.example@127.0.0.1/", "host 127.0.0.1 is a loopback address"),
        ("json://user:pw@[::ffff:7f00:1]/x", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("json://[::127.0.0.1]/", "an IPv6 form of 127.0.0.1, a loopback address"),
        ("form://LOCALHOST./x", "host LOCALHOST resolves to a loopback address"),
        ("json://127.0.0.1./", "host 127.0.0.1 is a loopback address"),
        ("form://0x7f.0x0.0x0.0x1/", "host 0x7f.0x0.0x0.0x1 (127.0.0.1) is a loopback address"),
        ("json://017700000001/", "host 017700000001 (127.0.0.1) is a loopback address"),
        ("json://example.com:0/", "port 0 is not a valid port"),
        ("ntfy://10.1.2.3/topic", "host 10.1.2.3 is a private address"),
        ("gotify://192.168.1.5/token", "host 192.168.1.5 is a private address"),
        ("rsyslog://172.16.0.9", "host 172.16.0.9 is a private address"),
        ("apprise://[fd00:ec2::254]/key", "a cloud metadata service address"),
        ("mailtos://user:pw@10.0.0.25:587/alice@example.com", "host 10.0.0.25 is a private address"),
        ("mailto://alice@example.com?smtp=127.0.0.1", "host 127.0.0.1 is a loopback address"),
        (
            "mailto://relay.internal:25/alice@example.com?from=a@vendor.example",
            "a private-use name (.internal)",
        ),
        ("syslog://", "syslog:// acts on the portal's own machine"),
    ],
)
def test_a_destination_reaching_the_portals_network_is_refused_with_the_reason(url: str, reason: str) -> None:
    found = refusal(url)
    assert found.startswith("destination: ") and reason in found, found


@pytest.mark.parametrize(
    "url",
    [
        "json://127.1/",
        "forms://0177.0.0.1/",
        "json://10.1/",
        "json://0/",
        "json://[::ffff:127.0.0.1]:8080/x",
        "json://%31%32%37.0.0.1/",
        "json://１２７.０.０.１/",
        "json://127.0.0.1:abc/",
    ],
)
def test_forms_apprise_cannot_read_are_refused_too(url: str) -> None:
    with pytest.raises(ChannelError, match="is not a valid Apprise URL"):
        validate_destination(url, allow_networks=NO_NETWORKS)


def test_the_refusal_names_the_host_but_no_secret() -> None:
    found = refusal("json://hooker:s3cr3t-pass@127.0.0.1:8080/hook/tok3n-path?+Authorization=Bearer%20b34rer")
    assert "127.0.0.1" in found
    assert not any(secret in found for secret in ("s3cr3t", "tok3n", "b34rer", "hooker"))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("json://hooks.example.com/usage", "webhook"),
        ("jsons://hooks.example.com:8443/usage", "webhook"),
        ("json://93.184.215.14/usage", "webhook"),
        ("xml://hooks.example.com/x", "other"),
        ("ntfy://topic", "other"),  # ntfy.sh: the service's own public address
        ("discord://1234/abcd", "other"),
        (f"slack://{SLACK_TOKENS}", "slack"),
        (f"https://hooks.slack.com/services/{SLACK_TOKENS}", "slack"),
        # an email address is not a destination host: it goes through the operator's SMTP server
        ("mailto://root@localhost", "email"),
    ],
)
def test_public_destinations_and_addresses_are_accepted(url: str, kind: str) -> None:
    assert validate_destination(url, allow_networks=NO_NETWORKS) == kind


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:5432/",
        "json://localhost:8080/",
        "json://[::1]:22/",
        "json://0x7f000001/",
        "mailto://u:p@127.0.0.1:2525/?to=a@example.com&from=b@example.com",
    ],
)
def test_the_operator_may_allow_the_loopback(url: str) -> None:
    assert validate_destination(url, allow_networks=LOOPBACK) in ("webhook", "email")


def test_metadata_is_refused_even_when_its_network_is_allowed() -> None:
    found = refusal("json://169.254.169.254/", parse_networks("169.254.0.0/16"))
    assert "cloud metadata service" in found


# --- when a notice is sent ---------------------------------------------------------------------


def test_a_destination_allowed_when_saved_is_refused_at_send_once_no_longer_allowed(
    http_receiver: HttpReceiver,
) -> None:
    url = f"json://127.0.0.1:{http_receiver.port}/hooks/usage"
    assert validate_destination(url, allow_networks=LOOPBACK) == "webhook"
    outcome = send(url, NOTICE, transport=transport(NO_NETWORKS), webhook_secret="whsec_x")
    assert outcome == SendOutcome(
        False,
        f"{REFUSED}host 127.0.0.1 is a loopback address (127.0.0.0/8); notices go only to public hosts",
        outcome.masked_destination,
    )
    assert http_receiver.requests == []


def test_a_name_resolving_to_the_loopback_is_refused_at_send(http_receiver: HttpReceiver) -> None:
    outcome = send(
        f"json://localhost:{http_receiver.port}/hooks/usage",
        NOTICE,
        transport=transport(NO_NETWORKS),
        webhook_secret=None,
    )
    assert not outcome.ok
    assert (
        outcome.error == f"{REFUSED}host localhost resolves to a loopback address (127.0.0.0/8); "
        "notices go only to public hosts"
    )
    assert http_receiver.requests == []


def test_the_same_name_is_delivered_when_the_loopback_is_allowed(http_receiver: HttpReceiver) -> None:
    outcome = send(
        f"json://localhost:{http_receiver.port}/hooks/usage",
        NOTICE,
        transport=transport(LOOPBACK),
        webhook_secret=None,
    )
    assert outcome.ok, outcome.error
    assert [r.path for r in http_receiver.requests] == ["/hooks/usage"]


def test_a_refused_send_never_shows_the_clear_url(http_receiver: HttpReceiver) -> None:
    outcome = send(
        f"json://user:s3cret@127.0.0.1:{http_receiver.port}/hooks/usage",
        NOTICE,
        transport=transport(NO_NETWORKS),
        webhook_secret=None,
    )
    assert not outcome.ok
    assert "s3cret" not in f"{outcome.error} {outcome.masked_destination}"
    assert outcome.masked_destination.startswith("json://user:****@127.0.0.1:")


def test_an_own_smtp_server_in_the_portals_network_is_refused_at_send(smtp_server: SmtpServer) -> None:
    url = f"mailto://mailer:pw@127.0.0.1:{smtp_server.port}/alice@example.com?from=alerts@vendor.example&mode=insecure"
    outcome = send(url, NOTICE, transport=transport(NO_NETWORKS), webhook_secret=None)
    assert not outcome.ok
    assert (
        outcome.error == f"{REFUSED}host 127.0.0.1 is a loopback address (127.0.0.0/8); "
        "notices go only to public hosts"
    )
    assert smtp_server.messages == []


def test_the_operators_own_smtp_server_and_slack_base_are_not_restricted(
    smtp_server: SmtpServer, http_receiver: HttpReceiver
) -> None:
    strict = transport(NO_NETWORKS, smtp=smtp_server, http=http_receiver)
    mail = send("mailto://alice@example.com", NOTICE, transport=strict, webhook_secret=None)
    slack = send(f"slack://{SLACK_TOKENS}", NOTICE, transport=strict, webhook_secret=None)
    assert (mail.ok, mail.error, slack.ok, slack.error) == (True, None, True, None)
    assert len(smtp_server.messages) == 1
    assert [r.path for r in http_receiver.requests] == [f"/services/{SLACK_TOKENS}"]


# --- DNS rebinding: the name changes its answer between the check and the connection -------------


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """A third party's DNS that answers `rebind.example.net` with a public address the first
    time and with the loopback afterwards (the attack); every other name resolves as usual."""
    real = socket.getaddrinfo
    answers = {"rebind.example.net": ["93.184.215.14", "127.0.0.1"]}
    asked: list[str] = []

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        asked.append(host)
        address = answers[host][min(len(asked), len(answers[host])) - 1]
        return real(address, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return {"asked": asked}


@pytest.mark.parametrize("scheme", ["json", "form", "xml"])
def test_a_name_rebound_to_the_loopback_after_the_check_is_not_connected_to(
    http_receiver: HttpReceiver, rebinding_dns: dict[str, list[str]], scheme: str
) -> None:
    outcome = send(
        f"{scheme}://rebind.example.net:{http_receiver.port}/hooks/usage",
        NOTICE,
        transport=transport(NO_NETWORKS),
        webhook_secret=None,
    )
    assert len(rebinding_dns["asked"]) >= 2  # checked (public), then resolved again to connect
    assert (outcome.ok, outcome.error) == (False, f"{REFUSED}127.0.0.1 is a loopback address (127.0.0.0/8)")
    assert http_receiver.requests == []


# --- redirects ---------------------------------------------------------------------------------


@dataclasses.dataclass
class Server:
    """An HTTP server on `host` that records each request's path and answers `status`
    (with `Location: location` for a redirect)."""

    host: str
    status: int = 200
    location: str = ""
    port: int = 0
    paths: list[str] = dataclasses.field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[ThreadingHTTPServer] = []

    def start(server: Server) -> Server:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.paths.append(self.path)
                self.send_response(server.status)
                if server.location:
                    self.send_header("Location", server.location)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        http = ThreadingHTTPServer((server.host, 0), Handler)
        http.daemon_threads = True
        server.port = int(http.server_address[1])
        threading.Thread(target=http.serve_forever, args=(0.05,), daemon=True).start()
        started.append(http)
        return server

    yield start
    for http in started:
        http.shutdown()
        http.server_close()


# Only 127.0.0.1 is allowed: the second loopback address stands for an internal host.
ONLY_FIRST = parse_networks("127.0.0.1/32")


@pytest.mark.parametrize(
    "url",
    [
        "json://127.0.0.1:{port}/hook",
        "form://127.0.0.1:{port}/hook",
        "xml://127.0.0.1:{port}/hook?redirect=yes",
        "form://127.0.0.1:{port}/hook?redirect=yes",
    ],
)
@pytest.mark.parametrize("status", [302, 307, 308])
def test_a_redirect_from_an_allowed_receiver_is_not_followed(serve: Any, url: str, status: int) -> None:
    internal = serve(Server("127.0.0.2"))
    public = serve(Server("127.0.0.1", status=status, location=f"{internal.url}/latest/meta-data/"))
    outcome = send(url.format(port=public.port), NOTICE, transport=transport(ONLY_FIRST), webhook_secret=None)
    assert not outcome.ok
    assert public.paths == ["/hook"] and internal.paths == []


def test_every_hop_of_a_redirect_a_client_follows_is_checked(serve: Any) -> None:
    # What an Apprise plugin that followed redirects (or ignored redirect=no) would meet.
    internal = serve(Server("127.0.0.2"))
    public = serve(Server("127.0.0.1", status=302, location=f"{internal.url}/latest/meta-data/"))
    with egress.guarded(ONLY_FIRST) as refused, pytest.raises(requests.ConnectionError) as caught:
        requests.get(f"{public.url}/hook", timeout=5, allow_redirects=True)
    assert refused == ["127.0.0.2 is a loopback address (127.0.0.0/8)"]
    assert "refused by the portal's destination rules" in str(caught.value)
    assert public.paths == ["/hook"] and internal.paths == []


def test_the_guard_ends_with_its_block(serve: Any) -> None:
    internal = serve(Server("127.0.0.2"))
    with egress.guarded(ONLY_FIRST):
        pass
    assert requests.get(f"{internal.url}/x", timeout=5).status_code == 200
    assert internal.paths == ["/x"]


def test_a_guarded_unix_socket_is_refused(tmp_path: Any) -> None:
    path = str(tmp_path / "local.sock")
    with socket.socket(socket.AF_UNIX) as listener, socket.socket(socket.AF_UNIX) as client:
        listener.bind(path)
        listener.listen()
        with egress.guarded(LOOPBACK) as refused, pytest.raises(egress.DestinationRefused):
            client.connect(path)
    assert refused == ["a local socket of the portal's own machine"]


def test_without_an_allow_list_the_transport_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    base = Transport(smtp_url=None, timeout_s=1.0)
    monkeypatch.setenv("PORTAL_DESTINATION_ALLOW_NETWORKS", "10.0.0.0/8, ::1")
    assert [str(n) for n in base.allowed_networks()] == ["10.0.0.0/8", "::1/128"]
    monkeypatch.setenv("PORTAL_DESTINATION_ALLOW_NETWORKS", "")
    assert base.allowed_networks() == ()
    monkeypatch.setenv("PORTAL_DESTINATION_ALLOW_NETWORKS", "not a network")
    assert base.allowed_networks() == ()  # unreadable: nothing is allowed
    assert Transport(smtp_url=None, timeout_s=1.0, allow_networks=LOOPBACK).allowed_networks() == LOOPBACK


def test_the_setting_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from portal.infrastructure.settings import SettingsError, from_environment

    monkeypatch.setenv("PORTAL_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("PORTAL_DESTINATION_ALLOW_NETWORKS", raising=False)
    assert from_environment().destination_allow_networks == ()
    monkeypatch.setenv("PORTAL_DESTINATION_ALLOW_NETWORKS", "127.0.0.0/8, ::1")
    assert [str(n) for n in from_environment().destination_allow_networks] == ["127.0.0.0/8", "::1/128"]
    monkeypatch.setenv("PORTAL_DESTINATION_ALLOW_NETWORKS", "127.0.0.0/8;10.0.0.0/8")
    with pytest.raises(SettingsError) as caught:
        from_environment()
    assert str(caught.value).startswith("PORTAL_DESTINATION_ALLOW_NETWORKS: '127.0.0.0/8;10.0.0.0/8' is not")
