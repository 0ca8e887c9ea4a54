"""A log-bucketed latency histogram: constant memory, percentiles within 1%."""

from __future__ import annotations

import math

import numpy as np

_MIN_S = 1e-5  # 10 microseconds
_MAX_S = 120.0
_GROWTH = 1.01  # bucket width 1%: percentile error below 1%
_BUCKETS = math.ceil(math.log(_MAX_S / _MIN_S) / math.log(_GROWTH)) + 2


class LatencyHistogram:
    """Counts of latencies in geometric buckets from 10 us to 120 s (under: first, over: last)."""

    def __init__(self) -> None:
        self._counts = np.zeros(_BUCKETS, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def record(self, seconds: float) -> None:
        self._counts[_bucket(seconds)] += 1
        self.count += 1
        self.total += seconds
        self.max = max(self.max, seconds)

    def percentile(self, q: float) -> float:
        """Upper edge of the bucket holding the q-th percentile (0 < q <= 100), in seconds."""
        if self.count == 0:
            return math.nan
        rank = math.ceil(q / 100 * self.count)
        index = int(np.searchsorted(np.cumsum(self._counts), max(rank, 1)))
        return min(_upper_edge(index), self.max)

    def summary_ms(self) -> dict[str, float | int]:
        """count, mean and p50/p90/p99/max in milliseconds."""
        if self.count == 0:
            return {"count": 0}
        return {
            "count": self.count,
            "mean": round(self.total / self.count * 1000, 4),
            "p50": round(self.percentile(50) * 1000, 4),
            "p90": round(self.percentile(90) * 1000, 4),
            "p99": round(self.percentile(99) * 1000, 4),
            "max": round(self.max * 1000, 4),
        }


def _bucket(seconds: float) -> int:
    if seconds <= _MIN_S:
        return 0
    return min(_BUCKETS - 1, 1 + int(math.log(seconds / _MIN_S) / math.log(_GROWTH)))


def _upper_edge(index: int) -> float:
    return _MIN_S * _GROWTH**index
