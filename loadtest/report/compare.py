"""`python -m loadtest compare RUN_A RUN_B`: two runs, cell by cell, with a verdict.

Each run's `raw/cells.csv` is summarised exactly as its own report does
(`loadtest.results.summarise`); cells are matched on (model, target, protocol, load).
Per cell: both medians, the relative difference of B against A, and Welch's t-test over
the repeats (`loadtest.report.significance`) of throughput, p50 and p99, and a plain verdict.
Both runs go on the same charts (A solid, B dashed, one colour per target).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.report.compare_page import render
from loadtest.report.comparison import COLUMNS, CellComparison, CellKey, Comparison, cell_row
from loadtest.report.significance import MEDIUM, Difference, welch
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


def _change(d: Difference, what: str, higher_is_better: bool) -> str:
    """`req/s +12% (better, p=0.003)`, `p50 -3% (no clear difference, p=0.41)` or untested."""
    rel = d.relative
    if math.isnan(rel):
        return f"{what} n/a"
    text = f"{what} {100 * rel:+.1f}%"
    if math.isnan(d.p_value):
        return f"{text} ({d.label})"
    if d.p_value >= MEDIUM:
        return f"{text} (no clear difference, p={d.p_value:.2g})"
    better = (rel > 0) == higher_is_better
    return f"{text} ({'better' if better else 'worse'}, p={d.p_value:.2g})"


def verdict(tput: Difference, p50: Difference) -> str:
    """B against A in words: real change, no clear change, or untested."""
    return f"B vs A: {_change(tput, 'mean req/s', True)}; {_change(p50, 'mean p50', False)}"


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
        verdict=verdict(tput, p50),
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
        "repeats, B against A, tested with Welch's t-test (p < 0.05 counts).",
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
