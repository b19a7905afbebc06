"""Drop-in ingest endpoints for clients of OpenMeter, Lago and Stripe (see routes.py).

`POST /api/v1/events` (OpenMeter's CloudEvents, or Lago's event), `POST
/api/v1/events/batch` (Lago) and `POST /v1/billing/meter_events` (Stripe) turn each
foreign event into a native one (`cloudevents.py`, `lago.py`, `stripe.py`) and submit the
request's events all or nothing through the same ingestor as `POST /v1/events`
(`mapping.py`), so every rule and store of `portal/ingest/` applies.

Tables: none. Redis keys: none of its own. Through the ingestor it writes what
`portal/ingest/` writes (live markers and counters, `live:inflight`), and each request's
data-quality counts go through `portal/ingest/quality.py` (`quality:<day>`, as source
`openmeter`, `lago` or `stripe`).
"""
