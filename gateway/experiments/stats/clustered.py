"""Per-user statistics: estimates whose standard errors respect the routing key.

Assignment is sticky per routing key (the unit), but accuracy, errors and latency are
measured per request; one user's requests are correlated, so per-request formulas
overstate confidence. Every metric here is a ratio of per-unit sums, and its variance
comes from the delta method over units (Deng, Knoblich, Lu, "Applying the Delta Method
in Metric Analytics: A Practical Guide with Novel Ideas", KDD 2018, sections 3.1-3.3),
which equals the cluster-robust (CR1, clusters = units) sandwich variance that the tests
check against statsmodels. Percentiles use a cluster (Poisson) bootstrap over units.

The `*_from_sums` functions take running sums and broadcast over arrays, so simulations
evaluate thousands of looks at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
RESAMPLES = 100
MAX_BOOT_ROWS = 10_000  # larger logs bootstrap a sample of whole units
Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975): 95% normal intervals
# Poisson(1) CDF (scipy.stats.poisson.cdf(range(12), 1)): weights from uniforms by lookup,
# 10x faster than numpy's Poisson sampler.
_POISSON_CDF = np.cumsum([math.exp(-1) / math.factorial(i) for i in range(12)])


@dataclass(frozen=True)
class Estimate:
    """A metric's estimate, its cluster-adjusted standard error and its sample.

    Attributes:
        value: the estimate (NaN without data).
        se: its standard error (NaN with fewer than two units).
        units: distinct routing keys behind it.
        n: requests (the ratio's denominator count).
    """

    value: float
    se: float
    units: int
    n: int


def unit_sums(units: NDArray[np.int64], values: ArrayLike, size: int) -> Array:
    """Per-unit sums of `values` (float64 array of length `size`, units as 0..size-1)."""
    sums = np.bincount(units, weights=np.asarray(values, dtype=float), minlength=size)
    return sums.astype(np.float64)


def ratio_se_from_sums(
    k: ArrayLike,
    sx: ArrayLike,
    sy: ArrayLike,
    sxx: ArrayLike,
    syy: ArrayLike,
    sxy: ArrayLike,
) -> tuple[Array, Array]:
    """Ratio sum(x)/sum(y) over `k` units and its delta-method standard error.

    Args:
        k: units; sx, sy: sums of the per-unit x and y; sxx, syy, sxy: sums of x^2, y^2, xy.

    Returns:
        (ratio, se) float64 arrays (NaN where k < 2 or sy == 0).
    """
    k, sx, sy = (np.asarray(a, dtype=float) for a in (k, sx, sy))
    sxx, syy, sxy = (np.asarray(a, dtype=float) for a in (sxx, syy, sxy))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(sy > 0, sx / sy, np.nan)
        # sum over units of (x_u - R y_u)^2, expanded into the running sums
        resid = sxx - 2 * ratio * sxy + ratio**2 * syy
        var = np.where(k > 1, np.maximum(resid, 0.0) * k / ((k - 1) * sy**2), np.nan)
    return ratio, np.sqrt(var)


def ratio(x_units: Array, y_units: Array) -> Estimate:
    """sum(x)/sum(y) with its delta-method standard error, from per-unit sums (units with
    y = 0 carry no data and are left out)."""
    keep = y_units > 0
    x, y = x_units[keep], y_units[keep]
    # elementwise sums, not BLAS dot products: a threaded BLAS stalls on a busy machine
    value, se = ratio_se_from_sums(
        x.size, x.sum(), y.sum(), (x * x).sum(), (y * y).sum(), (x * y).sum()
    )
    return Estimate(float(value), float(se), int(x.size), int(y.sum()))


def binomial_floor(estimate: Estimate) -> Estimate:
    """A proportion's standard error, at least the binomial one of the add-two estimate
    (x + 1) / (n + 2) (Agresti and Caffo, The American Statistician 54, 2000).

    Without it, 15 of 15 right has a standard error of 0, and any interval built on it
    claims certainty; with it, an all-right or all-wrong arm still needs data.
    """
    if estimate.n == 0 or math.isnan(estimate.se):
        return estimate
    shrunk = (estimate.value * estimate.n + 1) / (estimate.n + 2)
    floor = math.sqrt(shrunk * (1 - shrunk) / estimate.n)
    return Estimate(estimate.value, max(estimate.se, floor), estimate.units, estimate.n)


def difference(control: Estimate, candidate: Estimate) -> Estimate:
    """candidate - control for independent arms; `units` counts both arms."""
    se = math.hypot(control.se, candidate.se)
    return Estimate(
        candidate.value - control.value,
        se,
        control.units + candidate.units,
        control.n + candidate.n,
    )


def quantiles(
    latency: Array,
    units: NDArray[np.int64],
    qs: Sequence[float],
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> list[tuple[Estimate, float, float]]:
    """Each q-quantile (0-1) of `latency` with a cluster bootstrap over units.

    A Poisson bootstrap (Chamandy et al., "Estimating uncertainty for massive data
    streams", Google 2012): every unit gets a Poisson(1) weight, shared by all its
    requests, and the quantile is recomputed on the weighted requests. Resampling whole
    units keeps one user's correlated requests together, so a user sending 40% of the
    traffic makes the interval wide, as it should (the delta method for quantiles, Deng
    et al. section 4.2, maps back through that user's narrow latency band and does not).
    Seeded: the same data give the same interval.

    Returns:
        per q: (estimate with the bootstrap standard error, 2.5% and 97.5% bootstrap
        percentiles); NaN intervals with fewer than two units, NaNs without data.
    """
    if latency.size == 0:
        return [(Estimate(math.nan, math.nan, 0, 0), math.nan, math.nan) for _ in qs]
    values = np.quantile(latency, qs)
    _, index = np.unique(units, return_inverse=True)
    k, n = int(index.max()) + 1, int(latency.size)
    if k < 2:
        return [(Estimate(float(v), math.nan, k, n), math.nan, math.nan) for v in values]
    rng = np.random.default_rng(seed)
    shrink, (latency, index, k_boot) = _capped(latency, index, k, rng)
    boot = _bootstrap_quantiles(latency, index, k_boot, qs, resamples, rng)
    se = boot.std(axis=1, ddof=1) * shrink
    low, high = np.percentile(boot, [2.5, 97.5], axis=1)
    if shrink < 1:  # a subsample's spread, scaled to all units: a normal interval
        low, high = values - Z95 * se, values + Z95 * se
    return [
        (Estimate(float(v), float(s), k, n), float(lo), float(hi))
        for v, s, lo, hi in zip(values, se, low, high, strict=True)
    ]


def _capped(
    latency: Array, index: NDArray[np.intp], k: int, rng: np.random.Generator
) -> tuple[float, tuple[Array, NDArray[np.intp], int]]:
    """At most ~MAX_BOOT_ROWS requests, as a seeded sample of whole units, and the factor
    sqrt(sampled units / units) that scales the sample's standard error to all units (a
    quantile's variance falls as 1/units when units are exchangeable)."""
    if latency.size <= MAX_BOOT_ROWS:
        return 1.0, (latency, index, k)
    keep_units = rng.random(k) < MAX_BOOT_ROWS / latency.size
    keep_units[rng.integers(k)] = True  # never empty
    _, sub_index = np.unique(index[keep_units[index]], return_inverse=True)
    k_sub = int(keep_units.sum())
    return math.sqrt(k_sub / k), (latency[keep_units[index]], sub_index, k_sub)


def quantile(latency: Array, units: NDArray[np.int64], q: float) -> tuple[Estimate, float, float]:
    """One quantile of `quantiles`."""
    return quantiles(latency, units, [q])[0]


def _bootstrap_quantiles(
    latency: Array,
    index: NDArray[np.intp],
    k: int,
    qs: Sequence[float],
    resamples: int,
    rng: np.random.Generator,
) -> Array:
    """(len(qs), resamples) weighted quantiles (inverted CDF) under Poisson unit weights."""
    order = np.argsort(latency, kind="stable")
    x, unit = latency[order], index[order]
    weights = np.searchsorted(_POISSON_CDF, rng.random((resamples, k))).astype(np.float32)
    cumulative = np.cumsum(weights[:, unit], axis=1)
    total = cumulative[:, -1:]
    out = np.empty((len(qs), resamples))
    for i, q in enumerate(qs):
        position = np.minimum((cumulative < q * total).sum(axis=1), x.size - 1)
        out[i] = x[position]
    return out
