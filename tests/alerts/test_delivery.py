"""Sending notices to real local servers: SMTP (aiosmtpd) and HTTP (http.server)."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from alerts.channels import mask
from alerts.delivery import SendOutcome, Transport, send
from alerts.destinations import parse_networks
from alerts.messages import Notice, render_email, render_slack, webhook_payload
from alerts.secrets import webhook_secret
from alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from alerts.smtp import os_reason
from tests.alerts.conftest import HttpReceiver, SmtpServer, free_port

SLACK_TOKENS = "T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7"
# The local servers listen on the loopback, which destinations may reach only when allowed.
LOOPBACK = parse_networks("127.0.0.0/8")

NOTICE = Notice(
    kind="crossing",
    firing_id=41,
    customer_id="acme",
    customer_name="Acme Inc",
    rule_id=7,
    rule_name="API budget",
    metric_name="api_calls",
    unit="call",
    level_label="80%",
    threshold=Decimal("8000"),
    value=Decimal("8123"),
    currency="USD",
    cost_so_far=Decimal("123.40"),
    period_start=datetime(2026, 11, 1, tzinfo=UTC),
    period_end=datetime(2026, 12, 1, tzinfo=UTC),
    forecast_at=None,
    dashboard_url="https://portal.example/portal/customers/acme",
    occurred_at=datetime(2026, 11, 20, 14, 3, tzinfo=UTC),
)


def transport(smtp: SmtpServer | None = None, http: HttpReceiver | None = None, **changes: Any) -> Transport:
    """The portal's transport, pointed at the local servers."""
    smtp_url = (
        None if smtp is None else f"smtp://127.0.0.1:{smtp.port}?from=alerts@vendor.example&mode=insecure"
    )
    slack = "https://hooks.slack.com/services" if http is None else f"{http.url}/services"
    base = Transport(smtp_url=smtp_url, slack_webhook_base=slack, timeout_s=5.0, allow_networks=LOOPBACK)
    return dataclasses.replace(base, **changes)


def parts(smtp: SmtpServer) -> dict[str, str]:
    (mail,) = smtp.wait_for_messages()
    message = mail.message
    assert message.get_content_type() == "multipart/alternative"
    return {
        part.get_content_type(): part.get_content().replace("\r\n", "\n") for part in message.iter_parts()
    }


# --- email -------------------------------------------------------------------------------


def test_an_address_goes_through_the_portal_smtp_server_with_text_and_html(smtp_server: SmtpServer) -> None:
    outcome = send(
        "mailto://alice@example.com", NOTICE, transport=transport(smtp_server), webhook_secret=None
    )
    assert outcome == SendOutcome(True, None, outcome.masked_destination)
    assert outcome.masked_destination.startswith("mailto://alice@example.com")
    (mail,) = smtp_server.wait_for_messages()
    assert mail.mail_from == "alerts@vendor.example"
    assert mail.rcpt_tos == ["alice@example.com"]
    message = mail.message
    subject, text, html = render_email(NOTICE)
    assert message["Subject"] == subject == "Acme Inc reached 80% of its API calls budget"
    assert message["From"] == "Usage portal <alerts@vendor.example>"
    assert message["To"] == "alice@example.com"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["X-Usage-Portal-Notice-Id"] == "firing-41"
    assert parts(smtp_server) == {"text/plain": text, "text/html": html}
    assert smtp_server.logins == []


def test_the_portal_smtp_server_logs_in_when_it_has_credentials(smtp_server: SmtpServer) -> None:
    smtp_server.users["mailer"] = "p@ss word"
    url = (
        f"smtp://mailer:p%40ss%20word@127.0.0.1:{smtp_server.port}"
        "?mode=insecure&from=Alerts%20%3Calerts+billing@v.example%3E"
    )
    outcome = send(
        "mailto://alice@example.com?cc=bob@example.com",
        NOTICE,
        transport=transport(smtp_url=url),
        webhook_secret=None,
    )
    assert outcome.ok, outcome.error
    (mail,) = smtp_server.wait_for_messages()
    assert smtp_server.logins == [("mailer", "p@ss word")]
    assert sorted(mail.rcpt_tos) == ["alice@example.com", "bob@example.com"]
    assert mail.message["From"] == "Alerts <alerts+billing@v.example>"
    assert mail.mail_from == "alerts+billing@v.example"
    assert mail.message["Cc"] == "bob@example.com"


