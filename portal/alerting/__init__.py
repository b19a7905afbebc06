"""Alert rules, channels, evaluation and delivery records (the database side of alerts/).

Rules (`rules.py`, `editing.py`: a customer's own, and a plan's defaults copied to each
subscriber), channels stored encrypted and shown masked (`channels.py`), the evaluation
that records what fires (`evaluate.py`, anomaly rules in `anomalies.py`), firings with a
pending delivery per channel (`firings.py`), claiming, attempts and retries
(`deliveries.py`), test notices, and the alerts API (`routes.py`). The actors are in
`workers/alerting.py`; the pure rules, messages and sending are in `alerts/`.

Tables (`models.py`): `alert_channels` (Apprise URLs and webhook signing secrets,
encrypted with a key derived from `PORTAL_SECRET_KEY`), `alert_rules`, `plan_alert_rules`,
`alert_firings` (unique per rule, period, level and kind, or per anomaly: the fire-once
guarantee), `alert_deliveries` (per firing and channel, or a test notice: status, lease,
next attempt) and `alert_delivery_attempts`. Rules are evaluated on usage and spend read
from Postgres (through `portal/usage/` and `portal/billing/`), never on the live view.

Redis keys: none. The debounce key `alerts:debounce:{c}` that schedules an evaluation after
new usage belongs to `workers/alerting.py`.
"""
