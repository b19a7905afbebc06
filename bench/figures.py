"""Latency figures the benchmarks print: percentiles and a distribution summary."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def distribution(values: list[float], quantiles: Sequence[float] = (0.5, 0.95, 0.99)) -> dict[str, Any]:
    """{"n", "p50", "p95", "p99", "max"} (keys follow `quantiles`)."""
    summary: dict[str, Any] = {"n": len(values)}
    for q in quantiles:
        summary[f"p{round(q * 100):d}"] = percentile(values, q)
    summary["max"] = max(values) if values else None
    return summary
