"""`python -m loadtest compare RUN_A RUN_B`: two runs, cell by cell, with a verdict.

Each run's `raw/cells.csv` is summarised exactly as its own report does
(`loadtest.results.summarise`); cells are matched on (model, target, protocol, load).
Per cell: both medians, the relative difference of B against A, and Welch's t-test over
the repeats (`loadtest.report.significance`) of throughput, p50 and p99, and a plain verdict
by the report's own rule (`significance.decide`: significant and at least 5%).
Both runs go on the same charts (A solid, B dashed, one colour per target).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.compare.comparison import COLUMNS, CellComparison, CellKey, Comparison, cell_row
from loadtest.compare.page import render
from loadtest.report.significance import decide, welch
from loadtest.results import Summary, read_cells_csv, summarise


def key(s: Summary) -> CellKey:
    return (s.model, s.target, s.protocol, s.load)


def load_run(run: Path) -> list[Summary]:
    """A run's summaries from its `raw/cells.csv`.

    Raises:
        FileNotFoundError: naming the missing CSV.
    """
    path = run / "raw" / "cells.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not a load-test report (no raw/cells.csv)")
    return summarise(read_cells_csv(path))


def _change(a: tuple[float, ...], b: tuple[float, ...], what: str, higher: bool) -> str:
    """`mean req/s +12.0% (better, p=0.003, 3+3 runs)`, `mean p50 -3.0% (no difference
    shown, p=0.41, 3+3 runs)` or `... (no difference shown, 1 run; run with --repeats 3)`:
    the report's rule (`significance.decide`), B against A."""
    d = decide(a, b, higher_is_better=higher)
    rel = d.difference.relative
    if math.isnan(rel):
        return f"{what} n/a"
    word = ("better" if d.b_better else "worse") if d.shown else "no difference shown"
    return f"{what} {100 * rel:+.1f}% ({word}, {d.reason})"


def verdict(a: Summary, b: Summary) -> str:
    """B against A in words, throughput and p50, each by the report's rule."""
    tput = _change(a.throughput_samples, b.throughput_samples, "mean req/s", True)
    return f"B vs A: {tput}; {_change(a.p50_samples, b.p50_samples, 'mean p50', False)}"


def compare_cell(a: Summary, b: Summary) -> CellComparison:
    tput = welch(a.throughput_samples, b.throughput_samples)
    p50 = welch(a.p50_samples, b.p50_samples)
    return CellComparison(
        model=a.model,
        target=a.target,
        protocol=a.protocol,
        load=a.load,
        a=a,
        b=b,
        throughput=tput,
        p50=p50,
        p99=welch(a.p99_samples, b.p99_samples),
        verdict=verdict(a, b),
    )


def compare_runs(run_a: Path, run_b: Path) -> Comparison:
    a = {key(s): s for s in load_run(run_a)}
    b = {key(s): s for s in load_run(run_b)}
    cells = [compare_cell(a[k], b[k]) for k in a if k in b]
    return Comparison(
        run_a,
        run_b,
        cells,
        only_a=[" ".join(k) for k in a if k not in b],
        only_b=[" ".join(k) for k in b if k not in a],
    )


def build_comparison(run_a: Path, run_b: Path, out: Path) -> Comparison:
    """Write `out/index.html`, `out/compare.md` and `out/compare.json`."""
    result = compare_runs(run_a, run_b)
    out.mkdir(parents=True, exist_ok=True)
    (out / "index.html").write_text(render(result), encoding="utf-8")
    (out / "compare.md").write_text(markdown(result), encoding="utf-8")
    (out / "compare.json").write_text(json.dumps(as_json(result), indent=2, default=str))
    return result


def markdown(result: Comparison) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell_row(c)) + " |" for c in result.cells]
    parts = [
        "# dualserve load-test comparison",
        f"A: `{result.run_a}`  \nB: `{result.run_b}`",
        "Columns: medians of each run's repeats. Verdict: the change of the mean over the "
        "repeats, B against A; a difference is shown when Welch's t-test is significant "
        "(p < 0.05) and the change is at least 5%; one repeat a side shows none.",
        "\n".join(lines),
    ]
    if result.only_a or result.only_b:
        parts.append(f"Only in A: {result.only_a}  \nOnly in B: {result.only_b}")
    return "\n\n".join(parts) + "\n"


def as_json(result: Comparison) -> dict[str, Any]:
    return {
        "run_a": str(result.run_a),
        "run_b": str(result.run_b),
        "cells": [
            {
                "model": c.model,
                "target": c.target,
                "protocol": c.protocol,
                "load": c.load,
                "a": asdict(c.a),
                "b": asdict(c.b),
                "throughput": asdict(c.throughput),
                "p50": asdict(c.p50),
                "p99": asdict(c.p99),
                "verdict": c.verdict,
            }
            for c in result.cells
        ],
        "only_a": result.only_a,
        "only_b": result.only_b,
    }
