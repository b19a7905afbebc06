"""Handing an email to an SMTP server: the portal's own (`PORTAL_SMTP_URL`, for account
mail and address-only email channels) or one an email channel names. Blocking; never
raises for a failed submission: the error says which server answered what."""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import parseaddr
from typing import Literal
from urllib.parse import unquote, urlsplit

SmtpMode = Literal["starttls", "ssl", "insecure"]
_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "insecure": 25}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    mode: SmtpMode
    user: str | None
    password: str | None
    sender: tuple[str, str]  # (display name or "", address)
    verify: bool


class SmtpSettingsError(ValueError):
    """The portal's smtp_url cannot be used; the message never repeats the URL."""


def portal_smtp(smtp_url: str) -> SmtpServer:
    try:
        split = urlsplit(smtp_url)
        port = split.port
    except ValueError as exc:
        raise SmtpSettingsError(f"not a URL ({exc})") from None
    if split.scheme not in ("smtp", "smtps"):
        raise SmtpSettingsError(f"scheme must be smtp:// or smtps://, not {split.scheme or 'none'}")
    if not split.hostname:
        raise SmtpSettingsError("no host")
    # Not parse_qs: it reads `+` as a space, and `alerts+billing@…` is an address.
    query = {key: unquote(value) for key, _, value in (p.partition("=") for p in split.query.split("&") if p)}
    mode = query.get("mode", "ssl" if split.scheme == "smtps" else "starttls").lower()
    if mode not in _DEFAULT_PORTS:
        raise SmtpSettingsError(f"mode must be starttls, ssl or insecure, not {mode!r}")
    user = unquote(split.username) if split.username else None
    password = unquote(split.password) if split.password else None
    name, address = parseaddr(query.get("from") or user or "")
    if "@" not in address:
        raise SmtpSettingsError("no sender: add ?from=alerts@your-domain (or log in with an address)")
    return SmtpServer(
        host=split.hostname,
        port=port or _DEFAULT_PORTS[mode],
        mode=mode,  # type: ignore[arg-type]
        user=user,
        password=password,
        sender=(name or "Usage portal", address),
        verify=query.get("verify", "yes").lower() not in ("no", "false", "0"),
    )


def submit(
    server: SmtpServer,
    message: EmailMessage,
    recipients: list[str],
    timeout_s: float,
) -> tuple[bool, str | None]:
    where = f"SMTP server {server.host}:{server.port}"
    context = ssl.create_default_context()
    if not server.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        client: smtplib.SMTP = (
            smtplib.SMTP_SSL(server.host, server.port, timeout=timeout_s, context=context)
            if server.mode == "ssl"
            else smtplib.SMTP(server.host, server.port, timeout=timeout_s)
        )
        with client:
            if server.mode == "starttls":
                client.starttls(context=context)
            if server.user and server.password:
                client.login(server.user, server.password)
            refused = client.send_message(message, from_addr=server.sender[1], to_addrs=recipients)
    except smtplib.SMTPRecipientsRefused as exc:
        return False, f"{where} refused every recipient: {_refusals(exc.recipients)}"
    except smtplib.SMTPAuthenticationError as exc:
        return False, f"{where} refused the login: {_reply(exc)}"
    except smtplib.SMTPResponseException as exc:
        return False, f"{where} answered {_reply(exc)}"
    except smtplib.SMTPException as exc:
        return False, f"{where}: {exc}"
    except OSError as exc:  # refused, unreachable, timed out, TLS failures
        return False, f"{where} unreachable: {os_reason(exc)}"
    if refused:
        return True, f"{where} refused some recipients (the others were sent it): {_refusals(refused)}"
    return True, None


def _reply(exc: smtplib.SMTPResponseException) -> str:
    reply = exc.smtp_error
    return f"{exc.smtp_code} {reply.decode('utf-8', 'replace') if isinstance(reply, bytes) else reply}"


def _refusals(refused: dict[str, tuple[int, bytes]]) -> str:
    return ", ".join(
        f"{address} ({code} {reply.decode('utf-8', 'replace')})" for address, (code, reply) in refused.items()
    )


def os_reason(exc: OSError) -> str:
    """An OS error in words a customer reading their alert history can act on, with the
    system's own text: a host name that does not resolve says so rather than `[Errno -2]`."""
    if isinstance(exc, socket.gaierror):
        return f"its host name was not found ({exc.strerror})"
    if exc.errno and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc)
