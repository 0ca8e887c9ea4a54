"""Per-user statistics: estimates whose standard errors respect the routing key.

Assignment is sticky per routing key (the unit), but accuracy, errors and latency are
measured per request; one user's requests are correlated, so per-request formulas
overstate confidence. Every metric here is a ratio of per-unit sums, and its variance
comes from the delta method over units (Deng, Knoblich, Lu, "Applying the Delta Method
in Metric Analytics: A Practical Guide with Novel Ideas", KDD 2018, sections 3.1-3.3);
percentiles use the same paper's interval for quantile metrics (section 4.2). The
variance equals the cluster-robust (CR1, clusters = units) sandwich variance, which the
tests check against statsmodels.

The `*_from_sums` functions take running sums and broadcast over arrays, so simulations
evaluate thousands of looks at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]
_Z95 = 1.959963984540054  # scipy.stats.norm.ppf(0.975)


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
    value, se = ratio_se_from_sums(x.size, x.sum(), y.sum(), x @ x, y @ y, x @ y)
    return Estimate(float(value), float(se), int(x.size), int(y.sum()))


def difference(control: Estimate, candidate: Estimate) -> Estimate:
    """candidate - control for independent arms; `units` counts both arms."""
    se = math.hypot(control.se, candidate.se)
    return Estimate(
        candidate.value - control.value,
        se,
        control.units + candidate.units,
        control.n + candidate.n,
    )


def quantile(latency: Array, units: NDArray[np.int64], q: float) -> tuple[Estimate, float, float]:
    """The q-quantile (0-1) of `latency` with Deng et al.'s cluster-adjusted 95% interval.

    The share of requests at or below the estimate is a ratio metric over units; its
    interval [q - 1.96 se, q + 1.96 se] maps back through the empirical quantile function.
    The standard error reported is that interval's width over 2 x 1.96.

    Returns:
        (estimate, low, high); NaNs when `latency` is empty.
    """
    if latency.size == 0:
        return Estimate(math.nan, math.nan, 0, 0), math.nan, math.nan
    value = float(np.quantile(latency, q))
    _, index = np.unique(units, return_inverse=True)
    size = int(index.max()) + 1
    below = ratio(
        unit_sums(index, latency <= value, size), unit_sums(index, np.ones_like(latency), size)
    )
    if math.isnan(below.se):
        return Estimate(value, math.nan, below.units, below.n), math.nan, math.nan
    probs = np.clip([q - _Z95 * below.se, q + _Z95 * below.se], 0.0, 1.0)
    low, high = (float(v) for v in np.quantile(latency, probs))
    return Estimate(value, (high - low) / (2 * _Z95), below.units, below.n), low, high
