"""The usage API's answers: a meter's usage as a series, and the anomalies found in it.

Values are exact decimals in strings (`portal.usage.combine.exact`); times are instants."""

from __future__ import annotations

from datetime import datetime

from portal.http.schemas import CamelStruct


class UsagePointOut(CamelStruct):
    start: datetime
    value: str


class UsageOut(CamelStruct):
    customer_id: str
    metric: str
    source: str
    granularity: str
    start: datetime
    end: datetime
    complete_through: datetime
    total: str
    series: list[UsagePointOut]


class AnomalyOut(CamelStruct):
    metric_name: str
    kind: str
    start: datetime
    end: datetime
    value: str
    expected: str
    granularity: str  # "hour" (start..end: an hour, or a span of silent hours) or "day"
