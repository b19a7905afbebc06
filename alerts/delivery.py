"""Sending one notice to one channel: blocking, no database, never raises for a failed
delivery (the caller runs `send` in a thread and records each attempt).

How each kind goes out:
- email: multipart/alternative with the text and HTML renderings (render_email). Apprise's
  email plugin, given HTML, builds its text part by converting the HTML, so the text
  template would never be sent; the message is built here and handed to the SMTP server
  with smtplib, while Apprise still parses the mailto URL (recipients, provider defaults,
  SMTP host, port, mode, credentials). An address-only URL goes through the portal's SMTP
  server (Transport.smtp_url); see `channels.names_own_server`.
- slack: Apprise's Slack plugin, plain text (render_slack); webhook-mode URLs are posted
  under Transport.slack_webhook_base instead of https://hooks.slack.com/services.
- json/jsons: rewritten to alerts.signing's portaljson(s):// plugin: the v1 payload
  (webhook_payload) as the body, signed with the channel's secret.
- form/forms: Apprise's form plugin, unsigned (a form post has no raw body to sign the way
  receivers can check), with the subject as title and the text rendering as message.
- any other Apprise service: subject as title, text rendering as body.

What a destination itself names (a webhook's host, a mailto URL's own SMTP server, any
Apprise service's host) is checked again here, after DNS resolution, and every connection
the send then opens is checked as it is made (alerts.egress.guarded): an address the rules
refuse (alerts.destinations) is never connected to, redirects are not followed, and the
refusal is the attempt's error. The operator's own servers (Transport.smtp_url,
Transport.slack_webhook_base) are configuration, not input, and are not restricted.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid
from typing import Any

import apprise

from alerts import channels, destinations, egress, smtp
from alerts.messages import Notice, notice_id, render_email, render_slack, webhook_payload
from alerts.signing import signed_url

SLACK_WEBHOOK_BASE = "https://hooks.slack.com/services"

# What a stored attempt keeps of a failure; Apprise can log a lot for one call.
MAX_ERROR_LENGTH = 1000


@dataclass(frozen=True, kw_only=True)
class Transport:
    """How the portal reaches the outside world, the same for every channel.

    `smtp_url`: the portal's SMTP server, for address-only email channels:
    `smtp://user:pass@host:port?from=alerts@vendor.example&mode=starttls|ssl|insecure`
    (`smtps://` defaults to mode=ssl, `smtp://` to starttls; the port defaults by mode
    to 587/465/25; `from` may carry a display name, `Alerts <alerts@vendor.example>`, and
    defaults to the user when that is an address; `verify=no` skips the certificate check).
    None: address-only email channels fail with a clear error.
    `slack_webhook_base`: where Slack webhook URLs are posted (an egress proxy, or a local
    receiver in tests). `timeout_s`: seconds allowed for each connect and each read.
    `allow_networks`: networks a destination may reach although they are not public
    (the operator's PORTAL_DESTINATION_ALLOW_NETWORKS); None reads that variable from the
    environment at each send (for callers that do not pass the portal's settings)."""

    smtp_url: str | None
    slack_webhook_base: str = SLACK_WEBHOOK_BASE
    timeout_s: float
    allow_networks: tuple[destinations.Network, ...] | None = None

    def allowed_networks(self) -> tuple[destinations.Network, ...]:
        """`allow_networks`, or those of PORTAL_DESTINATION_ALLOW_NETWORKS when it is None
        (an unreadable value allows nothing: refusing is the safe side)."""
        if self.allow_networks is not None:
            return self.allow_networks
        try:
            return destinations.parse_networks(os.environ.get(destinations.ALLOW_NETWORKS_SETTING, ""))
        except ValueError:
            return ()

    def __post_init__(self) -> None:
        if not (math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s: must be a positive number of seconds, got {self.timeout_s!r}")
        if not re.match(r"https?://[^/\s]+", self.slack_webhook_base):
            raise ValueError("slack_webhook_base: must be an http:// or https:// URL")


@dataclass(frozen=True)
class SendOutcome:
    """One attempt's result. `error` says why it failed (Apprise's reason, an SMTP reply…)
    and is None on success, except for an email some of whose recipients the server refused
    while it accepted others: that is `ok` (the others got it; retrying would send them a
    copy each time) with the refusals in `error`. `masked_destination` is mask(destination)."""

    ok: bool
    error: str | None
    masked_destination: str


def send(
    destination: str, notice: Notice, *, transport: Transport, webhook_secret: str | None
) -> SendOutcome:
    """Send `notice` to `destination` (an Apprise URL, see alerts.channels) once, without
    retrying (the caller schedules retries). `webhook_secret` signs json:// and jsons://
    deliveries (None: sent unsigned); other kinds ignore it.

    Every delivery failure (invalid or unsupported URL, a destination the portal must not
    reach, unreachable host, refusal, non-2xx answer, timeout, no portal SMTP server for an
    address-only email) is returned as SendOutcome(ok=False, error=…), never raised;
    neither the outcome nor the logs carry the clear destination. Blocks for up to about
    twice transport.timeout_s per connection, plus the DNS lookups of the destination's
    hosts."""
    asset = _asset(transport)
    try:
        plugin = channels.load(destination, asset=asset)
    except channels.ChannelError as exc:
        return SendOutcome(False, str(exc), channels.mask(destination))
    # Masked before the timeouts below change the plugin (they would show up as `rto=`).
    masked = str(plugin.url(privacy=True))
    plugin.socket_connect_timeout = plugin.socket_read_timeout = transport.timeout_s
    # A redirect would take the notice somewhere nobody chose (and the guard below would
    # refuse one into the portal's network anyway).
    plugin.redirects = False
    allow = transport.allowed_networks()
    refusal = channels.destination_refusal(plugin, destination, allow_networks=allow)
    if refusal is not None:
        return SendOutcome(False, _clip(f"{_REFUSED}: {refusal}"), masked)
    kind = channels.kind_of(plugin)
    if kind == "email":
        own_server = channels.names_own_server(plugin, destination)
        with _guard(own_server, allow) as refused:
            ok, error = _send_email(plugin, destination, notice, transport)
        return SendOutcome(ok and not refused, _clip(_refused_error(refused) or error), masked)
    if kind == "slack":
        # An instance attribute shadows the plugin's class-level webhook_url, which its
        # webhook mode formats as f"{webhook_url}/{token_a}/{token_b}/{token_c}".
        # Slack URLs name no host: they go to slack.com or the operator's base, unguarded.
        plugin.webhook_url = transport.slack_webhook_base.rstrip("/")
        error = _notify(plugin, body=render_slack(notice), title="", transport=transport)
        return SendOutcome(error is None, _clip(error), masked)
    with egress.guarded(allow) as refused:
        if kind == "webhook" and channels.scheme_of(plugin) in ("json", "jsons"):
            signed = apprise.Apprise.instantiate(signed_url(plugin, webhook_secret), asset=asset)
            if signed is None:
                raise RuntimeError("the portaljson Apprise plugin is not registered (alerts.signing)")
            body = json.dumps(webhook_payload(notice), ensure_ascii=False, separators=(",", ":"))
            error = _notify(signed, body=body, title="", transport=transport)
        else:
            subject, text, _ = render_email(notice)
            error = _notify(plugin, body=text, title=subject, transport=transport)
    error = _refused_error(refused) or error
    return SendOutcome(error is None, _clip(error), masked)


_REFUSED = "refused by the portal's destination rules"


def _guard(active: bool, allow: tuple[destinations.Network, ...]) -> Any:
    """egress.guarded(allow) when `active`; else a block that refuses nothing (the
    operator's own SMTP server is not restricted)."""
    return egress.guarded(allow) if active else contextlib.nullcontext([])


def _refused_error(refused: list[str]) -> str | None:
    """The attempt's error when the guard refused a connection: the rules' reason, not the
    client's rendering of it."""
    if not refused:
        return None
    return f"{_REFUSED}: {'; '.join(dict.fromkeys(refused))}"


# --- Apprise ---------------------------------------------------------------------------


def _asset(transport: Transport) -> Any:
    # app_id is what Apprise signs messages with (Slack's footer, an email's From name).
    return apprise.AppriseAsset(
        app_id="Usage portal",
        app_desc="Usage portal alerts",
        service_timeout=_service_timeout(transport),
        http_redirects=False,
    )


def _service_timeout(transport: Transport) -> float:
    # Apprise stops waiting for a plugin after this: connect + read, and a second for DNS,
    # which socket timeouts do not cover. (The plugin's thread may run on; it is abandoned.)
    return 2 * transport.timeout_s + 1


def _notify(plugin: Any, *, body: str, title: str, transport: Transport) -> str | None:
    """Send through Apprise; None on success, else the reason from the call's captured logs
    (WARNING and above: Apprise's DEBUG lines carry request URLs in clear)."""
    app = apprise.Apprise(asset=plugin.asset)
    app.add(plugin)
    with app.notify(body=body, title=title, body_format=apprise.NotifyFormat.TEXT) as result:
        if result:
            return None
        messages = [
            entry.message for entry in result.logs() if entry.level in ("WARNING", "ERROR", "CRITICAL")
        ]
        specific = [m for m in messages if not _GENERIC.match(m)]
        reasons = list(dict.fromkeys(specific or messages))
        if result.status == apprise.AppriseResultStatus.TIMEOUT:
            reasons.insert(0, f"no answer within {_service_timeout(transport):g} s")
        return "; ".join(reasons) or f"Apprise reported {result.status.name}"


# Apprise's closing summary ("Failed to send X notification."), said after the real reason.
_GENERIC = re.compile(r"(Failed to send|Sent) .* notification\.?$|There are no service")


def _clip(error: str | None) -> str | None:
    if error is None or len(error) <= MAX_ERROR_LENGTH:
        return error
    return error[: MAX_ERROR_LENGTH - 1] + "…"


# --- email -----------------------------------------------------------------------------


def _send_email(
    plugin: Any, destination: str, notice: Notice, transport: Transport
) -> tuple[bool, str | None]:
    if channels.names_own_server(plugin, destination):
        server = smtp.SmtpServer(
            host=plugin.smtp_host,
            port=int(plugin.port),
            mode=plugin.secure_mode,
            user=plugin.user or None,
            password=plugin.password or None,
            sender=(_name(plugin.from_addr[0]), plugin.from_addr[1]),
            verify=bool(plugin.verify_certificate),
        )
    elif transport.smtp_url is None:
        return False, (
            # Shown to the customer on their alerts page: words they can read, then what the
            # operator has to set.
            "this portal has no mail server set up, so it cannot send email yet "
            "(its operator sets PORTAL_SMTP_URL)"
        )
    else:
        try:
            server = smtp.portal_smtp(transport.smtp_url)
        except smtp.SmtpSettingsError as exc:
            return False, f"the portal's mail server settings (PORTAL_SMTP_URL): {exc}"
    to = [(_name(name), address) for name, address in plugin.targets]
    cc = sorted(set(plugin.cc) - {address for _, address in to})
    bcc = sorted(set(plugin.bcc) - {address for _, address in to} - set(cc))
    if not to:
        return False, "the email channel has no valid recipient address"
    message = _message(
        notice, server.sender, to, cc, sorted(plugin.reply_to), dict(plugin.headers), names=plugin.names
    )
    return smtp.submit(server, message, [a for _, a in to] + cc + bcc, transport.timeout_s)


def _name(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _message(
    notice: Notice,
    sender: tuple[str, str],
    to: list[tuple[str, str]],
    cc: list[str],
    reply_to: list[str],
    headers: dict[str, str],
    *,
    names: dict[str, Any],
) -> EmailMessage:
    subject, text, html = render_email(notice)
    message = EmailMessage()
    message["Subject"] = subject
    message["From"] = formataddr(sender)
    message["To"] = ", ".join(formataddr(pair) for pair in to)
    if cc:
        message["Cc"] = ", ".join(formataddr((_name(names.get(a)), a)) for a in cc)
    if reply_to:
        message["Reply-To"] = ", ".join(formataddr((_name(names.get(a)), a)) for a in reply_to)
    message["Date"] = format_datetime(datetime.now(UTC))
    # The sender's domain: make_msgid's default looks the local host name up in DNS.
    message["Message-ID"] = make_msgid(domain=sender[1].rpartition("@")[2])
    # RFC 3834: keeps vacation responders from answering an alert.
    message["Auto-Submitted"] = "auto-generated"
    message["X-Usage-Portal-Notice-Id"] = notice_id(notice)
    for key, value in headers.items():
        if key not in message:
            message[key] = value
    message.set_content(text)
    message.add_alternative(html, subtype="html")
    return message
