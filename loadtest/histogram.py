"""Exact-enough latency histograms that merge across processes and repeats.

Locust's own percentiles are rounded to whole milliseconds (and coarser above 100 ms),
which hides the sub-millisecond differences between the two backends. Each Locust
process records every request's float `response_time` here instead. Buckets grow
geometrically (like HDR histograms), so every recorded value is known to within
`PRECISION` (0.5%) whatever its magnitude, the histogram stays small (a few hundred
buckets), and two histograms merge by adding counts.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

PRECISION = 0.005
_LOG_BASE = math.log1p(PRECISION)
_FLOOR_MS = 1e-3  # values below one microsecond share the lowest bucket


@dataclass
class LatencyHistogram:
    """Latencies in milliseconds, in geometric buckets; `min`, `max` and `sum` are exact."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    total_ms: float = 0.0
    min_ms: float = math.inf
    max_ms: float = 0.0

    def record(self, value_ms: float) -> None:
        self.buckets[_bucket(value_ms)] += 1
        self.count += 1
        self.total_ms += value_ms
        self.min_ms = min(self.min_ms, value_ms)
        self.max_ms = max(self.max_ms, value_ms)

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """A new histogram holding both; neither input changes."""
        merged = LatencyHistogram(self.buckets + other.buckets)
        merged.count = self.count + other.count
        merged.total_ms = self.total_ms + other.total_ms
        merged.min_ms = min(self.min_ms, other.min_ms)
        merged.max_ms = max(self.max_ms, other.max_ms)
        return merged

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) in ms: the value at rank ceil(q% of count), nan if empty."""
        if self.count == 0:
            return math.nan
        rank = max(1, math.ceil(q / 100 * self.count))
        if rank >= self.count:
            return self.max_ms  # the top rank is known exactly
        seen = 0
        for index in sorted(self.buckets):
            seen += self.buckets[index]
            if seen >= rank:
                return min(max(_value(index), self.min_ms), self.max_ms)
        return self.max_ms

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.count if self.count else math.nan

    def to_json(self) -> dict[str, Any]:
        return {
            "precision": PRECISION,
            "count": self.count,
            "total_ms": self.total_ms,
            "min_ms": self.min_ms if self.count else None,
            "max_ms": self.max_ms,
            "buckets": {str(k): v for k, v in sorted(self.buckets.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        if data.get("precision", PRECISION) != PRECISION:
            raise ValueError(f"histogram precision {data['precision']} != {PRECISION}")
        hist = cls(Counter({int(k): int(v) for k, v in data["buckets"].items()}))
        hist.count = int(data["count"])
        hist.total_ms = float(data["total_ms"])
        hist.min_ms = math.inf if data["min_ms"] is None else float(data["min_ms"])
        hist.max_ms = float(data["max_ms"])
        return hist


def merge_all(histograms: list[LatencyHistogram]) -> LatencyHistogram:
    merged = LatencyHistogram()
    for hist in histograms:
        merged = merged.merge(hist)
    return merged


def _bucket(value_ms: float) -> int:
    return math.ceil(math.log(max(value_ms, _FLOOR_MS) / _FLOOR_MS) / _LOG_BASE)


def _value(index: int) -> float:
    """The middle of bucket `index` (its bounds are base^(index-1) and base^index)."""
    return _FLOOR_MS * math.exp((index - 0.5) * _LOG_BASE)
