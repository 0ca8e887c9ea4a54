"""Is a difference between two sets of repeats real? Welch's t-test over the repeats.

Each repeat of a cell gives one number (its throughput, its p50); two targets, or one
target in two runs, give two small samples. Welch's t-test (unequal variances, the
Welch-Satterthwaite degrees of freedom; `scipy.stats.ttest_ind(equal_var=False)`) says
how likely a difference this large would be from run-to-run noise alone. With 3 repeats
on each side the degrees of freedom are 2-4, so a t of 3 is p ~ 0.04-0.10, not "high
confidence": the labels below come from the p-value, never from the statistic alone.

Labels: p < 0.01 "high", p < 0.05 "medium", else "low"; one repeat on a side: "untested,
1 run", since noise cannot be estimated from one number.

A verdict (`decide`, used by the report's sentences and headline stars and by `compare`)
needs more than a small p: the difference must also reach a stated practical threshold
(5% of the baseline), so that a significant 1% does not make a winner. With one repeat
a side nothing is called: "no difference shown (1 run; run with --repeats 3)".
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


PRACTICAL = 0.05  # a difference under 5% of the baseline is not called, however significant
ONE_RUN = "1 run; run with --repeats 3"


@dataclass(frozen=True)
class Decision:
    """Whether a difference between two sets of repeats is shown, by the rule every verdict
    of the report and of `compare` uses: Welch's test across the repeats is significant
    (p < 0.05) *and* the relative difference is at least the practical threshold.

    Attributes:
        difference: Welch's test of b against a.
        threshold: the practical threshold, a fraction of mean(a) (0.05 = 5%).
        shown: True when both conditions hold.
        b_better: when shown, whether b is the better side (`higher_is_better` decides).
        reason: why, in words: `p=0.003, 3+3 runs`, `1 run; run with --repeats 3`,
            `p=0.41, 3+3 runs`, `+2.0% is under the 5% threshold (p=0.001)`.
    """

    difference: Difference
    threshold: float
    shown: bool
    b_better: bool
    reason: str

    @property
    def text(self) -> str:
        """`difference shown (p=0.003, 3+3 runs)` or `no difference shown (1 run; ...)`."""
        return f"{'difference shown' if self.shown else 'no difference shown'} ({self.reason})"


def _p_value(diff: Difference, a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Welch's p; 0 when both sides repeat exactly (no spread) yet differ, as t is infinite."""
    if math.isnan(diff.p_value) and min(diff.n_a, diff.n_b) >= 2 and diff.mean_a != diff.mean_b:
        clean = [v for v in (*a, *b) if not math.isnan(v)]
        return 0.0 if clean else math.nan
    return diff.p_value


def decide(
    a: tuple[float, ...],
    b: tuple[float, ...],
    higher_is_better: bool = True,
    threshold: float = PRACTICAL,
) -> Decision:
    """Is b different from a, by the report's rule (see `Decision`)?

    Args:
        a, b: one number per repeat (requests/s, or ms).
        higher_is_better: True for throughput, False for latency.
        threshold: the smallest relative difference called, a fraction of mean(a).
    """
    diff = welch(a, b)
    rel = diff.relative
    runs = f"{diff.n_a}+{diff.n_b} runs"
    b_better = (rel > 0) == higher_is_better
    if min(diff.n_a, diff.n_b) < 2:
        return Decision(diff, threshold, False, b_better, ONE_RUN)
    p = _p_value(diff, a, b)
    if math.isnan(p) or math.isnan(rel):
        return Decision(diff, threshold, False, b_better, f"not testable, {runs}")
    if p >= MEDIUM:
        return Decision(diff, threshold, False, b_better, f"p={p:.2g}, {runs}")
    if abs(rel) < threshold:
        under = f"{100 * rel:+.1f}% is under the {100 * threshold:g}% threshold"
        return Decision(diff, threshold, False, b_better, f"{under}, p={p:.2g}")
    return Decision(diff, threshold, True, b_better, f"p={p:.2g}, {runs}")
