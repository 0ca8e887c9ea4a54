"""The headline's answer in words: one sentence per model and protocol.

Which framework served the model better (throughput at its best load, calling each
backend directly unless `--verdict-via gateway`; through the gateway when no direct pair
ran), by how much and how sure: a winner is named only when Welch's t-test over the
repeats is significant and the difference reaches the practical threshold
(`significance.decide`), else "no difference shown (1 run; run with --repeats 3)". Then
the p50 (TF first), goodput and saturation, each gateway arm's figures with what the
gateway adds to that arm, the test accuracy (the manifest's), and which TF server
answered (the real `tensorflow_model_server` or the bundled compatible one).
"""

from __future__ import annotations

import math
from typing import Any

from loadtest.report.capacity import saturation_text
from loadtest.report.significance import PRACTICAL
from loadtest.report.tables import FRAMEWORKS, ROUTES, HeadlineRow, Overhead, fmt_ms

NAMES = {"tensorflow": "TensorFlow", "pytorch": "PyTorch"}
EQUAL_ACCURACY_POINTS = 1.0  # test accuracies this close (percentage points) count as equal
TF_SERVERS = {
    "tensorflow_model_server": "the real tensorflow_model_server",
    "bundled": "the bundled TF Serving-compatible server",
}


def _pair(rows: list[HeadlineRow], prefer: str) -> tuple[str, HeadlineRow, HeadlineRow] | None:
    """The TF/PyTorch pair of the `prefer`red route, else of the first route that has one."""
    for route in (prefer, *(r for r in ROUTES if r != prefer)):
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
    """Goodput and saturation of the pair (`win` first), when the sweep measured them."""
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


def verdict_clause(tf: HeadlineRow, pt: HeadlineRow) -> str:
    """`TensorFlow served it better, 900 vs 700 req/s at best (1.29x; p=0.001, 3+3 runs,
    threshold 5%)`, or `no difference shown (1 run; run with --repeats 3): ...`."""
    if tf.throughput_winner or pt.throughput_winner:
        win, lose = (tf, pt) if tf.throughput_winner else (pt, tf)
        ratio = win.best_throughput / lose.best_throughput if lose.best_throughput else math.nan
        why = tf.throughput_verdict.removeprefix("difference shown (").removesuffix(")")
        return (
            f"{NAMES[win.framework]} served it better, {win.best_throughput:.0f} vs "
            f"{lose.best_throughput:.0f} req/s at best ({ratio:.2f}x; {why}, "
            f"threshold {100 * PRACTICAL:g}%)"
        )
    return (
        f"{tf.throughput_verdict or 'no difference shown'} between TensorFlow and PyTorch: "
        f"{tf.best_throughput:.0f} vs {pt.best_throughput:.0f} req/s at best"
    )


def overhead_clause(route: str, rows: list[HeadlineRow], overheads: list[Overhead]) -> str:
    """Through the gateway, each arm's figures with what the gateway adds to that arm, and
    which view the verdict comes from."""
    arms = [r for r in rows if r.route == "gateway" and r.framework in FRAMEWORKS]
    if not arms:
        return ""
    parts = []
    for arm in arms:
        added = next(
            (o for o in overheads if (o.model, o.protocol, o.proxy, o.framework, o.load)
             == (arm.model, arm.protocol, "gateway", arm.framework, arm.best_load)), None,
        )  # fmt: skip
        cost = f", gateway adds {added.added_p50_ms:+.2f} ms p50" if added else ""
        parts.append(f"{NAMES[arm.framework]} arm {arm.best_throughput:.0f} req/s{cost}")
    view = (
        "verdict from the direct calls (the gateway's cost differs per arm)"
        if route == "direct"
        else f"verdict through {route}, which includes the gateway's per-arm cost"
    )
    return f"through the gateway: {', '.join(parts)}; {view}"


def sentence(
    rows: list[HeadlineRow],
    meta: dict[str, Any],
    fixed_load: str,
    overheads: list[Overhead] | None = None,
) -> str:
    """The sentence for one model and protocol (`rows` are that model's and protocol's).

    The framework verdict comes from the direct calls unless `meta["verdict_route"]` names
    another route (`--verdict-via gateway`)."""
    first = rows[0]
    where = f"{first.model} over {first.protocol.upper()}"
    found = _pair(rows, str(meta.get("verdict_route") or "direct"))
    if found is None:
        return f"{where}: no TensorFlow/PyTorch pair was measured, so no verdict."
    route, tf, pt = found
    via = "called directly" if route == "direct" else f"through {route}"
    parts = [
        f"{where} ({via}): {verdict_clause(tf, pt)}",
        f"p50 at {fixed_load} TF {fmt_ms(tf.p50_ms)} vs PyTorch {fmt_ms(pt.p50_ms)} ms, "
        f"{tf.latency_verdict or 'n/a'}",
        *capacity_clause(tf, pt),
        overhead_clause(route, rows, overheads or []),
        accuracy_clause(meta.get("quality", []), first.model),
        tf_server_clause(meta.get("environment", {})),
    ]
    return "; ".join(p for p in parts if p) + "."


def sentences(
    headline: list[HeadlineRow],
    meta: dict[str, Any],
    fixed_load: str,
    overheads: list[Overhead] | None = None,
) -> list[str]:
    """One sentence per (model, protocol), in headline order."""
    keys = dict.fromkeys((r.model, r.protocol) for r in headline)
    return [
        sentence([r for r in headline if (r.model, r.protocol) == key], meta, fixed_load, overheads)
        for key in keys
    ]
