"""`POST /v1/events`, the short way (portal/http/short_way.py): one event of an ingest or
admin key, readable within the route's 64 KiB, ingested and answered as the route does it
(the same ingest, counts and answer; tests/ingest/test_fast_event.py compares both ways)."""

from __future__ import annotations

import msgspec

from portal.http import short_way
from portal.ingest.routes import ingest_counted, unavailable_message, unreadable
from portal.ingest.service import IngestUnavailable
from portal.state import PortalState

EVENT_PATH = "/v1/events"
MAX_BODY = 64 * 1024  # the route's own bound: beyond it the route answers 413

_ENCODER = msgspec.json.Encoder()


async def answer(
    portal: PortalState, scope: short_way.Scope, receive: short_way.Receive, send: short_way.Send
) -> short_way.Receive | None:
    """Ingest and answer the event in `scope`, or return the `receive` with which the route
    reads the same body (None: answered)."""
    caller, rest = await short_way.admit(portal, scope, receive, scope_needed="ingest", max_body=MAX_BODY)
    if caller is None or unreadable(caller.body) is not None:
        return rest
    with short_way.logged(caller):
        try:
            result, status = await ingest_counted(portal, [caller.body], single=True)
        except IngestUnavailable as exc:
            short_way.outage(scope, unavailable_message(exc))
            return rest
        except Exception:
            # The route answers it its way (a 500 logged with the request id). Had the event
            # been taken before the failure, the route finds it a duplicate: counted once.
            return rest
    await short_way.send_json(send, status, _ENCODER.encode(result), caller)
    return None
