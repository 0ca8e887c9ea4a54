"""`benchmarks.experiments.analysis_stack` at a tiny size, so it does not rot: it starts
the real stack on a seeded log, measures both modes, prints the table, and leaves no
process of its own behind. No figure is judged here (a shared machine's timings mean
nothing); only that each mode ran and counted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.slow


def _row(table: str, mode: str) -> list[str]:
    """The cells of the first table's row for `mode`."""
    line = next(line for line in table.splitlines() if line.startswith(f"| {mode} |"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_bench_runs_both_modes_on_the_real_stack_and_stops_everything(
    trained_store: Path, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    command = [
        sys.executable, "-m", "benchmarks.experiments.analysis_stack",
        "--rows", "2000", "--seconds", "2", "--rounds", "1", "--warmup", "0.5",
        "--model-store", str(trained_store), "--keep", str(work),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    assert "seeding 2,000 rows" in out and "round 1/1: off" in out and "round 1/1: analysis" in out
    # mode, req/s, p50, p99, errors, req/s ratio, p99 ratio, analyses, stale, admin errors, s
    off, analysis = _row(out, "off"), _row(out, "analysis")
    assert int(off[1]) > 0 and int(analysis[1]) > 0  # predictions answered in both modes
    assert off[4] == analysis[4] == "0"  # none failed
    assert off[7] == "0" and int(analysis[7]) >= 1  # analyses read only in `analysis`
    assert analysis[9] == "0"  # every admin read answered 200
    parts = {line.split("|")[1].strip() for line in out.splitlines() if "|" in line}
    assert {"gateway", "log writer", "analyst", "tfserving", "torchserve"} <= parts
    assert "of off, p99" in out and "the 0.9x / 1.3x / 100 MiB target" in out
    left = [
        p.info["pid"] for p in psutil.process_iter(["pid", "cmdline"])
        if any(str(work) in arg for arg in p.info["cmdline"] or ())
    ]  # fmt: skip
    assert left == [], f"processes of the bench still run: {left}"
