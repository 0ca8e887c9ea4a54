"""The statistics behind an experiment's verdict, each checked against scipy in the tests.

Pure functions of numbers and arrays: no log, no settings.
"""

from __future__ import annotations

import math
from types import ModuleType

import numpy as np

_BOOT_MAX_N = 10_000  # bootstrap on at most this many values (a seeded subsample)
_BOOT_CHUNK = 100  # resamples per step, to bound memory


def _scipy_stats() -> ModuleType:
    """scipy.stats on first use: importing it costs the gateway ~0.8 s at start-up, and
    only the analysis endpoints need it."""
    from scipy import stats

    return stats


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion (good near 0 and 1 and for small n)."""
    if n == 0:
        return (math.nan, math.nan)
    z = float(_scipy_stats().norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def bootstrap_percentile_ci(
    values: np.ndarray, q: float, confidence: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the q-th percentile (0-100) of `values`."""
    rng = np.random.default_rng(seed)
    x = _capped(np.asarray(values, dtype=float), rng)
    if x.size == 0:
        return (math.nan, math.nan)
    estimates = _resampled_percentiles(x, q, resamples, rng)
    return _interval(estimates, confidence)


def bootstrap_difference_ci(
    a: np.ndarray, b: np.ndarray, q: float, confidence: float = 0.95, resamples: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:  # fmt: skip
    """Percentile-bootstrap interval of percentile_q(b) - percentile_q(a)."""
    rng = np.random.default_rng(seed)
    x, y = _capped(np.asarray(a, float), rng), _capped(np.asarray(b, float), rng)
    if x.size == 0 or y.size == 0:
        return (math.nan, math.nan)
    diff = _resampled_percentiles(y, q, resamples, rng) - _resampled_percentiles(
        x, q, resamples, rng
    )
    return _interval(diff, confidence)


def mann_whitney_u(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sided Mann-Whitney U test (normal approximation, tie and continuity
    corrected, as scipy's `method="asymptotic"`). Returns (U of `a`, p-value)."""
    x, y = np.asarray(a, float), np.asarray(b, float)
    n1, n2 = x.size, y.size
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    ranks = _scipy_stats().rankdata(np.concatenate([x, y]))
    u1 = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2)
    n = n1 + n2
    _, ties = np.unique(ranks, return_counts=True)
    tie_term = float((ties**3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie_term))
    if sigma == 0:
        return (u1, 1.0)
    big_u = max(u1, n1 * n2 - u1)
    z = (big_u - n1 * n2 / 2 - 0.5) / sigma
    return (u1, float(min(1.0, 2 * _scipy_stats().norm.sf(z))))


def two_proportion_z_test(k1: int, n1: int, k2: int, n2: int) -> tuple[float, float]:
    """Pooled two-proportion z test, two-sided. Returns (z for p2 - p1, p-value)."""
    if n1 == 0 or n2 == 0:
        return (math.nan, math.nan)
    pooled = (k1 + k2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return (0.0, 1.0)
    z = (k2 / n2 - k1 / n1) / se
    return (z, float(2 * _scipy_stats().norm.sf(abs(z))))


def sample_size_two_proportions(
    p1: float, p2: float, alpha: float = 0.05, power: float = 0.8
) -> int | None:
    """Per-arm sample size to detect p1 vs p2 with a two-sided test (no continuity
    correction; e.g. 0.5 vs 0.6 at alpha 0.05 and power 0.8 needs 388). None if p1 == p2."""
    if p1 == p2:
        return None
    z_a, z_b = _scipy_stats().norm.ppf(1 - alpha / 2), _scipy_stats().norm.ppf(power)
    mean = (p1 + p2) / 2
    top = z_a * math.sqrt(2 * mean * (1 - mean)) + z_b * math.sqrt(p1 * (1 - p1) + p2 * (1 - p2))
    return math.ceil(top**2 / (p1 - p2) ** 2)


def _capped(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return x if x.size <= _BOOT_MAX_N else rng.choice(x, _BOOT_MAX_N, replace=False)


def _resampled_percentiles(
    x: np.ndarray, q: float, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    out = []
    for start in range(0, resamples, _BOOT_CHUNK):
        size = min(_BOOT_CHUNK, resamples - start)
        idx = rng.integers(0, x.size, size=(size, x.size))
        out.append(np.percentile(x[idx], q, axis=1))
    return np.concatenate(out)


def _interval(estimates: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(estimates, [tail, 100 - tail])
    return (float(low), float(high))
