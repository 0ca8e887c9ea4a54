"""The experiment statistics against scipy (the reference) and textbook values."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gateway.experiments import statistics as st


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 10), (95, 100), (100, 100), (481, 1000)])
def test_wilson_matches_scipy(k: int, n: int) -> None:
    expected = stats.binomtest(k, n).proportion_ci(0.95, method="wilson")
    np.testing.assert_allclose(st.wilson_interval(k, n), (expected.low, expected.high), atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mann_whitney_matches_scipy_with_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = np.round(rng.gamma(2, 1.0, 300), 1)  # rounding makes ties
    b = np.round(rng.gamma(2, 1.1, 250), 1)
    expected = stats.mannwhitneyu(a, b, alternative="two-sided", method="asymptotic")
    u, p = st.mann_whitney_u(a, b)
    assert u == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue, rel=1e-9)


@pytest.mark.parametrize(("k1", "n1", "k2", "n2"), [(45, 100, 60, 100), (958, 1000, 960, 1000)])
def test_two_proportion_z_matches_chi_square(k1: int, n1: int, k2: int, n2: int) -> None:
    table = np.array([[k1, n1 - k1], [k2, n2 - k2]])
    chi2, p_expected, _, _ = stats.chi2_contingency(table, correction=False)
    z, p = st.two_proportion_z_test(k1, n1, k2, n2)
    assert z**2 == pytest.approx(chi2) and p == pytest.approx(p_expected)


def test_sample_size_known_value() -> None:
    # 0.5 vs 0.6, alpha 0.05 two-sided, power 0.8: 387.3 -> 388 per arm (Fleiss, no correction)
    assert st.sample_size_two_proportions(0.5, 0.6) == 388
    assert st.sample_size_two_proportions(0.9, 0.9) is None


def test_bootstrap_interval_agrees_with_scipy() -> None:
    x = np.random.default_rng(3).lognormal(0.0, 0.5, 400)
    ours = st.bootstrap_percentile_ci(x, 50, resamples=2000)
    ref = stats.bootstrap(
        (x,),
        np.median,
        n_resamples=2000,
        method="percentile",
        random_state=np.random.default_rng(9),
    ).confidence_interval
    assert ours[0] < np.median(x) < ours[1]
    np.testing.assert_allclose(ours, (ref.low, ref.high), rtol=0.05)


def test_bootstrap_difference_brackets_the_shift() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(10, 1, 500), rng.normal(12, 1, 500)
    low, high = st.bootstrap_difference_ci(a, b, 50)
    assert low < np.median(b) - np.median(a) < high and low > 1.5
