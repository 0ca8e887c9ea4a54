"""The report's plots of `Summary` rows (`loadtest.report.plots.figures` draws them).

One panel per (model, protocol) and one line per target. The plots over concurrency show
the closed-loop cells; `loadtest.report.plots.capacity` the open-loop ones (offered rate)
and goodput.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt

from loadtest.report.breakdown import Breakdown
from loadtest.report.plots.capacity import goodput_plot, open_loop_plot
from loadtest.report.plots.figures import closed_loop, empty_figure, lines, panels, to_data_uri
from loadtest.report.plots.latency import spectrum_plot, timeline_plot
from loadtest.report.tables import Overhead
from loadtest.results import Summary


def throughput_plot(summaries: list[Summary]) -> str:
    draw = lines(lambda s: s.concurrency, lambda s: s.throughput, "concurrent users", "requests/s")
    return to_data_uri(panels(closed_loop(summaries), draw, "Throughput vs concurrency"))


def latency_plot(summaries: list[Summary], which: str) -> str:
    """p50 or p99 over closed-loop concurrency; p99 adds the corrected p99 dotted."""
    key = f"{which}_ms"
    corrected = (lambda s: s.p99_corrected_ms) if which == "p99" else None
    draw = lines(
        lambda s: s.concurrency,
        lambda s: float(getattr(s, key)),
        "concurrent users",
        f"{which} latency (ms)",
        corrected,
    )
    title = f"{which} latency vs concurrency"
    if corrected:
        title += " (dotted: corrected for coordinated omission)"
    return to_data_uri(panels(closed_loop(summaries), draw, title))


def latency_throughput_plot(summaries: list[Summary]) -> str:
    draw = lines(lambda s: s.throughput, lambda s: s.p99_ms, "requests/s", "p99 latency (ms)")
    return to_data_uri(
        panels(summaries, draw, "Latency vs throughput (p99; each point one load level)")
    )


def error_plot(summaries: list[Summary]) -> str:
    draw = lines(
        lambda s: s.concurrency, lambda s: 100 * s.error_rate, "concurrent users", "errors (%)"
    )
    return to_data_uri(panels(closed_loop(summaries), draw, "Error rate"))


def overhead_plot(rows: list[Overhead]) -> str:
    """Added p50 per proxy, framework and concurrency; one panel per protocol."""
    protocols = list(dict.fromkeys(r.protocol for r in rows)) or ["rest"]
    height = 1.2 + 0.28 * max(1, max(sum(r.protocol == p for r in rows) for p in protocols))
    fig, axes = plt.subplots(
        1,
        len(protocols),
        figsize=(7.5 * len(protocols), height),
        squeeze=False,
        layout="constrained",
    )
    for ax, protocol in zip(axes[0], protocols, strict=True):
        mine = [r for r in rows if r.protocol == protocol]
        labels = [f"{r.model} {r.proxy}->{r.framework} {r.load}" for r in mine]
        colors = ["tab:blue" if r.proxy == "gateway" else "tab:gray" for r in mine]
        ax.barh(range(len(mine)), [r.added_p50_ms for r in mine], color=colors)
        ax.set_yticks(range(len(mine)), labels, fontsize=8)
        ax.invert_yaxis()
        ax.axvline(0, color="black", linewidth=0.8)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_xlabel("added p50 latency vs direct (ms)")
        ax.set_title(f"{protocol}: gateway (blue) and nginx (gray)")
    fig.suptitle("What the proxy adds")
    return to_data_uri(fig)


def breakdown_plot(rows: list[Breakdown]) -> str:
    """Stacked bars: each target's mean request time by where it went (`breakdown`)."""
    if not rows:
        return to_data_uri(empty_figure("Where the time went", "no cells at the fixed load"))
    labels = [f"{b.model} {b.protocol} {b.target}" for b in rows]
    fig, ax = plt.subplots(figsize=(11, 1.2 + 0.35 * len(rows)), layout="constrained")
    left = [0.0] * len(rows)
    for name in rows[0].parts():
        widths = [b.parts()[name] for b in rows]
        ax.barh(range(len(rows)), widths, left=left, label=name)
        left = [a + w for a, w in zip(left, widths, strict=True)]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"mean ms per request at {rows[0].load}")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(True, axis="x", alpha=0.3)
    fig.suptitle("Where the time went (backend metrics, Server-Timing, client)")
    return to_data_uri(fig)


def all_plots(
    summaries: list[Summary],
    overhead_rows: list[Overhead],
    slo_ms: float | None = None,
    latency: list[dict[str, Any]] | None = None,
    fixed_load: str = "",
    breakdown_rows: list[Breakdown] | None = None,
) -> dict[str, str]:
    """Plot id -> data URI, in report order."""
    return {
        "throughput": throughput_plot(summaries),
        "p50": latency_plot(summaries, "p50"),
        "p99": latency_plot(summaries, "p99"),
        "latency-vs-throughput": latency_throughput_plot(summaries),
        "gateway-overhead": overhead_plot(overhead_rows),
        "errors": error_plot(summaries),
        "open-loop": open_loop_plot(summaries, slo_ms),
        "goodput": goodput_plot(summaries, slo_ms),
        "latency-over-time": timeline_plot(latency or [], fixed_load),
        "percentile-spectrum": spectrum_plot(latency or [], fixed_load),
        "time-breakdown": breakdown_plot(breakdown_rows or []),
    }
