"""Catalog request and response bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec

from portal.http.schemas import ID_PATTERN, NO_NUL, CamelStruct
from portal.infrastructure.periods import zone

Aggregation = Literal["sum", "count", "max", "unique_count", "latest"]
Identifier = Annotated[str, msgspec.Meta(min_length=1, max_length=128, pattern=ID_PATTERN)]
MetricName = Annotated[str, msgspec.Meta(min_length=1, max_length=100, pattern=ID_PATTERN)]
DimensionName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=NO_NUL)]
CurrencyCode = Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]


class CustomerCreate(CamelStruct):
    id: Identifier
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=200, pattern=NO_NUL)]
    timezone: Annotated[str, msgspec.Meta(pattern=NO_NUL)] = "UTC"
    currency: CurrencyCode = "USD"

    def __post_init__(self) -> None:
        try:
            zone(self.timezone)
        except ValueError as exc:
            raise ValueError(f"timezone: {exc}") from exc


class Customer(CamelStruct):
    id: str
    name: str
    timezone: str
    currency: str
    created_at: datetime


class MeterCreate(CamelStruct):
    metric_name: MetricName
    aggregation: Aggregation
    unit: Annotated[str, msgspec.Meta(min_length=1, max_length=50, pattern=NO_NUL)]
    group_by: list[DimensionName] = msgspec.field(default_factory=list)
    unique_by: DimensionName | None = None

    def __post_init__(self) -> None:
        if self.aggregation == "unique_count" and self.unique_by is None:
            raise ValueError("uniqueBy: required when aggregation is unique_count")
        if self.aggregation != "unique_count" and self.unique_by is not None:
            raise ValueError("uniqueBy: only allowed when aggregation is unique_count")
        if len(set(self.group_by)) != len(self.group_by):
            raise ValueError("groupBy: dimensions must not repeat")
        if len(self.group_by) > 5:
            raise ValueError("groupBy: at most 5 dimensions")


class Meter(CamelStruct):
    metric_name: str
    aggregation: Aggregation
    unit: str
    group_by: list[str]
    unique_by: str | None
    created_at: datetime
