"""Welch's t-test over repeats, checked against scipy and the Welch-Satterthwaite formula."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from loadtest.report.significance import Difference, confidence, welch

A = (100.0, 104.0, 97.0)
B = (110.0, 118.0, 108.0)


def test_welch_equals_scipy_on_known_inputs() -> None:
    ref = stats.ttest_ind(B, A, equal_var=False)
    got = welch(A, B)
    assert got.t == pytest.approx(float(ref.statistic))
    assert got.p_value == pytest.approx(float(ref.pvalue))
    assert got.df == pytest.approx(float(ref.df))
    assert got.t > 0  # b is larger: the sign says which way
    assert (got.mean_a, got.mean_b) == (pytest.approx(100.333333), pytest.approx(112.0))


def test_degrees_of_freedom_are_welch_satterthwaite_by_hand() -> None:
    va, vb = statistics.variance(A) / 3, statistics.variance(B) / 3
    df = (va + vb) ** 2 / (va**2 / 2 + vb**2 / 2)
    assert welch(A, B).df == pytest.approx(df)
    assert welch(A, B).t == pytest.approx((112.0 - statistics.fmean(A)) / math.sqrt(va + vb))


def test_a_t_of_three_with_three_repeats_is_not_high_confidence() -> None:
    # the old labels called |t| > 3 "high"; with ~4 degrees of freedom that is p ~ 0.04
    a, b = (10.0, 11.0, 12.0), (12.45, 13.45, 14.45)
    diff = welch(a, b)
    assert 2.9 < diff.t < 3.1 and 0.03 < diff.p_value < 0.1
    assert not diff.label.startswith("high")


def test_labels_follow_the_p_value() -> None:
    def label(p: float) -> str:
        return Difference(1.0, 2.0, 5.0, 4.0, p, 3, 3).label

    assert label(0.001).startswith("high (p=0.001, df=4.0")
    assert label(0.03).startswith("medium")
    assert label(0.2).startswith("low")


def test_untestable_cases_say_why() -> None:
    assert welch((100.0,), (150.0,)).label == "untested, 1 run"
    assert welch((5.0, 5.0), (6.0, 6.0)).label == "untested, no spread"
    assert confidence((math.nan,), (1.0, 2.0)) == "n/a"
    assert math.isnan(welch((1.0,), (2.0,)).p_value)


def test_relative_difference() -> None:
    assert welch((100.0, 100.0), (110.0, 110.0)).relative == pytest.approx(0.10)
