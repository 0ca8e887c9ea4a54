"""The experiment's decision: may the candidate replace the control?

Spotify's decision rule for tests with several metrics (Schultzberg, Ankargren, Frånberg,
"Risk-aware product decisions in A/B tests with multiple metrics", arXiv:2402.11609):
each metric has a non-inferiority margin stated up front, and the decision reads every
metric's anytime-valid confidence sequence for "candidate - control" (`sequential`):

- `withheld_srm`: the sample-ratio check fired, so no number can be trusted;
- `candidate_inferior`: some metric is worse than its margin allows (the whole sequence
  lies beyond the margin on the bad side);
- `candidate_superior`: every metric is within its margin and at least one is better
  (the whole sequence on the good side of zero);
- `candidate_non_inferior`: every metric is within its margin;
- `inconclusive`: otherwise (the sentence names the metric still undecided).

Decision metrics: error rate, accuracy, p99 latency by default (the spec's
`decision_metrics`; p50 is shown, never decided on).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from gateway.experiments.stats.figures import LOWER_IS_BETTER
from gateway.settings import DECISION_METRICS, Margins

OUTCOMES = (
    "candidate_superior",
    "candidate_non_inferior",
    "candidate_inferior",
    "inconclusive",
    "withheld_srm",
)
_NAMES = {
    "error_rate": "error rate",
    "accuracy": "accuracy",
    "latency_p99_ms": "p99 latency",
    "latency_p50_ms": "p50 latency",
}


def margins_for(margins: Margins, control_p99_ms: float | None) -> dict[str, float]:
    """Each decision metric's margin in its own unit (proportions, milliseconds)."""
    latency = [m for m in (margins.p99_ms,) if m is not None]
    if margins.p99_ratio is not None and control_p99_ms is not None:
        latency.append(margins.p99_ratio * control_p99_ms)
    return {
        "error_rate": margins.error_rate_points / 100,
        "accuracy": margins.accuracy_points / 100,
        "latency_p99_ms": min(latency) if latency else 0.0,
    }


def metric_status(diff: dict[str, Any], margin: float, lower_is_better: bool) -> str:
    """superior, non_inferior, inferior or inconclusive from one confidence sequence."""
    low, high = diff["sequence"]
    if low is None or high is None or math.isnan(low) or math.isnan(high):
        return "inconclusive"
    if lower_is_better:  # flip so that "up" is better
        low, high = -high, -low
    if high < -margin:
        return "inferior"
    if low > 0:
        return "superior"
    return "non_inferior" if low > -margin else "inconclusive"


def decide(
    diffs: dict[str, dict[str, Any]],
    margins: dict[str, float],
    srm_flagged: bool,
    alpha: float,
    metrics: Sequence[str] = DECISION_METRICS,
) -> dict[str, Any]:
    """The decision with its sentence and the metric(s) that decided it."""
    status = {m: metric_status(diffs[m], margins[m], LOWER_IS_BETTER[m]) for m in metrics}
    base = {"metrics": status, "margins": margins, "alpha": alpha}
    if srm_flagged:
        sentence = (
            "Decision withheld: the units per arm do not match the configured split "
            "(sample-ratio mismatch, p < 0.001), so every other figure may be biased."
        )
        return {**base, "outcome": "withheld_srm", "metric": "srm", "sentence": sentence}
    for outcome, wanted in (("candidate_inferior", "inferior"), ("inconclusive", "inconclusive")):
        hit = [m for m in metrics if status[m] == wanted]
        if hit:
            metric = hit[0]
            sentence = _sentence(outcome, metric, diffs[metric], margins[metric], alpha)
            return {**base, "outcome": outcome, "metric": metric, "sentence": sentence}
    better = [m for m in metrics if status[m] == "superior"]
    outcome = "candidate_superior" if better else "candidate_non_inferior"
    metric = better[0] if better else "all"
    return {
        **base,
        "outcome": outcome,
        "metric": metric,
        "sentence": _closing(outcome, better, diffs, {m: margins[m] for m in metrics}, alpha),
    }


def _amount(metric: str, value: float) -> str:
    return f"{value:.3f} ms" if metric.startswith("latency") else f"{value * 100:.2f} points"


def _sentence(outcome: str, metric: str, diff: dict[str, Any], margin: float, alpha: float) -> str:
    name, (low, high) = _NAMES[metric], diff["sequence"]
    if outcome == "candidate_inferior":
        worse = "higher" if LOWER_IS_BETTER[metric] else "lower"
        return (
            f"The candidate is inferior: its {name} is {worse} than the control's by more "
            f"than the margin of {_amount(metric, margin)} (difference "
            f"{_amount(metric, diff['estimate'])}, {100 * (1 - alpha):.0f}% confidence "
            f"sequence [{_amount(metric, low)}, {_amount(metric, high)}])."
        )
    if diff["estimate"] is None:
        return f"Inconclusive: no {name} on both arms yet" + (
            " (send feedback: POST /v1/feedback)." if metric == "accuracy" else "."
        )
    if low is None or high is None:
        return f"Inconclusive: too few routing keys ({diff['units']}) for a {name} interval yet."
    return (
        f"Inconclusive: the {name} difference is {_amount(metric, diff['estimate'])}, "
        f"confidence sequence [{_amount(metric, low)}, {_amount(metric, high)}] still "
        f"crosses the margin of {_amount(metric, margin)}; keep collecting."
    )


def _closing(
    outcome: str, better: list[str], diffs: dict[str, Any], margins: dict[str, float], alpha: float
) -> str:
    within = ", ".join(f"{_NAMES[m]} within {_amount(m, margin)}" for m, margin in margins.items())
    level = f"{100 * (1 - alpha):.0f}%"
    if outcome == "candidate_non_inferior":
        return f"The candidate is non-inferior at {level} anytime-valid confidence: {within}."
    gains = ", ".join(f"{_NAMES[m]} by {_amount(m, abs(diffs[m]['estimate']))}" for m in better)
    return (
        f"The candidate is superior at {level} anytime-valid confidence: better in {gains}, "
        f"and {within}."
    )
