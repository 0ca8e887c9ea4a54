"""The analysis's figures from the database's aggregates (`log.aggregates`), not rows.

The same figures as the row path (`figures`, `srm`, `paired` on a `LogFrame`), from
per-arm sums of per-unit sums: a delta-method ratio needs only k, sum x, sum y, sum x^2,
sum y^2, sum xy over units (`clustered.ratio_se_from_sums`), so the counts are exact and
the ratios, intervals, confidence sequences and p-values are the row path's, bit for bit
where the sums are of integers. Percentiles come from the arm's `LatencySample` (every
successful request up to `aggregates.SAMPLE_ROWS`, else a hashed sample of whole units:
see `log.aggregates`). Memory: the sums are sized by arms and looks; the samples by
`SAMPLE_ROWS` per arm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from gateway.experiments.log.aggregates import (
    ArmLook,
    ExperimentAggregates,
    LatencySample,
    PairedSums,
    RatioSums,
)
from gateway.experiments.stats import clustered as cl
from gateway.experiments.stats.figures import compare, history_of, proportion_interval, r
from gateway.experiments.stats.paired import latency_difference, mcnemar_figures


def ratio_of(sums: RatioSums) -> cl.Estimate:
    """sum(x)/sum(y) with its delta-method standard error, as `clustered.ratio` gives
    from the per-unit sums behind `sums`."""
    value, se = cl.ratio_se_from_sums(sums.k, sums.sx, sums.sy, sums.sxx, sums.syy, sums.sxy)
    return cl.Estimate(float(value), float(se), sums.k, int(sums.sy))


def _upto(sample: LatencySample, cut: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(latencies, unit codes) of the sample's requests at or before `cut` (None: all)."""
    keep = slice(None) if cut is None else sample.ts <= cut
    units = sample.unit[keep]
    codes = np.unique(units, return_inverse=True)[1].reshape(-1) if units.size else units
    return sample.latency_ms[keep], np.asarray(codes, dtype=np.int64)


def estimates_of(look: ArmLook, sample: LatencySample, cut: float | None) -> dict[str, cl.Estimate]:
    """`figures.estimates` of one arm at one look (the sample's rows up to `cut`)."""
    out = {
        "accuracy": cl.binomial_floor(ratio_of(look.accuracy)),
        "error_rate": cl.binomial_floor(ratio_of(look.errors)),
    }
    latency, units = _upto(sample, cut)
    p50, p99 = cl.quantiles(latency, units, (0.5, 0.99))
    return {**out, "latency_p50_ms": p50[0], "latency_p99_ms": p99[0]}


def arm_figures_of(aggregates: ExperimentAggregates, arm: str) -> dict[str, Any]:
    """`figures.arm_figures` of one arm."""
    final, sample = aggregates.looks[arm][-1], aggregates.latency[arm]
    errors, acc = cl.binomial_floor(ratio_of(final.errors)), ratio_of(final.accuracy)
    acc = cl.binomial_floor(acc)
    latency, units = _upto(sample, None)
    found = cl.quantiles(latency, units, (0.5, 0.9, 0.99))
    compared, agreed = aggregates.shadow[arm]
    return {
        "requests": int(final.errors.sy),
        "units": final.errors.k,
        "errors": int(final.errors.sx),
        "error_rate": {"value": r(errors.value), "ci95": proportion_interval(errors)},
        "latency_ms": {
            f"p{q}": {"value": r(value.value, 4), "ci95": [r(low, 4), r(high, 4)]}
            for q, (value, low, high) in zip((50, 90, 99), found, strict=True)
        },
        "accuracy": {
            "labelled": acc.n,
            "correct": round(acc.value * acc.n) if acc.n else 0,
            "value": r(acc.value),
            "ci95": proportion_interval(acc),
        },
        "shadow": {
            "compared": compared,
            "agreement": r(agreed / compared if compared else math.nan),
        },
    }


def differences_of(
    aggregates: ExperimentAggregates, control: str, candidate: str, alpha: float, look: int = -1
) -> dict[str, Any]:
    """`figures.differences` at one look (-1: every row)."""
    cuts = aggregates.cuts
    cut = None if look == -1 or look >= len(cuts) else float(cuts[look])
    a = estimates_of(aggregates.looks[control][look], aggregates.latency[control], cut)
    b = estimates_of(aggregates.looks[candidate][look], aggregates.latency[candidate], cut)
    return compare(a, b, alpha)


def history_of_aggregates(
    aggregates: ExperimentAggregates, control: str, candidate: str, alpha: float
) -> list[dict[str, Any]]:
    """`figures.history`: the differences at each of the aggregates' cuts."""
    return history_of(
        (float(ts), units, differences_of(aggregates, control, candidate, alpha, j))
        for j, (ts, units) in enumerate(zip(aggregates.cuts, aggregates.units_at, strict=True))
    )


def paired_of(paired: PairedSums | None) -> dict[str, Any] | None:
    """`paired.paired_analysis` from the database's pair counts and sums."""
    if paired is None:
        return None
    return {
        "pairs": paired.pairs,
        "disagreements": paired.disagreements,
        "accuracy": mcnemar_figures(paired.labelled, paired.control_only, paired.candidate_only),
        "latency_ms": latency_difference(ratio_of(paired.latency), paired.median_diff_ms),
    }
