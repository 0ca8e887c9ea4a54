"""A/B/n analysis (issue 22): every candidate against the control, at an error rate held
across the comparisons (Bonferroni), checked against a hand computation of the boundary."""

from __future__ import annotations

import math

import numpy as np

from gateway.experiments.log.records import Event, Row
from gateway.experiments.report import markdown
from gateway.experiments.stats.analysis import analyse, corrected_alpha
from gateway.settings import ExperimentSpec
from tests.unit.experiments.experiment_rows import row

ARMS = {
    "tf-v1": {"framework": "tensorflow", "version": 1},
    "tf-v2": {"framework": "tensorflow", "version": 2},
    "pt-v2": {"framework": "pytorch", "version": 2},
}
ACCURACY = {"tf-v1": 0.80, "tf-v2": 0.95, "pt-v2": 0.60}


def _define(**extra: object) -> Event:
    spec = ExperimentSpec(id="exp", model="m", arms=ARMS, control="tf-v1", **extra)  # type: ignore[arg-type]
    return Event("exp", "define", "configured", spec.model_dump(mode="json"), 0.0)


def _rows(units: int, seed: int = 3) -> list[Row]:
    rng = np.random.default_rng(seed)
    names = list(ARMS)
    rows = []
    for u in range(units):
        arm = names[u % 3]
        framework = str(ARMS[arm]["framework"])
        for k in range(2):
            right = rng.random() < ACCURACY[arm]
            latency = 10.0 + rng.gamma(2.0, 0.5)
            label = 0 if right else 1
            rid = f"r{u}-{k}"
            rows.append(
                row(rid, arm, f"user{u}", u + k / 10, latency, label=label, framework=framework)
            )
    return rows


def _multiplier(units: int, alpha: float, tuned: int = 5000) -> float:
    """Howard et al.'s normal-mixture boundary m(n), written out again (see `sequential`)."""
    log_a = -2.0 * math.log(alpha)
    v = units * (log_a + math.log(1.0 + log_a)) / tuned
    return math.sqrt(2.0 * (1.0 + v) / v * math.log(math.sqrt(1.0 + v) / alpha))


def test_bonferroni_splits_alpha_over_the_candidates() -> None:
    assert corrected_alpha(0.05, 1) == 0.05
    assert corrected_alpha(0.05, 2) == 0.025
    assert math.isclose(corrected_alpha(0.1, 3), 0.1 / 3)


def test_every_candidate_is_compared_with_the_control_at_the_corrected_alpha() -> None:
    result = analyse(_rows(1500), [_define()], "exp")
    assert (result["control"], result["candidates"]) == ("tf-v1", ["tf-v2", "pt-v2"])
    assert (result["alpha"], result["comparison_alpha"]) == (0.05, 0.025)
    assert set(result["arms"]) == set(ARMS) and set(result["comparisons"]) == {"tf-v2", "pt-v2"}
    for candidate in ("tf-v2", "pt-v2"):
        diff = result["comparisons"][candidate]["differences"]["accuracy"]
        low, high = diff["sequence"]
        half_width = (high - low) / 2 / diff["se"]
        assert math.isclose(half_width, _multiplier(diff["units"], 0.025), rel_tol=2e-3)
        assert not math.isclose(half_width, _multiplier(diff["units"], 0.05), rel_tol=2e-3)
    decisions = {
        c: result["comparisons"][c]["decision"]["metrics"]["accuracy"] for c in ARMS if c != "tf-v1"
    }
    assert decisions == {"tf-v2": "superior", "pt-v2": "inferior"}
    assert [line.split(":")[0] for line in result["verdict"]] == ["tf-v2", "pt-v2"]
    # The top level is the first candidate's, as for two arms.
    assert result["candidate"] == "tf-v2"
    assert result["decision"] == result["comparisons"]["tf-v2"]["decision"]


def test_the_top_level_follows_the_rolled_out_candidate() -> None:
    rollout = {"candidate": "pt-v2", "steps": [50, 100]}
    split = {"tf-v1": 1.0, "tf-v2": 1.0, "pt-v2": 1.0}
    result = analyse(_rows(300), [_define(rollout=rollout, split=split)], "exp")
    assert result["candidate"] == "pt-v2"
    assert result["differences"] == result["comparisons"]["pt-v2"]["differences"]


def test_srm_covers_every_arm() -> None:
    result = analyse(_rows(900), [_define()], "exp")
    assert result["srm"]["units"] == {"tf-v1": 300, "tf-v2": 300, "pt-v2": 300}
    assert not result["srm"]["flagged"]


def test_the_report_names_every_arm_and_what_it_serves() -> None:
    text = markdown(analyse(_rows(900), [_define()], "exp"))
    head = text.split("## Full analysis")[0]
    assert (
        "control tf-v1 (tensorflow v1); candidates tf-v2 (tensorflow v2), pt-v2 (pytorch v2)"
        in head
    )
    assert "at alpha 0.025 each (0.05 over 2 comparisons, bonferroni)" in head
    assert "- **tf-v2**:" in head and "- **pt-v2**:" in head
    assert "tf-v2 - tf-v1:" in head and "pt-v2 - tf-v1:" in head
    assert "97.5% confidence sequence" in head
    for arm in ARMS:
        assert f"\n| {arm} |" in head
