"""What `compare` found, before rendering: one `CellComparison` per matched cell, and the
table row each becomes (shared by `compare.md`, the terminal and the HTML page)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from loadtest.report.significance import Difference
from loadtest.results import Summary

CellKey = tuple[str, str, str, str]


@dataclass(frozen=True)
class CellComparison:
    """One cell of both runs: B against A."""

    model: str
    target: str
    protocol: str
    load: str
    a: Summary
    b: Summary
    throughput: Difference
    p50: Difference
    p99: Difference
    verdict: str


@dataclass(frozen=True)
class Comparison:
    run_a: Path
    run_b: Path
    cells: list[CellComparison]
    only_a: list[str]
    only_b: list[str]

    def summary_lines(self) -> list[str]:
        """The verdicts, one line per cell, for the terminal."""
        lines = [f"B = {self.run_b}, A = {self.run_a}"]
        lines += [f"{c.model} {c.target} {c.protocol} {c.load}: {c.verdict}" for c in self.cells]
        if self.only_a or self.only_b:
            lines.append(f"unmatched: {len(self.only_a)} cells only in A, {len(self.only_b)} in B")
        return lines


COLUMNS = [
    "model",
    "target",
    "protocol",
    "load",
    "req/s A",
    "req/s B",
    "p50 ms A",
    "p50 ms B",
    "p99 ms A",
    "p99 ms B",
    "req/s t (df)",
    "req/s p",
    "verdict",
]


def _num(value: float, digits: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def cell_row(c: CellComparison) -> list[str]:
    """One comparison row as display strings (HTML and Markdown)."""
    t = c.throughput
    return [
        c.model,
        c.target,
        c.protocol,
        c.load,
        _num(c.a.throughput, 0),
        _num(c.b.throughput, 0),
        _num(c.a.p50_ms, 2),
        _num(c.b.p50_ms, 2),
        _num(c.a.p99_ms, 2),
        _num(c.b.p99_ms, 2),
        "n/a" if math.isnan(t.t) else f"{t.t:.2f} ({t.df:.1f})",
        "n/a" if math.isnan(t.p_value) else f"{t.p_value:.2g}",
        c.verdict,
    ]
