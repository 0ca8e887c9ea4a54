"""The drawing kit every report plot uses: matplotlib (Agg) figures into base64 PNG data
URIs (no files, no network), one panel per (model, protocol), one colour per target."""

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

Panel = Callable[[Axes, list[Summary]], None]
TARGET_COLORS = {
    "tf-direct": "tab:blue",
    "torch-direct": "tab:orange",
    "pt2-direct": "gold",
    "gateway->tf": "tab:green",
    "gateway->torch": "tab:red",
    "gateway->torch-pt2": "darkgoldenrod",
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
