"""The report as one self-contained HTML page: inline CSS, plots as data URIs, no network."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from loadtest.report import contents as rep
from loadtest.report.breakdown import BREAKDOWN_COLUMNS, breakdown_cells
from loadtest.report.contents import Report
from loadtest.report.fairness import (
    FAIRNESS_COLUMNS,
    fairness_rows,
    load_generator_lines,
    saturation_warnings,
)
from loadtest.report.tables import headline_cells

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 24px auto; max-width: 1350px; color: #222; }
table { border-collapse: collapse; margin: 8px 0 20px; font-size: 13px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f1f3f5; } td:nth-child(-n+4) { text-align: left; }
tr.winner-row td { background: #fbfbf3; }
img.plot { display: block; max-width: 100%; margin: 8px 0 24px; border: 1px solid #eee; }
pre { background: #f6f8fa; padding: 8px; font-size: 12px; overflow-x: auto; }
.note { color: #555; }
.warn { color: #a40; font-weight: 600; }
"""

PLOT_TITLES = {
    "throughput": "Throughput vs concurrency",
    "p50": "p50 latency vs concurrency",
    "p99": "p99 latency vs concurrency",
    "latency-vs-throughput": "Latency vs throughput",
    "gateway-overhead": "Gateway (and nginx) overhead per protocol",
    "errors": "Error rate",
    "open-loop": "Open loop: served vs offered rate, saturation",
    "goodput": "Goodput within the latency objective",
    "latency-over-time": "Latency over time within a cell (p50/p99 per second)",
    "percentile-spectrum": "Percentile spectrum, p50 to p99.99 (HDR histograms)",
    "time-breakdown": "Where the time went",
    "compare-throughput": "Throughput vs concurrency, both runs",
    "compare-p99": "p99 latency vs concurrency, both runs",
    "compare-open-loop": "Served vs offered rate, both runs",
    "compare-open-p99": "p99 latency vs offered rate, both runs",
}

READING = """Each cell is one target (a backend directly, the gateway pinned to a framework,
a 50/50 split, shadow mode, or the nginx baseline) at one load: N concurrent closed-loop
users (c=N), or an open-loop arrival process offering R requests/s (poisson R/s, constant
R/s). Latencies are per-request times in an HDR histogram (0.1%), measured after a warm-up
until throughput and mean latency were stable (three windows within 10%) or a time cap
("capped"). Open-loop latencies run from each request's scheduled send time; requests the
load generator could not send on time are counted as dropped. Closed-loop cells also show
the p99 corrected for coordinated omission (expected interval: the mean latency).
Goodput is the rate answered within the p99 objective; a target saturates where p99
crosses it or the served rate falls below 90% of the offered one. ★ marks the better
framework of each pair only where the difference is shown: Welch's t-test over the repeats
significant (p < 0.05) and at least 5%; the confidence column gives the test's label
(high: p < 0.01, medium: p < 0.05). The framework verdict is drawn from the direct calls
unless the sweep ran with --verdict-via gateway. A ⚠ marks cells where the load generator
used over 90% of a core: there it, not the server, was the limit."""


RAW_DATA = (
    '<p>Raw data: <a href="raw/cells.csv">raw/cells.csv</a>, <a href="summary.json">'
    "summary.json</a>, per-cell Locust CSVs and histograms under raw/cells/.</p>"
)


