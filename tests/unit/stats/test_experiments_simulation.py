"""Simulated experiments: the analysis' error rates hold under continuous monitoring.

Seeded and vectorised over experiments (numpy), so each test takes seconds. The issue's
acceptance: read after every 100 units up to 5,000, at most alpha + 1 point of 500 null
experiments ever declare a difference (the per-request fixed-horizon test, read the same
way, exceeds that); a 5-point accuracy gap is found in the right direction; a 45/55 split
on a configured 50/50 is flagged; one heavy user does not make a null latency difference
significant.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from gateway.experiments.stats import clustered as cl
from gateway.experiments.stats import sequential as sq
from gateway.experiments.stats.analysis import analyse
from tests.unit.experiments.experiment_rows import CANDIDATE, CONTROL, define, experiment_rows, row

ALPHA = 0.05
EXPERIMENTS, UNITS, STEP = 500, 5000, 100


def _simulate(seed: int, gap: float) -> dict[str, np.ndarray]:
    """Per experiment (rows) and unit (columns, in arrival order): arm, requests, correct.

    Each unit sends 1 + Poisson(1) labelled requests; its own accuracy is Beta-distributed
    around 0.90 (control) or 0.90 + gap (candidate), so requests of one unit correlate."""
    rng = np.random.default_rng(seed)
    shape = (EXPERIMENTS, UNITS)
    candidate = rng.random(shape) < 0.5
    requests = 1 + rng.poisson(1.0, shape)
    mean = np.where(candidate, 0.90 + gap, 0.90)
    p_unit = rng.beta(mean * 20, (1 - mean) * 20)
    correct = rng.binomial(requests, p_unit)
    return {"candidate": candidate, "requests": requests.astype(float), "correct": correct * 1.0}


def _looks(sim: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Cumulative per-arm sums at every STEP units: (experiments, looks) arrays."""
    idx = np.arange(STEP, UNITS + 1, STEP) - 1
    out = {}
    for name, mask in (("a", ~sim["candidate"]), ("b", sim["candidate"])):
        x, y = sim["correct"] * mask, sim["requests"] * mask
        for key, values in (("k", mask * 1.0), ("sx", x), ("sy", y), ("sxx", x * x),
                            ("syy", y * y), ("sxy", x * y)):  # fmt: skip
            out[name + key] = np.cumsum(values, axis=1)[:, idx]
    return out


