"""Build `index.html`, `report.md` and `summary.json` from a sweep's raw data.

Input: `<report>/raw/cells.csv` (written by the sweep) and `<report>/raw/meta.json`
(environment, model quality, settings). Everything shown is derived from those two
files through `results.summarise`, so a report can be rebuilt later:

    python -m loadtest report reports/<timestamp>
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from loadtest.report import htmlpage
from loadtest.report.breakdown import BREAKDOWN_COLUMNS, breakdown_cells
from loadtest.report.contents import (
    OVERHEAD_COLUMNS,
    QUALITY_COLUMNS,
    SPREAD_COLUMNS,
    SUMMARY_COLUMNS,
    Report,
    headline_columns,
    load,
    overhead_cells,
    quality_cells,
    slo_text,
    spread_cells,
    summary_cells,
)
from loadtest.report.fairness import (
    FAIRNESS_COLUMNS,
    fairness_rows,
    load_generator_lines,
    saturation_warnings,
)
from loadtest.report.plots.summary import all_plots
from loadtest.report.tables import headline_cells


def build(report_dir: Path) -> Report:
    """Write index.html, report.md and summary.json into `report_dir`."""
    report = load(report_dir)
    plots = all_plots(
        report.summaries,
        report.overheads,
        report.slo_ms,
        report.latency,
        report.fixed_load,
        report.breakdowns,
    )
    (report_dir / "index.html").write_text(htmlpage.render(report, plots), encoding="utf-8")
    (report_dir / "report.md").write_text(markdown(report), encoding="utf-8")
    (report_dir / "summary.json").write_text(json.dumps(_summary_json(report), indent=2))
    return report


def md_table(columns: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def markdown(report: Report) -> str:
    meta = report.meta
    parts = [
        f"# dualserve load test, {meta.get('started', '')}",
        "Plots: open `index.html` in this folder.",
        "## Answer",
        "\n".join(f"- {line}" for line in report.sentences),
        f"## Headline (★ = better of the pair; p50/p99 at {report.fixed_load}; {slo_text(report)})",
        md_table(headline_columns(report.fixed_load), [headline_cells(r) for r in report.headline]),
        "## Is the comparison fair?",
        md_table(FAIRNESS_COLUMNS, fairness_rows(meta)),
        "\n".join(
            f"- {x}"
            for x in load_generator_lines(report.summaries, meta)
            + saturation_warnings(report.summaries)
        ),
        "## Spread across repeats (mean [95% t-interval], CV; ⚠ above 10%)",
        md_table(SPREAD_COLUMNS, [spread_cells(s) for s in report.summaries]),
        f"## Where the time went (mean ms per request at {report.fixed_load})",
        md_table(BREAKDOWN_COLUMNS, [breakdown_cells(b) for b in report.breakdowns]),
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


def _summary_json(report: Report) -> dict[str, Any]:
    return {
        "fixed_concurrency": report.fixed_concurrency,
        "fixed_load": report.fixed_load,
        "slo_p99_ms": report.slo_ms,
        "sentences": report.sentences,
        "headline": [asdict(r) for r in report.headline],
        "summaries": [asdict(s) for s in report.summaries],
        "overheads": [asdict(o) for o in report.overheads],
        "breakdowns": [asdict(b) for b in report.breakdowns],
    }
