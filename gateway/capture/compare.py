"""Replayed answers against the captured ones: what would change, and is it better.

Every figure is per example (a request's batch rows), on the examples both sides
answered:

- **top-1 agreement**: the share of examples whose class (`class`, else the argmax of
  `probabilities`) is the captured one.
- **probability differences**: per example the largest |p_arm - p_captured| over the
  classes, read against the **noise floor**: the same figures for the captured arm
  replayed against itself (the same framework and version; Diffy's idea: a difference
  no larger than what the arm does against itself is noise). `beyond_floor` counts the
  examples whose difference passes the floor's largest.
- **paired accuracy** on labelled examples (labels fed back by request id; requests of
  one example): McNemar's exact test on the discordant pairs (`control_only`: the
  captured answer right and the arm's wrong; `candidate_only` the reverse), as
  `gateway.experiments.stats.paired.mcnemar_exact_p` computes it.
- **latency**: percentiles of the replayed requests' latency as the replay client saw it.
- **distribution shift**: a chi-square test of homogeneity on the predicted classes'
  counts (captured vs arm, classes neither predicted left out;
  `scipy.stats.chi2_contingency`), and a two-sample Kolmogorov-Smirnov test on the
  top-1 probabilities (`scipy.stats.ks_2samp`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from gateway.experiments.stats.paired import mcnemar_exact_p

NO_ANSWER = -1
ALPHA = 0.05


@dataclass
class Examples:
    """One side's answers per example: `top1` (int64, `NO_ANSWER` where none), `prob`
    (its probability, NaN where unknown) and `probs` ([examples, classes], NaN rows)."""

    top1: np.ndarray
    prob: np.ndarray
    probs: np.ndarray


def top1_of(outputs: Mapping[str, np.ndarray]) -> np.ndarray:
    """Each row's class: `class` when answered, else the argmax of `probabilities`."""
    if "class" in outputs:
        return np.asarray(outputs["class"]).reshape(-1).astype(np.int64)
    return np.argmax(np.asarray(outputs["probabilities"]), axis=-1).reshape(-1).astype(np.int64)


def examples_of(
    answers: Sequence[Mapping[str, np.ndarray] | None], batches: Sequence[int]
) -> Examples:
    """Per-example arrays of per-request answers (None: no answer); `batches[i]` rows
    for request i. An answer whose batch differs from the request's counts as none."""
    total = int(sum(batches))
    classes = next(
        (np.asarray(a["probabilities"]).shape[-1] for a in answers if a and "probabilities" in a),
        1,
    )
    top1 = np.full(total, NO_ANSWER, np.int64)
    probs = np.full((total, classes), np.nan)
    at = 0
    for outputs, batch in zip(answers, batches, strict=True):
        if outputs:
            rows = top1_of(outputs)
            if rows.size == batch:
                top1[at : at + batch] = rows
                if "probabilities" in outputs:
                    p = np.asarray(outputs["probabilities"], np.float64).reshape(batch, -1)
                    if p.shape[1] == classes:
                        probs[at : at + batch] = p
        at += batch
    safe = np.clip(top1, 0, classes - 1)
    prob = np.where(top1 >= 0, probs[np.arange(total), safe], np.nan)
    return Examples(top1, prob, probs)


@dataclass
class ArmComparison:
    """One arm's replay against the captured answers (see the module's list)."""

    arm: str
    requests: int
    failed: int
    examples: int
    disagreements: int
    agreement: float
    diff_max: float
    diff_p99: float
    beyond_floor: int
    chi2: float
    chi2_p: float
    ks: float
    ks_p: float
    latency_ms: dict[str, float]
    labelled: int
    accuracy_captured: float | None
    accuracy_arm: float | None
    control_only: int
    candidate_only: int
    mcnemar_p: float | None
    answered_by: dict[str, int] = field(default_factory=dict)
    other_arm: int = 0  # answered by another framework (a failover), not this arm

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def class_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Chi-square homogeneity test of two samples of class labels: (statistic, p).
    (0, 1) when fewer than two classes occur at all."""
    from scipy.stats import chi2_contingency

    classes = np.union1d(a, b)
    if classes.size < 2 or a.size == 0 or b.size == 0:
        return 0.0, 1.0
    table = np.array([[np.sum(a == c) for c in classes], [np.sum(b == c) for c in classes]])
    result = chi2_contingency(table, correction=False)
    return float(result.statistic), float(result.pvalue)


def prob_shift(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample KS test of two samples of top-1 probabilities: (statistic, p)."""
    from scipy.stats import ks_2samp

    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if a.size == 0 or b.size == 0:
        return 0.0, 1.0
    result = ks_2samp(a, b)
    return float(result.statistic), float(result.pvalue)