def table(columns: list[str], rows: list[list[str]], table_id: str) -> str:
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{escape(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def plots_html(plots: dict[str, str]) -> str:
    parts = []
    for key, uri in plots.items():
        title = escape(PLOT_TITLES.get(key, key))
        parts.append(
            f'<h3>{title}</h3><img class="plot" id="plot-{key}" alt="{title}" src="{uri}">'
        )
    return "".join(parts)


def _pre(value: Any) -> str:
    return f"<pre>{escape(value if isinstance(value, str) else json.dumps(value, indent=2))}</pre>"


def fairness_html(report: Report) -> str:
    """The fairness block: servers as run, the load generator, saturation warnings."""
    meta = report.meta
    warnings = saturation_warnings(report.summaries)
    lines = load_generator_lines(report.summaries, meta)
    return "".join(
        [
            '<section id="fairness"><h2>Is the comparison fair?</h2>',
            table(FAIRNESS_COLUMNS, fairness_rows(meta), "fairness-servers"),
            "<ul>" + "".join(f"<li>{escape(x)}</li>" for x in lines) + "</ul>",
            "".join(f'<p class="warn">{escape(w)}</p>' for w in warnings),
            "</section>",
        ]
    )


def spread_html(report: Report) -> str:
    flagged = rep.flagged_cells(report.summaries)
    note = (
        f'<p class="warn">⚠ CV above 10% across repeats: {escape(", ".join(flagged))}</p>'
        if flagged
        else ""
    )
    return (
        '<section id="spread"><h2>Spread across repeats</h2><p class="note">Mean of the '
        "repeats, its 95% Student-t interval and the coefficient of variation; ⚠ marks a CV "
        "above 10%.</p>"
        + note
        + table(rep.SPREAD_COLUMNS, [rep.spread_cells(s) for s in report.summaries], "spread-table")
        + "</section>"
    )


def breakdown_html(report: Report) -> str:
    return (
        '<section id="breakdown"><h2>Where the time went</h2>'
        f'<p class="note">{escape(BREAKDOWN_NOTE)}</p>'
        + table(
            BREAKDOWN_COLUMNS, [breakdown_cells(b) for b in report.breakdowns], "breakdown-table"
        )
        + "</section>"
    )


BREAKDOWN_NOTE = (
    "Mean ms per request at the fixed load. Backend queue and compute: the server's own "
    "metrics (TF Serving's batching queue and runtime latency, TorchServe's queue and "
    "inference latency) over the cell; gateway: its Server-Timing share; gateway-backend "
    "wire: the gateway's upstream time minus the backend's; the rest is the client, the "
    "network and the gateway's ingress. n/a: not measured there (split and shadow mix "
    "backends; TorchServe counts REST calls only)."
)


def render(report: Report, plots: dict[str, str]) -> str:
    meta, fixed = report.meta, report.fixed_load
    settings = "".join(
        f"<h4>{escape(k)}</h4>{_pre(v)}" for k, v in meta.get("backend_settings", {}).items()
    )
    skipped = "".join(f"<li>{escape(s)}</li>" for s in meta.get("skipped", []))
    sections = [
        f"<h1>dualserve load test <small>{escape(str(meta.get('started', '')))}</small></h1>",
        f'<p class="note">{escape(READING)}</p>',
        f"<ul>{skipped}</ul>" if skipped else "",
        "<h2>Answer</h2>",
        '<ul id="answer">' + "".join(f"<li>{escape(t)}</li>" for t in report.sentences) + "</ul>",
        fairness_html(report),
        "<h2>Headline</h2>",
        f"<p>Best throughput over the load levels; p50/p99 at {escape(fixed)}; "
        f"{escape(rep.slo_text(report))}.</p>",
        table(
            rep.headline_columns(fixed), [headline_cells(r) for r in report.headline], "headline"
        ),
        spread_html(report),
        breakdown_html(report),
        "<h2>Model quality next to speed</h2>",
        table(
            rep.QUALITY_COLUMNS, [rep.quality_cells(q) for q in meta.get("quality", [])], "quality"
        ),
        "<h2>Plots</h2>",
        plots_html(plots),
        "<h2>What the proxy adds over a direct call</h2>",
        table(rep.OVERHEAD_COLUMNS, [rep.overhead_cells(o) for o in report.overheads], "overhead"),
        "<h2>Every cell</h2>",
        table(rep.SUMMARY_COLUMNS, [rep.summary_cells(s) for s in report.summaries], "cells"),
        "<h2>Environment</h2>",
        _pre(meta.get("environment", {})),
        "<h2>Load generator (Locust)</h2>",
        _pre(meta.get("locust", {})),
        "<h2>Server settings as run</h2>",
        settings,
        RAW_DATA,
    ]
    body = "\n".join(sections)
    head = f'<meta charset="utf-8"><title>dualserve load test</title><style>{STYLE}</style>'
    return f'<!doctype html>\n<html lang="en"><head>{head}</head><body>\n{body}\n</body></html>\n'
