"""The project's one latency histogram: an HDR histogram (the `hdrhistogram` package).

The gateway's live per-arm statistics and every Locust process of the load test record
into it; the sweep merges the processes' histograms and reads percentiles from the sum.
Values are kept in integer microseconds from 1 us to 10 minutes with 3 significant
digits: exact to the microsecond below 2.048 ms, within 0.1% above (Gil Tene's
HdrHistogram; `hdrh.histogram.HdrHistogram` is its Python port). The count, the sum and
so the mean are exact. Importing this module costs no more than `hdrh` (no numpy).

Coordinated omission (Gil Tene, "How NOT to measure latency"): a closed-loop client that
waits for each answer sends nothing while the server stalls, so the stall's victims are
never measured. `corrected(expected_interval_s)` returns the histogram as it would be had
requests kept arriving every `expected_interval_s`: each recorded value v adds v - i,
v - 2i, ... down to i (HdrHistogram's `recordValueWithExpectedInterval`, applied after
the fact as Java's `copyCorrectedForCoordinatedOmission` does).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from hdrh.histogram import HdrHistogram

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes; longer values are recorded as 10 minutes
SIGNIFICANT_FIGURES = 3
_SUMMARY_PERCENTILES = (50.0, 90.0, 99.0)
_PENDING_AT_MOST = 4096


def _new_hdr() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)


def _to_us(seconds: float) -> int:
    return min(HIGHEST_US, max(0, round(seconds * 1e6)))


class LatencyHistogram:
    """Latencies in seconds; percentiles within 0.1%, count and sum exact.

    Not thread-safe: one owner records (the gateway's event loop, one Locust process).

    `record` only appends the value; the HDR counts take the pending values, equal ones
    once, when something reads them or `_PENDING_AT_MOST` are waiting. `hdrh`'s
    `record_value` is pure Python (~2.5 us a value measured here, on every gateway
    request); readers see exactly what recording each value at once would give.
    """

    def __init__(self) -> None:
        self._counts = _new_hdr()
        self._pending: list[int] = []
        self._total_us = 0

    @property
    def _hdr(self) -> HdrHistogram:
        """The HDR counts, every recorded value included."""
        if self._pending:
            self._record_pending()
        return self._counts

    def _record_pending(self) -> None:
        for value, count in Counter(self._pending).items():
            self._counts.record_value(value, count)
        self._pending.clear()

    def record(self, seconds: float, count: int = 1) -> None:
        """Add `count` latencies of `seconds` (negative values count as 0)."""
        value = _to_us(seconds)
        self._total_us += value * count
        if count != 1:
            self._hdr.record_value(value, count)
            return
        self._pending.append(value)
        if len(self._pending) >= _PENDING_AT_MOST:
            self._record_pending()

    @property
    def count(self) -> int:
        return int(self._hdr.get_total_count())

    @property
    def total(self) -> float:
        """The exact sum of the recorded latencies, seconds."""
        return self._total_us / 1e6

    @property
    def mean(self) -> float:
        """Seconds; nan when empty."""
        return self.total / self.count if self.count else math.nan

    @property
    def max(self) -> float:
        """The largest recorded latency (to the histogram's resolution), seconds; 0 if empty."""
        return float(self._hdr.get_max_value()) / 1e6 if self.count else 0.0

    def percentile(self, q: float) -> float:
        """The q-th percentile (0 < q <= 100) in seconds: the value at rank
        round(q% of count), to within 0.1%; nan when empty."""
        return self.percentiles((q,))[q]

    def percentiles(self, qs: tuple[float, ...]) -> dict[float, float]:
        """Several percentiles in one pass over the counts, seconds."""
        if self.count == 0:
            return {q: math.nan for q in qs}
        found = self._hdr.get_percentile_to_value_dict(list(qs))
        return {q: float(found[q]) / 1e6 for q in qs}

    def count_at_or_below(self, seconds: float) -> int:
        """How many recorded latencies were at most `seconds` (to the resolution)."""
        limit = _to_us(seconds)
        return sum(
            int(item.count_added_in_this_iter_step)
            for item in self._hdr.get_recorded_iterator()
            if self._hdr.get_lowest_equivalent_value(item.value_iterated_to) <= limit
        )

    def corrected(self, expected_interval_s: float) -> LatencyHistogram:
        """A copy corrected for coordinated omission at `expected_interval_s` (module doc).

        Raises:
            ValueError: if `expected_interval_s` is not positive.
        """
        if not expected_interval_s > 0:
            raise ValueError(f"expected_interval_s must be > 0, got {expected_interval_s}")
        interval = max(1, _to_us(expected_interval_s))
        out = LatencyHistogram()
        for value, count in self._recorded():
            while True:
                out._hdr.record_value(value, count)
                out._total_us += value * count
                if value <= interval:
                    break
                value -= interval
        return out

    def merge(self, other: LatencyHistogram) -> LatencyHistogram:
        """A new histogram holding both; neither input changes."""
        merged = LatencyHistogram()
        merged._hdr.add(self._hdr)
        merged._hdr.add(other._hdr)
        merged._total_us = self._total_us + other._total_us
        return merged

    def summary_ms(self) -> dict[str, float | int]:
        """count, mean and p50/p90/p99/max in milliseconds (only count when empty)."""
        if self.count == 0:
            return {"count": 0}
        found = self.percentiles(_SUMMARY_PERCENTILES)
        return {
            "count": self.count,
            "mean": round(self.mean * 1000, 4),
            **{f"p{q:g}": round(found[q] * 1000, 4) for q in _SUMMARY_PERCENTILES},
            "max": round(self.max * 1000, 4),
        }

    def to_json(self) -> dict[str, Any]:
        """HdrHistogram's compressed V2 encoding (base64) plus the exact sum."""
        return {
            "hdr": self._hdr.encode().decode("ascii"),
            "total_us": self._total_us,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LatencyHistogram:
        """The inverse of `to_json`.

        Raises:
            ValueError: if the data is not an encoded histogram.
        """
        try:
            decoded = HdrHistogram.decode(data["hdr"])
        except Exception as exc:  # hdrh raises its own cookie/length errors, zlib, binascii
            raise ValueError(f"not an encoded HDR histogram: {exc}") from exc
        hist = cls()
        hist._hdr.add(decoded)
        hist._total_us = int(data["total_us"])
        return hist

    def _recorded(self) -> list[tuple[int, int]]:
        return [
            (
                int(self._hdr.get_lowest_equivalent_value(item.value_iterated_to)),
                int(item.count_added_in_this_iter_step),
            )
            for item in self._hdr.get_recorded_iterator()
        ]


def merge_all(histograms: list[LatencyHistogram]) -> LatencyHistogram:
    """One histogram holding all of `histograms` (empty for an empty list)."""
    merged = LatencyHistogram()
    for hist in histograms:
        merged = merged.merge(hist)
    return merged
