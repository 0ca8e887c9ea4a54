"""The latency histogram: precision, percentiles, merging, JSON round trip."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest

from loadtest.histogram import PRECISION, LatencyHistogram, merge_all


def _hist(values: list[float]) -> LatencyHistogram:
    hist = LatencyHistogram()
    for v in values:
        hist.record(v)
    return hist


def test_percentiles_within_precision_of_exact() -> None:
    rng = random.Random(0)
    values = [rng.lognormvariate(0, 0.8) for _ in range(20_000)]
    hist = _hist(values)
    for q in (50, 90, 99, 99.9):
        exact = float(np.percentile(values, q, method="inverted_cdf"))
        assert hist.percentile(q) == pytest.approx(exact, rel=PRECISION)
    assert hist.max_ms == max(values) and hist.min_ms == min(values)
    assert hist.mean_ms == pytest.approx(sum(values) / len(values))


def test_sub_millisecond_values_keep_their_resolution() -> None:
    hist = _hist([0.120, 0.121, 0.450])
    assert hist.percentile(50) == pytest.approx(0.121, rel=PRECISION)
    assert hist.percentile(100) == 0.450


def test_merge_equals_recording_everything_in_one() -> None:
    a, b = [1.0, 2.0, 3.0], [0.5, 10.0]
    merged = merge_all([_hist(a), _hist(b)])
    whole = _hist(a + b)
    assert merged.buckets == whole.buckets
    assert (merged.count, merged.min_ms, merged.max_ms) == (5, 0.5, 10.0)
    assert merged.percentile(50) == whole.percentile(50)


def test_json_round_trip_and_empty() -> None:
    hist = _hist([1.5, 2.5])
    again = LatencyHistogram.from_json(hist.to_json())
    assert again.buckets == hist.buckets and again.total_ms == hist.total_ms
    empty = LatencyHistogram.from_json(LatencyHistogram().to_json())
    assert empty.count == 0 and math.isnan(empty.percentile(50))


def test_other_precision_is_refused() -> None:
    data = _hist([1.0]).to_json() | {"precision": 0.01}
    with pytest.raises(ValueError, match="precision"):
        LatencyHistogram.from_json(data)
