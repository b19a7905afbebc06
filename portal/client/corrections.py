"""`cancel()` and `amend()`: correct an event the client sent (`POST /v1/events/{id}/cancel`
and `/amend`), with a reason. Sent at once, not buffered: a correction is an answer the
caller waits for (the portal refuses one it cannot make: unknown event, already cancelled,
outside the lateness window)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from portal.client.errors import AuthenticationError, UsageClientError
from portal.client.quantities import Quantity, quantity_text
from portal.client.transport import Transport, reply_detail


class CorrectionRefused(UsageClientError):
    """The portal refused the correction (404, 409, 422): `status` and its `detail`."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"correction refused ({status}): {detail}")
        self.status = status
        self.detail = detail


class CorrectionUnavailable(UsageClientError):
    """No answer (network error or 5xx): the correction may or may not be made; sending it
    again is safe (a second cancel is refused with 409, an amend to the same quantity with 422)."""


@dataclass(frozen=True, slots=True)
class Correction:
    id: int
    customer_id: str
    event_id: str
    kind: str
    quantity_before: Decimal
    quantity_after: Decimal | None
    reason: str
    created_at: datetime
    invoice_id: int | None


def _correction(data: dict[str, Any]) -> Correction:
    after = data.get("quantityAfter")
    return Correction(
        id=int(data["id"]),
        customer_id=data["customerId"],
        event_id=data["eventId"],
        kind=data["kind"],
        quantity_before=Decimal(data["quantityBefore"]),
        quantity_after=None if after is None else Decimal(after),
        reason=data["reason"],
        created_at=datetime.fromisoformat(data["createdAt"]),
        invoice_id=data.get("invoiceId"),
    )


def amend_body(customer_id: str, quantity: Quantity, reason: str) -> dict[str, str]:
    """An amend's body; a quantity the portal would refuse raises ValueError (TypeError for
    a non-number) before anything is sent: see `quantity_text`."""
    return {"customerId": customer_id, "quantity": quantity_text(quantity), "reason": reason}


# How long a correction waits, in all, for an event the portal has accepted but not yet
# recorded (its 409 carries Retry-After): recording takes well under a second normally, and
# a few seconds while a worker restarts.
NOT_YET_PATIENCE_S = 30.0


def send_correction(
    transport: Transport,
    event_id: str,
    action: str,
    body: dict[str, str],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Correction:
    """POST the correction; an event accepted a moment ago but not recorded yet (409 with
    Retry-After) is asked about again, as told, for up to `NOT_YET_PATIENCE_S` seconds."""
    path = f"/v1/events/{quote(event_id, safe='')}/{action}"
    payload = json.dumps(body).encode()
    deadline = clock() + NOT_YET_PATIENCE_S
    while True:
        try:
            reply = transport.post(path, payload)
        except OSError as exc:
            raise CorrectionUnavailable(f"{action} of {event_id} failed: {exc}") from exc
        wait = reply.retry_after
        if reply.status != 409 or wait is None or clock() + wait > deadline:
            break
        sleep(wait)
    if reply.status in (401, 403):
        raise AuthenticationError(reply.status, reply.body.decode(errors="replace")[:500])
    if reply.status >= 500:
        raise CorrectionUnavailable(f"{action} of {event_id} answered {reply.status}: {reply_detail(reply)}")
    if reply.status != 200:
        raise CorrectionRefused(reply.status, reply_detail(reply))
    return _correction(reply.json())
