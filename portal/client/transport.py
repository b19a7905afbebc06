"""HTTP with the standard library, and the retry policy."""

from __future__ import annotations

import email.utils
import http.client
import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

USER_AGENT = "usage-portal-client/0.1"


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    retry_after: float | None = None

    def json(self) -> Any:
        return json.loads(self.body)


def reply_detail(reply: Reply, limit: int = 500) -> str:
    """What an error answer says, for an exception's message: the portal's `detail` and
    each `extra` item (the field and why: "Validation failed for POST /v1/entitlements/check:
    checks[0].customerId: Expected `str` of length <= 128"), or the body as text when it is
    not the portal's error JSON. At most `limit` characters."""
    text = reply.body.decode("utf-8", "replace")
    try:
        data = json.loads(reply.body)
    except ValueError:
        return text[:limit]
    if not isinstance(data, dict) or "detail" not in data:
        return text[:limit]
    extra = data.get("extra")
    items = extra if isinstance(extra, list) else [extra] if extra else []
    detail = str(data["detail"])
    parts = []
    for item in items:
        if isinstance(item, dict) and item.get("message"):
            message, key = str(item["message"]), item.get("key")
            if message in detail:  # the portal's own 422s repeat their message in `extra`
                continue
            parts.append(f"{key}: {message}" if key and str(key) not in message else message)
        else:
            parts.append(item if isinstance(item, str) else json.dumps(item, ensure_ascii=False))
    return (detail + (": " + "; ".join(parts) if parts else ""))[:limit]


class Transport(Protocol):
    def post(self, path: str, body: bytes) -> Reply:
        """POST `body` as JSON; return any HTTP answer, raise OSError on network errors."""


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class UrllibTransport:
    """One request per batch with `urllib.request`; no dependency beyond Python."""

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout

    def post(self, path: str, body: bytes) -> Reply:
        request = urllib.request.Request(
            self.base_url + path,
            data=body,
            method="POST",
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Content-Type": "application/json",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return Reply(
                    response.status, response.read(), parse_retry_after(response.headers.get("Retry-After"))
                )
        except urllib.error.HTTPError as exc:
            try:
                data = exc.read()
            except (OSError, http.client.HTTPException):
                data = b""
            return Reply(exc.code, data, parse_retry_after(exc.headers.get("Retry-After")))
        except http.client.HTTPException as exc:  # e.g. RemoteDisconnected, IncompleteRead
            raise OSError(f"HTTP error: {exc!r}") from exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: before retry n (1, 2, ...) wait a random time
    in [0, min(cap, base * 2**(n-1))], or what Retry-After asks (at most `max_retry_after`).
    Give up after `max_attempts` requests or once `max_elapsed` seconds have passed since
    the first one (None: no limit of that kind)."""

    base: float = 0.5
    cap: float = 30.0
    max_attempts: int | None = 10
    max_elapsed: float | None = 120.0
    max_retry_after: float = 60.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_retry_after)
        return rng.uniform(0.0, min(self.cap, self.base * (2 ** (retry - 1))))

    def gives_up(self, attempts: int, elapsed: float, next_delay: float) -> bool:
        if self.max_attempts is not None and attempts >= self.max_attempts:
            return True
        return self.max_elapsed is not None and elapsed + next_delay > self.max_elapsed
