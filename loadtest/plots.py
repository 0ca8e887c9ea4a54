"""The report's plots, drawn with matplotlib (Agg) into base64 PNGs: no files, no network.

One panel per (model, protocol) and one line per target, from `Summary` rows.
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
from loadtest.tables import Overhead

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


def _panels(summaries: list[Summary], draw: Panel, title: str) -> Figure:
    keys = list(dict.fromkeys((s.model, s.protocol) for s in summaries))
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.2), squeeze=False)
    for ax, (model, protocol) in zip(axes[0], keys, strict=True):
        draw(ax, [s for s in summaries if (s.model, s.protocol) == (model, protocol)])
        ax.set_title(f"{model}, {protocol}")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return fig


def _lines(
    x: Callable[[Summary], float], y: Callable[[Summary], float], xlabel: str, ylabel: str
) -> Panel:
    def draw(ax: Axes, rows: list[Summary]) -> None:
        for target in dict.fromkeys(s.target for s in rows):
            mine = sorted((s for s in rows if s.target == target), key=lambda s: s.concurrency)
            points = [(x(s), y(s)) for s in mine if not math.isnan(y(s))]
            style = "--" if "nginx" in target else "-"
            if points:
                ax.plot(
                    [p[0] for p in points], [p[1] for p in points], style, marker="o", label=target
                )
        if xlabel == "concurrent users":
            ax.set_xscale("log", base=2)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)

    return draw


def throughput_plot(summaries: list[Summary]) -> str:
    draw = _lines(lambda s: s.concurrency, lambda s: s.throughput, "concurrent users", "requests/s")
    return to_data_uri(_panels(summaries, draw, "Throughput vs concurrency"))


def latency_plot(summaries: list[Summary], which: str) -> str:
    key = f"{which}_ms"
    draw = _lines(
        lambda s: s.concurrency,
        lambda s: float(getattr(s, key)),
        "concurrent users",
        f"{which} latency (ms)",
    )
    return to_data_uri(_panels(summaries, draw, f"{which} latency vs concurrency"))


def latency_throughput_plot(summaries: list[Summary]) -> str:
    draw = _lines(lambda s: s.throughput, lambda s: s.p99_ms, "requests/s", "p99 latency (ms)")
    return to_data_uri(
        _panels(summaries, draw, "Latency vs throughput (p99; each point one concurrency)")
    )


def error_plot(summaries: list[Summary]) -> str:
    draw = _lines(
        lambda s: s.concurrency, lambda s: 100 * s.error_rate, "concurrent users", "errors (%)"
    )
    return to_data_uri(_panels(summaries, draw, "Error rate"))


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
        labels = [f"{r.model} {r.proxy}->{r.framework} c={r.concurrency}" for r in mine]
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


def all_plots(summaries: list[Summary], overhead_rows: list[Overhead]) -> dict[str, str]:
    """Plot id -> data URI, in report order."""
    return {
        "throughput": throughput_plot(summaries),
        "p50": latency_plot(summaries, "p50"),
        "p99": latency_plot(summaries, "p99"),
        "latency-vs-throughput": latency_throughput_plot(summaries),
        "gateway-overhead": overhead_plot(overhead_rows),
        "errors": error_plot(summaries),
    }
