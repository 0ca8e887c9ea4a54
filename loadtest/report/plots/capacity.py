"""The open-loop plots: served vs offered rate (where each target saturates) and goodput.

Drawn with `loadtest.report.plots.figures`, as `loadtest.report.plots.summary`: one panel
per (model, protocol), one line per target.
"""

from __future__ import annotations

import math

from matplotlib.axes import Axes

from loadtest.report.capacity import saturation_reason
from loadtest.report.plots.figures import closed_loop, empty_figure, lines, panels, to_data_uri
from loadtest.results import Summary


def _open(summaries: list[Summary]) -> list[Summary]:
    return [s for s in summaries if s.open_loop]


def open_loop_plot(summaries: list[Summary], slo_ms: float | None) -> str:
    """Served vs offered requests/s; the diagonal is "keeps up"; a red ring marks each
    target's first saturated rate (`loadtest.report.capacity`)."""
    rows = _open(summaries)
    title = "Open loop: served vs offered rate (ring: saturated)"
    if not rows:
        return to_data_uri(empty_figure(title, "closed loop only: run with --rate to see this"))
    base = lines(lambda s: s.offered_rate, lambda s: s.throughput, "offered req/s", "served req/s")

    def draw(ax: Axes, mine: list[Summary]) -> None:
        base(ax, mine)
        top = max(s.offered_rate for s in mine)
        ax.plot([0, top], [0, top], color="black", linewidth=0.7, alpha=0.5)
        for target in dict.fromkeys(s.target for s in mine):
            ordered = sorted((s for s in mine if s.target == target), key=lambda s: s.offered_rate)
            hit = next((s for s in ordered if saturation_reason(s, slo_ms)), None)
            if hit is not None:
                ax.scatter([hit.offered_rate], [hit.throughput], s=160, facecolors="none",
                           edgecolors="red", linewidths=1.5)  # fmt: skip

    return to_data_uri(panels(rows, draw, title))


def goodput_plot(summaries: list[Summary], slo_ms: float | None) -> str:
    """Requests/s answered within the objective: over offered rate (open loop) when the
    sweep has open-loop cells, else over concurrency."""
    title = f"Goodput: req/s answered within p99 objective {slo_ms:g} ms" if slo_ms else "Goodput"
    if not slo_ms:
        return to_data_uri(empty_figure(title, "no objective: run with --slo-p99-ms"))
    rows = _open(summaries)
    if rows:
        draw = lines(lambda s: s.offered_rate, lambda s: s.goodput, "offered req/s", "goodput")
    else:
        rows = closed_loop(summaries)
        draw = lines(lambda s: s.concurrency, lambda s: s.goodput, "concurrent users", "goodput")
    if all(math.isnan(s.goodput) for s in rows):
        return to_data_uri(empty_figure(title, "no goodput measured"))
    return to_data_uri(panels(rows, draw, title))
