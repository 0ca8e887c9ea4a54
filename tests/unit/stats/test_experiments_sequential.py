"""Anytime-valid statistics against the mixture martingale they come from (integrated
numerically with scipy) and against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats

from gateway.experiments.stats import sequential as sq


def _mixture_lambda(estimate: float, se: float, n: float, alpha: float) -> float:
    """Johari et al. (arXiv:1512.04922) section 4: the likelihood ratio of effect d against
    0, exp(d est I - d^2 I / 2) with information I = 1/se^2, averaged over d ~ N(0, tau^2),
    tau^2 = rho^2 n se^2; integrated numerically, not by the closed form under test."""
    info, tau = 1 / se**2, math.sqrt(sq.mixing_rho2(alpha) * n) * se

    def integrand(d: float) -> float:
        return math.exp(d * estimate * info - d * d * info / 2) * stats.norm.pdf(d, 0, tau)

    value, _ = integrate.quad(integrand, -12 * tau, 12 * tau, points=[0, estimate], limit=200)
    return value


@pytest.mark.parametrize(("estimate", "se", "n"), [(0.01, 0.004, 2000), (-0.3, 0.2, 50),
                                                   (2.0, 0.5, 20000), (0.0, 1.0, 100)])  # fmt: skip
def test_p_value_is_the_inverse_mixture_likelihood_ratio(
    estimate: float, se: float, n: float
) -> None:
    expected = min(1.0, 1 / _mixture_lambda(estimate, se, n, 0.05))
    assert float(sq.always_valid_p(estimate, se, n, 0.05)) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(("n", "alpha"), [(100, 0.05), (5000, 0.05), (40000, 0.01), (10, 0.1)])
def test_sequence_edge_is_where_the_mixture_reaches_one_over_alpha(n: int, alpha: float) -> None:
    se = 0.3
    edge = optimize.brentq(lambda e: _mixture_lambda(e, se, n, alpha) - 1 / alpha, 0, 30 * se)
    low, high = sq.confidence_sequence(1.0, se, n, alpha)
    assert (float(high) - 1.0) == pytest.approx(edge, rel=1e-6)
    assert (1.0 - float(low)) == pytest.approx(edge, rel=1e-6)
    # wider than the fixed-horizon interval at every n: the price of peeking
    assert sq.boundary_multiplier(n, alpha) > stats.norm.ppf(1 - alpha / 2)


def test_p_below_alpha_exactly_when_the_sequence_excludes_zero() -> None:
    est = np.linspace(-1, 1, 201)
    p = sq.always_valid_p(est, 0.2, 3000, 0.05)
    low, high = sq.confidence_sequence(est, 0.2, 3000, 0.05)
    excluded = (low > 0) | (high < 0)
    assert np.array_equal(p < 0.05, excluded) and excluded.any() and not excluded.all()


def test_continuous_monitoring_of_a_null_stream_keeps_alpha() -> None:
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2000, 4000))  # 2,000 null streams of 4,000 observations
    looks = np.arange(10, 4001, 10)
    sums = np.cumsum(x, axis=1)[:, looks - 1]
    est, se = sums / looks, 1 / np.sqrt(looks)
    ever_sequential = (sq.always_valid_p(est, se, looks, 0.05) < 0.05).any(axis=1).mean()
    ever_fixed = (np.abs(est / se) > stats.norm.ppf(0.975)).any(axis=1).mean()
    print(f"null streams ever rejected over 400 looks: sequential {ever_sequential:.3f}, "
          f"fixed-horizon z {ever_fixed:.3f}")  # fmt: skip
    assert ever_sequential <= 0.05 < ever_fixed


def test_running_min_is_monotone_and_skips_missing_looks() -> None:
    p = sq.running_min([np.nan, 0.5, 0.7, 0.2, np.nan, 0.3])
    assert np.isnan(p[0]) and list(p[1:]) == [0.5, 0.5, 0.2, 0.2, 0.2]
