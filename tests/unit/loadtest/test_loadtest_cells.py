"""Reading a finished cell: processes merged, corrected p99 beside the measured one,
goodput within the objective and dropped requests summed (hand-computed figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.telemetry.histogram import LatencyHistogram
from loadtest.cells import CellSpec, Timing, read_cell
from loadtest.targets import Target

TARGET = Target("tf-direct", "rest", "tensorflow", "direct", "http://127.0.0.1:1")


def _write(out: Path, index: int, latencies_s: list[float], dropped: int = 0) -> None:
    hist = LatencyHistogram()
    for value in latencies_s:
        hist.record(value)
    record = {
        "pid": 1000 + index,
        "role": "local" if index == 0 else "worker",
        "wall_s": 2.0,
        "cpu_s": 0.5,
        "errors": 1,
        "dropped": dropped,
        "error_samples": [],
        "histogram": hist.to_json(),
    }
    (out / f"process-{1000 + index}.json").write_text(json.dumps(record))


def test_closed_loop_cell_has_corrected_p99_and_goodput(tmp_path: Path) -> None:
    # two processes: 199 answers of 10 ms and one stall of 1000 ms, in 2 s
    _write(tmp_path, 0, [0.010] * 99 + [1.0])
    _write(tmp_path, 1, [0.010] * 100)
    spec = CellSpec("digits-mlp", TARGET, 4, 1, Timing(), workers=2, slo_ms=50.0)
    cell = read_cell(spec, tmp_path)
    assert (cell.requests, cell.errors, cell.throughput) == (200, 2, 100.0)
    # measured: rank round(99% of 200) = 198 is a 10 ms answer, the stall hides in p99
    assert cell.p50_ms == pytest.approx(10.0, rel=1e-3)
    assert cell.p99_ms == pytest.approx(10.0, rel=1e-3)
    # corrected at the mean, (199 * 10 + 1000) / 200 = 14.95 ms: the stall adds
    # 1000 - 14.95 k for k = 1 ... 66 (the last, 13.3 ms, is below the interval): 266 values;
    # rank round(99% of 266) = 263 is the 63rd of the 66 above 13.3 ms: 1000 - 3 * 14.95
    assert cell.p99_corrected_ms == pytest.approx(1000 - 3 * 14.95, rel=2e-3)
    assert cell.goodput == pytest.approx(199 / 2.0)  # answered within 50 ms, per second
    assert cell.arrival == "closed" and cell.dropped == 0


def test_open_loop_cell_sums_dropped_and_needs_no_correction(tmp_path: Path) -> None:
    _write(tmp_path, 0, [0.010] * 50 + [0.200] * 10, dropped=30)
    _write(tmp_path, 1, [0.010] * 60, dropped=12)
    spec = CellSpec("digits-mlp", TARGET, 64, 1, Timing(), 2, "poisson", 100.0, 0.0)
    cell = read_cell(spec, tmp_path)
    assert (cell.arrival, cell.offered_rate, cell.dropped) == ("poisson", 100.0, 42)
    assert cell.p99_corrected_ms == cell.p99_ms == pytest.approx(200.0, rel=1e-3)
    assert cell.goodput != cell.goodput  # nan: no objective given


def test_a_cell_without_measurements_says_so(tmp_path: Path) -> None:
    (tmp_path / "locust.log").write_text("Traceback: boom")
    spec = CellSpec("digits-mlp", TARGET, 1, 1, Timing())
    with pytest.raises(RuntimeError, match="wrote no measurements"):
        read_cell(spec, tmp_path)
