"""Reading usage: live (Redis) or billed (Postgres), by hour or by the customer's day.

A customer's usage of a meter as a series or a total (`service.py`, served by
`routes.py`), how hours combine into days and totals (`combine.py`, pure), and the recent
hours and days that `portal/usage/anomaly_rule.py` judges unusual (`anomalies.py`). The pages and
alert rules read usage through here.

Tables (`models.py`): `hourly_usage` (per customer, metric, local hour and group-by
values: value, count, latest) and `hourly_unique_values` (the distinct values of each hour
of a `unique_count` meter). This folder only reads them; the worker's persist transaction
writes them (`workers/persist.py`). Read directly, not through here, by bills
(`portal/billing/quantities.py`, in bulk), reconcile (`workers/reconcile.py`) and a few
pages (`portal/pages/usage_breakdown.py`, `manager/customers.py`, `manager/events.py`).

Redis keys: none of its own. Live reads go through `portal.live.store.LiveStore` (the
`lu:` hour hashes, and `ls:` sets unioned in an `lt:` scratch key); see
`portal/live/__init__.py`.
"""
