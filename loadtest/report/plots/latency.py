"""Latency inside a cell: over time (p50/p99 per second) and over the whole percentile
spectrum (p50 to p99.99), from each cell's `raw/cells/<cell>/latency.json` (written by
`loadtest.cells.write_latency`: the merged HDR histogram and the per-second figures).

Both plots show the cells at the report's fixed load, one panel per (model, protocol),
one colour per target. Over time, the first repeat (warm-up already cut off): drift, GC
pauses or a hot reload show as steps or spikes. The spectrum merges the repeats'
histograms and puts the percentiles on a log scale of "nines" (x = -log10(1 - q/100)),
as HdrHistogram's own percentile plots do, with latency on a log scale.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from gateway.telemetry.histogram import LatencyHistogram, merge_all
from loadtest.report.plots.figures import TARGET_COLORS, empty_figure, to_data_uri

SPECTRUM = (50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99)
TICKS = (50.0, 90.0, 99.0, 99.9, 99.99)


def read_latency(report_dir: Path) -> list[dict[str, Any]]:
    """Every cell's latency record under `report_dir/raw/cells`, in path order."""
    paths = sorted((report_dir / "raw" / "cells").glob("*/latency.json"))
    return [json.loads(p.read_text()) for p in paths]


def load_of(record: dict[str, Any]) -> str:
    """The record's load as `Summary.load` writes it: `c=16`, `poisson 400/s`."""
    if record["arrival"] == "closed":
        return f"c={record['concurrency']}"
    return f"{record['arrival']} {float(record['offered_rate']):g}/s"


def _nines(q: float) -> float:
    return -math.log10(1 - q / 100)


def _grouped(records: list[dict[str, Any]], load: str) -> dict[tuple[str, str], list[Any]]:
    panels: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        if load_of(r) == load:
            panels.setdefault((r["model"], r["protocol"]), []).append(r)
    return panels


def _figure(count: int) -> tuple[Figure, Any]:
    fig, axes = plt.subplots(1, count, figsize=(6.5 * count, 4.2), squeeze=False)
    return fig, axes[0]


def timeline_plot(records: list[dict[str, Any]], load: str) -> str:
    """p50 (solid) and p99 (dashed) per second of the first repeat, per target."""
    title = f"Latency over time at {load}: p50 solid, p99 dashed (first repeat)"
    panels = _grouped([r for r in records if r["repeat"] == 1], load)
    if not panels:
        return to_data_uri(empty_figure(title, "no per-second latency recorded at this load"))
    fig, axes = _figure(len(panels))
    for ax, ((model, protocol), mine) in zip(axes, panels.items(), strict=True):
        for r in mine:
            rows = r["timeline"]["rows"]
            color = TARGET_COLORS.get(r["target"])
            seconds = [x[0] for x in rows]
            ax.plot(seconds, [x[2] for x in rows], "-", marker=".", color=color, label=r["target"])
            ax.plot(seconds, [x[3] for x in rows], "--", marker=".", color=color)
        ax.set_title(f"{model}, {protocol}")
        ax.set_xlabel("second of the measurement")
        ax.set_ylabel("latency (ms)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return to_data_uri(fig)


def spectrum(histograms: list[LatencyHistogram]) -> dict[float, float]:
    """Percentile -> ms over the merged histograms (`SPECTRUM`'s percentiles)."""
    merged = merge_all(histograms)
    return {q: v * 1000 for q, v in merged.percentiles(SPECTRUM).items()}


def spectrum_plot(records: list[dict[str, Any]], load: str) -> str:
    """p50 to p99.99 per target (its repeats' histograms merged), log scales."""
    title = f"Percentile spectrum at {load} (repeats merged)"
    panels = _grouped(records, load)
    if not panels:
        return to_data_uri(empty_figure(title, "no latency histograms recorded at this load"))
    fig, axes = _figure(len(panels))
    for ax, ((model, protocol), mine) in zip(axes, panels.items(), strict=True):
        targets: dict[str, list[LatencyHistogram]] = {}
        for r in mine:
            targets.setdefault(r["target"], []).append(LatencyHistogram.from_json(r["histogram"]))
        for target, hists in targets.items():
            found = spectrum(hists)
            ax.plot([_nines(q) for q in found], list(found.values()), marker="o", markersize=3,
                    color=TARGET_COLORS.get(target), label=target)  # fmt: skip
        ax.set_xticks([_nines(q) for q in TICKS], [f"p{q:g}" for q in TICKS])
        ax.set_yscale("log")
        ax.set_title(f"{model}, {protocol}")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms, log)")
        ax.grid(True, alpha=0.3, which="both")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title)
    return to_data_uri(fig)
