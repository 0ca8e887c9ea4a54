"""How much a cell's figures moved between repeats: mean, coefficient of variation and
Student's t-interval of the mean.

Each repeat of a cell gives one throughput, one p50 and one p99. Over n repeats the
interval is mean +- t(0.975, n-1) * s / sqrt(n) (`scipy.stats.t.ppf`), the same
Student-t interval AIPerf reports over its multi-run confidence runs. A CV (s / mean)
above `CV_FLAG` (10%) marks a cell whose repeats disagree too much to compare closely.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

CV_FLAG = 0.10
LEVEL = 0.95


@dataclass(frozen=True)
class Spread:
    """One figure over a cell's repeats.

    Attributes:
        n: repeats with a value (nan left out).
        mean: their mean (the figure's unit: requests/s or ms).
        cv: sample standard deviation / mean; nan for n < 2 or a mean of 0.
        low, high: the 95% t-interval of the mean; nan for n < 2.
    """

    n: int
    mean: float
    cv: float
    low: float
    high: float

    @property
    def flagged(self) -> bool:
        """True when the CV is above `CV_FLAG`."""
        return not math.isnan(self.cv) and self.cv > CV_FLAG

    def text(self, digits: int) -> str:
        """`812 [790, 834], CV 1.2%`, `812 (1 run)`, with ` ⚠` when flagged."""
        if math.isnan(self.mean):
            return "n/a"
        if self.n < 2:
            return f"{self.mean:.{digits}f} (1 run)"
        flag = " ⚠" if self.flagged else ""
        interval = f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"
        return f"{self.mean:.{digits}f} {interval}, CV {100 * self.cv:.1f}%{flag}"


def spread(samples: tuple[float, ...]) -> Spread:
    """Mean, CV and 95% t-interval of `samples` (one value per repeat)."""
    values = [v for v in samples if not math.isnan(v)]
    n = len(values)
    if n == 0:
        return Spread(0, math.nan, math.nan, math.nan, math.nan)
    mean = statistics.fmean(values)
    if n < 2:
        return Spread(n, mean, math.nan, math.nan, math.nan)
    from scipy import stats  # at first use: the CLI starts without scipy

    sd = statistics.stdev(values)
    half = float(stats.t.ppf(0.5 + LEVEL / 2, n - 1)) * sd / math.sqrt(n)
    cv = sd / mean if mean else math.nan
    return Spread(n, mean, cv, mean - half, mean + half)
