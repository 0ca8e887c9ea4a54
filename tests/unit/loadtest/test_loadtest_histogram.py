"""The project's latency histogram (HDR): percentiles, coordinated-omission correction,
merging, JSON round trip; checked against exact sorts and hand-computed values."""

from __future__ import annotations

import math
import random

import pytest
from hdrh.histogram import HdrHistogram

from gateway.telemetry.histogram import (
    HIGHEST_US,
    LOWEST_US,
    SIGNIFICANT_FIGURES,
    LatencyHistogram,
    merge_all,
)

US = 1e-6


def _hist(seconds: list[float]) -> LatencyHistogram:
    hist = LatencyHistogram()
    for s in seconds:
        hist.record(s)
    return hist


def _rank_value(values: list[float], q: float) -> float:
    """HdrHistogram's percentile definition: the value at rank round-half-up(q% of n)."""
    ordered = sorted(values)
    rank = max(1, int(q / 100 * len(ordered) + 0.5))
    return ordered[rank - 1]


def test_percentiles_within_a_thousandth_of_the_exact_ones() -> None:
    rng = random.Random(0)
    values = [rng.lognormvariate(-6, 0.8) for _ in range(5_000)]  # around 2.5 ms
    hist = _hist(values)
    for q in (50, 90, 99, 99.9):
        exact = _rank_value(values, q)
        assert hist.percentile(q) == pytest.approx(exact, rel=1e-3, abs=1.5 * US)
    assert hist.count == len(values)
    assert hist.mean == pytest.approx(sum(values) / len(values), rel=1e-4)
    assert hist.max == pytest.approx(max(values), rel=1e-3)


def test_sub_millisecond_values_are_exact_to_the_microsecond() -> None:
    hist = _hist([120 * US, 121 * US, 450 * US])
    assert hist.percentile(50) == pytest.approx(121 * US)
    assert hist.percentile(100) == pytest.approx(450 * US)
    assert hist.summary_ms() == {
        "count": 3,
        "mean": round((120 + 121 + 450) / 3 / 1000, 4),
        "p50": 0.121,
        "p90": 0.45,
        "p99": 0.45,
        "max": 0.45,
    }


def test_corrected_histogram_matches_the_hand_computation() -> None:
    # nine answers of 100 us and one stall of 1000 us, expected interval 100 us: the stall
    # hides the requests that would have been sent at 100, 200, ... 900 us into it, which
    # would have waited 900, 800, ... 100 us. By hand: 19 values, ten of 100 us and
    # 200, 300, ..., 1000 us; p50 = rank 10 = 100 us, p90 = rank 17 = 800 us,
    # p99 = rank 19 = 1000 us; sum 10 * 100 + (200 + ... + 1000) = 6400 us.
    measured = _hist([100 * US] * 9 + [1000 * US])
    corrected = measured.corrected(100 * US)
    assert corrected.count == 19
    assert corrected.percentile(50) == pytest.approx(100 * US)
    assert corrected.percentile(90) == pytest.approx(800 * US)
    assert corrected.percentile(99) == pytest.approx(1000 * US)
    assert corrected.total == pytest.approx(6400 * US)
    # the uncorrected figures beside it: p90 never sees the stall
    assert measured.percentile(90) == pytest.approx(100 * US)
    assert measured.count == 10


def test_corrected_equals_recording_with_hdrhistograms_own_correction() -> None:
    rng = random.Random(1)
    values_us = [rng.randrange(200, 40_000) for _ in range(500)]
    reference = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    for v in values_us:
        reference.record_corrected_value(
            reference.get_lowest_equivalent_value(v), 1_000
        )  # the same bucket values ours corrects
    ours = _hist([v * US for v in values_us]).corrected(1_000 * US)
    assert ours.count == reference.get_total_count()
    for q in (50, 90, 99, 99.9):
        assert ours.percentile(q) == pytest.approx(reference.get_value_at_percentile(q) * US)


def test_correction_needs_a_positive_interval() -> None:
    with pytest.raises(ValueError, match="expected_interval_s"):
        _hist([1e-3]).corrected(0.0)


def test_merge_equals_recording_everything_in_one() -> None:
    a, b = [1e-3, 2e-3, 3e-3], [0.5e-3, 10e-3]
    merged = merge_all([_hist(a), _hist(b)])
    whole = _hist(a + b)
    assert merged.count == 5 and merged.total == pytest.approx(whole.total)
    for q in (20, 50, 80, 100):
        assert merged.percentile(q) == whole.percentile(q)


def test_count_at_or_below_a_limit() -> None:
    hist = _hist([1e-3] * 7 + [20e-3] * 3)
    assert hist.count_at_or_below(5e-3) == 7
    assert hist.count_at_or_below(20e-3) == 10
    assert hist.count_at_or_below(0.5e-3) == 0


def test_json_round_trip_and_empty() -> None:
    hist = _hist([1.5e-3, 2.5e-3, 0.7])
    again = LatencyHistogram.from_json(hist.to_json())
    assert again.count == 3 and again.total == hist.total
    assert again.percentile(99) == hist.percentile(99)
    empty = LatencyHistogram.from_json(LatencyHistogram().to_json())
    assert empty.count == 0 and math.isnan(empty.percentile(50)) and math.isnan(empty.mean)
    assert empty.summary_ms() == {"count": 0}


def test_garbage_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="HDR histogram"):
        LatencyHistogram.from_json({"hdr": "not base64 at all", "total_us": 0})


def test_out_of_range_values_are_clamped_not_lost() -> None:
    hist = _hist([-1.0, 3600.0])
    assert hist.count == 2
    assert hist.percentile(100) == pytest.approx(HIGHEST_US * US, rel=1e-3)


@pytest.mark.parametrize("n", [1, 4095, 4096, 4097, 10_000])
def test_pending_values_read_as_recording_each_at_once(n: int) -> None:
    """`record` defers the HDR work; every reader sees what hdrh's own `record_value` of
    each value, one at a time, gives (also across the pending limit, 4096)."""
    rng = random.Random(n)
    values = [rng.lognormvariate(-7, 0.6) for _ in range(n)]
    reference = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_FIGURES)
    hist = LatencyHistogram()
    for i, v in enumerate(values):
        reference.record_value(round(v / US))
        hist.record(v)
        if i == n // 2:  # a read half-way, then more values
            assert hist.count == i + 1
    assert hist.count == n
    assert hist.to_json()["hdr"] == reference.encode().decode("ascii")
    assert hist.percentile(99) == reference.get_value_at_percentile(99) / 1e6
    assert hist.total == pytest.approx(sum(round(v / US) for v in values) * US)
