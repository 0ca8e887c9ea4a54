"""The headline's answer in words: one sentence per model and protocol.

Which framework served the model better (throughput at its best load, calling each
backend directly; through the gateway when no direct pair ran), by how much, how sure
(Welch's t-test over the repeats), at what test accuracy (the manifest's), and which TF
server answered (the real `tensorflow_model_server` or the bundled compatible one).
"""

from __future__ import annotations

import math
from typing import Any

from loadtest.report.capacity import saturation_text
from loadtest.report.tables import FRAMEWORKS, ROUTES, HeadlineRow, fmt_ms

NAMES = {"tensorflow": "TensorFlow", "pytorch": "PyTorch"}
EQUAL_ACCURACY_POINTS = 1.0  # test accuracies this close (percentage points) count as equal
TF_SERVERS = {
    "tensorflow_model_server": "the real tensorflow_model_server",
    "bundled": "the bundled TF Serving-compatible server",
}


def _pair(rows: list[HeadlineRow]) -> tuple[str, HeadlineRow, HeadlineRow] | None:
    for route in ROUTES:
        found = {r.framework: r for r in rows if r.route == route and r.framework in FRAMEWORKS}
        if len(found) == 2:
            return route, found["tensorflow"], found["pytorch"]
    return None


def accuracy_clause(quality: list[dict[str, Any]], model: str) -> str:
    """`at equal accuracy (TF 95.8%, PyTorch 96.0% on the test set)` or the gap."""
    entry = next((q for q in quality if q.get("model") == model), None)
    acc = (entry or {}).get("accuracy", {})
    tf, pt = acc.get("tensorflow"), acc.get("pytorch")
    if tf is None or pt is None:
        return "accuracy unknown (no manifest entry)"
    figures = f"TF {100 * tf:.1f}%, PyTorch {100 * pt:.1f}% test accuracy"
    gap = 100 * (tf - pt)
    if abs(gap) <= EQUAL_ACCURACY_POINTS:
        return f"at equal accuracy ({figures})"
    better = "TensorFlow" if gap > 0 else "PyTorch"
    return f"but not at equal accuracy: {better} is {abs(gap):.1f} points more accurate ({figures})"


def capacity_clause(win: HeadlineRow, lose: HeadlineRow) -> list[str]:
    """Goodput and saturation of the pair, when the sweep measured them."""
    out = []
    if not (math.isnan(win.capacity.best_goodput) or math.isnan(lose.capacity.best_goodput)):
        out.append(
            f"goodput {win.capacity.best_goodput:.0f} vs {lose.capacity.best_goodput:.0f} req/s"
        )
    if win.capacity.sustained_rate is not None or win.capacity.saturation_rate is not None:
        out.append(f"saturates {saturation_text(win.capacity)} vs {saturation_text(lose.capacity)}")
    return out


def tf_server_clause(environment: dict[str, Any]) -> str:
    binary = str(environment.get("tf_serving", "unknown"))
    return f"TF server: {TF_SERVERS.get(binary, binary)}"


def sentence(rows: list[HeadlineRow], meta: dict[str, Any], fixed_load: str) -> str:
    """The sentence for one model and protocol (`rows` are that model's and protocol's)."""
    first = rows[0]
    where = f"{first.model} over {first.protocol.upper()}"
    found = _pair(rows)
    if found is None:
        return f"{where}: no TensorFlow/PyTorch pair was measured, so no verdict."
    route, tf, pt = found
    win, lose = (tf, pt) if tf.throughput_winner else (pt, tf)
    ratio = win.best_throughput / lose.best_throughput if lose.best_throughput else math.nan
    via = "called directly" if route == "direct" else f"through {route}"
    parts = [
        f"{where} ({via}): {NAMES[win.framework]} served it better, "
        f"{win.best_throughput:.0f} vs {lose.best_throughput:.0f} req/s at best "
        f"({ratio:.2f}x), confidence {win.throughput_confidence or 'n/a'}",
        f"p50 at {fixed_load} {fmt_ms(win.p50_ms)} vs {fmt_ms(lose.p50_ms)} ms"
        f" (confidence {win.latency_confidence or 'n/a'})",
        *capacity_clause(win, lose),
        accuracy_clause(meta.get("quality", []), first.model),
        tf_server_clause(meta.get("environment", {})),
    ]
    return "; ".join(parts) + "."


def sentences(headline: list[HeadlineRow], meta: dict[str, Any], fixed_load: str) -> list[str]:
    """One sentence per (model, protocol), in headline order."""
    keys = dict.fromkeys((r.model, r.protocol) for r in headline)
    return [
        sentence([r for r in headline if (r.model, r.protocol) == key], meta, fixed_load)
        for key in keys
    ]
