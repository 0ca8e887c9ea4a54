"""Goodput, saturation, the every-target headline and its sentence, from summaries."""

from __future__ import annotations

from dataclasses import replace

import pytest

from loadtest.cells import CellResult
from loadtest.report.capacity import capacities, saturation_text
from loadtest.report.sentences import sentences
from loadtest.report.tables import headline, headline_cells
from loadtest.results import summarise
from tests.unit.loadtest.loadtest_fakes import cell

BASE = cell(
    concurrency=64,
    throughput=100.0,
    p50_ms=2.0,
    p90_ms=3.0,
    p99_ms=5.0,
    arrival="poisson",
    offered_rate=100.0,
    p99_corrected_ms=5.0,
    goodput=99.0,
)


def _open(target: str, framework: str, rate: float, served: float, p99: float) -> CellResult:
    route = "gateway" if target.startswith("gateway") else "direct"
    return replace(
        BASE,
        target=target,
        framework=framework,
        route=route,
        offered_rate=rate,
        throughput=served,
        p99_ms=p99,
        goodput=served * (0.99 if p99 < 20 else 0.5),
        dropped=int(max(0.0, rate - served) * 5),
    )


CELLS = [
    # TF keeps up to 400/s, its p99 crosses the 20 ms objective at 800/s
    _open("tf-direct", "tensorflow", 200, 199, 4.0),
    _open("tf-direct", "tensorflow", 400, 398, 9.0),
    _open("tf-direct", "tensorflow", 800, 760, 35.0),
    # PyTorch stops following the offered rate at 400/s (served 300 < 90% of 400)
    _open("torch-direct", "pytorch", 200, 198, 6.0),
    _open("torch-direct", "pytorch", 400, 300, 15.0),
    _open("torch-direct", "pytorch", 800, 310, 19.0),
    _open("gateway-50/50", "mixed", 200, 197, 8.0),
    _open("gateway-shadow", "mixed", 200, 190, 12.0),
]
# the same cells measured three times, throughput within +-1%: medians unchanged
REPEATED = [
    replace(c, repeat=r, throughput=c.throughput * j)
    for r, j in ((1, 1.0), (2, 1.01), (3, 0.99))
    for c in CELLS
]
QUALITY = [{"model": "digits-mlp", "accuracy": {"tensorflow": 0.958, "pytorch": 0.962}}]


def test_saturation_point_by_objective_and_by_throughput() -> None:
    caps = {c.target: c for c in capacities(summarise(CELLS), slo_ms=20.0)}
    tf, torch = caps["tf-direct"], caps["torch-direct"]
    assert (tf.saturation_rate, tf.sustained_rate) == (800.0, 400.0)
    assert tf.reason == "p99 35 ms"
    assert (torch.saturation_rate, torch.sustained_rate) == (400.0, 200.0)
    assert torch.reason == "served 300/s"
    assert tf.best_goodput == pytest.approx(398 * 0.99) and tf.best_goodput_load == "poisson 400/s"
    assert saturation_text(caps["gateway-50/50"]) == "not by 200/s"


def test_without_an_objective_only_throughput_decides() -> None:
    caps = {c.target: c for c in capacities(summarise(CELLS), slo_ms=None)}
    assert caps["tf-direct"].saturation_rate is None
    assert caps["torch-direct"].saturation_rate == 400.0


def test_headline_has_every_target_and_the_pairs_winner() -> None:
    summaries = summarise(CELLS)
    rows = headline(summaries, fixed=0, slo_ms=20.0)
    assert [r.target for r in rows] == [
        "tf-direct",
        "torch-direct",
        "gateway-50/50",
        "gateway-shadow",
    ]
    by = {r.target: r for r in rows}
    assert not by["tf-direct"].throughput_winner  # one run: no difference shown
    assert by["tf-direct"].dropped == 5 + 10 + 200
    repeated = {r.target: r for r in headline(summarise(REPEATED), fixed=0, slo_ms=20.0)}
    assert repeated["tf-direct"].throughput_winner
    assert not repeated["torch-direct"].throughput_winner
    cells = headline_cells(by["torch-direct"])
    assert "400/s (served 300/s)" in cells and "dropped" not in cells


def test_sentence_names_winner_margin_confidence_accuracy_and_server() -> None:
    summaries = summarise(REPEATED)
    rows = headline(summaries, fixed=0, slo_ms=20.0)
    meta = {"quality": QUALITY, "environment": {"tf_serving": "tensorflow_model_server"}}
    [line] = sentences(rows, meta, "poisson 200/s")
    assert line.startswith("digits-mlp over REST (called directly): TensorFlow served it better")
    assert "760 vs 310 req/s at best (2.45x; p=" in line and "3+3 runs, threshold 5%)" in line
    assert "at equal accuracy (TF 95.8%, PyTorch 96.2% test accuracy)" in line
    assert "the real tensorflow_model_server" in line
    assert "saturates 800/s (p99 35 ms) vs 400/s (served 300/s)" in line


def test_one_run_names_no_winner_however_large_the_gap() -> None:
    rows = headline(summarise(CELLS), fixed=0, slo_ms=20.0)
    [line] = sentences(rows, {"quality": QUALITY}, "poisson 200/s")
    assert line.startswith(
        "digits-mlp over REST (called directly): no difference shown (1 run; run with "
        "--repeats 3) between TensorFlow and PyTorch: 760 vs 310 req/s at best"
    )
    assert "served it better" not in line


def test_sentence_says_when_accuracy_differs() -> None:
    rows = headline(summarise(CELLS), fixed=0, slo_ms=20.0)
    quality = [{"model": "digits-mlp", "accuracy": {"tensorflow": 0.93, "pytorch": 0.96}}]
    [line] = sentences(rows, {"quality": quality, "environment": {"tf_serving": "bundled"}}, "x")
    assert "not at equal accuracy: PyTorch is 3.0 points more accurate" in line
    assert "the bundled TF Serving-compatible server" in line
