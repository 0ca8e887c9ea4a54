"""What a report contains, before rendering: the `Report` built from a sweep's raw data,
and each table's columns and display rows (shared by `report.md`, `index.html` and the
terminal).

Input: `<report>/raw/cells.csv` (written by the sweep) and `<report>/raw/meta.json`
(environment, model quality, settings), through `loadtest.results.summarise`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loadtest.report.breakdown import Breakdown, breakdowns
from loadtest.report.plots.latency import read_latency
from loadtest.report.sentences import sentences
from loadtest.report.spread import spread
from loadtest.report.tables import (
    HEADLINE_COLUMNS,
    HeadlineRow,
    Overhead,
    at_fixed,
    fixed_concurrency,
    fmt_ms,
    fmt_rate,
    headline,
    overheads,
    primary,
)
from loadtest.results import Summary, read_cells_csv, summarise


@dataclass(frozen=True)
class Report:
    """What a report contains, before rendering."""

    summaries: list[Summary]
    headline: list[HeadlineRow]
    overheads: list[Overhead]
    fixed_concurrency: int
    fixed_load: str
    sentences: list[str]
    slo_ms: float | None
    meta: dict[str, Any]
    breakdowns: list[Breakdown] = field(default_factory=list)
    latency: list[dict[str, Any]] = field(default_factory=list)


def load(report_dir: Path) -> Report:
    cells = read_cells_csv(report_dir / "raw" / "cells.csv")
    meta = json.loads((report_dir / "raw" / "meta.json").read_text())
    summaries = summarise(cells)
    fixed = fixed_concurrency(summaries, meta.get("fixed_concurrency"))
    slo = meta.get("slo_p99_ms")
    rows = headline(summaries, fixed, slo)
    here = at_fixed(primary(summaries), fixed)
    fixed_load = here.load if here else "n/a"
    return Report(
        summaries=summaries,
        headline=rows,
        overheads=overheads(summaries),
        fixed_concurrency=fixed,
        fixed_load=fixed_load,
        sentences=sentences(rows, meta, fixed_load, overheads(summaries)),
        slo_ms=slo,
        meta=meta,
        breakdowns=breakdowns(summaries, fixed),
        latency=read_latency(report_dir),
    )


def headline_columns(fixed_load: str) -> list[str]:
    return [
        c.replace(" ms", f" ms @{fixed_load}") if c.startswith("p") else c for c in HEADLINE_COLUMNS
    ]


def summary_cells(s: Summary) -> list[str]:
    spread = (
        f"{fmt_rate(s.throughput_min)}-{fmt_rate(s.throughput_max)}" if s.repeats > 1 else "1 run"
    )
    return [
        s.model,
        s.target,
        s.protocol,
        s.load,
        fmt_rate(s.throughput),
        spread,
        fmt_ms(s.p50_ms),
        fmt_ms(s.p90_ms),
        fmt_ms(s.p99_ms),
        fmt_ms(s.p99_corrected_ms),
        fmt_ms(s.max_ms),
        fmt_rate(s.goodput),
        f"{100 * s.error_rate:.2f}%",
        f"{s.dropped} ({100 * s.dropped_rate:.1f}%)",
        f"{100 * s.loadgen_cpu:.0f}%" + (" ⚠" if s.saturated else ""),
        s.verdicts,
    ]


SUMMARY_COLUMNS = [
    "model",
    "target",
    "protocol",
    "load",
    "req/s",
    "req/s spread",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99 ms corrected",
    "max ms",
    "goodput req/s",
    "errors",
    "dropped",
    "load-gen CPU",
    "stop",
]


def overhead_cells(o: Overhead) -> list[str]:
    ratio = "n/a" if math.isnan(o.throughput_ratio) else f"{o.throughput_ratio:.2f}x"
    return [
        o.model,
        o.protocol,
        o.proxy,
        o.framework,
        o.load,
        f"{o.added_p50_ms:+.2f}",
        f"{o.added_p99_ms:+.2f}",
        ratio,
    ]


OVERHEAD_COLUMNS = [
    "model",
    "protocol",
    "proxy",
    "framework",
    "load",
    "added p50 ms",
    "added p99 ms",
    "req/s vs direct",
]


def quality_cells(row: dict[str, Any]) -> list[str]:
    acc = row["accuracy"]
    agreement = "n/a" if row["agreement"] is None else f"{100 * row['agreement']:.1f}%"
    return [
        row["model"],
        str(row["version"]),
        _pct(acc.get("tensorflow")),
        _pct(acc.get("pytorch")),
        agreement,
    ]


QUALITY_COLUMNS = [
    "model",
    "version",
    "TF test accuracy",
    "PyTorch test accuracy",
    "top-1 agreement",
]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def slo_text(report: Report) -> str:
    if report.slo_ms is None:
        return "no latency objective (goodput needs --slo-p99-ms)"
    return f"goodput = req/s answered within {report.slo_ms:g} ms"


SPREAD_COLUMNS = [
    "model",
    "target",
    "protocol",
    "load",
    "repeats",
    "req/s mean [95% t-interval], CV",
    "p50 ms",
    "p99 ms",
]


def spread_cells(s: Summary) -> list[str]:
    """One cell's figures across its repeats: mean, t-interval, CV (⚠ above 10%)."""
    return [
        s.model,
        s.target,
        s.protocol,
        s.load,
        str(s.repeats),
        spread(s.throughput_samples).text(0),
        spread(s.p50_samples).text(2),
        spread(s.p99_samples).text(2),
    ]


def flagged_cells(summaries: list[Summary]) -> list[str]:
    """`tf-direct rest c=16` for each cell with a figure whose CV is above 10%."""
    return [
        f"{s.target} {s.protocol} {s.load}"
        for s in summaries
        if any(spread(x).flagged for x in (s.throughput_samples, s.p50_samples, s.p99_samples))
    ]
