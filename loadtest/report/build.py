"""Build `index.html`, `report.md` and `summary.json` from a sweep's raw data.

Input: `<report>/raw/cells.csv` (written by the sweep) and `<report>/raw/meta.json`
(environment, model quality, settings). Everything shown is derived from those two
files through `results.summarise`, so a report can be rebuilt later:

    python -m loadtest report reports/<timestamp>
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loadtest.report import htmlpage
from loadtest.report.plots import all_plots
from loadtest.results import Summary, read_cells_csv, summarise
from loadtest.report.sentences import sentences
from loadtest.report.tables import (
    HEADLINE_COLUMNS,
    HeadlineRow,
    Overhead,
    at_fixed,
    fixed_concurrency,
    fmt_ms,
    fmt_rate,
    headline,
    headline_cells,
    overheads,
    primary,
)


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
        sentences=sentences(rows, meta, fixed_load),
        slo_ms=slo,
        meta=meta,
    )


def build(report_dir: Path) -> Report:
    """Write index.html, report.md and summary.json into `report_dir`."""
    report = load(report_dir)
    plots = all_plots(report.summaries, report.overheads, report.slo_ms)
    (report_dir / "index.html").write_text(htmlpage.render(report, plots), encoding="utf-8")
    (report_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    (report_dir / "summary.json").write_text(json.dumps(_summary_json(report), indent=2))
    return report


def headline_columns(fixed_load: str) -> list[str]:
    return [
        c.replace(" ms", f" ms @{fixed_load}") if c.startswith("p") else c for c in HEADLINE_COLUMNS
    ]


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


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


def markdown(report: Report) -> str:
    meta = report.meta
    parts = [
        f"# dualserve load test, {meta.get('started', '')}",
        "Plots: open `index.html` in this folder.",
        "## Answer",
        "\n".join(f"- {line}" for line in report.sentences),
        f"## Headline (★ = better of the pair; p50/p99 at {report.fixed_load}; {slo_text(report)})",
        md_table(headline_columns(report.fixed_load), [headline_cells(r) for r in report.headline]),
        "## Model quality",
        md_table(QUALITY_COLUMNS, [quality_cells(q) for q in meta.get("quality", [])]),
        "## What the proxy adds",
        md_table(OVERHEAD_COLUMNS, [overhead_cells(o) for o in report.overheads]),
        "## Every cell (median of repeats)",
        md_table(SUMMARY_COLUMNS, [summary_cells(s) for s in report.summaries]),
        "## Environment",
        "```json\n" + json.dumps(meta.get("environment", {}), indent=2) + "\n```",
        "## Load generator",
        "```json\n" + json.dumps(meta.get("locust", {}), indent=2) + "\n```",
    ]
    return "\n\n".join(parts) + "\n"


def slo_text(report: Report) -> str:
    if report.slo_ms is None:
        return "no latency objective (goodput needs --slo-p99-ms)"
    return f"goodput = req/s answered within {report.slo_ms:g} ms"


def _summary_json(report: Report) -> dict[str, Any]:
    return {
        "fixed_concurrency": report.fixed_concurrency,
        "fixed_load": report.fixed_load,
        "slo_p99_ms": report.slo_ms,
        "sentences": report.sentences,
        "headline": [asdict(r) for r in report.headline],
        "summaries": [asdict(s) for s in report.summaries],
        "overheads": [asdict(o) for o in report.overheads],
    }
