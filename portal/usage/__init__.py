"""Reading usage: live (Redis) or billed (Postgres), by hour or by the customer's day.

A customer's usage of a meter as a series or a total (`service.py`, served by `routes.py`
with the answers of `schemas.py`), how hours combine into days and totals (`combine.py`,
pure), and the recent hours and days that `portal/usage/anomaly_rule.py` judges unusual
(`anomaly_detection.py`). The pages and alert rules read usage through here.

Tables (`models.py`): `hourly_usage` (per customer, metric, local hour and group-by
values: value, count, latest), `hourly_unique_values` (the distinct values of each hour
of a `unique_count` meter) and `daily_usage` (sum, count and max meters' hours rolled up
per local day, which bills read for the whole days of a window). Every statement on them
is in `repository.py`; other modules call it, never the tables. The worker's persist
transaction writes them through it (`workers/persist.py`: raw asyncpg unnest upserts, the
hot path); reconcile (`workers/reconcile.py`), bills (`portal/billing/quantities.py`, in
bulk) and the pages (`portal/pages/usage_breakdown.py`, `manager/events.py`) read them
through it.

Redis keys: none of its own. Live reads go through `portal.live.store.LiveStore` (the
`lu:` hour hashes, and `ls:` sets unioned in an `lt:` scratch key); see
`portal/live/__init__.py`.
"""
