"""Issue 27's verdict rule on synthetic results: a winner only when Welch's test across the
repeats is significant and the difference reaches the practical threshold; the spread of
each cell across repeats (CV, t-interval) flagged above 10% CV. Independent truths: scipy's
Welch test and Student-t quantile, and hand-computed means and CVs."""

from __future__ import annotations

import math
import statistics
from dataclasses import replace

import pytest
from scipy import stats

from loadtest.cells import CellResult
from loadtest.report.sentences import sentences
from loadtest.report.significance import decide
from loadtest.report.spread import spread
from loadtest.report.tables import headline
from loadtest.results import summarise
from tests.unit.loadtest.loadtest_fakes import BASE

TORCH = replace(BASE, target="torch-direct", framework="pytorch")


def _pair(tf: tuple[float, ...], torch: tuple[float, ...]) -> list[CellResult]:
    cells = []
    for i, (a, b) in enumerate(zip(tf, torch, strict=True)):
        cells += [
            replace(BASE, repeat=i + 1, throughput=a),
            replace(TORCH, repeat=i + 1, throughput=b),
        ]
    return cells


def _sentence(cells: list[CellResult]) -> str:
    summaries = summarise(cells)
    [line] = sentences(headline(summaries, 1), {}, "c=1")
    return line


def test_one_percent_with_one_repeat_shows_no_difference() -> None:
    line = _sentence(_pair((200.0,), (202.0,)))
    assert (
        "no difference shown (1 run; run with --repeats 3) between TensorFlow and PyTorch" in line
    )
    assert "served it better" not in line
    rows = headline(summarise(_pair((200.0,), (202.0,))), 1)
    assert not any(r.throughput_winner for r in rows)


def test_twenty_percent_over_three_repeats_names_the_winner() -> None:
    tf, torch = (200.0, 203.0, 198.0), (240.0, 244.0, 237.0)
    line = _sentence(_pair(tf, torch))
    p = float(stats.ttest_ind(torch, tf, equal_var=False).pvalue)
    assert p < 0.05
    assert f"PyTorch served it better, 240 vs 200 req/s at best (1.20x; p={p:.2g}, 3+3 runs" in line
    rows = {r.framework: r for r in headline(summarise(_pair(tf, torch)), 1)}
    assert rows["pytorch"].throughput_winner and not rows["tensorflow"].throughput_winner


def test_significant_but_small_is_no_difference() -> None:
    tf, torch = (200.0, 200.2, 199.8), (202.0, 202.2, 201.8)  # +1%, p far below 0.05
    decision = decide(tf, torch)
    assert decision.difference.p_value < 0.001 and not decision.shown
    assert decision.reason.startswith("+1.0% is under the 5% threshold")
    assert "served it better" not in _sentence(_pair(tf, torch))


def test_large_but_noisy_is_no_difference() -> None:
    tf, torch = (200.0, 120.0, 280.0), (240.0, 160.0, 330.0)  # +20% mean, p ~ 0.6
    decision = decide(tf, torch)
    assert not decision.shown and decision.reason.startswith("p=0.")


def test_latency_lower_is_better() -> None:
    decision = decide((4.0, 4.1, 3.9), (3.0, 3.1, 2.9), higher_is_better=False)
    assert decision.shown and decision.b_better


def test_spread_mean_cv_and_t_interval_by_hand() -> None:
    samples = (100.0, 130.0, 80.0)
    got = spread(samples)
    mean, sd = statistics.fmean(samples), statistics.stdev(samples)
    half = float(stats.t.ppf(0.975, 2)) * sd / math.sqrt(3)  # 4.303 * s / sqrt(3)
    assert got.mean == pytest.approx(mean) and got.cv == pytest.approx(sd / mean)
    assert (got.low, got.high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert got.flagged and got.text(0).endswith("⚠")


def test_cv_flag_sits_at_ten_percent() -> None:
    assert not spread((100.0, 101.0, 99.0)).flagged  # CV 1%
    assert spread((100.0, 112.0, 88.0)).cv == pytest.approx(0.12)
    assert spread((100.0, 112.0, 88.0)).flagged
    assert not spread((100.0, 108.0, 92.0)).flagged  # CV 8%
    one = spread((100.0,))
    assert one.text(0) == "100 (1 run)" and not one.flagged