def percentiles(latency_ms: np.ndarray) -> dict[str, float]:
    """p50, p90, p99 and the mean (ms); NaN for none."""
    if latency_ms.size == 0:
        return {"p50": float("nan"), "p90": float("nan"), "p99": float("nan"), "mean": float("nan")}
    p50, p90, p99 = np.percentile(latency_ms, [50, 90, 99])
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": float(latency_ms.mean()),
    }


def compare_arm(
    arm: str,
    captured: Examples,
    replayed: Examples,
    labels: np.ndarray,
    latency_ms: np.ndarray,
    failed: int,
    floor_max: float,
    answered_by: dict[str, int] | None = None,
) -> ArmComparison:
    """One arm against the captured answers.

    Args:
        labels: per example, the label fed back (`NO_ANSWER` where none).
        latency_ms: the replayed requests' latencies (answered ones).
        failed: replayed requests without an answer.
        floor_max: the noise floor's largest probability difference (NaN: no floor yet).
    """
    both = (captured.top1 != NO_ANSWER) & (replayed.top1 != NO_ANSWER)
    cap, rep = captured.top1[both], replayed.top1[both]
    diffs = np.nanmax(np.abs(captured.probs[both] - replayed.probs[both]), axis=1, initial=0.0)
    diffs = diffs if diffs.size else np.zeros(0)
    beyond = int(np.sum(diffs > floor_max)) if not np.isnan(floor_max) else 0
    chi2, chi2_p = class_shift(cap, rep)
    ks, ks_p = prob_shift(captured.prob[both], replayed.prob[both])
    labelled = both & (labels != NO_ANSWER)
    cap_right = captured.top1[labelled] == labels[labelled]
    rep_right = replayed.top1[labelled] == labels[labelled]
    b, c = int(np.sum(cap_right & ~rep_right)), int(np.sum(~cap_right & rep_right))
    n = int(labelled.sum())
    return ArmComparison(
        arm=arm, requests=0, failed=failed, examples=int(both.sum()),
        disagreements=int(np.sum(cap != rep)),
        agreement=float(np.mean(cap == rep)) if cap.size else float("nan"),
        diff_max=float(diffs.max()) if diffs.size else 0.0,
        diff_p99=float(np.percentile(diffs, 99)) if diffs.size else 0.0,
        beyond_floor=beyond, chi2=chi2, chi2_p=chi2_p, ks=ks, ks_p=ks_p,
        latency_ms=percentiles(latency_ms), labelled=n,
        accuracy_captured=float(cap_right.mean()) if n else None,
        accuracy_arm=float(rep_right.mean()) if n else None,
        control_only=b, candidate_only=c,
        mcnemar_p=mcnemar_exact_p(b, c) if b + c else (1.0 if n else None),
        answered_by=dict(answered_by or {}),
    )  # fmt: skip


def verdict(result: ArmComparison, floor: ArmComparison, alpha: float = ALPHA) -> str:
    """The honest one-sentence answer for one arm: would it change answers (against the
    noise floor), and is it better, worse or equal on labelled examples."""
    changes = (
        f"{result.arm} changes the top-1 answer on {result.disagreements} of {result.examples}"
        f" captured examples ({_pct(1 - result.agreement)}; the captured arm against itself:"
        f" {floor.disagreements}, {_pct(1 - floor.agreement)})"
    )
    if result.failed:
        changes += f", failed {result.failed} of {result.requests} requests"
    if result.other_arm:
        changes += f" (another framework answered {result.other_arm} of them: failovers)"
    if result.labelled == 0 or result.mcnemar_p is None:
        return changes + "; no labelled requests, so nothing says whether it is better."
    accuracy = (
        f"accuracy {_pct(result.accuracy_arm)} vs {_pct(result.accuracy_captured)} on"
        f" {result.labelled} labelled examples, McNemar p = {result.mcnemar_p:.3g}"
    )
    if result.mcnemar_p < alpha:
        better = result.candidate_only > result.control_only
        return f"{changes}, and it is {'better' if better else 'worse'} ({accuracy})."
    return f"{changes}; on labelled requests it is no different at alpha {alpha} ({accuracy})."


def _pct(share: float | None) -> str:
    return "n/a" if share is None or np.isnan(share) else f"{100 * share:.2f}%"
