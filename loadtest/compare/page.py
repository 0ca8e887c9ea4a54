"""The comparison as one self-contained HTML page: both runs on the same charts.

One panel per (model, protocol); each target keeps its colour, run A is drawn solid and
run B dashed. Closed-loop cells are plotted over concurrency, open-loop ones over the
offered rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

from matplotlib.axes import Axes

from loadtest.compare.comparison import COLUMNS, Comparison, cell_row
from loadtest.report.htmlpage import STYLE, plots_html, table
from loadtest.report.plots.figures import TARGET_COLORS, empty_figure, panels, to_data_uri
from loadtest.results import Summary

Metric = Callable[[Summary], float]


def _x(s: Summary) -> float:
    return s.offered_rate if s.open_loop else float(s.concurrency)


def _draw(a_rows: set[int], y: Metric, ylabel: str) -> Callable[[Axes, list[Summary]], None]:
    def draw(ax: Axes, rows: list[Summary]) -> None:
        for target in dict.fromkeys(s.target for s in rows):
            for run, style in (("A", "-"), ("B", "--")):
                mine = [s for s in rows if s.target == target and (id(s) in a_rows) == (run == "A")]
                points = sorted((_x(s), y(s)) for s in mine if not math.isnan(y(s)))
                if points:
                    ax.plot(*zip(*points, strict=True), style, marker="o",
                            color=TARGET_COLORS.get(target), label=f"{target} ({run})")  # fmt: skip
        ax.set_ylabel(ylabel)
        ax.set_xlabel("offered req/s" if rows and rows[0].open_loop else "concurrent users")

    return draw


def comparison_plot(result: Comparison, open_loop: bool, y: Metric, ylabel: str) -> str:
    cells = [c for c in result.cells if c.a.open_loop == open_loop]
    kind = "open loop" if open_loop else "closed loop"
    title = f"{ylabel}, {kind}: run A solid, run B dashed"
    if not cells:
        return to_data_uri(empty_figure(title, f"no {kind} cells in both runs"))
    rows = [c.a for c in cells] + [c.b for c in cells]
    draw = _draw({id(c.a) for c in cells}, y, ylabel)
    return to_data_uri(panels(rows, draw, title))


def all_plots(result: Comparison) -> dict[str, str]:
    return {
        "compare-throughput": comparison_plot(result, False, lambda s: s.throughput, "req/s"),
        "compare-p99": comparison_plot(result, False, lambda s: s.p99_ms, "p99 ms"),
        "compare-open-loop": comparison_plot(result, True, lambda s: s.throughput, "served req/s"),
        "compare-open-p99": comparison_plot(result, True, lambda s: s.p99_ms, "p99 ms"),
    }


def render(result: Comparison) -> str:
    unmatched = "".join(f"<li>only in A: {escape(k)}</li>" for k in result.only_a) + "".join(
        f"<li>only in B: {escape(k)}</li>" for k in result.only_b
    )
    sections = [
        "<h1>dualserve load-test comparison</h1>",
        f"<p>A: <code>{escape(str(result.run_a))}</code><br>"
        f"B: <code>{escape(str(result.run_b))}</code></p>",
        '<p class="note">The columns show the medians of each run\'s repeats. The verdict '
        "gives the change of the mean over the repeats and tests it with Welch's t-test "
        "(scipy; its degrees of freedom shown): a difference is shown when p &lt; 0.05 and "
        "the change is at least 5%; with one repeat a side none is shown.</p>",
        table(COLUMNS, [cell_row(c) for c in result.cells], "comparison"),
        f"<ul>{unmatched}</ul>" if unmatched else "",
        "<h2>Plots</h2>",
        plots_html(all_plots(result)),
    ]
    head = f'<meta charset="utf-8"><title>dualserve comparison</title><style>{STYLE}</style>'
    body = "\n".join(sections)
    return f'<!doctype html>\n<html lang="en"><head>{head}</head><body>\n{body}\n</body></html>\n'
