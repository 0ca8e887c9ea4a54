"""Is a difference between two sets of repeats real? Welch's t-test over the repeats.

Each repeat of a cell gives one number (its throughput, its p50); two targets, or one
target in two runs, give two small samples. Welch's t-test (unequal variances, the
Welch-Satterthwaite degrees of freedom; `scipy.stats.ttest_ind(equal_var=False)`) says
how likely a difference this large would be from run-to-run noise alone. With 3 repeats
on each side the degrees of freedom are 2-4, so a t of 3 is p ~ 0.04-0.10, not "high
confidence": the labels below come from the p-value, never from the statistic alone.

Labels: p < 0.01 "high", p < 0.05 "medium", else "low"; one repeat on a side: "untested,
1 run", since noise cannot be estimated from one number.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

HIGH, MEDIUM = 0.01, 0.05


@dataclass(frozen=True)
class Difference:
    """Welch's test of mean(b) - mean(a) over repeats.

    Attributes:
        mean_a, mean_b: the samples' means.
        t: Welch's statistic for b - a (nan when untestable).
        df: Welch-Satterthwaite degrees of freedom (nan when untestable).
        p_value: two-sided (nan when untestable: fewer than 2 repeats a side, or no spread).
        n_a, n_b: repeats on each side.
    """

    mean_a: float
    mean_b: float
    t: float
    df: float
    p_value: float
    n_a: int
    n_b: int

    @property
    def relative(self) -> float:
        """(mean_b - mean_a) / mean_a; nan when mean_a is 0."""
        return (self.mean_b - self.mean_a) / self.mean_a if self.mean_a else math.nan

    @property
    def label(self) -> str:
        """high / medium / low from the p-value, or why it was not tested."""
        if min(self.n_a, self.n_b) < 2:
            return "untested, 1 run"
        if math.isnan(self.p_value):
            return "untested, no spread"
        word = "high" if self.p_value < HIGH else "medium" if self.p_value < MEDIUM else "low"
        return f"{word} (p={self.p_value:.2g}, df={self.df:.1f})"


def welch(a: tuple[float, ...], b: tuple[float, ...]) -> Difference:
    """Welch's two-sided t-test of b against a; nan values are left out.

    Args:
        a, b: one number per repeat (e.g. throughputs in requests/s).
    """
    x = [v for v in a if not math.isnan(v)]
    y = [v for v in b if not math.isnan(v)]
    mean_a = statistics.fmean(x) if x else math.nan
    mean_b = statistics.fmean(y) if y else math.nan
    if len(x) < 2 or len(y) < 2 or (statistics.variance(x) == 0 and statistics.variance(y) == 0):
        return Difference(mean_a, mean_b, math.nan, math.nan, math.nan, len(x), len(y))
    from scipy import stats  # at first use: the CLI starts without scipy

    result = stats.ttest_ind(y, x, equal_var=False)
    return Difference(
        mean_a,
        mean_b,
        float(result.statistic),
        float(result.df),
        float(result.pvalue),
        len(x),
        len(y),
    )


def confidence(a: tuple[float, ...], b: tuple[float, ...]) -> str:
    """The label of `welch(a, b)`; "n/a" when a side has no number."""
    diff = welch(a, b)
    if math.isnan(diff.mean_a) or math.isnan(diff.mean_b):
        return "n/a"
    return diff.label
