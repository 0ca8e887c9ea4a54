"""Paired analysis of shadow mirroring: both frameworks answered the same input.

A pair is a served row and a shadow row with the same request id. Accuracy is then a
paired question: only the pairs where exactly one arm was right carry information, and
McNemar's exact test (`mcnemar_exact_p`) decides on them, needing far fewer labels than two
independent samples. Latency is a paired difference (candidate - control) per request,
its mean's interval cluster-adjusted by routing key (`clustered`). The shadow call runs
after the answer, off the reply's path, so its latency includes mirror queueing: read
the latency difference as an upper bound on the shadow arm's cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from gateway.experiments.log.frame import LogFrame
from gateway.experiments.stats import clustered as cl
from gateway.experiments.stats.figures import r


def pairs(frame: LogFrame, control: str, candidate: str) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (control row, candidate row) of every mirrored request."""
    serve = np.flatnonzero(frame.kind == "serve")
    shadow = np.flatnonzero(frame.kind == "shadow")
    by_id = {frame.request_id[i]: i for i in serve}
    found = [(by_id[frame.request_id[j]], j) for j in shadow if frame.request_id[j] in by_id]
    oriented = [
        (i, j) if frame.arm[i] == control else (j, i)
        for i, j in found
        if {frame.arm[i], frame.arm[j]} == {control, candidate}
    ]
    both = np.array(oriented, dtype=np.int64).reshape(-1, 2)
    return both[:, 0], both[:, 1]


def paired_analysis(frame: LogFrame, control: str, candidate: str) -> dict[str, Any] | None:
    """None without pairs; else pair counts, McNemar on labelled pairs, latency difference.

    The label is the one fed back for the request (it sits on the served row).
    """
    a, b = pairs(frame, control, candidate)
    ok = (frame.status[a] == 200) & (frame.status[b] == 200)
    if not ok.any():
        return None
    a, b = a[ok], b[ok]
    answered = ~np.isnan(frame.top1[a]) & ~np.isnan(frame.top1[b])
    label = np.fmax(frame.label[a], frame.label[b])  # NaN on the shadow row
    return {
        "pairs": int(a.size),
        "disagreements": int((frame.top1[a] != frame.top1[b])[answered].sum()),
        "accuracy": _mcnemar(frame.top1[a] == label, frame.top1[b] == label, ~np.isnan(label)),
        "latency_ms": _latency(frame.latency_ms[b] - frame.latency_ms[a], frame.unit[a]),
    }


def mcnemar_exact_p(control_only: int, candidate_only: int) -> float:
    """McNemar's exact test: the two-sided p-value of the discordant pairs' split.

    Under "both arms are equally accurate" each discordant pair (one arm right, the other
    wrong) is a fair coin, so the p-value is the exact two-sided binomial test of
    `min(b, c)` successes in `b + c` trials at p = 1/2 (McNemar 1947; statsmodels'
    `mcnemar(table, exact=True)`, its test oracle here, gives the same figure).

    Args:
        control_only: pairs where only the control arm was right (b), >= 0.
        candidate_only: pairs where only the candidate arm was right (c), >= 0.

    Returns:
        The p-value in (0, 1].

    Raises:
        ValueError: if there is no discordant pair (b + c == 0) or a count is negative.
    """
    from scipy.stats import binomtest  # first analysis only

    return float(binomtest(min(control_only, candidate_only), control_only + candidate_only).pvalue)


def _mcnemar(ctrl_right: np.ndarray, cand_right: np.ndarray, known: np.ndarray) -> dict[str, Any]:
    c, d = ctrl_right[known], cand_right[known]
    table = np.array([[(c & d).sum(), (c & ~d).sum()], [(~c & d).sum(), (~c & ~d).sum()]])
    return mcnemar_figures(int(known.sum()), int(table[0, 1]), int(table[1, 0]))


def mcnemar_figures(n: int, control_only: int, candidate_only: int) -> dict[str, Any]:
    """The paired accuracy figures of `n` labelled pairs and their discordant cells."""
    p = mcnemar_exact_p(control_only, candidate_only) if control_only + candidate_only else None
    return {
        "labelled_pairs": n,
        "control_only_right": control_only,
        "candidate_only_right": candidate_only,
        "diff": r((candidate_only - control_only) / n) if n else None,
        "mcnemar_exact_p": r(p, 10),
    }


def _latency(diff: np.ndarray, units: np.ndarray) -> dict[str, Any]:
    _, index = np.unique(units, return_inverse=True)
    size = int(index.max()) + 1
    mean = cl.ratio(cl.unit_sums(index, diff, size), cl.unit_sums(index, np.ones_like(diff), size))
    return latency_difference(mean, float(np.median(diff)))


def latency_difference(mean: cl.Estimate, median: float) -> dict[str, Any]:
    """The paired latency figures: the mean difference (ms) with its cluster-adjusted 95%
    interval, and the median difference."""
    half = cl.Z95 * mean.se
    return {
        "mean_diff": r(mean.value, 4),
        "ci95": [r(mean.value - half, 4), r(mean.value + half, 4)],
        "median_diff": r(median, 4),
        "units": mean.units,
    }
