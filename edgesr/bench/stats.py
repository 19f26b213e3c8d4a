"""Latency statistics of a list of timings."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class LatencyStats:
    """Summary of per-run latencies, all in milliseconds."""

    runs: int
    min_ms: float
    median_ms: float
    mean_ms: float
    p90_ms: float
    max_ms: float
    std_ms: float

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in [0, 100]) of an ascending list."""
    if not sorted_values:
        raise ValueError("percentile of no values")
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summarize(latencies_ms: list[float]) -> LatencyStats:
    """min / median / mean / p90 / max / sample std of the timed runs."""
    values = sorted(latencies_ms)
    n = len(values)
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return LatencyStats(n, values[0], percentile(values, 50), mean, percentile(values, 90), values[-1], std)
