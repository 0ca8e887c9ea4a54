"""Cluster-adjusted estimates against statsmodels' cluster-robust regression and against
textbook asymptotics."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import stats

from gateway.experiments.stats import clustered as cl


def _clustered_requests(seed: int, units: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """(unit per request, correct per request): unit-level accuracy varies, 1-20 requests each."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 21, units)
    unit = np.repeat(np.arange(units), sizes)
    p_unit = rng.beta(8, 2, units)
    return unit, (rng.random(unit.size) < p_unit[unit]).astype(float)


@pytest.mark.parametrize("seed", [0, 1])
def test_ratio_se_is_statsmodels_cluster_robust_se(seed: int) -> None:
    unit, correct = _clustered_requests(seed)
    size = int(unit.max()) + 1
    ours = cl.ratio(
        cl.unit_sums(unit, correct, size), cl.unit_sums(unit, np.ones_like(correct), size)
    )
    fit = sm.OLS(correct, np.ones_like(correct)).fit(cov_type="cluster", cov_kwds={"groups": unit})
    assert ours.value == pytest.approx(fit.params[0]) and ours.se == pytest.approx(
        fit.bse[0], rel=1e-9
    )
    naive = np.sqrt(ours.value * (1 - ours.value) / correct.size)
    assert ours.se > 1.3 * naive  # correlated requests: the per-request formula is too sure


def test_difference_se_matches_statsmodels_two_arm_regression() -> None:
    (ua, ya), (ub, yb) = _clustered_requests(2), _clustered_requests(3)
    ub = ub + ua.max() + 1
    arm = np.r_[np.zeros(ya.size), np.ones(yb.size)]
    fit = sm.OLS(np.r_[ya, yb], sm.add_constant(arm)).fit(
        cov_type="cluster", cov_kwds={"groups": np.r_[ua, ub]}
    )
    per_arm = []
    for unit, y in ((ua, ya), (ub - ub.min(), yb)):
        size = int(unit.max()) + 1
        per_arm.append(
            cl.ratio(cl.unit_sums(unit, y, size), cl.unit_sums(unit, np.ones_like(y), size))
        )
    diff = cl.difference(*per_arm)
    assert diff.value == pytest.approx(fit.params[1])
    assert diff.se == pytest.approx(fit.bse[1], rel=0.01)  # CR1 small-sample factors differ
    assert diff.units == 600


def test_quantile_interval_matches_the_asymptotic_one_for_independent_requests() -> None:
    x = np.random.default_rng(5).standard_normal(20000)
    estimate, low, high = cl.quantile(x, np.arange(x.size), 0.99)
    expected_se = np.sqrt(0.99 * 0.01 / x.size) / stats.norm.pdf(stats.norm.ppf(0.99))
    assert low < estimate.value < high
    assert estimate.se == pytest.approx(expected_se, rel=0.15)


def test_quantile_interval_widens_when_one_user_sends_most_requests() -> None:
    rng = np.random.default_rng(6)
    unit = np.r_[np.zeros(4000, int), rng.integers(1, 1001, 6000)]  # one key: 40% of requests
    effect = rng.normal(0, 2, 1001)
    latency = 10 + effect[unit] + rng.normal(0, 1, unit.size)
    clustered = cl.quantile(latency, unit, 0.5)[0]
    independent = cl.quantile(latency, np.arange(latency.size), 0.5)[0]
    assert clustered.value == independent.value and clustered.se > 3 * independent.se


def test_empty_and_single_unit_give_nan_not_errors() -> None:
    assert np.isnan(cl.quantile(np.array([]), np.array([], int), 0.5)[0].value)
    one = cl.quantile(np.array([1.0, 2.0]), np.array([0, 0]), 0.5)
    assert one[0].value == 1.5 and np.isnan(one[0].se)
    assert np.isnan(cl.ratio(np.array([3.0]), np.array([4.0])).se)


def test_large_logs_bootstrap_a_sample_of_units_with_a_scaled_error() -> None:
    x = np.random.default_rng(7).standard_normal(3 * cl.MAX_BOOT_ROWS)
    estimate, low, high = cl.quantile(x, np.arange(x.size), 0.5)
    expected_se = np.sqrt(0.25 / x.size) / stats.norm.pdf(0.0)
    assert estimate.units == x.size and low < estimate.value < high
    assert estimate.se == pytest.approx(expected_se, rel=0.2)


def test_an_all_right_arm_keeps_a_binomial_standard_error() -> None:
    ones = np.ones(15)
    floored = cl.binomial_floor(cl.ratio(ones, ones))
    assert floored.value == 1.0 and floored.se == pytest.approx(np.sqrt(16 / 17 * 1 / 17 / 15))
    unit, correct = _clustered_requests(4)
    size = int(unit.max()) + 1
    clustered = cl.ratio(
        cl.unit_sums(unit, correct, size), cl.unit_sums(unit, np.ones_like(correct), size)
    )
    assert cl.binomial_floor(clustered) == clustered  # a real clustered error is larger
