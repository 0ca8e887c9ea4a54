"""One rollout step's decision, as a pure function the rollout controller calls.

The controller (which owns the policy store and the leader election) analyses the rows
logged since the current step began, calls `next_rollout_action`, applies the action's
split through the store and records it as a `rollout` event with `as_event_details()`.
The rules, after Flagger's canary analysis and Argo Rollouts with Kayenta:

1. a guardrail breach rolls back to 0% candidate at once, whatever the units so far: a
   guardrail metric's confidence sequence lies wholly beyond its guardrail margin on the
   bad side, or the sample-ratio check fired (with failover on, a dead candidate shows up
   as its users landing on the control);
2. below `min_units_per_step` routing keys in the step: hold;
3. the decision `candidate_superior` or `candidate_non_inferior`: advance to the next
   step, or complete after the last (100%);
4. otherwise (inconclusive, or inferior within the guardrails): hold.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from gateway.experiments.stats.decision import DECISION_METRICS, margins_for, metric_status
from gateway.experiments.stats.figures import LOWER_IS_BETTER
from gateway.settings import ExperimentSpec, Margins, RolloutSpec

ROLLED_BACK = -1
Kind = Literal["hold", "advance", "complete", "rollback"]
_ADVANCING = ("candidate_superior", "candidate_non_inferior")


@dataclass(frozen=True)
class RolloutAction:
    """What the controller does next.

    Attributes:
        kind: hold, advance, complete (already at 100%: the rollout is done), rollback.
        step: the step index after the action (ROLLED_BACK = -1 for 0% candidate).
        share: the candidate's traffic share after it, in percent.
        split: the split to apply, {arm: share}: the control and the rolled-out candidate
            share 100%, the other candidates get 0 (one candidate at a time).
        reason: one sentence with the numbers that decided it.
        metric: the metric that decided it (or "units", "srm", "decision").
    """

    kind: Kind
    step: int
    share: float
    split: dict[str, float]
    reason: str
    metric: str

    def as_event_details(self) -> dict[str, Any]:
        """The `rollout` event's details (its `split` moves the SRM expectation too)."""
        return asdict(self)


def guardrail_margins(spec: ExperimentSpec, control_p99_ms: float | None) -> dict[str, float]:
    """The rollback margins: each guardrail, or the experiment's margin where it is None."""
    rollout = spec.rollout or RolloutSpec()
    given = {k: v for k, v in rollout.guardrails.model_dump().items() if v is not None}
    merged = Margins.model_validate({**spec.margins.model_dump(), **given})
    return margins_for(merged, control_p99_ms)


def next_rollout_action(
    spec: ExperimentSpec, analysis: dict[str, Any], current_step: int
) -> RolloutAction:
    """The action after reading `analysis` (of the current step's rows) at `current_step`.

    Args:
        spec: the experiment, with `rollout` set.
        analysis: `analyse()` of the rows logged since the current step began.
        current_step: index into `spec.rollout.steps`, or ROLLED_BACK.

    Raises:
        ValueError: the spec has no rollout, or `current_step` is out of range.
    """
    if spec.rollout is None:
        raise ValueError(f"experiment {spec.id} has no rollout")
    steps = spec.rollout.steps
    if not ROLLED_BACK <= current_step < len(steps):
        raise ValueError(f"rollout step {current_step} is not in 0..{len(steps) - 1}")
    if current_step == ROLLED_BACK:
        return _action(spec, "hold", ROLLED_BACK, "rolled back: an admin restarts it", "decision")
    breach = _breach(spec, analysis)
    if breach is not None:
        metric, reason = breach
        return _action(spec, "rollback", ROLLED_BACK, reason, metric)
    units = sum((analysis.get("srm") or {}).get("units", {}).values())
    if units < spec.rollout.min_units_per_step:
        reason = f"{units} of {spec.rollout.min_units_per_step} routing keys seen in this step"
        return _action(spec, "hold", current_step, reason, "units")
    decision = analysis.get("decision") or {"outcome": "inconclusive", "sentence": "no decision"}
    if decision["outcome"] not in _ADVANCING:
        return _action(spec, "hold", current_step, decision["sentence"], "decision")
    if current_step == len(steps) - 1:
        return _action(spec, "complete", current_step, decision["sentence"], "decision")
    return _action(spec, "advance", current_step + 1, decision["sentence"], "decision")


def first_step(spec: ExperimentSpec) -> RolloutAction:
    """The rollout's start: the candidate gets the first step's share."""
    return _action(spec, "advance", 0, "the rollout begins at its first step", "start")


def _breach(spec: ExperimentSpec, analysis: dict[str, Any]) -> tuple[str, str] | None:
    if (analysis.get("srm") or {}).get("flagged"):
        return "srm", "sample-ratio mismatch: the units per arm do not follow the step's split"
    control = analysis.get("control")
    arms = analysis.get("arms") or {}
    p99 = arms.get(control, {}).get("latency_ms", {}).get("p99", {}).get("value")
    margins = guardrail_margins(spec, p99)
    for metric in DECISION_METRICS:
        diff = (analysis.get("differences") or {}).get(metric)
        if diff and metric_status(diff, margins[metric], LOWER_IS_BETTER[metric]) == "inferior":
            low, high = diff["sequence"]
            margin = margins[metric]
            return metric, (
                f"guardrail {metric}: candidate - control is {diff['estimate']} "
                f"(sequence [{low}, {high}]), beyond the margin {margin:g}"
            )
    return None


def _action(spec: ExperimentSpec, kind: Kind, step: int, reason: str, metric: str) -> RolloutAction:
    assert spec.rollout is not None
    share = 0.0 if step == ROLLED_BACK else spec.rollout.steps[step]
    others = {name: 0.0 for name in spec.arms}
    split = {**others, spec.control: 100.0 - share, spec.candidate: share}
    return RolloutAction(kind, step, share, split, reason, metric)
