"""Signed webhooks: an Apprise plugin that POSTs the portal's JSON payload with an
HMAC-SHA256 signature, and the check a receiver runs (docs/webhooks.md).

A channel's destination stays an ordinary `json://` or `jsons://` URL. At send time it is
rewritten (`signed_url`) to this plugin's scheme, `portaljson://` (http) or
`portaljsons://` (https), carrying the signing secret as the URL password, which is the
part Apprise always masks. (Apprise schemes are `[a-z0-9]{1,32}`: a hyphenated
`portal-json` cannot be registered.) Apprise prints a custom plugin's URL as just
`portaljson://`, so nothing in the URL reaches logs or masked forms.

    portaljson://:<secret>@host[:port]/path?+Header=value&-param=value&verify=no&cto=4&rto=4

Headers sent: `Content-Type: application/json`, `User-Agent: usage-portal`,
`X-Usage-Portal-Timestamp: <unix seconds>`, and with a secret
`X-Usage-Portal-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
import warnings
from typing import Any
from urllib.parse import quote, unquote, urlencode

import apprise
import requests
from apprise.decorators import notify
from apprise.manager_plugins import NotificationManager
from apprise.plugins.custom_json import NotifyJSON

from alerts.smtp import os_reason

SIGNED_SCHEMES = ("portaljson", "portaljsons")
SIGNATURE_HEADER = "X-Usage-Portal-Signature"
TIMESTAMP_HEADER = "X-Usage-Portal-Timestamp"
USER_AGENT = "usage-portal"
SIGNATURE_VERSION = "v1"

# Apprise's logger: what the plugin logs at WARNING ends up in the notify() result, which is
# how alerts.delivery learns why a send failed. Never log the URL path or the secret here.
_log = logging.getLogger(apprise.LOGGER_NAME)

# Apprise's own socket timeouts (seconds) when the URL gives none (cto=, rto=).
_DEFAULT_TIMEOUT_S = 4.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value for `body` (the raw request body) sent at `timestamp`
    (unix seconds, as a decimal string): `v1=` + hex HMAC-SHA256 keyed with the UTF-8
    secret over `"<timestamp>." + body`."""
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION}={mac.hexdigest()}"


