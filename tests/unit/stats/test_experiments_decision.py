"""The decision rule, the sample-ratio check over split changes, and the spec's rules."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import stats

from gateway.experiments.log.records import Event
from gateway.experiments.stats.analysis import analyse
from gateway.experiments.stats.decision import decide, margins_for, metric_status
from gateway.settings import ExperimentSpec, Margins
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows, row


def _diff(low: float | None, high: float | None, estimate: float | None = 0.0) -> dict[str, Any]:
    return {"sequence": [low, high], "estimate": estimate, "units": 100}


@pytest.mark.parametrize(
    ("low", "high", "lower_is_better", "status"),
    [
        (0.01, 0.03, False, "superior"),  # accuracy up
        (-0.004, 0.02, False, "non_inferior"),  # within the 0.005 margin
        (-0.02, 0.01, False, "inconclusive"),  # crosses the margin
        (-0.03, -0.01, False, "inferior"),  # worse than the margin allows
        (-0.003, -0.001, False, "non_inferior"),  # surely worse, but within the margin
        (-0.03, -0.01, True, "superior"),  # latency down
        (0.01, 0.03, True, "inferior"),
    ],
)
def test_metric_status_reads_the_sequence_against_zero_and_the_margin(
    low: float, high: float, lower_is_better: bool, status: str
) -> None:
    assert metric_status(_diff(low, high), 0.005, lower_is_better) == status


def test_margins_take_the_stricter_of_ms_and_ratio() -> None:
    both = margins_for(Margins(p99_ms=2.0, p99_ratio=0.1), control_p99_ms=12.0)
    assert both["latency_p99_ms"] == pytest.approx(1.2) and both["accuracy"] == 0.005
    assert margins_for(Margins(p99_ratio=0.5), 12.0)["latency_p99_ms"] == pytest.approx(6.0)


def test_decision_order_srm_then_inferior_then_inconclusive_then_superior() -> None:
    margins = {"error_rate": 0.01, "accuracy": 0.005, "latency_p99_ms": 1.0}
    good = {"error_rate": _diff(0.0, 0.0), "accuracy": _diff(0.01, 0.02, 0.015),
            "latency_p99_ms": _diff(-0.5, 0.5)}  # fmt: skip
    assert decide(good, margins, True, 0.05)["outcome"] == "withheld_srm"
    superior = decide(good, margins, False, 0.05)
    assert superior["outcome"] == "candidate_superior" and superior["metric"] == "accuracy"
    slow = {**good, "latency_p99_ms": _diff(1.5, 3.0, 2.2)}
    verdict = decide(slow, margins, False, 0.05)
    assert verdict["outcome"] == "candidate_inferior" and verdict["metric"] == "latency_p99_ms"
    assert "p99 latency is higher" in verdict["sentence"]
    unknown = {**good, "accuracy": _diff(None, None, None)}
    waiting = decide(unknown, margins, False, 0.05)
    assert waiting["outcome"] == "inconclusive" and "feedback" in waiting["sentence"]
    flat = {**good, "accuracy": _diff(-0.001, 0.002, 0.0)}
    assert decide(flat, margins, False, 0.05)["outcome"] == "candidate_non_inferior"


def test_srm_follows_split_changes() -> None:
    """90/10 for the first 2,000 units, then 50/50: units follow the split in force when
    they arrived, so the check passes; the same traffic against a 50/50-only spec fails."""
    rng = np.random.default_rng(8)
    rows = []
    for u in range(4000):
        share = 0.1 if u < 2000 else 0.5
        arm = CANDIDATE if rng.random() < share else CONTROL
        rows.append(row(f"r{u}", arm, f"user{u}", float(u), 10.0))
    defined = define(split={CONTROL: 90.0, CANDIDATE: 10.0})
    moved = Event("exp", "split", "step", {"split": {CONTROL: 50.0, CANDIDATE: 50.0}}, 1999.5)
    followed = analyse(rows, [defined, moved], "exp")["srm"]
    assert not followed["flagged"]
    assert followed["expected"][CANDIDATE] == pytest.approx(2000 * 0.1 + 2000 * 0.5)
    assert analyse(rows, [define()], "exp")["srm"]["flagged"]


def test_srm_p_value_is_scipy_chi_square() -> None:
    rows = experiment_rows(9, 1000, {CONTROL: 0.9, CANDIDATE: 0.9}, share=0.47)
    srm = analyse(rows, [define()], "exp")["srm"]
    observed = [srm["units"][CONTROL], srm["units"][CANDIDATE]]
    assert srm["p_value"] == pytest.approx(stats.chisquare(observed).pvalue, rel=1e-6)


def test_thirty_percent_wrong_answers_decide_by_direction() -> None:
    worse = analyse(experiment_rows(10, 400, {CONTROL: 0.95, CANDIDATE: 0.65}), [define()], "e")
    assert worse["decision"]["outcome"] == "candidate_inferior"
    assert worse["decision"]["metric"] == "accuracy"
    # superiority also needs every other metric within its margin: at 400 units the error
    # rate (0 of ~400 requests per arm) and p99 sequences are still wider, so the rule waits
    early = analyse(experiment_rows(10, 400, {CONTROL: 0.65, CANDIDATE: 0.95}), [define()], "e")
    assert early["decision"]["outcome"] == "inconclusive"
    assert early["decision"]["metrics"]["accuracy"] == "superior"
    assert early["decision"]["metric"] in ("error_rate", "latency_p99_ms")
    better = analyse(experiment_rows(10, 1500, {CONTROL: 0.65, CANDIDATE: 0.95}), [define()], "e")
    assert better["decision"]["outcome"] == "candidate_superior"
    assert better["differences"]["accuracy"]["sequence"][0] > 0


def test_spec_roles_and_arms_are_one_pair() -> None:
    spec = ExperimentSpec(id="e", model="m", control={"framework": "pytorch"},
                          candidate={"framework": "tensorflow", "version": 2})  # fmt: skip
    # The older forms name each arm by its framework (issue 22).
    assert [a.framework for a in spec.arms.values()] == ["pytorch", "tensorflow"]
    assert spec.arms["tensorflow"].version == 2
    assert (spec.control, spec.candidates) == ("pytorch", ["tensorflow"])
    old = ExperimentSpec(
        id="e", model="m", arms=[{"framework": "pytorch"}, {"framework": "tensorflow"}]
    )
    assert old.arms[old.control].framework == "pytorch"
    assert ExperimentSpec.model_validate(spec.model_dump(mode="json")) == spec


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"control": {"framework": "pytorch"}}, "give both control and candidate"),
        ({"control": {"framework": "pytorch"}, "candidate": {"framework": "tensorflow"},
          "arms": [{"framework": "tensorflow"}, {"framework": "pytorch"}]}, "arms must be"),
        ({"margins": {"accuracy_points": 1}}, "give p99_ms, p99_ratio or both"),
        ({"rollout": {"steps": [1, 50, 25, 100]}}, "must rise strictly"),
        ({"rollout": {"steps": [1, 50]}}, "must end at 100"),
        ({"rollout": {"steps": [0, 100]}}, "(0, 100]"),
        ({"alpha": 0.6}, "alpha"),
    ],
)  # fmt: skip
def test_spec_rejects_inconsistent_fields_with_a_message(
    extra: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace("]", r"\]")):
        ExperimentSpec(id="e", model="m", **extra)


def test_without_feedback_accuracy_blocks_the_decision_unless_dropped_from_the_spec() -> None:
    rows = [(*r[:-1], None) for r in experiment_rows(14, 3000, {CONTROL: 0.9, CANDIDATE: 0.9})]
    strict = analyse(rows, [define()], "exp")["decision"]
    assert (strict["outcome"], strict["metric"]) == ("inconclusive", "accuracy")
    assert "POST /v1/feedback" in strict["sentence"]
    unlabelled = define(decision_metrics=["error_rate", "latency_p99_ms"])
    relaxed = analyse(rows, [unlabelled], "exp")["decision"]
    assert relaxed["outcome"] == "candidate_non_inferior" and "accuracy" not in relaxed["metrics"]
    with pytest.raises(ValidationError, match="repeats"):
        ExperimentSpec(id="e", model="m", decision_metrics=["accuracy", "accuracy"])
