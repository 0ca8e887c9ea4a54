"""Anytime-valid inference: confidence sequences and always-valid p-values.

A gateway's experiment is watched live, so every figure it shows must stay valid however
often it is read. Both constructions here come from one Gaussian mixture martingale over
the effect (Robbins 1970; Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform, nonparametric,
nonasymptotic confidence sequences", Ann. Statist. 2021, arXiv:1810.08240, eq. (14) and
Proposition 5), applied to an asymptotically normal estimate and its standard error as in
Waudby-Smith et al., "Time-uniform central limit theory and asymptotic confidence
sequences", arXiv:2103.06476 (the method GrowthBook ships as its sequential testing):

- with `n` units, standard error `se` and mixing scale `rho` (per unit), the mixture
  likelihood ratio of "effect = theta0" is

      Lambda = (1 + n rho^2)^(-1/2) * exp(z^2 n rho^2 / (2 (1 + n rho^2))),  z = (est - theta0) / se

  which is the normal-mixture mSPRT statistic of Johari, Pekelis, Walsh, "Always valid
  inference", arXiv:1512.04922, section 4 (mixing variance tau^2 = rho^2 se^2 n);
- the always-valid p-value is min(1, 1 / Lambda), made monotone by a running minimum over
  the looks taken (Johari et al., Proposition 2);
- the (1 - alpha) confidence sequence is est +/- se * m(n), the values of theta0 whose
  Lambda stays below 1 / alpha, with m(n) = sqrt(2 (1 + n rho^2) / (n rho^2) *
  log(sqrt(1 + n rho^2) / alpha)).

`rho` is tuned so the sequence is tightest at `tuned_units` (Howard et al., section 3.5):
rho^2 = (-2 log alpha + log(1 - 2 log alpha)) / tuned_units. Validity does not depend on
the tuning, only width does. Every function broadcasts over numpy arrays, so simulations
run thousands of experiments at once.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

TUNED_UNITS = 5000  # GrowthBook's default "sequential tuning parameter"

Array = NDArray[np.float64]


def mixing_rho2(alpha: float, tuned_units: float = TUNED_UNITS) -> float:
    """rho^2 that makes the confidence sequence tightest at `tuned_units` units."""
    log_a = -2.0 * np.log(alpha)
    return float((log_a + np.log(1.0 + log_a)) / tuned_units)


def boundary_multiplier(n: ArrayLike, alpha: float, tuned_units: float = TUNED_UNITS) -> Array:
    """m(n): the confidence sequence's half-width in standard errors after `n` units.

    Args:
        n: units seen so far (positive; array-like broadcasts).
        alpha: the error rate over all looks, in (0, 1).
        tuned_units: where the sequence is tightest.

    Returns:
        float64 array shaped like `n` (NaN where n <= 0); always wider than the fixed-n z quantile.
    """
    v = np.asarray(n, dtype=float) * mixing_rho2(alpha, tuned_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        m = np.sqrt(2.0 * (1.0 + v) / v * np.log(np.sqrt(1.0 + v) / alpha))
    return np.where(v > 0, m, np.nan)


def confidence_sequence(
    estimate: ArrayLike,
    se: ArrayLike,
    n: ArrayLike,
    alpha: float,
    tuned_units: float = TUNED_UNITS,
) -> tuple[Array, Array]:
    """The (1 - alpha) asymptotic confidence sequence est +/- se * m(n).

    Returns:
        (lower, upper) float64 arrays; NaN where `se` or `estimate` is NaN.
    """
    half = np.asarray(se, dtype=float) * boundary_multiplier(n, alpha, tuned_units)
    est = np.asarray(estimate, dtype=float)
    return est - half, est + half


def always_valid_p(
    estimate: ArrayLike,
    se: ArrayLike,
    n: ArrayLike,
    alpha: float,
    theta0: float = 0.0,
    tuned_units: float = TUNED_UNITS,
) -> Array:
    """The mSPRT p-value of "effect = theta0" at one look: min(1, 1 / Lambda).

    `alpha` only tunes the mixing scale (as the confidence sequence's), so p < alpha
    exactly when the (1 - alpha) sequence excludes `theta0`. A zero standard error gives
    p = 1 when the estimate equals `theta0` and 0 otherwise.

    Returns:
        float64 array in [0, 1] (NaN where the inputs are NaN).
    """
    est, s = np.asarray(estimate, dtype=float), np.asarray(se, dtype=float)
    v = np.asarray(n, dtype=float) * mixing_rho2(alpha, tuned_units)
    with np.errstate(divide="ignore", invalid="ignore"):
        z2 = np.where(s > 0, ((est - theta0) / s) ** 2, np.where(est == theta0, 0.0, np.inf))
        log_lambda = -0.5 * np.log1p(v) + z2 * v / (2.0 * (1.0 + v))
    p = np.minimum(1.0, np.exp(-log_lambda))
    return np.where(np.isnan(est) | np.isnan(s), np.nan, p)


def running_min(p_values: ArrayLike) -> Array:
    """Always-valid p-values over successive looks: each the least so far (NaN skipped)."""
    p = np.asarray(p_values, dtype=float)
    least = np.minimum.accumulate(np.where(np.isnan(p), np.inf, p), axis=-1)
    return np.where(np.isinf(least), np.nan, least)