def _sequential_p(s: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The analysis' accuracy difference at every look: (estimate, always-valid p)."""
    ra, sea = cl.ratio_se_from_sums(s["ak"], s["asx"], s["asy"], s["asxx"], s["asyy"], s["asxy"])
    rb, seb = cl.ratio_se_from_sums(s["bk"], s["bsx"], s["bsy"], s["bsxx"], s["bsyy"], s["bsxy"])
    diff = rb - ra
    return diff, sq.always_valid_p(diff, np.hypot(sea, seb), s["ak"] + s["bk"], ALPHA)


def _fixed_horizon_p(s: dict[str, np.ndarray]) -> np.ndarray:
    """The old analysis: pooled two-proportion z test over requests, as if each look were
    the only one."""
    pooled = (s["asx"] + s["bsx"]) / (s["asy"] + s["bsy"])
    se = np.sqrt(pooled * (1 - pooled) * (1 / s["asy"] + 1 / s["bsy"]))
    z = (s["bsx"] / s["bsy"] - s["asx"] / s["asy"]) / se
    return 2 * stats.norm.sf(np.abs(z))


def test_null_experiments_read_every_100_units_keep_alpha(figures: Callable[[str], None]) -> None:
    looks = _looks(_simulate(seed=1, gap=0.0))
    _, p_seq = _sequential_p(looks)
    p_fixed = _fixed_horizon_p(looks)
    # the vectorised z test is statsmodels' at one look
    one = proportions_ztest([looks["asx"][0, -1], looks["bsx"][0, -1]],
                            [looks["asy"][0, -1], looks["bsy"][0, -1]])  # fmt: skip
    assert p_fixed[0, -1] == pytest.approx(one[1])
    ever_seq = float((p_seq < ALPHA).any(axis=1).mean())
    ever_fixed = float((p_fixed < ALPHA).any(axis=1).mean())
    figures(f"\n{EXPERIMENTS} null experiments, read every {STEP} units up to {UNITS}: ever "
          f"declared a difference: anytime-valid {ever_seq:.3f}, fixed-horizon {ever_fixed:.3f}")  # fmt: skip
    assert ever_seq <= ALPHA + 0.01 < ever_fixed


@pytest.mark.parametrize("gap", [-0.05, 0.05])
def test_a_five_point_gap_is_found_in_its_direction(
    gap: float, figures: Callable[[str], None]
) -> None:
    diff, p = _sequential_p(_looks(_simulate(seed=2, gap=gap)))
    found = (p[:, -1] < ALPHA) & (np.sign(diff[:, -1]) == np.sign(gap))
    wrong = ((p < ALPHA) & (np.sign(diff) == -np.sign(gap))).any(axis=1)
    figures(f"\ngap {gap:+.2f}: found by {UNITS} units in {found.mean():.3f}, wrong sign ever "
          f"{wrong.mean():.3f}")  # fmt: skip
    assert found.mean() > 0.95 and wrong.mean() == 0.0


@pytest.mark.parametrize(("control_acc", "candidate_acc", "outcome"),
                         [(0.90, 0.85, "candidate_inferior"), (0.85, 0.90, "candidate_superior")])  # fmt: skip
def test_the_decision_names_the_direction_of_a_five_point_gap(
    control_acc: float, candidate_acc: float, outcome: str
) -> None:
    rows = experiment_rows(3, 3000, {CONTROL: control_acc, CANDIDATE: candidate_acc})
    result = analyse(rows, [define()], "exp")
    decision = result["decision"]
    assert decision["outcome"] == outcome and decision["metric"] == "accuracy"
    estimate = result["differences"]["accuracy"]["estimate"]
    assert np.sign(estimate) == np.sign(candidate_acc - control_acc)
    assert "inferior" in decision["sentence"] or "superior" in decision["sentence"]


def test_equal_arms_are_not_declared_different() -> None:
    rows = experiment_rows(4, 3000, {CONTROL: 0.9, CANDIDATE: 0.9})
    decision = analyse(rows, [define()], "exp")["decision"]
    assert decision["outcome"] in ("candidate_non_inferior", "inconclusive")


def test_a_45_55_split_on_a_configured_50_50_is_flagged_and_withholds_the_decision() -> None:
    rows = experiment_rows(5, 5000, {CONTROL: 0.90, CANDIDATE: 0.85}, share=0.55)
    result = analyse(rows, [define()], "exp")
    assert result["srm"]["flagged"] and result["srm"]["p_value"] < 0.001
    assert result["decision"]["outcome"] == "withheld_srm"
    fair = analyse(experiment_rows(5, 5000, {CONTROL: 0.9, CANDIDATE: 0.9}), [define()], "exp")
    assert not fair["srm"]["flagged"] and fair["srm"]["p_value"] > 0.001


def _heavy_user_latency(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Null latency: 1,000 keys, one of them sending 40% of 6,000 requests; each key has
    its own latency offset (its inputs, its network)."""
    light = rng.integers(1, 1000, 3600)
    unit = np.r_[np.zeros(2400, dtype=np.int64), light]
    arm = rng.random(1000) < 0.5  # sticky per key
    latency = 10 + rng.gamma(2.0, 1.0, 1000)[unit] + rng.gamma(2.0, 0.3, unit.size)
    return unit, arm[unit], latency


def test_a_heavy_user_does_not_make_a_null_latency_difference_significant(
    figures: Callable[[str], None],
) -> None:
    rng = np.random.default_rng(6)
    runs, ours, naive = 100, {50: 0, 99: 0}, 0
    for _ in range(runs):
        unit, is_candidate, latency = _heavy_user_latency(rng)
        a, b = ~is_candidate, is_candidate
        found = [cl.quantiles(latency[m], unit[m], (0.5, 0.99)) for m in (a, b)]
        for i, q in enumerate((50, 99)):
            d = cl.difference(found[0][i][0], found[1][i][0])
            ours[q] += bool(sq.always_valid_p(d.value, d.se, d.units, ALPHA) < ALPHA)
        naive += stats.mannwhitneyu(latency[a], latency[b]).pvalue < ALPHA
    figures(f"\nheavy user, {runs} null experiments: significant p50 {ours[50] / runs:.3f}, "
          f"p99 {ours[99] / runs:.3f}; per-request Mann-Whitney {naive / runs:.3f}")  # fmt: skip
    assert ours[50] / runs <= ALPHA and ours[99] / runs <= ALPHA
    assert naive / runs > 0.5  # the per-request test is fooled


def test_shadow_pairs_get_mcnemar_on_the_discordant_labelled_pairs() -> None:
    rows = []
    # 30 pairs: control right & candidate wrong in 8, the reverse in 2, both right in 20
    for i in range(30):
        ctrl_top1, cand_top1 = (0, 1) if i < 8 else (1, 0) if i < 10 else (0, 0)
        rows.append(row(f"q{i}", CONTROL, f"u{i}", i, 10.0, top1=ctrl_top1, label=0))
        rows.append(row(f"q{i}", CANDIDATE, f"u{i}", i + 0.5, 12.0 + i % 3, kind="shadow",
                        top1=cand_top1, agreed=int(ctrl_top1 == cand_top1)))  # fmt: skip
    paired = analyse(rows, [define()], "exp")["paired"]
    assert paired["pairs"] == 30 and paired["disagreements"] == 10
    acc = paired["accuracy"]
    assert (acc["control_only_right"], acc["candidate_only_right"]) == (8, 2)
    # exact McNemar = two-sided binomial test on the 10 discordant pairs (hand check)
    assert acc["mcnemar_exact_p"] == pytest.approx(stats.binomtest(2, 10).pvalue)
    lat = paired["latency_ms"]
    assert lat["mean_diff"] == pytest.approx(3.0) and lat["ci95"][0] > 0