def verify(
    secret: str, timestamp: str, body: bytes, signature: str, *, now: float, tolerance_s: int = 300
) -> bool:
    """For receivers: True when `signature` (the X-Usage-Portal-Signature header) signs
    `body` (the raw request body bytes, before any JSON parsing) at `timestamp` (the
    X-Usage-Portal-Timestamp header) with `secret`, and `timestamp` is within `tolerance_s`
    seconds of `now` (unix seconds) either way, so a captured request cannot be replayed
    later. The header may list several comma-separated `v1=` values (one per secret during
    a rotation); any match counts. Malformed input is False, never an exception."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(now - sent_at) > tolerance_s:
        return False
    expected = sign(secret, str(sent_at), body)
    # Compare every candidate in constant time (per candidate) and without stopping early.
    matched = False
    for candidate in signature.split(","):
        matched |= hmac.compare_digest(candidate.strip().encode("utf-8"), expected.encode("utf-8"))
    return matched


def signed_url(json_plugin: Any, secret: str | None) -> str:
    """The `portaljson(s)://` URL that posts where `json_plugin` (a loaded Apprise
    json:// or jsons:// plugin) posts: same host, port, path, extra headers (`+Name=`),
    query parameters (`-name=`) and certificate check; its HTTP basic credentials, if any,
    become an `Authorization` header. `secret` None sends unsigned. The method is always
    POST and Apprise's `:key=` payload extras are dropped: the body is the portal's
    payload. Raises ValueError for a plugin that is not Apprise's JSON one."""
    if not isinstance(json_plugin, NotifyJSON):
        raise ValueError(f"signed_url needs Apprise's json:// plugin, not {type(json_plugin).__name__}")
    query: list[tuple[str, str]] = []
    if not json_plugin.verify_certificate:
        query.append(("verify", "no"))
    query += [("cto", str(json_plugin.socket_connect_timeout)), ("rto", str(json_plugin.socket_read_timeout))]
    query += [(f"+{name}", str(value)) for name, value in json_plugin.headers.items()]
    query += [(f"-{name}", str(value)) for name, value in json_plugin.params.items()]
    if json_plugin.user:
        pair = f"{json_plugin.user}:{json_plugin.password or ''}".encode()
        query.append(("+Authorization", "Basic " + base64.b64encode(pair).decode("ascii")))
    auth = f":{quote(secret, safe='')}@" if secret else ""
    port = f":{json_plugin.port}" if json_plugin.port else ""
    return (
        f"{SIGNED_SCHEMES[1 if json_plugin.secure else 0]}://{auth}{json_plugin.host}{port}"
        f"{json_plugin.fullpath or '/'}?{urlencode(query, quote_via=quote)}"
    )


def _post_signed(
    body: str, title: str, notify_type: str, *args: Any, meta: dict[str, Any], **kwargs: Any
) -> bool:
    """The Apprise plugin: POST `body` (the JSON text, passed through unchanged) as is."""
    secure = meta.get("schema") == SIGNED_SCHEMES[1]
    host = str(meta.get("host") or "")
    where = f"{host}:{meta['port']}" if meta.get("port") else host
    qsd: dict[str, str] = meta.get("qsd") or {}
    url = f"{'https' if secure else 'http'}://{where}{meta.get('fullpath') or '/'}"
    raw = body.encode("utf-8")
    timestamp = str(int(time.time()))
    own = {"Content-Type": "application/json", "User-Agent": USER_AGENT, TIMESTAMP_HEADER: timestamp}
    # A `+Header=` in the URL adds a header but cannot replace one of ours (Apprise hands
    # the names over lowercased, hence the comparison).
    reserved = {name.lower() for name in (*own, SIGNATURE_HEADER)}
    headers = {
        name[1:]: value
        for name, value in qsd.items()
        if name.startswith("+") and name[1:].lower() not in reserved
    }
    headers.update(own)
    secret = unquote(str(meta.get("password") or ""))
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, raw)
    params = {name[1:]: value for name, value in qsd.items() if name.startswith("-")}
    timeout = (_seconds(qsd.get("cto")), _seconds(qsd.get("rto")))
    try:
        response = requests.post(
            url,
            data=raw,
            headers=headers,
            params=params or None,
            timeout=timeout,
            verify=bool(meta.get("verify", True)),
            allow_redirects=False,
        )
    except requests.Timeout as exc:
        _log.warning("webhook %s did not answer within %g s (%s)", where, max(timeout), type(exc).__name__)
        return False
    except requests.RequestException as exc:
        # The exception's text repeats the full URL (path tokens included): report its cause.
        _log.warning("webhook %s unreachable: %s", where, _cause(exc))
        return False
    with response:
        if not 200 <= response.status_code < 300:
            # Redirects are not followed: the signed body would go somewhere nobody chose.
            _log.warning("webhook %s answered HTTP %s %s", where, response.status_code, response.reason or "")
            return False
    return True


def _seconds(raw: str | None) -> float:
    try:
        value = float(raw) if raw else _DEFAULT_TIMEOUT_S
    except ValueError:
        return _DEFAULT_TIMEOUT_S
    return value if value > 0 else _DEFAULT_TIMEOUT_S


def _cause(exc: BaseException) -> str:
    """The innermost OS-level reason (`[Errno 111] Connection refused`), else the class
    name (`ReadTimeout`): what failed, without the URL that requests' messages carry."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return os_reason(current)
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return type(exc).__name__


# Registered at import (alerts.channels and alerts.delivery import this module). Called,
# not used as `@notify`, because the untyped Apprise decorator would erase the signature.
with warnings.catch_warnings():
    # Registering makes Apprise import all of its plugins; on Python 3.11 its PGP support
    # imports the deprecated `imghdr`. Import-time noise from a dependency, not ours to fix
    # (and an error under the test suite's filterwarnings=error).
    warnings.simplefilter("ignore", DeprecationWarning)
    NotificationManager().load_modules()  # type: ignore[no-untyped-call]
    for _scheme in SIGNED_SCHEMES:
        register = notify(  # type: ignore[no-untyped-call]
            on=_scheme, name="Usage portal signed webhook", body_format=apprise.NotifyFormat.TEXT
        )
        register(_post_signed)
