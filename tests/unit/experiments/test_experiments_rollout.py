"""The rollout step rule: advance on a passing decision, roll back on a guardrail breach."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.experiments.rollout import ROLLED_BACK, guardrail_margins, next_rollout_action
from gateway.experiments.stats.analysis import analyse
from gateway.settings import ExperimentSpec
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows, row

ROLLOUT = {"steps": [1, 5, 25, 50, 100], "min_units_per_step": 200}


def _spec(**rollout: Any) -> ExperimentSpec:
    return ExperimentSpec(id="exp", model="m", rollout={**ROLLOUT, **rollout})


def _analysis(outcome: str, units: int = 500, flagged: bool = False) -> dict[str, Any]:
    """A hand-made analysis: every difference comfortably within its margin."""
    within = {"estimate": 0.0, "sequence": [-0.001, 0.001], "units": units}
    return {
        "control": CONTROL,
        "arms": {CONTROL: {"latency_ms": {"p99": {"value": 20.0}}}},
        "srm": {"units": {CONTROL: units // 2, CANDIDATE: units - units // 2}, "flagged": flagged},
        "decision": {"outcome": outcome, "sentence": f"the decision is {outcome}"},
        "differences": {m: within for m in ("error_rate", "accuracy", "latency_p99_ms")},
    }


def test_a_passing_decision_advances_step_by_step_to_complete() -> None:
    spec, step, shares = _spec(), 0, []
    while True:
        action = next_rollout_action(spec, _analysis("candidate_non_inferior"), step)
        shares.append(action.share)
        if action.kind == "complete":
            break
        assert action.kind == "advance" and action.step == step + 1
        step = action.step
    assert shares == [5, 25, 50, 100, 100]
    assert action.split == {CONTROL: 0.0, CANDIDATE: 100.0}


@pytest.mark.parametrize(
    ("analysis", "kind", "metric"),
    [
        (_analysis("candidate_superior", units=150), "hold", "units"),
        (_analysis("inconclusive"), "hold", "decision"),
        (_analysis("candidate_non_inferior", flagged=True), "rollback", "srm"),
    ],
)
def test_hold_and_rollback_rules(analysis: dict[str, Any], kind: str, metric: str) -> None:
    action = next_rollout_action(_spec(), analysis, 2)
    assert (action.kind, action.metric) == (kind, metric)
    if kind == "rollback":
        assert action.step == ROLLED_BACK and action.share == 0 and action.split[CANDIDATE] == 0
    else:
        assert action.step == 2 and action.share == 25


def test_a_candidate_with_wrong_answers_is_rolled_back_before_the_unit_minimum() -> None:
    rows = experiment_rows(12, 150, {CONTROL: 0.95, CANDIDATE: 0.55})
    action = next_rollout_action(_spec(), analyse(rows, [define()], "exp"), 1)
    assert action.kind == "rollback" and action.metric == "accuracy" and action.share == 0
    assert "guardrail accuracy" in action.reason


def test_a_failing_candidate_backend_is_rolled_back_on_error_rate() -> None:
    rows = [row(f"r{u}", arm, f"u{u}", float(u), 10.0 + u % 7 / 10,
                status=503 if arm == CANDIDATE and u % 3 else 200, label=0)
            for u in range(400) for arm in [CANDIDATE if u % 2 else CONTROL]]  # fmt: skip
    action = next_rollout_action(_spec(), analyse(rows, [define()], "exp"), 3)
    assert (action.kind, action.metric) == ("rollback", "error_rate")


def test_guardrails_default_to_the_margins_and_override_them() -> None:
    spec = ExperimentSpec(id="e", model="m", margins={"accuracy_points": 1, "p99_ratio": 0.1},
                          rollout={"guardrails": {"accuracy_points": 3}})  # fmt: skip
    margins = guardrail_margins(spec, control_p99_ms=30.0)
    assert margins["accuracy"] == pytest.approx(0.03)
    assert margins["latency_p99_ms"] == pytest.approx(3.0) and margins["error_rate"] == 0.01


def test_rolled_back_holds_and_bad_input_is_refused() -> None:
    assert next_rollout_action(_spec(), _analysis("candidate_superior"), ROLLED_BACK).kind == "hold"
    with pytest.raises(ValueError, match=r"not in 0\.\.4"):
        next_rollout_action(_spec(), _analysis("candidate_superior"), 5)
    with pytest.raises(ValueError, match="has no rollout"):
        next_rollout_action(ExperimentSpec(id="e", model="m"), _analysis("inconclusive"), 0)


def test_no_candidate_traffic_yet_holds_on_units() -> None:
    rows = [row(f"r{i}", CONTROL, f"u{i}", float(i), 10.0) for i in range(50)]
    first_step = define(rollout={}, split={CONTROL: 99.0, CANDIDATE: 1.0})
    action = next_rollout_action(_spec(), analyse(rows, [first_step], "exp"), 0)
    assert (action.kind, action.metric, action.share) == ("hold", "units", 1.0)
