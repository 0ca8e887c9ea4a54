"""The replay's comparison statistics against scipy, statsmodels and hand computations;
the one arm-spec parser."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency, ks_2samp
from statsmodels.stats.contingency_tables import mcnemar

from gateway.capture.arms import ArmTarget, Backends, parse_arm
from gateway.capture.compare import (
    NO_ANSWER,
    class_shift,
    compare_arm,
    examples_of,
    percentiles,
    prob_shift,
    verdict,
)


def one_hot(classes: list[int], k: int = 4, p: float = 0.7) -> dict[str, np.ndarray]:
    probs = np.full((len(classes), k), (1 - p) / (k - 1), np.float32)
    probs[np.arange(len(classes)), classes] = p
    return {"probabilities": probs}


def test_arm_specs_parse_and_bad_ones_are_named() -> None:
    assert parse_arm("tensorflow") == ArmTarget("tensorflow", None)
    assert parse_arm("pytorch:2") == ArmTarget("pytorch", 2)
    assert parse_arm("pytorch:2").route("digits-mlp") == (
        "/v1/models/digits-mlp/versions/2:predict",
        {"X-Backend": "pytorch"},
    )
    assert parse_arm("tensorflow").route("m")[0] == "/v1/models/m:predict"
    with pytest.raises(ValueError, match=r"'onnx:2'.*framework"):
        parse_arm("onnx:2")
    with pytest.raises(ValueError, match=r"'a b'.*arm's name"):
        parse_arm("a b")
    with pytest.raises(ValueError, match="version"):
        parse_arm("pytorch:0")
    backends = Backends("http://tf", "http://ts", "key")
    assert parse_arm("tensorflow:3").direct_route("m", backends) == (
        "http://tf/v1/models/m/versions/3:predict",
        {},
    )
    assert parse_arm("pytorch").direct_route("m", backends) == (
        "http://ts/predictions/m",
        {"Authorization": "Bearer key"},
    )
    assert parse_arm("pytorch:2").direct_route("m", Backends("a", "b"))[1] == {}


def test_an_arm_name_is_pinned_with_x_arm_and_has_no_direct_route() -> None:
    target = parse_arm("torch-pt2")
    assert target == ArmTarget(None, None, "torch-pt2") and target.name == "torch-pt2"
    assert target.route("digits-mlp") == ("/v1/models/digits-mlp:predict", {"X-Arm": "torch-pt2"})
    assert parse_arm("onnx") == ArmTarget(None, None, "onnx")  # a name: the gateway judges it
    with pytest.raises(ValueError, match="--direct needs FRAMEWORK"):
        target.direct_route("m", Backends("a", "b"))


def test_examples_flatten_batches_and_an_unanswered_request_has_none() -> None:
    answers = [one_hot([1, 2]), None, {"class": np.array([3])}]
    ex = examples_of(answers, [2, 1, 1])
    assert ex.top1.tolist() == [1, 2, NO_ANSWER, 3]
    assert ex.prob[:2] == pytest.approx([0.7, 0.7]) and np.isnan(ex.prob[2:]).all()


def test_agreement_diffs_and_mcnemar_match_hand_counts_and_statsmodels() -> None:
    rng = np.random.default_rng(0)
    n = 400
    labels = rng.integers(0, 4, n)
    captured_cls = np.where(rng.random(n) < 0.9, labels, (labels + 1) % 4)
    arm_cls = np.where(rng.random(n) < 0.8, labels, (labels + 2) % 4)
    captured = examples_of([one_hot([c]) for c in captured_cls], [1] * n)
    arm = examples_of([one_hot([c], p=0.6) for c in arm_cls], [1] * n)
    lab = labels.copy()
    lab[::5] = NO_ANSWER  # a fifth unlabelled
    result = compare_arm("pytorch:2", captured, arm, lab, np.arange(10.0), 0, 0.0)
    assert result.disagreements == int(np.sum(captured_cls != arm_cls))
    assert result.agreement == pytest.approx(np.mean(captured_cls == arm_cls))
    known = lab != NO_ANSWER
    cap_ok, arm_ok = captured_cls[known] == labels[known], arm_cls[known] == labels[known]
    b, c = int(np.sum(cap_ok & ~arm_ok)), int(np.sum(~cap_ok & arm_ok))
    assert (result.control_only, result.candidate_only, result.labelled) == (b, c, known.sum())
    table = [[np.sum(cap_ok & arm_ok), b], [c, np.sum(~cap_ok & ~arm_ok)]]
    assert result.mcnemar_p == pytest.approx(mcnemar(table, exact=True).pvalue)
    # same class: |0.7 - 0.6| = 0.1; other classes: 0.7 - 0.1333 on the captured class
    assert result.diff_max == pytest.approx(0.7 - 0.4 / 3, abs=1e-6)
    assert result.accuracy_arm == pytest.approx(arm_ok.mean())
    assert "worse" in verdict(result, result)


def test_class_shift_and_prob_shift_are_scipys() -> None:
    a, b = np.array([0, 0, 1, 2, 2, 2]), np.array([0, 1, 1, 1, 2, 3])
    expected = chi2_contingency(np.array([[2, 1, 3, 0], [1, 3, 1, 1]]), correction=False)
    assert class_shift(a, b) == pytest.approx((expected.statistic, expected.pvalue))
    assert class_shift(np.array([1, 1]), np.array([1])) == (0.0, 1.0)
    x, y = np.array([0.9, 0.8, np.nan, 0.7]), np.array([0.5, 0.6, 0.99])
    ks = ks_2samp([0.9, 0.8, 0.7], y)
    assert prob_shift(x, y) == pytest.approx((ks.statistic, ks.pvalue))


def test_percentiles_are_numpys_and_the_noise_floor_of_identical_answers_is_zero() -> None:
    lat = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    assert percentiles(lat)["p50"] == 3.0 and percentiles(lat)["p99"] == pytest.approx(96.16)
    same = examples_of([one_hot([1]), one_hot([2, 3])], [1, 2])
    floor = compare_arm("self", same, same, np.full(3, NO_ANSWER), lat, 0, float("nan"))
    assert floor.disagreements == 0 and floor.diff_max == 0.0 and floor.mcnemar_p is None
    assert "no labelled requests" in verdict(floor, floor)
