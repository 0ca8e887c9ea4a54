"""The experiment report's plots, as base64 PNGs (matplotlib, no display, no network).

- `sequences`: each metric's candidate - control estimate over time with its
  anytime-valid confidence sequence as a band, zero and the margin drawn in;
- `latency`: per-arm latency distributions; `accuracy`: per-arm accuracy with its
  cluster-adjusted interval; `traffic`: requests per arm over time.

`latency` and `traffic` draw counts the database binned (`log.histograms`), never rows.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from gateway.experiments.log.histograms import Binned, ReportHistograms
from gateway.experiments.stats.figures import LOWER_IS_BETTER

_SCALE = {"accuracy": 100.0, "error_rate": 100.0}  # shown in points


def png(fig: Any) -> str:
    """A matplotlib figure as base64 PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def plots(
    histograms: ReportHistograms, result: dict[str, Any], decided: Sequence[str]
) -> dict[str, str]:
    """Four base64 PNGs keyed sequences, latency, accuracy, traffic: from the analysis
    (`result`, its `decided` metrics) and the log's histograms of `result`'s arms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = list(result["arms"])
    out = {"sequences": _sequences(plt, result, decided)}
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _latency_plot(ax, histograms.latency, arms)
    out["latency"] = _finish(fig, ax)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _accuracy_plot(ax, result)
    out["accuracy"] = _finish(fig, ax)
    fig, ax = plt.subplots(figsize=(6, 3.2))
    _traffic_plot(ax, histograms.traffic, arms)
    out["traffic"] = _finish(fig, ax)
    plt.close("all")
    return out


def _sequences(plt: Any, result: dict[str, Any], decided: Sequence[str]) -> str:
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), squeeze=False)
    margins = (result.get("decision") or {}).get("margins", {})
    for ax, metric in zip(axes.ravel(), LOWER_IS_BETTER, strict=True):
        _sequence_plot(ax, result.get("history") or [], metric, margins.get(metric))
        if metric not in decided:
            ax.set_title(f"{ax.get_title()} (shown only)")
    fig.suptitle("candidate - control over time, with confidence sequences")
    fig.tight_layout()
    return png(fig)


def _latency_plot(ax: Any, latency: Binned | None, arms: list[str]) -> None:
    ax.set(xlabel="latency (ms)", ylabel="requests", title="latency per arm")
    if latency is None:
        return
    for arm in arms:
        if latency.counts[arm].any():
            ax.stairs(latency.counts[arm], latency.edges, fill=True, alpha=0.5, label=arm)


def _finish(fig: Any, ax: Any) -> str:
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    return png(fig)


def _sequence_plot(
    ax: Any, history: list[dict[str, Any]], metric: str, margin: float | None
) -> None:
    scale = _SCALE.get(metric, 1.0)
    looks = [h for h in history if h[metric]["estimate"] is not None]
    unit = "points" if metric in _SCALE else "ms"
    ax.set(title=metric, xlabel="routing keys seen", ylabel=f"difference ({unit})")
    ax.axhline(0.0, color="black", linewidth=0.8)
    if margin is not None:
        sign = 1.0 if LOWER_IS_BETTER[metric] else -1.0
        ax.axhline(sign * margin * scale, color="red", linestyle="--", label="margin")
    if not looks:
        return
    x = np.array([h["units"] for h in looks], dtype=float)
    y = np.array([h[metric]["estimate"] for h in looks], dtype=float) * scale
    bounds = [[np.nan if v is None else v for v in h[metric]["sequence"]] for h in looks]
    low, high = (np.array(bounds, dtype=float) * scale).T
    ax.fill_between(x, low, high, alpha=0.3, label="confidence sequence")
    ax.plot(x, y, marker="o", markersize=3, label="estimate")
    ax.legend(fontsize="small")


def _accuracy_plot(ax: Any, result: dict[str, Any]) -> None:
    names: list[str] = []
    values: list[float] = []
    errors: list[list[float]] = [[], []]
    for arm, figures in result["arms"].items():
        acc = figures["accuracy"]
        if acc["value"] is not None and None not in acc["ci95"]:
            names.append(arm)
            values.append(acc["value"])
            errors[0].append(acc["value"] - acc["ci95"][0])
            errors[1].append(acc["ci95"][1] - acc["value"])
    ax.errorbar(names, values, yerr=errors, fmt="o", capsize=6)
    ax.set(ylabel="online accuracy", title="accuracy, 95% cluster-adjusted Wilson intervals")


def _traffic_plot(ax: Any, traffic: Binned | None, arms: list[str]) -> None:
    ax.set(xlabel="seconds since first request", ylabel="requests", title="traffic over time")
    if traffic is None:
        return
    for arm in arms:
        ax.stairs(traffic.counts[arm], traffic.edges - traffic.edges[0], baseline=None, label=arm)