def test_a_full_mailto_url_uses_its_own_server_and_credentials(smtp_server: SmtpServer) -> None:
    smtp_server.users["team"] = "hunter2"
    url = (
        f"mailto://team:hunter2@127.0.0.1:{smtp_server.port}/carol@example.com,dave@example.com"
        "?from=team@example.com&mode=insecure"
    )
    outcome = send(url, NOTICE, transport=transport(smtp_url=None), webhook_secret=None)
    assert outcome.ok, outcome.error
    assert "hunter2" not in outcome.masked_destination
    (mail,) = smtp_server.wait_for_messages()
    assert smtp_server.logins == [("team", "hunter2")]
    assert mail.mail_from == "team@example.com"
    assert sorted(mail.rcpt_tos) == ["carol@example.com", "dave@example.com"]
    assert set(parts(smtp_server)) == {"text/plain", "text/html"}


def test_an_address_without_a_portal_smtp_server_fails_clearly() -> None:
    outcome = send("mailto://alice@example.com", NOTICE, transport=transport(), webhook_secret=None)
    assert not outcome.ok
    assert outcome.error == (
        "this portal has no mail server set up, so it cannot send email yet "
        "(its operator sets PORTAL_SMTP_URL)"
    )


def test_a_wrong_smtp_login_fails_with_the_server_reply(smtp_server: SmtpServer) -> None:
    smtp_server.users["team"] = "right"
    url = (
        f"mailto://team:wrong@127.0.0.1:{smtp_server.port}/carol@example.com?from=t@example.com&mode=insecure"
    )
    outcome = send(url, NOTICE, transport=transport(), webhook_secret=None)
    assert not outcome.ok
    assert outcome.error is not None and "refused the login: 535" in outcome.error
    assert "wrong" not in outcome.error and "wrong" not in outcome.masked_destination
    assert smtp_server.messages == []


def test_some_refused_recipients_still_count_as_sent(smtp_server: SmtpServer) -> None:
    smtp_server.refuse.add("ghost@example.com")
    outcome = send(
        "mailto://alice@example.com?cc=ghost@example.com",
        NOTICE,
        transport=transport(smtp_server),
        webhook_secret=None,
    )
    # Retrying would send alice a copy each time; the refusal is reported instead.
    assert outcome.ok
    assert outcome.error == (
        f"SMTP server 127.0.0.1:{smtp_server.port} refused some recipients (the others "
        "were sent it): ghost@example.com (550 5.1.1 No such user here)"
    )
    assert smtp_server.wait_for_messages()[0].rcpt_tos == ["alice@example.com"]


def test_all_recipients_refused_is_a_failure(smtp_server: SmtpServer) -> None:
    smtp_server.refuse.add("ghost@example.com")
    outcome = send(
        "mailto://ghost@example.com", NOTICE, transport=transport(smtp_server), webhook_secret=None
    )
    assert not outcome.ok
    assert outcome.error is not None and "refused every recipient: ghost@example.com (550" in outcome.error


def test_starttls_is_the_default_and_required(smtp_server: SmtpServer) -> None:
    # The test server offers no TLS: a portal SMTP URL without mode= must not fall back to plain text.
    url = f"smtp://127.0.0.1:{smtp_server.port}?from=alerts@vendor.example"
    outcome = send(
        "mailto://alice@example.com", NOTICE, transport=transport(smtp_url=url), webhook_secret=None
    )
    assert not outcome.ok
    assert outcome.error is not None and "STARTTLS extension not supported" in outcome.error
    assert smtp_server.messages == []


