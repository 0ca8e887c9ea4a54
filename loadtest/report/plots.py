"""The report's plots, drawn with matplotlib (Agg) into base64 PNGs: no files, no network.

One panel per (model, protocol) and one line per target, from `Summary` rows. The
plots over concurrency show the closed-loop cells; `loadtest.report.capacity_plots` the
open-loop ones (offered rate) and goodput.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from loadtest.results import Summary
from loadtest.report.tables import Overhead

Panel = Callable[[Axes, list[Summary]], None]
TARGET_COLORS = {
    "tf-direct": "tab:blue",
    "torch-direct": "tab:orange",
    "gateway->tf": "tab:green",
    "gateway->torch": "tab:red",
    "gateway-50/50": "tab:purple",
    "gateway-shadow": "tab:brown",
    "nginx->tf": "tab:cyan",
    "nginx->torch": "tab:olive",
    "nginx-50/50": "tab:gray",
}


def to_data_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def empty_figure(title: str, note: str) -> Figure:
    """A small figure that says why a plot has nothing to show."""
    fig, ax = plt.subplots(figsize=(6.5, 1.6))
    ax.text(0.5, 0.5, note, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    fig.suptitle(title)
    return fig


def panels(summaries: list[Summary], draw: Panel, title: str) -> Figure:
    keys = list(dict.fromkeys((s.model, s.protocol) for s in summaries))
    if not keys:
        return empty_figure(title, "no cells of this kind in this run")
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.2), squeeze=False)
    for ax, (model, protocol) in zip(axes[0], keys, strict=True):
        draw(ax, [s for s in summaries if (s.model, s.protocol) == (model, protocol)])
        ax.set_title(f"{model}, {protocol}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return fig


def closed_loop(summaries: list[Summary]) -> list[Summary]:
    return [s for s in summaries if not s.open_loop]


def lines(
    x: Callable[[Summary], float],
    y: Callable[[Summary], float],
    xlabel: str,
    ylabel: str,
    extra: Callable[[Summary], float] | None = None,
) -> Panel:
    """One line per target (x sorted); `extra` adds a dotted line of the same colour."""

    def draw(ax: Axes, rows: list[Summary]) -> None:
        for target in dict.fromkeys(s.target for s in rows):
            mine = sorted((s for s in rows if s.target == target), key=x)
            points = [(x(s), y(s)) for s in mine if not math.isnan(y(s))]
            style = "--" if "nginx" in target else "-"
            color = TARGET_COLORS.get(target)
            if points:
                ax.plot(*zip(*points, strict=True), style, marker="o", label=target, color=color)
            more = [(x(s), extra(s)) for s in mine if extra and not math.isnan(extra(s))]
            if more:
                ax.plot(*zip(*more, strict=True), ":", marker="x", color=color)
        xs = [x(s) for s in rows if x(s) > 0]
        if xlabel == "offered req/s" and xs and max(xs) > 8 * min(xs):
            ax.set_xscale("log")
        if xlabel == "concurrent users":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)

    return draw


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


def all_plots(
    summaries: list[Summary], overhead_rows: list[Overhead], slo_ms: float | None = None
) -> dict[str, str]:
    """Plot id -> data URI, in report order."""
    from loadtest.report.capacity_plots import goodput_plot, open_loop_plot

    return {
        "throughput": throughput_plot(summaries),
        "p50": latency_plot(summaries, "p50"),
        "p99": latency_plot(summaries, "p99"),
        "latency-vs-throughput": latency_throughput_plot(summaries),
        "gateway-overhead": overhead_plot(overhead_rows),
        "errors": error_plot(summaries),
        "open-loop": open_loop_plot(summaries, slo_ms),
        "goodput": goodput_plot(summaries, slo_ms),
    }
