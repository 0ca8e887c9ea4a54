"""`python -m loadtest compare`: cells matched across runs, medians from each CSV, Welch's
test of B against A (checked against scipy), a verdict per cell, every plot rendered."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from scipy import stats
from typer.testing import CliRunner

from loadtest.__main__ import app
from loadtest.compare.runs import build_comparison
from loadtest.results import write_cells_csv
from tests.unit.loadtest.loadtest_fakes import cell

BASE = cell(concurrency=16, p50_ms=4.0, p90_ms=6.0, p99_ms=9.0, max_ms=12.0, p99_corrected_ms=11.0)

TPUT_A, TPUT_B = (200.0, 204.0, 197.0), (230.0, 236.0, 228.0)
P50_A, P50_B = (4.0, 4.1, 3.9), (4.05, 3.95, 4.0)


def _run(path: Path, tputs: tuple[float, ...], p50s: tuple[float, ...], extra: bool) -> Path:
    cells = [
        replace(BASE, repeat=i + 1, throughput=t, p50_ms=p)
        for i, (t, p) in enumerate(zip(tputs, p50s, strict=True))
    ]
    if extra:
        cells.append(replace(BASE, target="torch-direct", framework="pytorch"))
    (path / "raw").mkdir(parents=True)
    write_cells_csv(path / "raw" / "cells.csv", cells)
    return path


def test_comparison_numbers_and_verdicts(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", TPUT_A, P50_A, extra=True)
    b = _run(tmp_path / "b", TPUT_B, P50_B, extra=False)
    result = build_comparison(a, b, tmp_path / "out")
    [cell] = result.cells
    assert (cell.a.throughput, cell.b.throughput) == (200.0, 230.0)  # medians of repeats
    ref = stats.ttest_ind(TPUT_B, TPUT_A, equal_var=False)
    assert cell.throughput.p_value == pytest.approx(float(ref.pvalue))
    assert cell.throughput.df == pytest.approx(float(ref.df))
    assert "mean req/s +15.5% (better, p=" in cell.verdict  # 231.33 vs 200.33
    assert "mean p50 +0.0% (no difference shown, p=" in cell.verdict
    assert result.only_a == ["digits-mlp torch-direct rest c=16"] and result.only_b == []
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "| digits-mlp | tf-direct | rest | c=16 | 200 | 230 | 4.00 | 4.00 | 9.00 | 9.00 |" in md
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["cells"][0]["b"]["throughput_samples"] == list(TPUT_B)
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.count('src="data:image/png;base64,') == 4 and 'id="comparison"' in page


def test_one_run_each_shows_no_difference(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", (200.0,), (4.0,), extra=False)
    b = _run(tmp_path / "b", (260.0,), (3.0,), extra=False)
    [cell] = build_comparison(a, b, tmp_path / "out").cells
    one = "no difference shown, 1 run; run with --repeats 3"
    assert cell.verdict == f"B vs A: mean req/s +30.0% ({one}); mean p50 -25.0% ({one})"


def test_a_significant_change_under_the_threshold_is_no_difference(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", (200.0, 200.5, 199.5), P50_A, extra=False)
    b = _run(tmp_path / "b", (204.0, 204.5, 203.5), P50_A, extra=False)
    [cell] = build_comparison(a, b, tmp_path / "out").cells
    assert cell.throughput.p_value < 0.01  # significant, yet only +2%
    assert "mean req/s +2.0% (no difference shown, +2.0% is under the 5% threshold" in cell.verdict


def test_cli_writes_next_to_run_b_and_refuses_a_non_report(tmp_path: Path) -> None:
    a = _run(tmp_path / "a", TPUT_A, P50_A, extra=False)
    b = _run(tmp_path / "b", TPUT_B, P50_B, extra=False)
    done = CliRunner().invoke(app, ["compare", str(a), str(b)])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "compare-a-vs-b" / "index.html").is_file()
    assert "tf-direct rest c=16: B vs A: mean req/s +15.5%" in done.output
    bad = CliRunner().invoke(app, ["compare", str(a), str(tmp_path / "nothing")])
    assert bad.exit_code != 0 and "no raw/cells.csv" in str(bad.exception)