def test_an_unreachable_smtp_server_fails() -> None:
    port = free_port()
    url = f"smtp://mailer:hunter2@127.0.0.1:{port}?from=alerts@vendor.example&mode=insecure"
    outcome = send(
        "mailto://alice@example.com", NOTICE, transport=transport(smtp_url=url), webhook_secret=None
    )
    assert not outcome.ok
    assert outcome.error == f"SMTP server 127.0.0.1:{port} unreachable: [Errno 111] Connection refused"


@pytest.mark.parametrize(
    ("smtp_url", "message"),
    [
        ("http://127.0.0.1", "scheme must be smtp:// or smtps://"),
        ("smtp://127.0.0.1?mode=tls", "mode must be starttls, ssl or insecure"),
        ("smtp://127.0.0.1", "no sender"),
        ("smtp://user:secret@:25?from=a@b.example", "no host"),
    ],
)
def test_unusable_portal_smtp_settings_fail_without_repeating_them(smtp_url: str, message: str) -> None:
    outcome = send(
        "mailto://alice@example.com", NOTICE, transport=transport(smtp_url=smtp_url), webhook_secret=None
    )
    assert not outcome.ok
    assert outcome.error is not None and message in outcome.error and "secret" not in outcome.error


# --- Slack -------------------------------------------------------------------------------


def test_slack_posts_the_text_under_the_configured_base(http_receiver: HttpReceiver) -> None:
    outcome = send(
        f"slack://{SLACK_TOKENS}", NOTICE, transport=transport(http=http_receiver), webhook_secret=None
    )
    assert outcome.ok, outcome.error
    assert "TIiajkdnlazkcOXrIdevi7" not in outcome.masked_destination
    (request,) = http_receiver.wait_for_requests()
    assert (request.method, request.path) == ("POST", f"/services/{SLACK_TOKENS}")
    payload = request.json()
    assert payload["attachments"][0]["text"] == render_slack(NOTICE)
    assert payload["attachments"][0]["footer"] == "Usage portal"


def test_slack_text_is_escaped_for_slack(http_receiver: HttpReceiver) -> None:
    hostile = dataclasses.replace(NOTICE, customer_name="<!channel> & Co")
    assert send(
        f"https://hooks.slack.com/services/{SLACK_TOKENS}",
        hostile,
        transport=transport(http=http_receiver),
        webhook_secret=None,
    ).ok
    (request,) = http_receiver.wait_for_requests()
    assert request.path == f"/services/{SLACK_TOKENS}"
    assert request.json()["attachments"][0]["text"].startswith("&lt;!channel&gt; &amp; Co reached 80%")


