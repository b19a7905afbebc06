"""Alert rules, channels, evaluation and delivery records (the database side of alerts/).

Owns the tables (`models.py`): `alert_channels` (Apprise URLs and webhook signing secrets,
encrypted with a key derived from `PORTAL_SECRET_KEY`), `alert_rules`, `plan_alert_rules`,
`alert_firings` (unique per rule, period, level and kind, or per anomaly: the fire-once
guarantee), `alert_deliveries` (per firing and channel, or a test notice: status, lease,
next attempt) and `alert_delivery_attempts`. Rules are evaluated on usage and spend read
from Postgres (through `portal/usage/` and `portal/billing/`), never on the live view.

Modules:
- `models.py`: the six table models; `schemas.py`: API bodies and the repository's read shapes;
- `repository/`: every query on the six tables, one module per group of tables (other
  modules call it, never the tables);
- `channels.py`: destinations checked, stored encrypted, shown masked, decrypted to send;
- `rules.py`: a customer's rules and a plan's defaults copied to each subscriber;
  `editing.py`: changing a rule in place;
- `evaluate.py`: evaluating threshold rules and recording what fires; `anomalies.py`: the
  same for anomaly rules; `firings.py`: a firing's stored notice and its pending deliveries;
- `deliveries.py`: claiming a delivery under a lease, recording attempts, retries, listings;
- `notices.py`: test notices to a channel; `routes.py`: the alerts API.
None of them commits: the request or the actor owns the transaction. The actors are in
`workers/alerting.py`; the pure rules, messages and sending are in `alerts/`.

Redis keys: none. The debounce key `alerts:debounce:{c}` that schedules an evaluation after
new usage belongs to `workers/alerting.py`.
"""
