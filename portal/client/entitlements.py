"""`check()`: may this customer use more? `POST /v1/entitlements/check`, with a short local
cache so an application can ask on every request.

A cached answer is reused for `cache_seconds` (default half a second); its `lag_ms` then
includes the answer's age, so the caller always sees how far it may trail. Network errors
and 5xx answers raise `EntitlementUnavailable`: whether to serve or refuse without an answer
is the application's choice (docs/client.md).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

from portal.client.errors import AuthenticationError, UsageClientError
from portal.client.quantities import Quantity, quantity_text
from portal.client.transport import Transport, reply_detail

CHECK_PATH = "/v1/entitlements/check"


class EntitlementUnavailable(UsageClientError):
    """No answer: the portal could not be reached, or answered with an error."""


@dataclass(frozen=True, slots=True)
class Entitlement:
    """The answer for one customer and meter (see `EntitlementOut` in the API)."""

    customer_id: str
    meter: str
    allowed: bool
    used: Decimal
    limit: Decimal | None
    remaining: Decimal | None
    enforcement: str | None
    exceeded: bool
    period_start: datetime | None
    period_end: datetime | None
    as_of: datetime
    lag_ms: int
    error: str | None = None
    cached: bool = False


def _entitlement(data: dict[str, Any]) -> Entitlement:
    def number(key: str) -> Decimal | None:
        return None if data.get(key) is None else Decimal(data[key])

    def instant(key: str) -> datetime | None:
        return None if data.get(key) is None else datetime.fromisoformat(data[key])

    as_of = instant("asOf")
    assert as_of is not None
    return Entitlement(
        customer_id=data["customerId"],
        meter=data["meter"],
        allowed=bool(data["allowed"]),
        used=Decimal(data["used"]),
        limit=number("limit"),
        remaining=number("remaining"),
        enforcement=data.get("enforcement"),
        exceeded=bool(data.get("exceeded")),
        period_start=instant("periodStart"),
        period_end=instant("periodEnd"),
        as_of=as_of,
        lag_ms=int(data["lagMs"]),
        error=data.get("error"),
    )


Ask = tuple[str, str, Quantity | None]  # customer id, meter, quantity (None: any more)


# The portal answers at most this many questions per request (422 beyond): more are asked
# in several requests, answered in order as one list.
MAX_CHECKS_PER_REQUEST = 10_000


class EntitlementChecker:
    """Answers checks through `transport`, caching each (customer, meter, quantity) answer
    for `cache_seconds`. Thread-safe."""

    def __init__(
        self, transport: Transport, *, cache_seconds: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._transport = transport
        self._cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[tuple[str, str, str | None], tuple[float, Entitlement]] = {}
        self._lock = threading.Lock()

    def check_many(self, asks: Sequence[Ask]) -> list[Entitlement]:
        """The answers, in order (asked 10,000 to a request). A quantity the portal would
        refuse raises ValueError (TypeError for a non-number) before anything is asked: see
        `quantity_text`."""
        keys = [(c, m, None if q is None else quantity_text(q)) for c, m, q in asks]
        now = self._clock()
        out: list[Entitlement | None] = []
        missing: list[int] = []
        with self._lock:
            for i, key in enumerate(keys):
                hit = self._cache.get(key)
                if hit is not None and now - hit[0] < self._cache_seconds:
                    age_ms = int((now - hit[0]) * 1000)
                    out.append(replace(hit[1], lag_ms=hit[1].lag_ms + age_ms, cached=True))
                else:
                    out.append(None)
                    missing.append(i)
        if missing:
            wanted = [keys[i] for i in missing]
            answers = [
                answer
                for start in range(0, len(wanted), MAX_CHECKS_PER_REQUEST)
                for answer in self._ask(wanted[start : start + MAX_CHECKS_PER_REQUEST])
            ]
            with self._lock:
                if len(self._cache) > 100_000:  # bounded: an application checking many customers
                    self._cache.clear()
                for i, answer in zip(missing, answers, strict=True):
                    out[i] = answer
                    if answer.error is None:
                        self._cache[keys[i]] = (now, answer)
        return [e for e in out if e is not None]

    def _ask(self, keys: list[tuple[str, str, str | None]]) -> list[Entitlement]:
        checks = [{"customerId": c, "meter": m, **({} if q is None else {"quantity": q})} for c, m, q in keys]
        try:
            reply = self._transport.post(CHECK_PATH, json.dumps({"checks": checks}).encode())
        except OSError as exc:
            raise EntitlementUnavailable(f"entitlement check failed: {exc}") from exc
        if reply.status in (401, 403):
            raise AuthenticationError(reply.status, reply.body.decode(errors="replace")[:200])
        if reply.status != 200:
            raise EntitlementUnavailable(f"entitlement check answered {reply.status}: {reply_detail(reply)}")
        return [_entitlement(r) for r in reply.json()["results"]]