def test_slack_failure_reports_the_status(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_paths[f"/services/{SLACK_TOKENS}"] = 500
    outcome = send(
        f"slack://{SLACK_TOKENS}", NOTICE, transport=transport(http=http_receiver), webhook_secret=None
    )
    assert not outcome.ok
    assert outcome.error is not None and "error=500" in outcome.error
    assert "TIiajkdnlazkcOXrIdevi7" not in outcome.error


# --- webhooks ----------------------------------------------------------------------------


def test_a_json_webhook_gets_the_signed_v1_payload(http_receiver: HttpReceiver) -> None:
    secret = webhook_secret()
    url = (
        f"json://127.0.0.1:{http_receiver.port}/hooks/usage?+X-Team=billing&-source=portal"
        "&+User-Agent=spoof&+X-Usage-Portal-Signature=v1%3Dforged"
    )
    before = time.time()
    outcome = send(url, NOTICE, transport=transport(), webhook_secret=secret)
    assert outcome.ok, outcome.error
    assert secret not in outcome.masked_destination
    (request,) = http_receiver.wait_for_requests()
    assert (request.method, request.path) == ("POST", "/hooks/usage?source=portal")
    assert request.json() == webhook_payload(NOTICE)
    assert request.header("Content-Type") == "application/json"
    assert request.header("User-Agent") == "usage-portal"
    assert request.header("X-Team") == "billing"
    timestamp, signature = request.header(TIMESTAMP_HEADER), request.header(SIGNATURE_HEADER)
    assert timestamp is not None and signature is not None and signature.startswith("v1=")
    assert before - 1 <= int(timestamp) <= time.time()
    assert verify(secret, timestamp, request.body, signature, now=time.time())
    # What a receiver must refuse:
    assert not verify(secret, timestamp, request.body.replace(b"8123", b"9123"), signature, now=time.time())
    assert not verify("whsec_other", timestamp, request.body, signature, now=time.time())
    assert not verify(secret, timestamp, request.body, signature, now=int(timestamp) + 301)
    assert not verify(secret, timestamp, request.body, signature, now=int(timestamp) - 301)
    assert verify(secret, timestamp, request.body, signature, now=int(timestamp) + 299)
    assert not verify(secret, str(int(timestamp) + 1), request.body, signature, now=time.time())


def test_http_basic_credentials_of_a_json_url_still_reach_the_receiver(http_receiver: HttpReceiver) -> None:
    url = f"json://user:pa%3Ass@127.0.0.1:{http_receiver.port}/hook"
    outcome = send(url, NOTICE, transport=transport(), webhook_secret="whsec_test")
    assert outcome.ok, outcome.error
    assert "pa:ss" not in outcome.masked_destination and "pa%3Ass" not in outcome.masked_destination
    (request,) = http_receiver.wait_for_requests()
    assert request.header("Authorization") == "Basic dXNlcjpwYTpzcw=="  # user:pa:ss
    assert verify(
        "whsec_test",
        request.header(TIMESTAMP_HEADER) or "",
        request.body,
        request.header(SIGNATURE_HEADER) or "",
        now=time.time(),
    )


def test_without_a_secret_the_payload_goes_unsigned(http_receiver: HttpReceiver) -> None:
    assert send(
        f"json://127.0.0.1:{http_receiver.port}/hook", NOTICE, transport=transport(), webhook_secret=None
    ).ok
    (request,) = http_receiver.wait_for_requests()
    assert request.json() == webhook_payload(NOTICE)
    assert request.header(SIGNATURE_HEADER) is None


def test_a_receiver_answering_500_is_a_failure(http_receiver: HttpReceiver) -> None:
    http_receiver.fail_paths["/hook"] = 500
    secret = webhook_secret()
    outcome = send(
        f"json://127.0.0.1:{http_receiver.port}/hook", NOTICE, transport=transport(), webhook_secret=secret
    )
    assert not outcome.ok
    assert outcome.error == f"webhook 127.0.0.1:{http_receiver.port} answered HTTP 500 Internal Server Error"
    assert len(http_receiver.requests) == 1  # no retry here: the caller schedules them


def test_a_receiver_too_slow_to_answer_is_a_failure(http_receiver: HttpReceiver) -> None:
    http_receiver.slow_paths["/hook"] = 2.0
    outcome = send(
        f"json://127.0.0.1:{http_receiver.port}/hook",
        NOTICE,
        transport=transport(timeout_s=0.5),
        webhook_secret="whsec_test",
    )
    assert not outcome.ok
    assert outcome.error == (
        f"webhook 127.0.0.1:{http_receiver.port} did not answer within 0.5 s (ReadTimeout)"
    )


def test_an_unreachable_webhook_fails_without_leaking_secrets() -> None:
    port = free_port()
    secret = webhook_secret()
    url = f"jsons://user:hunter2@127.0.0.1:{port}/hooks/tok3n-in-path"
    outcome = send(url, NOTICE, transport=transport(timeout_s=2.0), webhook_secret=secret)
    assert not outcome.ok
    assert outcome.error == f"webhook 127.0.0.1:{port} unreachable: [Errno 111] Connection refused"
    assert outcome.masked_destination.startswith(f"jsons://user:****@127.0.0.1:{port}/")
    assert outcome.masked_destination == mask(url)
    for leaked in (secret, "hunter2"):
        assert leaked not in outcome.masked_destination and leaked not in (outcome.error or "")


def test_a_form_webhook_is_posted_unsigned(http_receiver: HttpReceiver) -> None:
    assert send(
        f"form://127.0.0.1:{http_receiver.port}/form",
        NOTICE,
        transport=transport(),
        webhook_secret="whsec_unused",
    ).ok
    (request,) = http_receiver.wait_for_requests()
    assert request.header(SIGNATURE_HEADER) is None
    body = request.body.decode()
    assert "Acme+Inc+reached+80%25+of+its+API+calls+budget" in body  # the subject, form-encoded


def test_other_services_get_the_subject_and_text(http_receiver: HttpReceiver) -> None:
    # xml:// is an "other" channel that happens to be easy to receive locally.
    assert send(
        f"xml://127.0.0.1:{http_receiver.port}/xml", NOTICE, transport=transport(), webhook_secret=None
    ).ok
    (request,) = http_receiver.wait_for_requests()
    body = request.body.decode()
    assert "Acme Inc reached 80% of its API calls budget" in body
    assert "Billing period: 1 Nov 2026 00:00 UTC to 1 Dec 2026 00:00 UTC" in body


def test_concurrent_sends_keep_their_own_outcomes(http_receiver: HttpReceiver) -> None:
    # The worker sends from several threads at once; Apprise's log capture is per call.
    http_receiver.fail_paths["/bad"] = 503
    destinations = [f"json://127.0.0.1:{http_receiver.port}/{'bad' if i % 2 else 'good'}" for i in range(12)]
    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(
            pool.map(lambda d: send(d, NOTICE, transport=transport(), webhook_secret="whsec_t"), destinations)
        )
    refused = f"webhook 127.0.0.1:{http_receiver.port} answered HTTP 503 Service Unavailable"
    for destination, outcome in zip(destinations, outcomes, strict=True):
        if destination.endswith("/bad"):
            assert outcome == SendOutcome(False, refused, mask(destination))
        else:
            assert outcome == SendOutcome(True, None, mask(destination))
    assert len(http_receiver.requests) == 12


# --- what is never raised -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("destination", "message"),
    [
        ("", "destination: is empty"),
        ("nope://user:hunter2@example.com", "Apprise has no service for nope://"),
        ("portaljson://:whsec_x@127.0.0.1/hook", "internal signed-webhook scheme"),
    ],
)
def test_an_unusable_destination_is_an_outcome_not_an_exception(destination: str, message: str) -> None:
    outcome = send(destination, NOTICE, transport=transport(), webhook_secret=None)
    assert not outcome.ok
    assert outcome.error is not None and message in outcome.error
    assert "hunter2" not in outcome.masked_destination and "whsec_x" not in outcome.masked_destination


@pytest.mark.parametrize(
    "changes", [{"timeout_s": 0.0}, {"timeout_s": float("nan")}, {"slack_webhook_base": "hooks.example"}]
)
def test_a_bad_transport_is_a_programming_error(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        transport(**changes)


def test_payload_body_is_compact_json() -> None:
    # What is signed is exactly what is sent: the compact UTF-8 JSON of the payload.
    assert json.loads(json.dumps(webhook_payload(NOTICE), separators=(",", ":"))) == webhook_payload(NOTICE)


def test_an_unresolvable_host_reads_as_such_in_the_delivery_error() -> None:
    # Shown to customers on their alerts page: "[Errno -2]" tells them nothing.
    assert os_reason(socket.gaierror(-2, "Name or service not known")) == (
        "its host name was not found (Name or service not known)"
    )
    assert os_reason(ConnectionRefusedError(111, "Connection refused")) == "[Errno 111] Connection refused"
