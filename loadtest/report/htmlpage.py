"""The report as one self-contained HTML page: inline CSS, plots as data URIs, no network."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from loadtest.report import contents as rep
from loadtest.report.contents import Report
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
framework of each pair; the confidence is Welch's t-test over the repeats (high: p < 0.01,
medium: p < 0.05). A ⚠ marks cells where the load generator used over 90% of a core: there
it, not the server, was the limit."""


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
        "<h2>Headline</h2>",
        f"<p>Best throughput over the load levels; p50/p99 at {escape(fixed)}; "
        f"{escape(rep.slo_text(report))}.</p>",
        table(
            rep.headline_columns(fixed), [headline_cells(r) for r in report.headline], "headline"
        ),
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
