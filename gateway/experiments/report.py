"""`dualserve experiment report <id>`: the analysis as Markdown and HTML, with plots.

Plots (latency per arm, accuracy with Wilson intervals, traffic over time) are PNGs
embedded as base64, so the HTML needs no network and no side files.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.experiments.analysis import analyse
from gateway.experiments.frame import LogFrame
from gateway.experiments.records import Event, Row


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(frame: LogFrame, result: dict[str, Any]) -> dict[str, str]:
    """Three base64 PNGs: latency distributions, accuracy with intervals, traffic."""
    import matplotlib

    matplotlib.use("Agg")  # no display, no network
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    figs = {name: plt.subplots(figsize=(6, 3.2)) for name in ("latency", "accuracy", "traffic")}
    ax = figs["latency"][1]
    for arm in arms:
        values = frame.latency_ms[frame.served(arm) & (frame.status == 200)]
        if values.size:
            ax.hist(values, bins=40, alpha=0.5, label=arm)
    ax.set(xlabel="latency (ms)", ylabel="requests", title="latency per arm")
    _accuracy_plot(figs["accuracy"][1], result)
    _traffic_plot(figs["traffic"][1], frame, arms)
    for _, axes in figs.values():
        if axes.get_legend_handles_labels()[0]:
            axes.legend()
    out = {name: _png(fig) for name, (fig, _) in figs.items()}
    plt.close("all")
    return out


def _accuracy_plot(ax: Any, result: dict[str, Any]) -> None:
    names: list[str] = []
    values: list[float] = []
    errors: list[list[float]] = [[], []]
    for arm, figures in result["arms"].items():
        acc = figures["accuracy"]
        if acc["value"] is not None:
            names.append(arm)
            values.append(acc["value"])
            errors[0].append(acc["value"] - acc["ci95"][0])
            errors[1].append(acc["ci95"][1] - acc["value"])
    ax.errorbar(names, values, yerr=errors, fmt="o", capsize=6)
    ax.set(ylabel="online accuracy", title="accuracy with 95% Wilson intervals")


def _traffic_plot(ax: Any, frame: LogFrame, arms: list[str]) -> None:
    served = frame.kind == "serve"
    if not served.any():
        return
    start = frame.ts[served].min()
    edges = np.linspace(start, max(frame.ts[served].max(), start + 1), 31)
    for arm in arms:
        counts, _ = np.histogram(frame.ts[frame.served(arm)], bins=edges)
        ax.plot((edges[:-1] - start), counts, label=arm)
    ax.set(xlabel="seconds since first request", ylabel="requests", title="traffic over time")


_HEADER = (
    "| arm | requests | error rate | p50 ms | p90 ms | p99 ms | accuracy [95% CI] | shadow |",
    "|---|---:|---:|---:|---:|---:|---|---:|",
)


def _accuracy_cell(acc: dict[str, Any]) -> str:
    if acc["value"] is None:
        return "no feedback yet"
    low, high = acc["ci95"]
    return f"{acc['value']:.4f} [{low:.4f}, {high:.4f}] (n={acc['labelled']})"


def _arm_line(arm: str, f: dict[str, Any]) -> str:
    lat = f["latency_ms"]
    cells = [arm, f["requests"], f["error_rate"], lat["p50"]["value"], lat["p90"]["value"]]
    cells += [lat["p99"]["value"], _accuracy_cell(f["accuracy"]), f["shadow"]["agreement"]]
    return "| " + " | ".join(str(c) for c in cells) + " |"


def markdown(result: dict[str, Any]) -> str:
    lines = [f"# Experiment {result['experiment']}", "", "## Verdict", ""]
    lines += [f"- {line}" for line in result.get("verdict", [])]
    lines += ["", "## Arms", "", *_HEADER]
    lines += [_arm_line(arm, figures) for arm, figures in result["arms"].items()]
    lines += ["", "## Full analysis", "", "```json", json.dumps(result, indent=2), "```", ""]
    return "\n".join(lines)


def write_report(
    rows: Sequence[Row], events: Sequence[Event], experiment: str, out_dir: Path
) -> tuple[Path, Path]:
    """Write `report.md` and `index.html` for one experiment; returns both paths."""
    result = analyse(rows, events, experiment)
    images = plots(LogFrame.from_rows(rows), result)
    out_dir.mkdir(parents=True, exist_ok=True)
    md = markdown(result)
    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    md_path.write_text(
        md + "".join(f"\n![{n}](data:image/png;base64,{b})\n" for n, b in images.items())
    )
    figures = "".join(
        f'<h2>{n}</h2><img alt="{n}" src="data:image/png;base64,{b}">' for n, b in images.items()
    )
    html_path.write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(experiment)}</title>"
        f"<body style='font-family:sans-serif;max-width:60em'>{figures}"
        f"<pre>{html.escape(md)}</pre></body>"
    )
    return md_path, html_path
