"""Alert channels: a destination is one Apprise URL (https://appriseit.com/services/).

This module checks a destination before it is stored, names its kind, and masks it for
display. The clear URL holds tokens and passwords: it is stored encrypted (alerts.secrets)
and only ever shown, logged or returned in the masked form Apprise builds with
`url(privacy=True)`.

An email channel is either just an address (`mailto://alice@example.com`), sent through
the portal's own SMTP server (see alerts.delivery.Transport), or a full Apprise mailto URL
that names its own SMTP server and credentials.

A destination must not point the portal at its own machine or network (alerts.destinations):
the hosts it names (a webhook's host, a mailto URL's own SMTP server, the host of any Apprise
service that takes one) are checked when it is saved and again at send time.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any, Literal
from urllib.parse import unquote

import apprise
from apprise.manager_plugins import NotificationManager

from alerts import destinations, egress
from alerts.signing import SIGNED_SCHEMES

ChannelKind = Literal["email", "slack", "webhook", "other"]

# Long enough for any real Apprise URL (a mailto URL with credentials and a few recipients
# is ~300 characters); short enough that a pasted document is refused, not stored.
MAX_DESTINATION_LENGTH = 2048

_KINDS: dict[str, ChannelKind] = {
    "mailto": "email",
    "mailtos": "email",
    "slack": "slack",
    "json": "webhook",
    "jsons": "webhook",
    "form": "webhook",
    "forms": "webhook",
}

# Apprise's registry of schemes (a singleton).
_N_MGR = NotificationManager()  # type: ignore[no-untyped-call]

_SCHEME = re.compile(r"\s*([a-z0-9]{1,32})://", re.IGNORECASE)

# Apprise's own report lines that repeat the (CWE-312 masked) URL instead of saying what is
# wrong with it; the reason, when Apprise gives one, is in the other lines.
_ECHOES_URL = re.compile(r"://|^(Unsupported|Unparseable|Could not load)\b")


class ChannelError(ValueError):
    """A destination the portal cannot use; the message names the problem and shows the
    URL only as its scheme (`'slack://…'`), since an invalid URL cannot be masked."""


# Apprise services that act on the portal's own machine (its syslog, desktop, D-Bus, USB
# light) rather than reach a destination: never a customer's channel.
_LOCAL_PLUGINS = frozenset(
    (
        "NotifySyslog",
        "NotifyDBus",
        "NotifyGnome",
        "NotifyGLib",
        "NotifyMacOSX",
        "NotifyWindows",
        "NotifyBlink1",
    )
)


def validate_destination(
    url: str,
    *,
    allow_networks: tuple[destinations.Network, ...] = (),
    resolve: destinations.Resolver = egress.resolve,
) -> ChannelKind:
    """The kind of channel `url` (one Apprise URL) is: mailto/mailtos → "email", slack
    (including Slack's native https://hooks.slack.com/… URLs) → "slack", json/jsons/form/forms
    → "webhook", any other Apprise service → "other".

    Raises ChannelError for an empty string, a URL longer than MAX_DESTINATION_LENGTH
    characters, whitespace inside it (Apprise would read several URLs), the portal's
    internal signed-webhook schemes, anything Apprise cannot load (unknown scheme,
    missing token, invalid address…), with Apprise's reason when it gives one, and a
    destination the portal must not send to (destination_refusal). Blocks while the
    destination's host names are resolved (`resolve`, getaddrinfo by default)."""
    plugin = _load(url)
    refusal = destination_refusal(plugin, url, allow_networks=allow_networks, resolve=resolve)
    if refusal is not None:
        raise ChannelError(f"destination: {refusal}")
    return kind_of(plugin)


def destination_refusal(
    plugin: Any,
    url: str,
    *,
    allow_networks: tuple[destinations.Network, ...],
    resolve: destinations.Resolver = egress.resolve,
) -> str | None:
    """Why the portal must not send through `plugin` (loaded from `url`), or None: a
    service that acts on the portal's own machine, an invalid port, or a host that is or
    resolves to an address alerts.destinations refuses (see network_hosts for which hosts
    count). The reason names the host as written, never the rest of the URL."""
    if type(plugin).__name__ in _LOCAL_PLUGINS:
        return f"{scheme_of(plugin)}:// acts on the portal's own machine, not on a destination of yours"
    for host, port in network_hosts(plugin, url):
        refusal = destinations.host_refusal(host, port, allow_networks, resolve)
        if refusal is not None:
            if refusal.startswith("port "):
                return refusal
            return f"{refusal}; notices go only to public hosts"
    return None


def network_hosts(plugin: Any, url: str) -> list[tuple[str, Any]]:
    """The (host, port) pairs a destination itself chooses to send to: a mailto URL's own
    SMTP server (an address-only one goes through the operator's server: none), the host of
    a service whose URL names one (json, form, xml, ntfy, gotify, matrix… any Apprise
    service with a `host` token), none for Slack (posted to slack.com or the operator's
    webhook base) nor for services at a fixed public address (Discord, Telegram…)."""
    kind = kind_of(plugin)
    if kind == "email":
        if not names_own_server(plugin, url):
            return []
        return [(str(plugin.smtp_host), plugin.port)]
    if kind == "slack" or "host" not in (getattr(type(plugin), "template_tokens", None) or {}):
        return []
    host = getattr(plugin, "host", None)
    return [(str(host), getattr(plugin, "port", None))] if host else []


def names_own_server(plugin: Any, url: str) -> bool:
    """A mailto URL names an SMTP server of its own when it has a password, a port, or
    `smtp=`; otherwise (`mailto://alice@example.com`, `?to=…`, `?cc=…` allowed) it is an
    address only, sent through the portal's server. An unauthenticated relay is named with
    an explicit port: `mailto://relay.internal:25/alice@example.com?from=…`."""
    parsed = type(plugin).parse_url(url) or {}
    qsd = parsed.get("qsd") or {}
    return bool(parsed.get("password") or parsed.get("port") or qsd.get("smtp") or qsd.get("pass"))


def kind_of(plugin: Any) -> ChannelKind:
    """The channel kind of a loaded Apprise plugin (see validate_destination)."""
    for scheme in _schemes(plugin):
        if scheme in _KINDS:
            return _KINDS[scheme]
    return "other"


def mask(url: str) -> str:
    """`url` as Apprise prints it with `url(privacy=True)`: passwords, tokens and keys
    replaced by `****` or elided (`T...2`). A URL Apprise cannot load is shown as its scheme
    only (`nope://…`), or `…` without one; never raises for a str."""
    try:
        # The internal signed-webhook URLs are masked too (Apprise prints them as just
        # `portaljson://`): they are refused as destinations, not as things to show.
        plugin = _load(url, internal=True)
    except ChannelError:
        return _scheme_only(url)
    return str(plugin.url(privacy=True))


def load(url: str, *, asset: Any = None) -> Any:
    """The Apprise plugin instance for `url` (what `apprise.Apprise.instantiate` returns,
    with `asset`, an AppriseAsset, or Apprise's default), checked like validate_destination;
    raises ChannelError the same way."""
    return _load(url, asset)


def scheme_of(plugin: Any) -> str:
    """The scheme a loaded plugin was given as: its secure one (`jsons`, `mailtos`) when the
    URL asked for TLS, else its plain one."""
    value = getattr(plugin, "secure_protocol" if getattr(plugin, "secure", False) else "protocol", None)
    if isinstance(value, (tuple, list)):
        value = value[0] if value else None
    if value is None:
        return _schemes(plugin)[0] if _schemes(plugin) else ""
    return str(value).lower()


def _load(url: str, asset: Any = None, *, internal: bool = False) -> Any:
    if not isinstance(url, str):
        raise TypeError(f"destination must be a str, not {type(url).__name__}")
    if not url.strip():
        raise ChannelError("destination: is empty; give an Apprise URL such as mailto://you@example.com")
    if len(url) > MAX_DESTINATION_LENGTH:
        raise ChannelError(
            f"destination: is too long ({len(url)} characters; at most {MAX_DESTINATION_LENGTH})"
        )
    if any(c.isspace() or not c.isprintable() for c in url):
        # Apprise splits a string on whitespace into several URLs; a channel is one.
        raise ChannelError(
            f"destination: '{_scheme_only(url)}' contains spaces or control characters; "
            "give one URL, with spaces percent-encoded (%20)"
        )
    scheme = _scheme(url)
    if scheme in SIGNED_SCHEMES and not internal:
        raise ChannelError(
            f"destination: {scheme}:// is the portal's internal signed-webhook scheme; "
            "give a json:// or jsons:// URL and the portal signs what it sends"
        )
    with apprise_messages() as messages:
        plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        reasons = [_scrub(m, url).rstrip(": ") for m in messages if not _ECHOES_URL.search(m)]
        if scheme is None:
            reasons.insert(0, "no scheme:// at the start")
        elif scheme not in _N_MGR:
            reasons.insert(0, f"Apprise has no service for {scheme}://")
        elif not reasons:
            reasons.append("Apprise could not read it; see https://appriseit.com/services/ for its form")
        reason = f" ({'; '.join(dict.fromkeys(reasons))})" if reasons else ""
        raise ChannelError(f"destination: '{_scheme_only(url)}' is not a valid Apprise URL{reason}")
    return plugin


def _scrub(message: str, url: str) -> str:
    """`message` without any piece of `url` in it: Apprise's reasons quote the value they
    refuse ("Token (xoxb-…) was specified"), which may be most of a real secret."""
    rest = url.split("://", 1)[-1]
    pieces = set(re.split(r"[/:@?&=#,;]+", rest)) | set(re.split(r"[/:@?&=#,;]+", unquote(rest)))
    for piece in sorted((p for p in pieces if len(p) >= 4), key=len, reverse=True):
        message = message.replace(piece, "…")
    return message


def _scheme(url: str) -> str | None:
    match = _SCHEME.match(url)
    return match.group(1).lower() if match else None


def _scheme_only(url: str) -> str:
    scheme = _scheme(url)
    return f"{scheme}://…" if scheme else "…"


def _schemes(plugin: Any) -> list[str]:
    found: list[str] = []
    for attribute in ("protocol", "secure_protocol"):
        value = getattr(type(plugin), attribute, None)
        if isinstance(value, str):
            found.append(value.lower())
        elif isinstance(value, (tuple, list, set)):
            found.extend(str(v).lower() for v in value)
    return found


# Apprise reports why a URL failed only by logging it (instantiate returns None). One
# filter on its logger, installed once, hands each record to the capture active in the
# logging thread's context, if any; records nobody captures pass through untouched.
_CAPTURE: ContextVar[list[str] | None] = ContextVar("alerts_apprise_capture", default=None)
_INSTALL_LOCK = threading.Lock()
_installed = False


class _CaptureFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        captured = _CAPTURE.get()
        if captured is None:
            return True
        if record.levelno >= logging.WARNING:
            captured.append(record.getMessage())
        # Captured: the caller reports it (in a ChannelError, say), so it is not logged too.
        return False


def _install() -> None:
    global _installed
    with _INSTALL_LOCK:
        if not _installed:
            logging.getLogger(apprise.LOGGER_NAME).addFilter(_CaptureFilter())
            _installed = True


@contextlib.contextmanager
def apprise_messages() -> Iterator[list[str]]:
    """Collect the warnings and errors Apprise logs in this thread (and context) while the
    block runs, instead of logging them. Apprise masks URLs in its own messages (its
    secure_logging default), and only WARNING and above are kept: its DEBUG lines carry
    request URLs and payloads in clear."""
    _install()
    messages: list[str] = []
    token = _CAPTURE.set(messages)
    try:
        yield messages
    finally:
        _CAPTURE.reset(token)
