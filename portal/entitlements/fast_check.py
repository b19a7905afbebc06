"""`POST /v1/entitlements/check`, the short way (portal/http/short_way.py): a check of an
ingest or admin key whose body decodes as `ChecksIn`, answered as the route answers it.

With this and the quick reads of the live view (portal/live/quick_reads.py), a single
check's web CPU went from 566 µs to ~130 µs (bench/entitlements.py, no ingest)."""

from __future__ import annotations

import msgspec

from portal.entitlements import service
from portal.entitlements.routes import OUTAGES, outage_message
from portal.entitlements.schemas import ChecksIn, ChecksOut
from portal.http import short_way
from portal.state import PortalState

CHECK_PATH = "/v1/entitlements/check"
# Enough for the API's 10,000 checks of ordinary names; a larger body takes the documented
# route, whose 5 MiB bound and 413 apply as to any other.
MAX_BODY = 1024 * 1024

_DECODER = msgspec.json.Decoder(ChecksIn)
_ENCODER = msgspec.json.Encoder()


async def answer(
    portal: PortalState, scope: short_way.Scope, receive: short_way.Receive, send: short_way.Send
) -> short_way.Receive | None:
    """Answer the check in `scope`, or return the `receive` with which the route reads the
    same body (None: answered)."""
    caller, rest = await short_way.admit(portal, scope, receive, scope_needed="ingest", max_body=MAX_BODY)
    if caller is None:
        return rest
    try:
        checks = _DECODER.decode(caller.body)
    except Exception:  # not a ChecksIn (or nested past any sense): the route says why
        return rest
    with short_way.logged(caller):
        try:
            results = await service.check(portal.entitlements, checks.checks, now=portal.now())
        except OUTAGES as exc:
            short_way.outage(scope, outage_message(exc))
            return rest
        except Exception:  # the route answers it its way (a 500 logged with the request id)
            return rest
    await short_way.send_json(send, 200, _ENCODER.encode(ChecksOut(results)), caller)
    return None
