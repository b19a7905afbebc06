"""One POST of an event body to an endpoint, signed, through the egress guard.

Headers: `Content-Type: application/json`, `User-Agent: usage-portal`,
`X-Usage-Portal-Event-Id: evt_…` (receivers dedupe on it), `X-Usage-Portal-Timestamp:
<unix seconds>` and `X-Usage-Portal-Signature: v1=<hex HMAC-SHA256(secret, "<ts>.<body>")>`,
the scheme of alert webhooks (alerts/signing.py, docs/webhooks.md). Redirects are not
followed; every connection is judged by alerts.egress at the moment it is made.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import requests

from alerts import egress
from alerts.destinations import Network
from alerts.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, USER_AGENT, sign
from portal.webhooks.schemas import AttemptResult

EVENT_ID_HEADER = "X-Usage-Portal-Event-Id"
_MAX_ERROR = 500


def post(
    url: str,
    body: str,
    *,
    event_id: str,
    secret: str,
    timestamp: int,
    timeout_s: float,
    allow: Iterable[Network],
) -> AttemptResult:
    """POST `body` to `url` once, signed with `secret` at `timestamp` (unix seconds). Every
    failure (refused destination, unreachable host, timeout, a non-2xx answer) is returned,
    never raised. Blocks for at most twice `timeout_s` (connect, then the answer's status
    line and headers), however slowly the endpoint answers."""
    raw = body.encode("utf-8")
    stamp = str(timestamp)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: stamp,
        SIGNATURE_HEADER: sign(secret, stamp, raw),
    }
    started = time.monotonic()
    status: int | None = None
    error: str | None = None
    with egress.guarded(allow) as refused, egress.cut_off_after(2 * timeout_s) as cut:
        try:
            # stream=True: the answer's body is never read (an endpoint cannot make us
            # download anything), only its status.
            with requests.post(
                url,
                data=raw,
                headers=headers,
                timeout=(timeout_s, timeout_s),
                allow_redirects=False,
                stream=True,
            ) as response:
                status = response.status_code
        except requests.Timeout:
            error = f"no answer within {timeout_s:g} s"
        except requests.RequestException as exc:
            error = f"unreachable: {_cause(exc)}"
        if cut():  # a cut socket reads as the end of the answer: what it said is not an answer
            status, error = None, f"no answer within {2 * timeout_s:g} s"
    duration_ms = int((time.monotonic() - started) * 1000)
    if refused:
        error = f"refused by the portal's destination rules: {'; '.join(dict.fromkeys(refused))}"
    elif status is not None and not 200 <= status < 300:
        error = f"answered HTTP {status}"
    ok = error is None and status is not None
    return AttemptResult(ok, status, None if error is None else error[:_MAX_ERROR], duration_ms)


def _cause(exc: BaseException) -> str:
    """The innermost OS-level reason (`[Errno 111] Connection refused`), else the class name:
    what failed, without the URL requests' messages repeat."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return f"[Errno {current.errno}] {current.strerror}" if current.errno else current.strerror
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return type(exc).__name__
